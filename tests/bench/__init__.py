"""The benchmark suite (issue #17): `python -m tests.bench --help`. Not collected by pytest."""

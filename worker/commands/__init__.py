"""The `c9-sync` commands, one module per command group. Each module has `register(sub)` (its
parser) and `cmd_*` handlers `(args, settings, url) -> exit code`. Only `worker.cli` imports
these modules; they import everything below them and nothing imports them back."""

"""dlt's rest_api source reading GitHub issues into PostgreSQL, merged on `id`: the yardstick of
the suite's `dlt-github` scenario. Run by a Python that has dlt (not a dependency of this
project: `python -m venv D && D/bin/pip install "dlt[postgres]"`, then `--dlt-python
D/bin/python`); it imports nothing of this project.

`python dlt_github.py BASE_URL DSN REPO [REPO ...]` loads every issue of the repositories (every
state, 100 a page, following the Link header as GitHub's clients do) into the `github_issues`
dataset, then prints one JSON line: the rows loaded and the seconds `pipeline.run` took.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import dlt
from dlt.sources.rest_api import rest_api_source


def credentials(dsn: str) -> dict[str, Any]:
    """The DSN as dlt's fields (dlt wants a host; an embedded server's socket directory goes
    in the query, where libpq takes it over the host)."""
    url = urlsplit(dsn)
    socket = parse_qs(url.query).get("host")
    return {
        "database": url.path.lstrip("/"),
        "username": unquote(url.username or ""),
        "password": unquote(url.password or ""),
        "host": url.hostname or "localhost",
        "port": url.port or 5432,
        **({"query": {"host": socket[0]}} if socket else {}),
    }


def main(base_url: str, dsn: str, repos: list[str]) -> None:
    source = rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "auth": {"type": "bearer", "token": "bench-token"},
                "paginator": {"type": "header_link"},
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [
                {
                    "name": f"issues_{repo.replace('/', '_')}",
                    "table_name": "issues",
                    "endpoint": {
                        "path": f"repos/{repo}/issues",
                        "params": {
                            "state": "all",
                            "per_page": 100,
                            "sort": "updated",
                            "direction": "asc",
                        },
                    },
                }
                for repo in repos
            ],
        }
    )
    with tempfile.TemporaryDirectory() as pipelines:
        pipeline = dlt.pipeline(
            pipeline_name="bench_github",
            pipelines_dir=pipelines,
            destination=dlt.destinations.postgres(credentials=credentials(dsn)),
            dataset_name="github_issues",
        )
        started = time.perf_counter()
        info = pipeline.run(source)
        seconds = time.perf_counter() - started
        with pipeline.sql_client() as client:
            rows = client.execute_sql("SELECT count(*) FROM issues")[0][0]
    info.raise_on_failed_jobs()
    print(json.dumps({"rows": rows, "run_seconds": round(seconds, 3)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])

"""Run `c9-sync` as a subprocess, the way ops and CI do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

C9_SYNC = str(Path(sys.executable).with_name("c9-sync"))


def cli_env(database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C9_SYNC_")}
    env.pop("DATABASE_URL", None)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(
        {
            "C9_SYNC_LOG_FORMAT": "json",
            "C9_SYNC_HTTP_PORT": "0",
            "C9_SYNC_DEMO_PORT": str(demo_port()),
            **extra,
        }
    )
    return env


def demo_port() -> int:
    """Each pytest-xdist worker's demos on their own four ports: a demo's sandbox that fell back
    off a port another worker's demo holds would make its items new to the next demo."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return 28100 + 10 * int(worker or 0)


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [C9_SYNC, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [C9_SYNC, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

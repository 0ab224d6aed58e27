"""What a scenario measures: a worker process's wall time, CPU and peak RSS; PostgreSQL's CPU.

The worker runs as its own process (`python -m worker.cli …`, as an operator runs it), so its CPU
(from `wait4`) and peak RSS (its VmHWM, read every 20 ms) are its own, not the harness's or the
upstream's. PostgreSQL's CPU is
read from the server's processes: the postmaster's own time, the time of the children it has
reaped (backends that exited: a run's connections close with it), and its live children's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # installed with pgserver (the embedded server), which uses it itself

ROOT = Path(__file__).resolve().parents[2]


class PostgresCpu:
    """CPU seconds the local PostgreSQL server has used so far (all its processes), found as the
    parent of a backend serving one of our connections (`pg_backend_pid()`)."""

    def __init__(self, backend_pid: int) -> None:
        postmaster = psutil.Process(backend_pid).parent()
        if postmaster is None:
            raise RuntimeError("PostgreSQL's postmaster not found: is the server on this host?")
        self.postmaster = postmaster

    def seconds(self) -> float:
        t = self.postmaster.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self._children():
            try:
                c = child.cpu_times()
            except psutil.NoSuchProcess:  # exited since the listing: now in children_*
                continue
            total += c.user + c.system
        return total

    def _children(self) -> list[psutil.Process]:
        # Backends come and go: a listing may race an exit; list again.
        for _ in range(5):
            try:
                return self.postmaster.children()
            except psutil.NoSuchProcess:
                continue
        return self.postmaster.children()


@dataclass(frozen=True, slots=True)
class Process:
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    output: str


def run_worker(args: list[str], env: dict[str, str]) -> Process:
    """`python -m worker.cli ARGS` from the repository root, measured. Raises when it fails."""
    result = run_module("worker.cli", args, env)
    if result.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} exited {result.returncode}:\n{result.output}")
    return result


def run_module(module: str, args: list[str], env: dict[str, str]) -> Process:
    """`python -m MODULE ARGS` from the repository root, measured (stdout and stderr together)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        peak_kib = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_kib = max(peak_kib, _high_water_kib(proc.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
        out.seek(0)
        output = out.read().decode(errors="replace")
    return Process(
        seconds=seconds,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak_kib / 1024,
        returncode=proc.returncode,
        output=output,
    )


def _high_water_kib(pid: int) -> int:
    """The process's peak RSS so far (VmHWM). Not wait4's ru_maxrss: Linux carries the parent's
    RSS at fork into the child's ru_maxrss across exec, so it would report the harness's size
    (which holds every replayed page) whenever that is larger than the worker's."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:  # exited: its last reading stands
        pass
    return 0


def worker_env(database_url: str, home: Path) -> dict[str, str]:
    """The worker's environment: this database, a private home, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C9_SYNC_")}
    env.update(
        DATABASE_URL=database_url,
        C9_SYNC_HOME=str(home),
        C9_SYNC_LOG_LEVEL="WARNING",
        C9_SYNC_LOG_FORMAT="json",
    )
    return env

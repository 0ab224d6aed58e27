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
        """Own + reaped children's + live children's CPU. A backend that has exited but is not
        reaped yet (a zombie: a connection just closed) shows no usable times, and one reaped
        between two reads would be counted nowhere or twice: read again until neither."""
        for _ in range(200):
            before = self.postmaster.cpu_times()
            live, settled = 0.0, True
            for child in self.postmaster.children():
                try:
                    if child.status() == psutil.STATUS_ZOMBIE:
                        settled = False
                        break
                    c = child.cpu_times()
                except psutil.NoSuchProcess:  # gone since the listing: reaped, see below
                    continue
                live += c.user + c.system
            after = self.postmaster.cpu_times()
            reaped = (before.children_user, before.children_system) != (
                after.children_user,
                after.children_system,
            )
            if settled and not reaped:
                break
            time.sleep(0.01)
        return after.user + after.system + after.children_user + after.children_system + live


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


def run_module(
    module: str, args: list[str], env: dict[str, str], python: str = sys.executable
) -> Process:
    """`python -m MODULE ARGS` from the repository root, measured (stdout and stderr together;
    its CPU includes the children it waited for)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [python, "-m", module, *args],
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

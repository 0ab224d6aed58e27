"""The threads the daemon's blocking SDK calls run in (`asyncio.to_thread`, the loop's default
executor).

Not asyncio's default pool: it has min(32, cores + 4) threads — 6 on a 2-core host — and that,
not the run slots, was how many runs could wait on a tracker at once. Not a pool at all: each
call gets a daemon thread of its own. The calls in flight are bounded by the runs (a run makes
one SDK call at a time, and `C9_SYNC_MAX_CONCURRENCY` bounds the runs), and a call still waiting
on a tracker when the daemon exits does not hold the exit: its run was cut off at the end of the
grace period and nobody wants its answer (a pool's threads are joined at interpreter exit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ThreadPerCall(ThreadPoolExecutor):
    """A ThreadPoolExecutor by type (asyncio's `set_default_executor` requires one), a thread per
    call by behaviour; `shutdown` joins nothing."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="c9-sdk")
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._closed:
            raise RuntimeError("cannot schedule new calls after shutdown")
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting coroutine, as a pool would
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=work, name="c9-sdk", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True

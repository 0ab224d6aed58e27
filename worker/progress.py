"""Progress of runs on a terminal (`c9-sync sync`, the demo): one line per integration that
says how far a long first import has come, so a slow backfill is told from a stall."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from worker import health, redact
from worker.sync import RunResult


def describe(result: RunResult, elapsed_s: float, now: datetime | None = None) -> str:
    """One progress line: pages and items so far, their rate, and where the cursor stands."""
    rate = result.items / elapsed_s if elapsed_s > 0 else 0.0
    text = (
        f"page {result.pages}: {result.items:,} items ({result.created:,} created,"
        f" {result.updated:,} updated) at {rate:,.0f}/s"
    )
    if result.cursor_at is not None:
        now = now or datetime.now(UTC)
        at = result.cursor_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        lag = health.behind(result.cursor_at, now)
        text += f"; {result.scope or 'cursor'} read up to {at} ({lag} behind)"
    return redact.scrub(text)


@contextmanager
def shown(
    console: Console, labels: Mapping[uuid.UUID, str]
) -> Iterator[Callable[[uuid.UUID], Callable[[RunResult], None]]]:
    """A live line per integration while its run goes; yields `on_page_for(integration_id)`,
    the `RunOptions.on_page` of that run. Off a terminal it shows nothing (the summary lines
    that follow the runs say it all)."""
    if not console.is_terminal:
        yield lambda _: lambda _result: None
        return
    width = max(len(label) for label in labels.values()) if labels else 0
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks = {
            i: progress.add_task(f"{redact.scrub(label):<{width}} starting", total=None)
            for i, label in labels.items()
        }
        started = {i: time.monotonic() for i in labels}

        def on_page_for(integration_id: uuid.UUID) -> Callable[[RunResult], None]:
            def on_page(result: RunResult) -> None:
                elapsed = time.monotonic() - started[integration_id]
                label = redact.scrub(labels[integration_id])
                line = f"{label:<{width}} {describe(result, elapsed)}"
                progress.update(tasks[integration_id], description=line)

            return on_page

        yield on_page_for

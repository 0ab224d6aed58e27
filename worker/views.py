"""Terminal output of the CLI (rich): tables and one-line messages. Secrets are scrubbed."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from worker import redact
from worker.migrate import MigrationStatus

console = Console(highlight=False, soft_wrap=True)


def say(message: str) -> None:
    console.print(redact.scrub(message), markup=False)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A titled table of these rows, every cell scrubbed of secrets."""
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*(redact.scrub("" if v is None else str(v)) for v in row))
    return out


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table on a terminal; elsewhere (a pipe, a log, CI) at its natural width, so ids and
    messages are never cut to fit 80 columns."""
    table_ = table(title, columns, rows)
    if console.is_terminal:
        console.print(table_)
        return
    natural = console.measure(table_, options=console.options.update_width(1000)).maximum
    Console(file=console.file, width=max(console.width, natural), highlight=False).print(table_)


def print_migration_status(statuses: Sequence[MigrationStatus]) -> None:
    rows = []
    for s in statuses:
        state = "DRIFTED" if s.drifted else ("applied" if s.applied_at else "pending")
        when = s.applied_at.isoformat(timespec="seconds") if s.applied_at else ""
        rows.append(
            (s.migration.migration_set, f"{s.migration.version:04d}", s.migration.name, state, when)
        )
    print_table("migrations", ("set", "version", "name", "state", "applied at"), rows)


def print_json(data: object) -> None:
    """Machine-readable output (`--json`): one JSON document on stdout, secrets scrubbed."""
    sys.stdout.write(redact.scrub(json.dumps(data, ensure_ascii=False, indent=2)) + "\n")
    sys.stdout.flush()

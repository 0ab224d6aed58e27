"""Daily metrics per team (filled in by issue 6)."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `c9-sync metrics …` to the `c9-sync` parser."""


async def recompute_touched(
    conn: asyncpg.Connection, team_id: uuid.UUID, timestamps: Iterable[datetime], tz: str
) -> int:
    """Recompute the team's metrics rows for the days (in `tz`) these timestamps fall on.
    Returns the number of rows written. Called by the sync run after its last page."""
    return 0

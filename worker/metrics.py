"""Daily metrics per team (filled in by issue 6)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `c9-sync metrics …` to the `c9-sync` parser."""

"""Admin commands: `c9-sync integrations …` and `c9-sync status` (filled in by issue 8)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the admin commands to the `c9-sync` parser."""

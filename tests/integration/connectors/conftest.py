"""Fixtures the connector tests share. A module that needs other settings defines its own
`settings` fixture, which takes precedence over this one."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The worker's settings for a sync run in a test: no periodic sweep, metrics days in UTC."""
    return Settings(home=tmp_path / "home", sweep_every_runs=0, metrics_tz="UTC")

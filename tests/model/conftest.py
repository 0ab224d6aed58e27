"""Fixtures of the model tests: where each example's database comes from, and retries that do not
wait (the model tests what is committed, not how long a back-off lasts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import retry
from tests.model.framework import Env


@pytest.fixture
def model_env(
    pg_url: str, template_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Env:
    # Jittered exponential back-off (up to 30 s) is pinned by tests/unit/test_retry.py; here a
    # retried request is sent again at once, so a run hit by six resets takes no time.
    monkeypatch.setattr(retry, "backoff_seconds", lambda attempt, **_: 0.0)
    return Env(pg_url=pg_url, template=template_db, home=tmp_path / "home")

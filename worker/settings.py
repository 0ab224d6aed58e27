"""Process settings, parsed once from the environment (pydantic-settings) and passed down.

Nothing below the CLI reads `os.environ`: everything the worker needs from the environment is here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schema import SETS


def default_home() -> Path:
    return platformdirs.user_data_path("c9-sync")


class Settings(BaseSettings):
    """Every `C9_SYNC_*` variable, plus `DATABASE_URL`."""

    model_config = SettingsConfigDict(env_prefix="C9_SYNC_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "C9_SYNC_DATABASE_URL")
    )
    home: Path = Field(default_factory=default_home)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    http_port: int = Field(default=9464, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    # The webhook listener (POST /hooks/<integration id>): off unless a port is given. Plain
    # HTTP: TLS is terminated by the ingress in front of it (docs/webhooks.md).
    webhook_port: int = Field(default=0, ge=0, le=65535)
    webhook_host: str = "127.0.0.1"
    # Bodies above this are refused with 413 before they are read.
    webhook_max_bytes: int = Field(default=1_048_576, ge=1024)
    # Deliveries for one integration within this many seconds of the last run it requested are
    # coalesced into one more run at the window's end: a burst is one or two runs.
    webhook_debounce_seconds: float = Field(default=5.0, ge=0)
    # The demo's sandbox trackers listen on this port and the next three: fixed, because a
    # sandbox's address is part of its items' identity. Another value runs demos side by side.
    demo_port: int = Field(default=27811, ge=1024, le=65532)
    # Runs at once per process. Each running run holds one database connection (its lock lives
    # on it), so this also sizes the pool (this + 3): runs waiting on a tracker hold theirs.
    max_concurrency: int = Field(default=32, ge=1, le=256)
    # Runs at once per process against one tracker type (github, jira, ...): politeness.
    max_per_tracker: int = Field(default=24, ge=1, le=256)
    grace_seconds: float = Field(default=30.0, ge=0)
    run_deadline_seconds: float = Field(default=1800.0, gt=0)
    reconcile_seconds: float = Field(default=60.0, gt=0)
    jitter_seconds: float = Field(default=5.0, ge=0)
    backoff_base_seconds: float = Field(default=60.0, gt=0)
    backoff_max_seconds: float = Field(default=3600.0, gt=0)
    sweep_every_runs: int = Field(default=24, ge=0)
    # Requests a run may spend reading history (a tracker's changelog, revisions, issue events)
    # after its items; the rest waits for the next run. 0: read no history. An integration's
    # `history_budget` config key lowers or raises it for that integration.
    history_budget: int = Field(default=50, ge=0)
    metrics_tz: str = "UTC"
    # A run that changed nothing recomputes its team's metrics for today and yesterday (the
    # agents' commits and conflicts) only if this process has not within this many seconds.
    # 0: every run does.
    metrics_refresh_seconds: float = Field(default=300.0, ge=0)
    auto_migrate: bool = True
    # activity_logs is partitioned by month (schema 0015): partitions are made for this month and
    # this many next ones (at start, daily, and by `c9-sync migrate`).
    activity_partitions_ahead: int = Field(default=3, ge=1, le=60)
    # Retention, off by default: run rows (sync_started/completed/failed/interrupted) of months
    # older than this many months before the current one are deleted, once a day.
    activity_retention_months: int | None = Field(default=None, ge=1)
    # Item and agent events too (work_item_*, commits, ...), only when asked: a second limit.
    activity_item_retention_months: int | None = Field(default=None, ge=1)
    # Fernet keys (comma-separated, the first encrypts) of the OAuth grants kept in oauth_grants:
    # parsed by worker.vault when a grant is needed, so a bad key fails that run, not the daemon.
    secret_keys: SecretStr | None = None
    # Optional migration sets to install besides the core, e.g. "work-tracking" (comma-separated).
    with_sets: str = Field(default="", validation_alias=AliasChoices("C9_SYNC_WITH"))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("metrics_tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as UTC)"
            ) from None
        return value

    @field_validator("with_sets")
    @classmethod
    def _known_sets(cls, value: str) -> str:
        unknown = [s for s in value.replace(",", " ").split() if s not in SETS]
        if unknown:
            raise ValueError(
                f"unknown migration set(s) {', '.join(unknown)} (known: {', '.join(SETS)})"
            )
        return value

    @property
    def migration_sets(self) -> tuple[str, ...]:
        """ "core" first, then the optional sets chosen by C9_SYNC_WITH."""
        chosen = [s for s in self.with_sets.replace(",", " ").split() if s != "core"]
        return ("core", *dict.fromkeys(chosen))

    @property
    def pool_size(self) -> int:
        """The daemon's database connections: one per running run, plus the reconciler's,
        /readyz's and an OAuth refresh's (a run refreshing its grant takes a second one)."""
        return self.max_concurrency + 3

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

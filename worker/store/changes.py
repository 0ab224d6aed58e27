"""What a write did to one row of work_items, as the run reports it (activity rows, metrics days,
the run's counts)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Change:
    """One row the page created or changed."""

    work_item_id: uuid.UUID
    external_id: str
    external_key: str | None
    title: str
    created: bool
    old_status: str | None
    new_status: str
    changed_fields: tuple[str, ...]
    old_completed_at: datetime | None
    new_completed_at: datetime | None
    removed_now: bool  # removed_upstream_at went from NULL (or no row) to set
    restored_now: bool  # … and back: the item exists upstream again
    contested_with: uuid.UUID | None = None  # another active integration that also covers it
    back_in_scope: bool = False  # out_of_scope_at went from set to NULL: covered again


# Fields compared to decide whether a row changed (and reported in work_item_updated).
SYNCED_FIELDS = (
    "external_key", "title", "description", "acceptance_criteria", "status", "priority",
    "story_points", "external_url", "external_data", "started_at", "completed_at",
    "removed_upstream_at", "team_id", "parent_external_id", "item_type", "item_type_name",
    "labels", "assignees", "fields",
)  # fmt: skip

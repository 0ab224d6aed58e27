"""The contract every connector passes, run against its sandbox with the real client library.

A tracker's test module subclasses `ConnectorContract` and provides a `harness` fixture returning an
object that satisfies `Harness` (a started sandbox plus a way to build the connector against it).
Tracker-specific behaviour (its status mapping, its pagination quirks) is tested beside it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest

from connectors.base import (
    ITEM_TYPES,
    Connector,
    ConnectorError,
    FatalError,
    Page,
    Person,
    RetriableError,
    Sprint,
    Status,
    WorkItem,
)
from connectors.sandbox.base import SandboxServer

PLANTED_TOKEN = "tok-PLANTED-s3cr3t-9f8e7d"


@dataclass(frozen=True)
class ModelTraits:
    """Where a tracker's richer model legitimately differs from the others, declared by its
    harness (the contract never asks which tracker it runs against)."""

    item_types: bool = True  # items have a type (Linear's issues have none: only sub-issues)
    sprint_starts: bool = True  # a sprint has a start date (a GitHub milestone has only a due date)


class Harness(Protocol):
    """What a tracker's test module hands the contract suite."""

    sandbox: SandboxServer
    page_size: int  # the connector's page size against this sandbox (seed more than 2 pages)

    def seed(self, count: int, *, start: datetime, step: timedelta) -> list[str]:
        """Create `count` items upstream with updated times start, start+step, …; return their
        external_ids (as the connector will report them) in that order."""

    def update(
        self, external_id: str, *, at: datetime, title: str | None = None, done: bool | None = None
    ) -> None:
        """Change one item upstream at time `at` (title and/or closed/completed)."""

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> Connector:
        """A connector for this sandbox, the given config keys overriding the defaults.
        `max_retries`/`sleep_cap` in the context are small enough for tests."""

    # -- the richer model (parents, item types, labels, assignees, sprints) --------------------
    model: ModelTraits

    def add_sprint(self, name: str, state: str) -> str:
        """A sprint (iteration, cycle, milestone) named `name`: "closed" (it ended two weeks
        ago) or "active" (it runs now, for another week); return the external_id of the
        `Sprint` the connector will report for it."""

    def add_epic(self, title: str, *, at: datetime) -> str:
        """An item that parents others (an epic where items have types), updated at `at`;
        return its external_id."""

    def add_child(
        self,
        parent: str,
        *,
        at: datetime,
        kind: str,
        sprint: str,
        labels: Sequence[str],
        assignee: str | None,
    ) -> str:
        """An item of `kind` ("feature", "bug" or "task") under the item `parent`, in `sprint`
        (an id `add_sprint` returned), with `labels`, assigned to the user `assignee` (a short
        handle: the harness makes a user of it, with an e-mail address upstream), updated at
        `at`; return its external_id."""

    def move(self, child: str, *, at: datetime, parent: str, sprint: str) -> None:
        """Move `child` under the item `parent` and into `sprint`, upstream, at time `at`."""

    def person(self, handle: str) -> Person:
        """The `Person` the connector must report for the user `add_child` made of `handle`."""

    def listings(self) -> int:
        """How many listing requests (the requests that list changed items of a scope) the
        sandbox has logged since its requests were last cleared."""


async def collect(connector: Connector, since: Mapping[str, datetime] | None = None) -> list[Page]:
    pages: list[Page] = []
    async for page in connector.changes(since or {}):
        pages.append(page)
    return pages


def items_of(pages: Sequence[Page]) -> list[WorkItem]:
    return [item for page in pages for item in page.items]


T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


class ConnectorContract:
    """Subclass in a test module and define a `harness` fixture."""

    async def test_full_sync_yields_every_item_once_oldest_first(self, harness: Harness) -> None:
        n = harness.page_size * 2 + 3
        ids = harness.seed(n, start=T0, step=timedelta(minutes=7))
        connector = harness.connector()
        try:
            pages = await collect(connector)
        finally:
            await connector.aclose()
        got = items_of(pages)
        assert sorted(i.external_id for i in got) == sorted(ids)
        assert len({i.external_id for i in got}) == n
        assert len([p for p in pages if p.items]) >= 3, "expected several pages"
        times = [i.updated_at for i in got]
        assert times == sorted(times), "items must come oldest change first"
        assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
        assert all(isinstance(i.status, Status) for i in got)
        assert all(0 <= i.priority <= 4 for i in got)
        final = {scope: t for p in pages for scope, t in p.checkpoint.items()}
        assert final, "the run must end with a checkpoint"
        assert max(final.values()) >= times[-1] - timedelta(minutes=1)

    async def test_incremental_sync_asks_only_for_recent_changes(self, harness: Harness) -> None:
        ids = harness.seed(harness.page_size * 2, start=T0, step=timedelta(minutes=7))
        connector = harness.connector()
        try:
            pages = await collect(connector)
            checkpoint = {s: t for p in pages for s, t in p.checkpoint.items()}
            later = max(checkpoint.values()) + timedelta(hours=1)
            harness.update(ids[3], at=later, title="changed upstream")
            harness.sandbox.clear_requests()
            since = {s: t - connector.overlap for s, t in checkpoint.items()}
            again = items_of(await collect(connector, since))
        finally:
            await connector.aclose()
        changed = [i for i in again if i.external_id == ids[3]]
        assert changed and changed[-1].title == "changed upstream"
        # Only the overlap window and the change come back, not the whole project.
        assert len(again) < len(ids) // 2
        assert len(harness.sandbox.requests) <= 6, [r.url for r in harness.sandbox.requests]

    async def test_429_with_retry_after_is_waited_out(self, harness: Harness) -> None:
        harness.seed(3, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        try:
            await connector.check()
            harness.sandbox.fail_next("429", retry_after=1)
            started = time.monotonic()
            got = items_of(await collect(connector))
        finally:
            await connector.aclose()
        assert len(got) == 3
        assert time.monotonic() - started >= 0.9, "Retry-After must be honoured"

    async def test_5xx_is_retried(self, harness: Harness) -> None:
        harness.seed(3, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        try:
            await connector.check()
            harness.sandbox.fail_next("5xx", count=2, retry_after=None)
            got = items_of(await collect(connector))
        finally:
            await connector.aclose()
        assert len(got) == 3

    async def test_persistent_5xx_raises_retriable_error(self, harness: Harness) -> None:
        harness.seed(3, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        try:
            await connector.check()
            harness.sandbox.fail_next("5xx", count=50, retry_after=None)
            with pytest.raises(RetriableError):
                await collect(connector)
        finally:
            await connector.aclose()

    async def test_401_is_fatal_and_never_shows_the_token(self, harness: Harness) -> None:
        harness.seed(1, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        try:
            harness.sandbox.fail_next("401", count=50)
            with pytest.raises(FatalError) as info:
                await connector.check()
                await collect(connector)
        finally:
            await connector.aclose()
        assert PLANTED_TOKEN not in str(info.value)
        assert PLANTED_TOKEN not in repr(info.value.args)
        cause = info.value.__cause__
        assert cause is None or PLANTED_TOKEN not in str(cause)

    async def test_malformed_body_is_a_connector_error(self, harness: Harness) -> None:
        harness.seed(2, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        try:
            await connector.check()
            harness.sandbox.fail_next("malformed", count=50)
            with pytest.raises(ConnectorError) as info:
                await collect(connector)
        finally:
            await connector.aclose()
        assert PLANTED_TOKEN not in str(info.value)

    async def test_hostile_text_survives_mapping(self, harness: Harness) -> None:
        ids = harness.seed(3, start=T0, step=timedelta(minutes=1))
        at = T0 + timedelta(hours=1)
        harness.update(ids[0], at=at, title="nul\x00byte")
        harness.update(ids[1], at=at, title="x" * 600)
        harness.update(ids[2], at=at, title="emoji 🚀 ünïcode ✓")
        connector = harness.connector()
        try:
            got = {i.external_id: i for i in items_of(await collect(connector))}
        finally:
            await connector.aclose()
        # The connector reports what the tracker says; the store makes it safe for PostgreSQL.
        assert "byte" in got[ids[0]].title
        assert len(got[ids[1]].title) == 600
        assert got[ids[2]].title == "emoji 🚀 ünïcode ✓"

    async def test_all_ids_lists_every_item(self, harness: Harness) -> None:
        ids = harness.seed(harness.page_size + 2, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        try:
            seen = [i async for batch in connector.all_ids() for i in batch]
        finally:
            await connector.aclose()
        assert sorted(seen) == sorted(ids)

    async def test_an_edit_during_the_run_does_not_skip_another_item(
        self, harness: Harness
    ) -> None:
        """An item edited while the run pages through the list jumps to its end. With offset or
        page-number pagination every later item would shift back one slot and one could fall
        onto a page already read, and be lost for good: its old time lies behind the cursor."""
        n = harness.page_size * 3
        ids = harness.seed(n, start=T0, step=timedelta(minutes=7))
        connector = harness.connector()
        seen: list[str] = []
        try:
            pages = connector.changes({})
            async for page in pages:
                if not seen:  # between the first and the second page
                    harness.update(ids[0], at=T0 + timedelta(days=1), title="edited mid-run")
                seen.extend(item.external_id for item in page.items)
        finally:
            await connector.aclose()
        missing = set(ids) - set(seen)
        assert not missing, f"{len(missing)} item(s) skipped: {sorted(missing)[:3]}"

    # -- the richer model: parents, item types, labels, assignees, sprints (issue #16) ---------
    async def test_an_epic_with_three_children_across_two_sprints(self, harness: Harness) -> None:
        plan = plant_epic(harness)
        connector = harness.connector()
        try:
            got = {i.external_id: i for i in items_of(await collect(connector))}
        finally:
            await connector.aclose()
        assert set(got) == {plan.epic, *plan.children}
        epic = got[plan.epic]
        assert epic.parent_external_id is None and list(epic.sprints) == []
        assert list(epic.labels) == [] and list(epic.assignees) == []
        for child, (kind, sprint, labels, assignee) in zip(plan.children, CHILDREN, strict=True):
            item = got[child]
            assert item.parent_external_id == epic.external_id, item.title
            assert sorted(item.labels) == sorted(labels), item.title
            assert list(item.assignees) == ([harness.person(assignee)] if assignee else [])
            want = plan.sprints[sprint]
            assert _same_sprint(item.sprints, want, harness.model), (item.title, item.sprints)
            if harness.model.item_types:
                assert item.item_type == kind, (item.title, item.item_type)
        if harness.model.item_types:
            assert epic.item_type == "epic"
        for item in got.values():
            assert item.item_type in ITEM_TYPES and item.item_type_name, item
            assert_no_email(item)

    async def test_moving_a_child_shows_in_the_next_incremental_read(
        self, harness: Harness
    ) -> None:
        plan = plant_epic(harness)
        other = harness.add_epic("Another epic", at=T0 + timedelta(minutes=10))
        moved = plan.children[0]  # from the closed sprint to the running one, under `other`
        connector = harness.connector()
        try:
            pages = await collect(connector)
        finally:
            await connector.aclose()
        before = {i.external_id: i for i in items_of(pages)}[moved]
        checkpoint = {s: t for p in pages for s, t in p.checkpoint.items()}
        at = max(checkpoint.values()) + timedelta(hours=1)
        harness.move(moved, at=at, parent=other, sprint=plan.sprints["active"].external_id)
        connector = harness.connector()
        try:
            since = {s: t - connector.overlap for s, t in checkpoint.items()}
            again = [i for i in items_of(await collect(connector, since)) if i.external_id == moved]
        finally:
            await connector.aclose()
        assert again, "the moved child must come in the next incremental read"
        item = again[-1]
        assert item.parent_external_id == other
        assert _same_sprint(item.sprints, plan.sprints["active"], harness.model), item.sprints
        assert item.updated_at > before.updated_at
        assert abs(item.updated_at - at) < timedelta(seconds=1), (item.updated_at, at)
        assert_no_email(item)

    async def test_an_unchanged_incremental_read_costs_one_listing_per_scope(
        self, harness: Harness
    ) -> None:
        plan = plant_epic(harness)
        connector = harness.connector()
        try:
            pages = await collect(connector)
        finally:
            await connector.aclose()
        first = {i.external_id: i for i in items_of(pages)}
        checkpoint = {s: t for p in pages for s, t in p.checkpoint.items()}
        harness.sandbox.clear_requests()
        connector = harness.connector()
        try:
            since = {s: t - connector.overlap for s, t in checkpoint.items()}
            again = items_of(await collect(connector, since))
        finally:
            await connector.aclose()
        listings = harness.listings()
        assert 1 <= listings <= len(checkpoint), [r.path for r in harness.sandbox.requests]
        # What the overlap window reads again keeps its place in the model (its parent and
        # sprint are resolved without the rest of the project).
        for item in again:
            assert item.external_id in {plan.epic, *plan.children}
            known = first[item.external_id]
            assert (item.parent_external_id, list(item.sprints), list(item.labels)) == (
                known.parent_external_id, list(known.sprints), list(known.labels),
            )  # fmt: skip

    async def test_the_newest_item_read_edited_mid_run_skips_nothing(
        self, harness: Harness
    ) -> None:
        """The newest item of the first page (where a page cursor that names an item points, as
        Linear's do) edited while the run pages, and a later item after it. A walk that resumes
        from the edited item's new place skips every item between its old place and its new
        one, and its checkpoint passes them for good (found by the Linear model test)."""
        n = harness.page_size * 3
        ids = harness.seed(n, start=T0, step=timedelta(minutes=7))
        connector = harness.connector()
        seen: list[str] = []
        edited = False
        try:
            async for page in connector.changes({}):
                seen.extend(item.external_id for item in page.items)
                if page.items and not edited:  # between the first page and the next
                    edited = True
                    newest = max(page.items, key=lambda i: i.updated_at).external_id
                    later = T0 + timedelta(days=1)
                    harness.update(newest, at=later, title="the page's newest, edited mid-run")
                    last = ids[-1] if ids[-1] != newest else ids[-2]
                    harness.update(last, at=later + timedelta(minutes=1), title="edited after it")
        finally:
            await connector.aclose()
        missing = set(ids) - set(seen)
        assert not missing, f"{len(missing)} item(s) skipped: {sorted(missing)[:3]}"


#: The children of the contract's epic: (kind, sprint, labels, assignee).
CHILDREN: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("feature", "closed", ("backend",), "ada"),
    ("bug", "active", ("backend", "api"), "grace"),
    ("task", "active", (), None),
)


@dataclass(frozen=True)
class PlantedEpic:
    epic: str
    children: list[str]
    sprints: dict[str, Sprint]  # by state: what the connector must report


def plant_epic(harness: Harness) -> PlantedEpic:
    """An epic with three children across two sprints (one closed, one running)."""
    now = datetime.now(UTC)
    sprints: dict[str, Sprint] = {}
    for name, state in (("Sprint 1", "closed"), ("Sprint 2", "active")):
        ends = now - timedelta(days=14) if state == "closed" else now + timedelta(days=7)
        sprints[state] = Sprint(harness.add_sprint(name, state), name, state, None, ends)
    epic = harness.add_epic("The epic", at=T0)
    children = [
        harness.add_child(
            epic,
            # an hour after their epic: a read of the last minutes has the children, not it
            at=T0 + timedelta(hours=1, minutes=n + 1),
            kind=kind,
            sprint=sprints[state].external_id,
            labels=labels,
            assignee=assignee,
        )
        for n, (kind, state, labels, assignee) in enumerate(CHILDREN)
    ]
    return PlantedEpic(epic, children, sprints)


def _same_sprint(got: Sequence[Sprint], want: Sprint, traits: ModelTraits) -> bool:
    """One sprint, the wanted one: its id, name and state; its end within a day of the one
    planted (trackers keep dates, not times); a start before its end where sprints have one."""
    if len(got) != 1:
        return False
    (sprint,) = got
    assert want.ends_at is not None
    if (sprint.external_id, sprint.name, sprint.state) != (want.external_id, want.name, want.state):
        return False
    if sprint.ends_at is None or abs(sprint.ends_at - want.ends_at) > timedelta(days=1):
        return False
    if not traits.sprint_starts:
        return sprint.starts_at is None
    return sprint.starts_at is not None and sprint.starts_at < sprint.ends_at


def assert_no_email(item: WorkItem) -> None:
    """No assignee's name or account id is an e-mail address."""
    for person in item.assignees:
        assert "@" not in (person.name or "") and "@" not in (person.account_id or ""), person

"""A small in-test connector that implements the protocol over an in-memory "tracker"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from connectors.base import (
    ConnectorConfig,
    ConnectorContext,
    CredentialExpiry,
    FatalError,
    Page,
    Rejected,
    RetriableError,
    ScopeIds,
    Status,
    WorkItem,
)

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


class FakeConfig(ConnectorConfig):
    project: str = "DEMO"
    projects: list[str] | None = None  # one scope each (items carry their project as scope)
    # Reported through ctx.on_credential by check() (so before any page, as a tracker's header
    # on the first answer would be): what the credential's expiry looks like to the worker.
    credential_expires_at: datetime | None = None
    credential_kind: str = "pat"
    credential_renewable: bool = False


@dataclass
class Upstream:
    """The tracker's state, plus knobs for faults. Shared by every connector built from it."""

    items: dict[str, WorkItem] = field(default_factory=dict)
    page_size: int = 10
    fail_on_page: int | None = None  # 1-based page that raises
    fail_with: Exception = field(default_factory=lambda: RetriableError("upstream 503"))
    page_delay: float = 0.0
    since_seen: list[Mapping[str, datetime]] = field(default_factory=list)
    ids_listed: int = 0
    unmappable: dict[str, str] = field(default_factory=dict)  # external_id -> why it cannot map
    listing_drops: list[set[str]] = field(default_factory=list)  # ids left out, one set a listing
    between_pages: Any = None  # an async callable run after each page is yielded
    lost: dict[str, str] = field(default_factory=dict)  # scope -> why the token cannot read it

    def add(
        self,
        n: int,
        *,
        start: datetime = T0,
        step: timedelta = timedelta(minutes=1),
        status: Status = Status.QUEUED,
        scope: str = "",
    ) -> list[str]:
        base = len(self.items)
        ids = []
        for k in range(n):
            ext = f"FAKE-{base + k + 1}"
            self.items[ext] = WorkItem(
                external_id=ext,
                external_key=ext,
                title=f"Item {base + k + 1}",
                status=status,
                updated_at=start + step * k,
                raw={"id": ext, "n": base + k + 1},
                description="d",
                priority=2,
                scope=scope,
            )
            ids.append(ext)
        return ids

    def change(self, ext: str, at: datetime, **changes: Any) -> None:
        item = self.items[ext]
        raw = {**item.raw, **{k: str(v) for k, v in changes.items()}}
        self.items[ext] = replace(item, updated_at=at, raw=raw, **changes)


def fake_connector_class(upstream: Upstream) -> type[Any]:
    class FakeConnector:
        source: ClassVar[str] = "github"
        config_model: ClassVar[type[ConnectorConfig]] = FakeConfig
        overlap: ClassVar[timedelta] = timedelta(minutes=5)

        def __init__(self, config: FakeConfig, ctx: ConnectorContext) -> None:
            self.config = config
            self.ctx = ctx

        async def check(self) -> None:
            if self.config.credential_expires_at is not None:
                self.ctx.on_credential(
                    CredentialExpiry(
                        self.config.credential_kind,
                        self.config.credential_expires_at,
                        self.config.credential_renewable,
                    )
                )
            if self.ctx.bearer().get_secret_value() == "bad":
                raise FatalError("fake tracker rejected the token (401)")

        async def scopes(self) -> list[str]:
            return list(self.config.projects) if self.config.projects else [""]

        async def changes(self, since: Mapping[str, datetime]) -> AsyncIterator[Page]:
            await self.check()
            upstream.since_seen.append(dict(since))
            n = 0
            for scope in await self.scopes():
                async for page in self._scope_changes(scope, since.get(scope), n):
                    n += 1
                    yield page

        async def _scope_changes(
            self, scope: str, floor: datetime | None, pages_before: int
        ) -> AsyncIterator[Page]:
            if scope in upstream.lost:
                yield Page([], {}, lost={scope: upstream.lost[scope]})
                return
            ordered = sorted(upstream.items.values(), key=lambda i: (i.updated_at, i.external_id))
            todo = [
                i
                for i in ordered
                if (not scope or i.scope == scope) and (floor is None or i.updated_at >= floor)
            ]
            for n, start in enumerate(range(0, len(todo), upstream.page_size), pages_before + 1):
                if upstream.page_delay:
                    await asyncio.sleep(upstream.page_delay)
                if upstream.fail_on_page == n:
                    raise upstream.fail_with
                chunk = todo[start : start + upstream.page_size]
                rejected = [
                    Rejected(i.external_id, upstream.unmappable[i.external_id], i.external_key)
                    for i in chunk
                    if i.external_id in upstream.unmappable
                ]
                mapped = [i for i in chunk if i.external_id not in upstream.unmappable]
                yield Page(mapped, {scope: chunk[-1].updated_at}, rejected)
                if upstream.between_pages is not None:
                    await upstream.between_pages(n)

        async def all_ids(self) -> AsyncIterator[ScopeIds]:
            upstream.ids_listed += 1
            drop = upstream.listing_drops.pop(0) if upstream.listing_drops else set()
            for scope in await self.scopes():
                if scope in upstream.lost:
                    yield ScopeIds(scope, [], lost=upstream.lost[scope])
                    continue
                yield ScopeIds(
                    scope,
                    [
                        i
                        for i, item in upstream.items.items()
                        if i not in drop and (not scope or item.scope == scope)
                    ],
                )

        async def aclose(self) -> None:
            pass

    return FakeConnector

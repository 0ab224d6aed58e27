"""Find connector classes through the `claude_nine_sync.connectors` entry-point group, so a new
tracker is a new installed package, not an edit of the worker."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from connectors.base import ENTRY_POINT_GROUP, Connector, FatalError


@cache
def available() -> dict[str, str]:
    """source -> "module:attr" of every installed connector."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load(source: str) -> type[Connector]:
    """The connector class for `source`; FatalError when none is installed or it fails to import."""
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=source):
        try:
            cls: type[Connector] = ep.load()
        except Exception as exc:  # a broken plugin must not take the worker down
            raise FatalError(
                f"connector {source!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        return cls
    known = ", ".join(sorted(available())) or "none"
    raise FatalError(f"no connector installed for type {source!r} (installed: {known})")

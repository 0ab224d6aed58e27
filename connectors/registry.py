"""Find connector classes through the `claude_nine_sync.connectors` entry-point group, so a new
tracker is a new installed package, not an edit of the worker.

Read once per process: scanning every installed distribution's entry points cost about a third
of the daemon's CPU when it was done on every run. Admins change `integrations` rows, never the
installed packages, so nothing is missed; a newly installed connector package is seen by the
next process (`c9-sync run` restarted, or any other command).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from connectors.base import ENTRY_POINT_GROUP, Connector, FatalError


@cache
def _installed() -> dict[str, EntryPoint]:
    """source -> its entry point, for every installed connector (the first of a duplicated name,
    as `entry_points(name=...)` picked it)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def available() -> dict[str, str]:
    """source -> "module:attr" of every installed connector."""
    return {name: ep.value for name, ep in _installed().items()}


@cache
def _load(source: str) -> type[Connector]:
    ep = _installed().get(source)
    if ep is None:
        known = ", ".join(sorted(available())) or "none"
        raise FatalError(f"no connector installed for type {source!r} (installed: {known})")
    try:
        cls: type[Connector] = ep.load()
    except Exception as exc:  # a broken plugin must not take the worker down
        raise FatalError(
            f"connector {source!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return cls


def load(source: str) -> type[Connector]:
    """The connector class for `source`; FatalError when none is installed or it fails to
    import (not cached: each run says so again, and pays the lookup only then)."""
    return _load(source)

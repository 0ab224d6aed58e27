"""The listener's per-integration limits, in this process: a token bucket on deliveries (a flood
is answered 429 before any work) and the debounce that turns a burst into one or two runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

MAX_TRACKED = 10_000  # integrations remembered at once; older entries are dropped first


class TokenBuckets:
    """`rate` deliveries a second per integration, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}  # id -> (tokens, at)

    def take(self, key: uuid.UUID, now: float) -> bool:
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)  # re-inserted: newest
        if len(self._buckets) > MAX_TRACKED:
            del self._buckets[next(iter(self._buckets))]
        return allowed


@dataclass(slots=True)
class _Window:
    last_sent: float
    trailing: bool = False


class Debouncer:
    """Per integration: the first delivery requests a run at once; deliveries within `window`
    seconds of that request are coalesced into one more request at the window's end (the change
    they announce may have landed after the first run read the tracker)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._windows: dict[uuid.UUID, _Window] = {}

    def offer(self, key: uuid.UUID, now: float) -> float | None:
        """0.0: request a run now; a delay: request one after it (the caller schedules it, then
        calls `fired`); None: coalesced into a request already scheduled."""
        w = self._windows.get(key)
        if w is not None and w.trailing:
            return None
        if w is None or now - w.last_sent >= self.window:
            self._windows.pop(key, None)
            self._windows[key] = _Window(now)
            if len(self._windows) > MAX_TRACKED:
                oldest = next(iter(self._windows))
                if not self._windows[oldest].trailing:
                    del self._windows[oldest]
            return 0.0
        w.trailing = True
        return w.last_sent + self.window - now

    def fired(self, key: uuid.UUID, now: float) -> None:
        """The scheduled request was sent (or given up): a new window starts."""
        self._windows.pop(key, None)
        self._windows[key] = _Window(now)

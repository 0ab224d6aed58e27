"""Each tracker's benchmark data: a sandbox seeded with N items, the integration config that
points a connector at an upstream, and the 1% edit the incremental scenario reads.

Items carry what real ones do (a body, labels, a state, sometimes an assignee or an estimate), so
the worker's per-item work (sanitising, mapping, jsonb) is not flattered by empty payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.sandbox.base import SandboxServer
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.linear import LinearSandbox

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TOKEN = "bench-token"
BODY = "Steps to reproduce: open the page, click save. Expected: it saves. " * 4


@dataclass(frozen=True, slots=True)
class Tracker:
    type: str  # integrations.type
    sandbox: Callable[[], SandboxServer]
    seed: Callable[[Any, int], list[Any]]  # sandbox, n -> item ids
    touch: Callable[[Any, list[Any]], int]  # sandbox, ids -> how many changed (1%)
    config: Callable[[str], dict[str, Any]]  # upstream URL -> integrations.config


def _one_percent(ids: list[Any]) -> list[Any]:
    """Every 100th id (at least one): spread over every scope."""
    return ids[::100] or ids[:1]


# -- GitHub ---------------------------------------------------------------------------------------
GITHUB_REPOS = ["bench/web", "bench/api"]


def _github_seed(gh: GitHubSandbox, n: int) -> list[int]:
    return [
        gh.add_issue(
            GITHUB_REPOS[i % 2],
            f"Issue {i}: something to fix",
            updated_at=T0 + timedelta(minutes=i),
            body=BODY,
            labels=["bug", "P2"] if i % 3 == 0 else ["enhancement"],
            state="closed" if i % 4 == 0 else "open",
            assignees=["mira"] if i % 5 == 0 else [],
        ).id
        for i in range(n)
    ]


def _github_touch(gh: GitHubSandbox, ids: list[int]) -> int:
    later = T0 + timedelta(days=3 * 365)
    touched = _one_percent(ids)
    for k, issue_id in enumerate(touched):
        gh.update(issue_id, at=later + timedelta(seconds=k), title=f"Touched {k}")
    return len(touched)


GITHUB = Tracker(
    type="github",
    sandbox=lambda: GitHubSandbox(token=TOKEN),
    seed=_github_seed,
    touch=_github_touch,
    config=lambda url: {"token": TOKEN, "base_url": url, "repos": GITHUB_REPOS},
)

# -- Linear ---------------------------------------------------------------------------------------
LINEAR_TEAMS = [("ENG", "Engineering"), ("OPS", "Platform Ops")]
LINEAR_STATES = ["Backlog", "Todo", "In Progress", "In Review", "Done", "Canceled"]


def _linear_sandbox() -> LinearSandbox:
    # Linear's hourly request and complexity budgets are real limits, not what is measured here.
    return LinearSandbox(
        token=TOKEN, teams=LINEAR_TEAMS, requests_limit=10**9, complexity_limit=10**12
    )


def _linear_seed(lin: LinearSandbox, n: int) -> list[str]:
    return [
        lin.add_issue(
            LINEAR_TEAMS[i % 2][0],
            title=f"Bench issue {i}",
            updated_at=T0 + timedelta(seconds=37 * i),
            state=LINEAR_STATES[i % len(LINEAR_STATES)],
            priority=i % 5,
            estimate=(i % 8) or None,
            labels=("Blocked",) if i % 50 == 0 else (),
            description=BODY,
        )["id"]
        for i in range(n)
    ]


def _linear_touch(lin: LinearSandbox, ids: list[str]) -> int:
    later = T0 + timedelta(days=3 * 365)
    touched = _one_percent(ids)
    for k, issue_id in enumerate(touched):
        lin.update_issue(issue_id, at=later + timedelta(seconds=k), title=f"Touched {k}")
    return len(touched)


LINEAR = Tracker(
    type="linear",
    sandbox=_linear_sandbox,
    seed=_linear_seed,
    touch=_linear_touch,
    config=lambda url: {"api_url": f"{url}/graphql", "team_keys": ["ENG", "OPS"], "token": TOKEN},
)

TRACKERS = {t.type: t for t in (GITHUB, LINEAR)}

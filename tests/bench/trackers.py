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

from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.jira import JiraSandbox
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
    tracker_config: Callable[[str], dict[str, Any]]  # upstream URL -> its own config keys

    def config(self, url: str) -> dict[str, Any]:
        """The integration's config. History is read by the history scenarios: here it would
        keep every "no-op" run busy backfilling (50 requests a run, the default budget)."""
        return {**self.tracker_config(url), "history_budget": 0}


def _one_percent(ids: list[Any]) -> list[Any]:
    """Every 100th id (at least one): spread over every scope."""
    return ids[::100] or ids[:1]


def _retitle_one_percent(ids: list[Any], retitle: Callable[[Any, datetime, str], object]) -> int:
    """Retitles 1% of the items, a second apart, later than any seeded change."""
    later = T0 + timedelta(days=3 * 365)
    touched = _one_percent(ids)
    for k, item_id in enumerate(touched):
        retitle(item_id, later + timedelta(seconds=k), f"Touched {k}")
    return len(touched)


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
    return _retitle_one_percent(
        ids, lambda issue_id, at, title: gh.update(issue_id, at=at, title=title)
    )


GITHUB = Tracker(
    type="github",
    sandbox=lambda: GitHubSandbox(token=TOKEN),
    seed=_github_seed,
    touch=_github_touch,
    tracker_config=lambda url: {"token": TOKEN, "base_url": url, "repos": GITHUB_REPOS},
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
    return _retitle_one_percent(
        ids, lambda issue_id, at, title: lin.update_issue(issue_id, at=at, title=title)
    )


LINEAR = Tracker(
    type="linear",
    sandbox=_linear_sandbox,
    seed=_linear_seed,
    touch=_linear_touch,
    tracker_config=lambda url: {
        "api_url": f"{url}/graphql",
        "team_keys": ["ENG", "OPS"],
        "token": TOKEN,
    },
)

# -- Jira -----------------------------------------------------------------------------------------
JIRA_PROJECTS = ["PAY", "WEB"]
JIRA_STATUSES = ["To Do", "In Progress", "In Review", "Blocked", "Done"]


def _jira_seed(jira: JiraSandbox, n: int) -> list[str]:
    return [
        jira.add_issue(
            JIRA_PROJECTS[i % 2],
            f"Issue {i}: something to fix",
            updated=T0 + timedelta(minutes=i),
            status=JIRA_STATUSES[i % len(JIRA_STATUSES)],
            priority=["Highest", "High", "Medium", "Low"][i % 4],
            story_points=[1, 2, 3, 5, 8, None][i % 6],
            description=BODY,
        ).key
        for i in range(n)
    ]


def _jira_touch(jira: JiraSandbox, keys: list[str]) -> int:
    return _retitle_one_percent(
        keys, lambda key, at, title: jira.update_issue(key, at=at, summary=title)
    )


JIRA = Tracker(
    type="jira",
    sandbox=lambda: JiraSandbox(token=TOKEN),
    seed=_jira_seed,
    touch=_jira_touch,
    tracker_config=lambda url: {
        "url": url,
        "email": "sync-bot@example.com",
        "token": TOKEN,
        "projects": JIRA_PROJECTS,
    },
)

# -- Azure DevOps ---------------------------------------------------------------------------------


#: The sandbox's clock (its WIQL answers' `asOf`, which the connector's cursor follows): fixed, so
#: the incremental run's query is the same in the priming run and in the timed one.
ADO_NOW = T0 + timedelta(days=60)


def _ado_seed(ado: AzureDevOpsSandbox, n: int) -> list[int]:
    step = timedelta(days=30) / max(n, 1)
    return ado.add_items_fast((f"Item {k}", T0 + step * k) for k in range(n))


def _ado_touch(ado: AzureDevOpsSandbox, ids: list[int]) -> int:
    # Azure DevOps stamps a revision with the server's clock: the clock moves on to the edit.
    later = ADO_NOW + timedelta(days=1)
    ado.now = lambda: later + timedelta(minutes=1)
    touched = _one_percent(ids)
    for item_id in touched:
        ado.update_item(item_id, changed=later, title="touched")
    return len(touched)


AZURE_DEVOPS = Tracker(
    type="azure_devops",
    sandbox=lambda: AzureDevOpsSandbox(token=TOKEN, now=lambda: ADO_NOW),
    seed=_ado_seed,
    touch=_ado_touch,
    tracker_config=lambda url: {
        "organization_url": f"{url}/myorg",
        "project": "My Project",
        "token": TOKEN,
    },
)

TRACKERS = {t.type: t for t in (GITHUB, LINEAR, JIRA, AZURE_DEVOPS)}

"""The demo team (`demo_step` of each sandbox): reproducible from its seed, every kind of change,
one deletion a run, and each change is what the sandbox then serves (the item updated then)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.base import DemoChange, SandboxServer
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.jira import JiraSandbox
from connectors.sandbox.linear import LinearSandbox

STEPS = 60
NOW = datetime.now(UTC).replace(microsecond=0)


def _github_updated(s: Any, key: str) -> datetime:
    repo, number = key.split("#")
    [issue] = [i for i in s.issues[repo] if i.number == int(number)]
    return issue.updated_at  # type: ignore[no-any-return]


def _jira_updated(s: Any, key: str) -> datetime:
    return s.issue(key).updated  # type: ignore[no-any-return]


def _ado_updated(s: Any, key: str) -> datetime:
    changed = s.items[int(key)]["fields"]["System.ChangedDate"]
    return changed if isinstance(changed, datetime) else datetime.fromisoformat(changed)


def _linear_updated(s: Any, key: str) -> datetime:
    [node] = [n for n in s._issues.values() if n["identifier"] == key]
    return datetime.fromisoformat(node["updatedAt"].replace("Z", "+00:00"))


TEAMS: dict[str, tuple[type[SandboxServer], Callable[[Any, str], datetime]]] = {
    "github": (GitHubSandbox, _github_updated),
    "jira": (JiraSandbox, _jira_updated),
    "azure_devops": (AzureDevOpsSandbox, _ado_updated),
    "linear": (LinearSandbox, _linear_updated),
}


@pytest.fixture(params=sorted(TEAMS))
def source(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def play(source: str, seed: int) -> Iterator[tuple[SandboxServer, datetime, DemoChange]]:
    cls, _ = TEAMS[source]
    sandbox = cls()
    sandbox.start()
    try:
        sandbox.seed_demo()
        rng = random.Random(seed)
        for n in range(STEPS):
            at = NOW + timedelta(seconds=n)
            yield sandbox, at, sandbox.demo_step(rng, at)
    finally:
        sandbox.stop()


def test_the_same_seed_plays_the_same_story(source: str) -> None:
    first = [change for _, _, change in play(source, 3)]
    again = [change for _, _, change in play(source, 3)]
    other = [change for _, _, change in play(source, 4)]
    assert first == again
    assert first != other


def test_each_change_is_what_the_sandbox_then_serves(source: str) -> None:
    _, updated = TEAMS[source]
    verbs: set[str] = set()
    for sandbox, at, change in play(source, 5):
        assert change.key in change.text
        if "deleted" not in change.text:
            assert updated(sandbox, change.key) == at, change
        verbs.update(w for w in change.text.split() if w in VERBS)
    # created, moved along, handed over, closed: every kind of change a team makes
    assert {"create", "move", "reassign", "close"} <= {VERBS[v] for v in verbs}, verbs


def test_one_deletion_a_run_in_linear() -> None:
    deleted = [c for _, _, c in play("linear", 5) if " deleted " in c.text]
    assert len(deleted) == 1


VERBS = {
    "opened": "create", "created": "create", "added": "create",
    "moved": "move", "picked": "move", "labelled": "move", "unblocked": "move",
    "assigned": "reassign",
    "closed": "close", "resolved": "close", "deleted": "close",
}  # fmt: skip

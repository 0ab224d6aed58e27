"""The model test of convergence for GitHub (tests/model/framework.py): three repositories, issues
and (per example) pull requests, transfers between repositories, deletions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import strategies as st

from connectors.sandbox.github import GitHubSandbox, SandboxIssue
from tests.model.framework import TIMEOUT, ConvergenceMachine, Driver, Env, Expected, run_model

TOKEN = "model-token"
LIST = "/issues"  # every list request (the sync's and the sweep's)

#: Issue states the model sets: name -> SandboxIssue fields.
ISSUE_STATES: list[dict[str, Any]] = [
    {"state": "open", "labels": [], "assignees": []},
    {"state": "open", "labels": [], "assignees": ["mona"]},
    {"state": "open", "labels": ["status/blocked"], "assignees": []},
    {"state": "open", "labels": ["WIP"], "assignees": []},
    {"state": "closed", "state_reason": "completed"},
    {"state": "closed", "state_reason": "not_planned"},
    {"state": "closed", "state_reason": "duplicate"},
]
PR_STATES: list[dict[str, Any]] = [
    {"state": "open", "draft": False},
    {"state": "open", "draft": True},
    {"state": "closed", "merged": True},
    {"state": "closed"},
]


def expected_status(issue: SandboxIssue) -> str:
    """docs/trackers/github.md#status-mapping, for the states above."""
    if issue.is_pr:
        if issue.merged_at is not None:
            return "completed"
        if issue.state == "closed":
            return "cancelled"
        return "in_progress" if issue.draft else "pr_ready"
    if issue.state == "closed":
        return "cancelled" if issue.state_reason in ("not_planned", "duplicate") else "completed"
    words = [label.casefold().replace("/", " ").replace("-", " ").split() for label in issue.labels]
    if any("blocked" in w for w in words):
        return "blocked"
    if issue.assignees or any("wip" in w for w in words):
        return "in_progress"
    return "queued"


class GitHubDriver(Driver):
    source = "github"
    scopes = ("octo/alpha", "octo/beta", "octo/gamma")
    granularity = timedelta(seconds=1)  # GitHub's timestamps have whole seconds
    can_move = True  # a transfer: a new issue (new id) in the other repository
    variants = 2  # without / with pull requests (include_pull_requests)

    def __init__(self) -> None:
        super().__init__()
        self._sandbox = GitHubSandbox(token=TOKEN, repos=self.scopes)
        self._sandbox.timeout_stall = 1.3  # > the config's 1 s timeout
        self.knob: dict[str, Any] = {}

    @property
    def sandbox(self) -> GitHubSandbox:
        return self._sandbox

    @staticmethod
    def knobs() -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {"per_page": st.integers(2, 5), "include_pull_requests": st.booleans()}
        )

    def start(self, knobs: dict[str, Any]) -> None:
        self.knob = knobs
        self.variant = int(knobs["include_pull_requests"])
        self._sandbox.start()

    def config(self, scopes: Sequence[str]) -> dict[str, Any]:
        return {
            "token": TOKEN,
            "base_url": self._sandbox.url,
            "repos": list(scopes),
            "per_page": self.knob["per_page"],
            "include_pull_requests": self.variant == 1,
            "seconds_between_requests": 0,
            "timeout": 1,
        }

    def cursor_scopes(self, scopes: Sequence[str]) -> set[str]:
        # docs/trackers/github.md#overview: a repository's pull requests are a scope of their own
        return {*scopes, *(f"{repo}:pulls" for repo in scopes if self.variant == 1)}

    def _id(self, ref: str) -> int:
        return int(ref.rsplit("/", 1)[1])

    def ref(self, issue: SandboxIssue) -> str:
        return f"127.0.0.1:{self._sandbox.port}/{issue.id}"

    def _fields(self, issue_is_pr: bool, choice: int, at: datetime) -> dict[str, Any]:
        states = PR_STATES if issue_is_pr else ISSUE_STATES
        fields = dict(states[choice % len(states)])
        if fields.pop("merged", False):
            fields["merged_at"] = at
        return fields

    def create(self, scope: str, title: str, choice: int, at: datetime) -> str:
        is_pr = choice % 3 == 2  # an item only while the config includes pull requests
        fields = self._fields(is_pr, choice // 3, at)
        return self.ref(self._sandbox.add_issue(scope, title, updated_at=at, is_pr=is_pr, **fields))

    def edit(self, ref: str, text: str, choice: int, at: datetime) -> None:
        field = "title" if choice % 2 == 0 else "body"
        self._sandbox.update(self._id(ref), at=at, **{field: text})

    def set_status(self, ref: str, choice: int, at: datetime) -> None:
        issue = self._sandbox.find(self._id(ref))
        if issue.is_pr and issue.merged_at is not None:
            return  # a merged pull request stays merged
        self._sandbox.update(issue.id, at=at, **self._fields(issue.is_pr, choice, at))

    def move(self, ref: str, scope: str, at: datetime) -> str | None:
        issue = self._sandbox.find(self._id(ref))
        if issue.is_pr or issue.repo == scope:
            return None  # pull requests cannot be transferred
        return self.ref(self._sandbox.transfer(issue.id, scope, at=at))

    def delete(self, ref: str) -> None:
        if not self._sandbox.find(self._id(ref)).is_pr:  # pull requests cannot be deleted
            self._sandbox.delete(self._id(ref))

    def corrupt(self, ref: str) -> None:
        self._sandbox.corrupt(self._id(ref), title=5)

    def heal(self) -> None:
        for issues in self._sandbox.issues.values():
            for issue in issues:
                issue.corrupt.clear()

    def inject(self, kind: str, count: int) -> None:
        if kind == "short":
            self._sandbox.answer_short(count % 2, count=count)
        elif kind == "timeout":
            self._sandbox.fail_next("timeout", 1, path_contains=LIST)
        else:
            self._sandbox.fail_next(kind, count, retry_after=0, path_contains=LIST)  # type: ignore[arg-type]

    def live(self) -> dict[str, Expected]:
        with self._sandbox._data_lock:
            return {
                self.ref(i): Expected(
                    external_id=self.ref(i),
                    external_key=f"{i.repo}#{i.number}",
                    title=i.title,
                    description=i.body,
                    status=expected_status(i),
                    scope=f"{i.repo}:pulls" if i.is_pr else i.repo,
                    updated_at=i.updated_at,
                    synced=self.variant == 1 or not i.is_pr,
                )
                for issues in self._sandbox.issues.values()
                for i in issues
            }


class GitHubMachine(ConvergenceMachine):
    driver_class = GitHubDriver


@pytest.mark.timeout(TIMEOUT)
def test_github_converges(model_env: Env) -> None:
    run_model(GitHubMachine, model_env)

"""The model test of convergence for Linear (tests/model/framework.py): three teams, one scope per
team key (`team_keys` widened and narrowed), issues moved between teams (the same id, a new
identifier), archived (still listed) and trashed (deleted) and restored from the trash, the
`Blocked` label, short ("hollow") pages that still promise more, and small pages per example."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import strategies as st

from connectors.sandbox.linear import WORKFLOW, LinearSandbox
from tests.model.framework import TIMEOUT, ConvergenceMachine, Driver, Env, Expected, run_model

TOKEN = "lin_api_model"
TEAMS = (("DES", "Design"), ("ENG", "Engineering"), ("OPS", "Platform Ops"))
STATE_TYPE = dict(WORKFLOW)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def expected_status(issue: dict[str, Any]) -> str:
    """docs/trackers/linear.md#status-mapping."""
    name, kind = issue["state"]["name"], issue["state"]["type"]
    status = {
        "triage": "queued",
        "backlog": "queued",
        "unstarted": "queued",
        "completed": "completed",
        "canceled": "cancelled",
        "duplicate": "cancelled",
    }.get(kind, "queued")
    if kind == "started":
        status = "pr_ready" if "review" in name.casefold() else "in_progress"
    labels = [n["name"].casefold() for n in issue["labels"]["nodes"]]
    if status in ("queued", "in_progress", "pr_ready") and "blocked" in labels:
        status = "blocked"
    return status


class LinearDriver(Driver):
    source = "linear"
    scopes = tuple(key for key, _ in TEAMS)
    granularity = timedelta(milliseconds=1)  # DateTime values have milliseconds
    can_move = True  # the same id, a new identifier in the other team
    can_restore = True  # out of the trash

    def __init__(self) -> None:
        super().__init__()
        self._sandbox = LinearSandbox(token=TOKEN, teams=TEAMS)
        self._sandbox.timeout_stall = 0.8  # > the config's timeout
        self.knob: dict[str, Any] = {}
        self.trash: list[str] = []  # ids trashed, newest last

    @property
    def sandbox(self) -> LinearSandbox:
        return self._sandbox

    @staticmethod
    def knobs() -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries({"page_size": st.integers(2, 5)})

    def start(self, knobs: dict[str, Any]) -> None:
        self.knob = knobs
        self._sandbox.start()

    def config(self, scopes: Sequence[str]) -> dict[str, Any]:
        return {
            "api_url": f"{self._sandbox.url}/graphql",
            "token": TOKEN,
            "team_keys": list(scopes),
            "page_size": self.knob["page_size"],
            "timeout": 0.5,
        }

    @staticmethod
    def _changes(choice: int) -> dict[str, Any]:
        """A workflow state, with or without the `Blocked` label."""
        state = WORKFLOW[choice % len(WORKFLOW)][0]
        blocked = (choice // len(WORKFLOW)) % 2 == 1
        return {"state": state, "labels": ["Blocked"] if blocked else ["Bug"]}

    def create(self, scope: str, title: str, choice: int, at: datetime) -> str:
        changes = self._changes(choice)
        node = self._sandbox.add_issue(
            scope, title=title, updated_at=at, state=changes["state"], labels=changes["labels"]
        )
        return str(node["id"])

    def edit(self, ref: str, text: str, choice: int, at: datetime) -> None:
        if choice % 3 == 0:
            self._sandbox.update_issue(ref, at=at, title=text)
        else:
            self._sandbox.update_issue(ref, at=at, description=text if choice % 3 == 1 else None)

    def set_status(self, ref: str, choice: int, at: datetime) -> None:
        if choice % 5 == 4:  # archived (or back): still listed, still live
            archived = self._sandbox.issue(ref)["archivedAt"] is None
            self._sandbox.update_issue(ref, at=at, archived_at=at if archived else None)
        else:
            self._sandbox.update_issue(ref, at=at, **self._changes(choice))

    def move(self, ref: str, scope: str, at: datetime) -> str | None:
        if self._sandbox.issue(ref)["team"]["key"] == scope:
            return None
        self._sandbox.update_issue(ref, at=at, team_key=scope)
        return ref

    def delete(self, ref: str) -> None:
        self._sandbox.trash_issue(ref, at=self.now())
        self.trash.append(ref)

    def version_of_removed(self, ref: str) -> datetime | None:
        return parse(self._sandbox.issue(ref)["updatedAt"])  # trashed: read, marked removed

    def restore(self, at: datetime) -> str | None:
        if not self.trash:
            return None
        ref = self.trash.pop()
        self._sandbox.update_issue(ref, at=at, trashed=False, archived_at=None)
        return ref

    def corrupt(self, ref: str) -> None:
        self._sandbox.garble_issue(ref, title=5)

    def heal(self) -> None:
        with self._sandbox._lock:
            self._sandbox._garbled.clear()

    def inject(self, kind: str, count: int) -> None:
        if kind == "short":
            self._sandbox.hollow_pages_next(count, keep=count % 2)
        elif kind == "timeout":
            self._sandbox.fail_next("timeout", 1)
        else:
            self._sandbox.fail_next(kind, count, retry_after=0)  # type: ignore[arg-type]

    def clear_faults(self) -> None:
        super().clear_faults()
        with self._sandbox._lock:
            self._sandbox._hollow.clear()

    def live(self) -> dict[str, Expected]:
        with self._sandbox._lock:
            return {
                i["id"]: Expected(
                    external_id=i["id"],
                    external_key=i["identifier"],
                    title=i["title"],
                    description=i["description"],
                    status=expected_status(i),
                    scope=i["team"]["key"],
                    updated_at=parse(i["updatedAt"]),
                )
                for i in self._sandbox._issues.values()
                if not i["trashed"]
            }


class LinearMachine(ConvergenceMachine):
    driver_class = LinearDriver


@pytest.mark.timeout(TIMEOUT)
def test_linear_converges(model_env: Env) -> None:
    run_model(LinearMachine, model_env)

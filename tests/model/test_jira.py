"""The model test of convergence for Jira Cloud (tests/model/framework.py): three projects, issues
moved between them (same id, new key), deletions, the account's time zone and Jira's short pages
drawn per example."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import strategies as st

from connectors.sandbox.jira import JiraSandbox, SandboxIssue
from tests.model.framework import TIMEOUT, ConvergenceMachine, Driver, Env, Expected, run_model

TOKEN = "model-token"
SEARCH = "/search/jql"  # every search (the sync's and the sweep's)

#: (status, resolution when entering it) the model sets.
STATUSES: list[tuple[str, str | None]] = [
    ("To Do", None),
    ("In Progress", None),
    ("In Review", None),
    ("Blocked", None),
    ("Done", None),
    ("Cancelled", None),
    ("Done", "Won't Do"),
    ("Backlog", None),
]
CATEGORY = {
    "To Do": "new",
    "Backlog": "new",
    "In Progress": "indeterminate",
    "In Review": "indeterminate",
    "Blocked": "indeterminate",
    "Done": "done",
    "Cancelled": "done",
}


def last_transition(zone: str, before: datetime) -> datetime | None:
    """The last change of `zone`'s UTC offset (a DST switch) before `before`, to the minute."""
    tz = ZoneInfo(zone)
    at = before.replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 400):
        earlier = at - timedelta(hours=1)
        if earlier.astimezone(tz).utcoffset() != at.astimezone(tz).utcoffset():
            low, high = earlier, at  # the offset changes in (low, high]
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = mid
                else:
                    high = mid
            return high
        at = earlier
    return None


def expected_status(issue: SandboxIssue) -> str:
    """docs/trackers/jira.md#status-mapping, for the statuses above."""
    category = CATEGORY[issue.status]
    if category == "done":
        cancelled = (issue.resolution or "") in ("Won't Do",) or issue.status == "Cancelled"
        return "cancelled" if cancelled else "completed"
    if issue.flagged or issue.status == "Blocked":
        return "blocked"
    if category == "indeterminate":
        return "pr_ready" if issue.status == "In Review" else "in_progress"
    return "queued"


class JiraDriver(Driver):
    source = "jira"
    scopes = ("ABC", "DEF", "GHI")
    granularity = timedelta(milliseconds=1)  # `updated` has milliseconds
    can_move = True  # the same id, a new key

    def __init__(self) -> None:
        super().__init__()
        self._sandbox = JiraSandbox(token=TOKEN)
        self._sandbox.timeout_stall = 0.8  # > the config's request_timeout
        self.knob: dict[str, Any] = {}

    @property
    def sandbox(self) -> JiraSandbox:
        return self._sandbox

    @staticmethod
    def knobs() -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {
                "page_size": st.integers(2, 5),
                # Jira may answer fewer issues than asked, also for the 100-issue re-reads
                "page_cap": st.sampled_from([None, 2, 3]),
                "time_zone": st.sampled_from(
                    [
                        "UTC",
                        "Europe/Berlin",
                        "America/St_Johns",
                        "Asia/Kathmandu",
                        "Pacific/Chatham",
                    ]
                ),
                "rest_api_version": st.sampled_from(["2", "3"]),
                # the history starts 150 s before the zone's last DST switch (where it has one):
                # JQL literals are local times, and an autumn hour happens twice
                "dst": st.booleans(),
            }
        )

    def start(self, knobs: dict[str, Any]) -> None:
        self.knob = knobs
        self._sandbox.page_cap = knobs["page_cap"]
        self._sandbox.time_zone = knobs["time_zone"]
        now = datetime.now(UTC)
        switch = last_transition(knobs["time_zone"], now) if knobs["dst"] else None
        if switch is not None:
            self.offset = switch - timedelta(seconds=150) - now
        for key in self.scopes:
            self._sandbox.add_project(key)
        self._sandbox.start()

    def before_run(self) -> None:
        self._sandbox.set_clock(self.now())  # serverInfo.serverTime at the run's start

    def config(self, scopes: Sequence[str]) -> dict[str, Any]:
        return {
            "url": self._sandbox.url,
            "email": self._sandbox.email,
            "token": TOKEN,
            "projects": list(scopes),
            "page_size": self.knob["page_size"],
            "rest_api_version": self.knob["rest_api_version"],
            "request_timeout": 0.5,
        }

    def ref(self, issue: SandboxIssue) -> str:
        return self._sandbox.external_id(issue)

    def _id(self, ref: str) -> str:
        return ref.rsplit("/", 1)[1]

    def create(self, scope: str, title: str, choice: int, at: Any) -> str:
        status, resolution = STATUSES[choice % len(STATUSES)]
        fields: dict[str, Any] = {"status": status}
        if resolution is not None:
            fields["resolution"] = resolution
        return self.ref(self._sandbox.add_issue(scope, title, updated=at, **fields))

    def edit(self, ref: str, text: str, choice: int, at: Any) -> None:
        field = "summary" if choice % 2 == 0 else "description"
        self._sandbox.update_issue(self._id(ref), at=at, **{field: text})

    def set_status(self, ref: str, choice: int, at: Any) -> None:
        status, resolution = STATUSES[choice % len(STATUSES)]
        fields: dict[str, Any] = {"status": status}
        if resolution is not None:
            fields["resolution"] = resolution
        self._sandbox.update_issue(self._id(ref), at=at, **fields)

    def move(self, ref: str, scope: str, at: Any) -> str | None:
        if self._sandbox.issue(self._id(ref)).project == scope:
            return None
        self._sandbox.move_issue(self._id(ref), scope, at=at)
        return ref

    def delete(self, ref: str) -> None:
        self._sandbox.delete_issue(self._id(ref))

    def corrupt(self, ref: str) -> None:
        self._sandbox.corrupt_issue(self._id(ref), summary=5)

    def heal(self) -> None:
        for issue in self._sandbox.issues.values():
            issue.corrupt.clear()

    def inject(self, kind: str, count: int) -> None:
        if kind == "short":
            self._sandbox.answer_short(0, count=count)
        elif kind == "timeout":
            self._sandbox.fail_next("timeout", 1, path_contains=SEARCH)
        else:
            self._sandbox.fail_next(kind, count, retry_after=0, path_contains=SEARCH)  # type: ignore[arg-type]

    def _description(self, text: str | None) -> str | None:
        if not text:
            return None
        # v3 sends ADF, flattened to text and stripped; v2 sends the string as is
        return (text.strip() or None) if self.knob["rest_api_version"] == "3" else text

    def live(self) -> dict[str, Expected]:
        with self._sandbox._lock:
            return {
                self.ref(i): Expected(
                    external_id=self.ref(i),
                    external_key=i.key,
                    title=i.summary,
                    description=self._description(i.description),
                    status=expected_status(i),
                    scope=i.project,
                    updated_at=i.updated,
                )
                for i in self._sandbox.issues.values()
            }


class JiraMachine(ConvergenceMachine):
    driver_class = JiraDriver


@pytest.mark.timeout(TIMEOUT)
def test_jira_converges(model_env: Env) -> None:
    run_model(JiraMachine, model_env)

"""The replay of GitHub issue events onto history entries (connectors/github_history.py): pure,
on event JSON shaped like the sandbox's (which the integration tests check against GitHub's
published description)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from connectors.base import Status
from connectors.github import (
    GitHubConfig,
    is_pull_request,
    item_status,
    priority_of,
    status_names,
    story_points_of,
)
from connectors.github_history import FeedToken, IssueMapping, Replay

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def mapping(**config: Any) -> IssueMapping:
    cfg = GitHubConfig(repos=["o/r"], token="t", **config)
    return IssueMapping(
        status=partial(item_status, overrides=cfg.status_map),
        status_names=status_names,
        overrides=cfg.status_map,
        priority=partial(priority_of, priority_labels=cfg.priority_labels),
        story_points=story_points_of,
        is_pull_request=is_pull_request,
        per_page=cfg.per_page,
    )


def issue(**now: Any) -> dict[str, Any]:
    """The issue as GitHub serves it with each event: as it is now."""
    return {
        "id": 7,
        "number": 1,
        "state": "open",
        "state_reason": None,
        "labels": [],
        "assignees": [],
        "assignee": None,
        "milestone": None,
        "created_at": "2026-03-02T09:00:00Z",
        "user": {"login": "mira", "id": 11, "email": "mira@example.com"},
        **now,
    }


def event(event_id: int, kind: str, hours: float, current: dict[str, Any], **extra: Any):
    at = (T0 + hours * H).strftime("%Y-%m-%dT%H:%M:%SZ")
    actor = {"login": "ada", "id": 42, "email": "ada@example.com"}
    return {"id": event_id, "event": kind, "created_at": at, "actor": actor, "issue": current,
            **extra}  # fmt: skip


def replay(events: list[dict[str, Any]], **config: Any) -> dict[str, list]:
    r = Replay("", mapping(**config))
    for e in events:  # newest first, as the listing
        r.apply(e)
    return r.take(None, final=True)


def test_a_closing_as_not_planned_maps_to_cancelled_and_a_reopen_takes_its_reason() -> None:
    now = issue(state="closed", state_reason="not_planned")
    rows = replay(
        [
            event(3, "closed", 3, now, state_reason="not_planned"),
            event(2, "reopened", 2, now),
            event(1, "closed", 1, now, state_reason="not_planned"),
        ]
    )["7"]
    status = [(r.change_id, r.from_value, r.to_value, r.to_status) for r in rows]
    assert status == [
        ("3", "open", "not_planned", Status.CANCELLED),
        ("2", "not_planned", "open", Status.QUEUED),
        ("1", "open", "not_planned", Status.CANCELLED),
        ("created:7", None, "open", Status.QUEUED),
    ]
    assert rows[1].from_status == Status.CANCELLED
    assert rows[-1].changed_at == T0 and rows[-1].actor_name == "mira"


def test_labels_change_status_priority_and_points_only_where_mapped() -> None:
    now = issue(labels=[{"name": "needs review"}, {"name": "P1"}, {"name": "points: 5"}])
    rows = replay(
        [
            event(4, "labeled", 4, now, label={"name": "points: 5", "color": "ededed"}),
            event(3, "labeled", 3, now, label={"name": "P1", "color": "ededed"}),
            event(2, "labeled", 2, now, label={"name": "needs review", "color": "ededed"}),
            event(1, "labeled", 1, now, label={"name": "docs", "color": "ededed"}),
        ],
        status_map={"needs review": "pr_ready"},
        priority_labels={"P1": 3},
    )["7"]
    got = [(r.change_id, r.field, r.from_value, r.to_value) for r in rows]
    assert got == [
        ("4", "story_points", None, "5"),
        ("3", "priority", "0", "3"),
        ("2", "status", "open", "needs review"),
        ("created:7", "status", None, "open"),
    ]  # the `docs` label (1) changes nothing mapped: no row


def test_assignment_and_milestone_give_assignee_sprint_and_the_default_in_progress() -> None:
    now = issue(assignees=[{"login": "ada"}], milestone={"title": "Sprint 9"})
    rows = replay(
        [
            event(2, "milestoned", 2, now, milestone={"title": "Sprint 9"}),
            event(1, "assigned", 1, now, assignee={"login": "ada", "id": 42}),
        ]
    )["7"]
    got = [(r.change_id, r.field, r.from_value, r.to_value, r.to_status) for r in rows]
    assert got == [
        ("2", "sprint", None, "Sprint 9", None),
        ("1", "status", "open", "open", Status.IN_PROGRESS),
        ("1", "assignee", None, "ada", None),
        ("created:7", "status", None, "open", Status.QUEUED),
    ]
    assert all(r.actor_id in ("42", "11") for r in rows)
    assert "example.com" not in repr(rows)  # the actors' e-mail addresses are not kept


def test_pull_requests_gone_issues_and_other_events_are_passed_over() -> None:
    pr = issue(pull_request={"url": "u", "html_url": "h", "diff_url": "d", "patch_url": "p"})
    assert (
        replay(
            [
                event(3, "closed", 3, pr),
                event(2, "closed", 2, None),  # type: ignore[arg-type]
                event(1, "commented", 1, issue()),
            ]
        )
        == {}
    )


def test_creation_waits_until_every_event_of_the_issue_is_read() -> None:
    now = issue(state="closed", state_reason="completed")
    r = Replay("", mapping())
    r.apply(event(1, "closed", 5, now, state_reason="completed"))
    # the oldest event read is later than the creation: older events may follow
    assert [e.change_id for e in r.take(T0 + 5 * H, final=False)["7"]] == ["1"]
    # an event older than the creation was read: every event of the issue is in
    assert [e.change_id for e in r.take(T0 - H, final=False)["7"]] == ["created:7"]
    assert r.take(None, final=True) == {}  # once only


def test_a_cut_walk_saves_and_restores_the_states_it_replayed() -> None:
    now = issue(state="closed", state_reason="completed", assignees=[{"login": "ada"}])
    first = Replay("", mapping())
    first.apply(event(3, "closed", 3, now, state_reason="completed"))
    first.take(T0 + 3 * H, final=False)
    token = FeedToken(None, 3, T0 + 3 * H, 1, 3, first.saved_states())
    again = FeedToken.parse(str(token))
    assert (again.top, again.offset, again.low, again.top_at) == (3, 1, 3, T0 + 3 * H)
    second = Replay("", mapping())
    second.load(again.states)
    # the next run meets the assignment: the issue was open then (state restored, not "now")
    second.apply(event(1, "assigned", 1, now, assignee={"login": "ada", "id": 42}))
    rows = second.take(None, final=True)["7"]
    assert [(r.change_id, r.from_status, r.to_status) for r in rows if r.field == "status"] == [
        ("1", Status.QUEUED, Status.IN_PROGRESS),
        ("created:7", None, Status.QUEUED),
    ]
    assert rows[-1].actor_name == "mira" and rows[-1].actor_id == "11"


def test_tokens_round_trip_and_an_unreadable_one_starts_over() -> None:
    assert str(FeedToken(123)) == "123" and FeedToken.parse("123") == FeedToken(123)
    assert FeedToken.parse(None) == FeedToken(None) == FeedToken.parse("")
    assert FeedToken.parse("{not json") == FeedToken(None)
    assert FeedToken.parse('{"top": "x"}') == FeedToken(None)


def reference(number: int, repo: str = "o/r") -> dict[str, Any]:
    """A `nullable-issue-reference`, as sub-issue events carry the other issue."""
    return {"number": number, "title": f"#{number}", "state": "open", "issue_type": None,
            "repository": {"full_name": repo, "id": 1}}  # fmt: skip


def test_sub_issue_events_give_parent_entries_as_owner_repo_number() -> None:
    now = issue(parent_issue_url="https://api.github.com/repos/o/other/issues/9")
    rows = replay(
        [
            event(4, "parent_issue_added", 4, now, parent_issue=reference(9, "o/other")),
            event(3, "parent_issue_removed", 3, now, parent_issue=reference(5)),
            event(2, "sub_issue_added", 2, now, sub_issue=reference(8)),  # on a parent: not ours
            event(1, "parent_issue_added", 1, now, parent_issue=reference(5)),
            event(0, "parent_issue_added", 0.5, now, parent_issue={"number": "x"}),  # unreadable
        ]
    )["7"]
    got = [(r.change_id, r.field, r.from_value, r.to_value, r.actor_name) for r in rows]
    assert got == [
        ("4", "parent", None, "o/other#9", "ada"),
        ("3", "parent", "o/r#5", None, "ada"),
        ("1", "parent", None, "o/r#5", "ada"),
        ("created:7", "status", None, "open", "mira"),
    ]


def test_a_cut_walk_keeps_the_replayed_parent_and_reads_older_saved_states() -> None:
    now = issue(parent_issue_url="https://api.github.com/repos/o/r/issues/5")
    first = Replay("", mapping())
    first.apply(event(3, "parent_issue_added", 3, now, parent_issue=reference(5)))
    first.apply(event(2, "parent_issue_removed", 3, now, parent_issue=reference(4)))
    first.take(T0 + 3 * H, final=False)
    saved = FeedToken.parse(str(FeedToken(None, 3, T0 + 3 * H, 2, 2, first.saved_states())))
    assert saved.states["7"][8] == "o/r#4"  # before both events: under #4
    second = Replay("", mapping())
    second.load(saved.states)
    second.apply(event(1, "parent_issue_added", 1, now, parent_issue=reference(4)))
    rows = second.take(None, final=True)["7"]
    assert [(r.field, r.from_value, r.to_value) for r in rows] == [
        ("parent", None, "o/r#4"),
        ("status", None, "open"),
    ]

    # a state saved before parents were kept (eight values) still loads, without a parent
    old = Replay("", mapping())
    old.load({"7": saved.states["7"][:8]})
    assert old.states[7].parent is None and old.states[7].state == "open"

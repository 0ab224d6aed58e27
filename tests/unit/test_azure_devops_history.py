"""The pure parts of Azure DevOps history: the checkpoint's form, identities without e-mail
addresses, the values a revision carries, the integration's scope, and the entries between two
revisions."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.azure_devops_history import (
    Mark,
    Seen,
    changes,
    in_scope,
    person,
    start_mark,
    tracked,
)
from connectors.base import Status

AT = datetime(2026, 3, 2, 8, 0, 0, 123000, tzinfo=UTC)
SITE = "dev.azure.com/myorg"


def test_a_mark_keeps_the_token_and_the_time_read_through() -> None:
    mark = Mark("813;350;1", AT)
    assert str(mark) == "2026-03-02T08:00:00.123000+00:00 813;350;1"
    assert Mark.parse(str(mark)) == mark
    assert Mark.parse("813;350;1") == Mark("813;350;1", None)  # a bare token
    assert Mark.parse(None) == Mark() == Mark.parse("")


def test_scopes_of_a_project_resume_together_or_from_the_start() -> None:
    scopes = ["P/*/Bug", "P/*/User Story"]
    assert start_mark({"Other/*/*": "1;1;1"}, scopes) is None  # not asked for
    same = str(Mark("9;4;2", AT))
    assert start_mark({"P/*/Bug": same, "P/*/User Story": same}, scopes) == Mark("9;4;2", AT)
    # a type added since has no token: the project is read again from its first revision
    assert start_mark({"P/*/Bug": same, "P/*/User Story": None}, scopes) == Mark()


def test_an_identity_is_a_name_and_an_id_never_an_email() -> None:
    ref = {"displayName": "Ada Lovelace", "id": "d291b0c4", "uniqueName": "ada@example.com"}
    assert person(ref) == ("Ada Lovelace", "d291b0c4")
    # the spec's example: an IdentityRef with only id and "Name <e-mail>" as uniqueName
    assert person({"id": "x1", "uniqueName": "Jamal Hartnett <jamal@example.com>"}) == (
        "Jamal Hartnett",
        "x1",
    )
    # a guest whose display name is the address: no name, the id only
    assert person({"displayName": "guest@example.com", "id": "g1"}) == (None, "g1")
    assert person("Normal Paulk <normal@example.com>") == ("Normal Paulk", None)  # text form
    assert person("normal@example.com") == (None, None)


def test_a_revision_gives_its_history_values_as_text() -> None:
    fields = {
        "System.State": "Active",
        "System.AssignedTo": {"displayName": "Ada Lovelace", "id": "a1"},
        "System.Parent": 42,
        "System.IterationPath": "P\\Sprint 3",
        "Microsoft.VSTS.Common.Priority": 2,
        "Microsoft.VSTS.Scheduling.Effort": 2.5,
    }
    assert tracked(fields, SITE) == {
        "status": "Active",
        "assignee": "Ada Lovelace",
        "parent": f"{SITE}/42",
        "sprint": "P\\Sprint 3",
        "priority": "2",
        "story_points": "2.5",
    }
    assert tracked({}, SITE) == dict.fromkeys(
        ("status", "assignee", "parent", "sprint", "priority", "story_points")
    )


def test_the_scope_is_the_configured_types_and_area_under_it() -> None:
    story = {"System.WorkItemType": "User Story", "System.AreaPath": "P\\Web\\Checkout"}
    assert in_scope(None, None, story)
    assert in_scope(["user story"], "p\\web", story)
    assert not in_scope(["Bug"], None, story)
    assert not in_scope(None, "P\\We", story)  # a prefix of a name is not the area above it
    assert in_scope(None, "P\\Web\\Checkout", story)


def _status(state: str, work_item_type: str | None) -> Status:
    return {"New": Status.QUEUED, "Active": Status.IN_PROGRESS}.get(state, Status.COMPLETED)


def test_creation_sets_every_value_and_later_revisions_only_what_changed() -> None:
    created = {"status": "New", "assignee": None, "sprint": "P", "priority": "2"}
    first = changes(
        None,
        1,
        created,
        item_id=7,
        changed_at=AT,
        actor=("Ada", "a1"),
        status=_status,
        previous_type=None,
        work_item_type="Bug",
    )
    assert [(e.change_id, e.field, e.from_value, e.to_value) for e in first] == [
        ("7.1", "status", None, "New"),
        ("7.1", "sprint", None, "P"),
        ("7.1", "priority", None, "2"),
    ]
    assert first[0].to_status is Status.QUEUED and first[0].from_status is None
    later = changes(
        Seen(1, created, "Bug"),
        2,
        {**created, "status": "Active", "assignee": "Ada"},
        item_id=7,
        changed_at=AT,
        actor=("Ada", "a1"),
        status=_status,
        previous_type="Bug",
        work_item_type="Bug",
    )
    assert [(e.field, e.from_value, e.to_value, e.from_status, e.to_status) for e in later] == [
        ("status", "New", "Active", Status.QUEUED, Status.IN_PROGRESS),
        ("assignee", None, "Ada", None, None),
    ]
    assert {(e.change_id, e.actor_name, e.actor_id) for e in later} == {("7.2", "Ada", "a1")}

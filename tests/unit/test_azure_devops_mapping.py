"""Pure parts of the Azure DevOps connector: mapping, WIQL text, window arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.azure_devops import (
    MAX_ID,
    AzureDevOpsConfig,
    Position,
    changes_query,
    html_to_text,
    map_work_item,
    org_identity,
    priority,
    split_window,
    status_of,
    story_points,
    web_url,
    wiql_string,
    wiql_time,
)
from connectors.base import Person, Status
from connectors.http import parse_time
from connectors.http import retry_after as retry_after_seconds

CONFIG = AzureDevOpsConfig(organization_url="https://dev.azure.com/MyOrg/", project="My Project")
T = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("category", "state", "extra", "expected"),
    [
        ("Proposed", "New", {}, Status.QUEUED),
        ("Proposed", "Approved", {}, Status.QUEUED),
        ("InProgress", "Active", {}, Status.IN_PROGRESS),
        ("InProgress", "Committed", {}, Status.IN_PROGRESS),
        ("InProgress", "Active", {"System.Tags": "backend; Blocked"}, Status.BLOCKED),
        ("InProgress", "Active", {"System.Tags": "blocked"}, Status.BLOCKED),
        ("InProgress", "Active", {"System.Tags": "Unblocked; Blockedness"}, Status.IN_PROGRESS),
        ("InProgress", "Active", {"Microsoft.VSTS.CMMI.Blocked": "Yes"}, Status.BLOCKED),
        ("InProgress", "Active", {"Microsoft.VSTS.CMMI.Blocked": "No"}, Status.IN_PROGRESS),
        ("InProgress", "In Review", {}, Status.PR_READY),
        ("InProgress", "Code review", {}, Status.PR_READY),
        ("InProgress", "In Review", {"System.Tags": "Blocked"}, Status.BLOCKED),
        ("Resolved", "Resolved", {}, Status.PR_READY),
        ("Completed", "Closed", {}, Status.COMPLETED),
        ("Completed", "Done", {"System.Tags": "Blocked"}, Status.COMPLETED),
        ("Removed", "Removed", {}, Status.CANCELLED),
        (None, "Doing", {}, Status.IN_PROGRESS),  # type's states unknown: guessed by name
        (None, "Done", {}, Status.COMPLETED),
        (None, "To Do", {}, Status.QUEUED),
    ],
)
def test_status_mapping_table(
    category: str | None, state: str, extra: dict[str, Any], expected: Status
) -> None:
    assert status_of({"System.State": state, **extra}, category, {}) is expected


def test_status_map_override_wins_by_state_name() -> None:
    overrides = {"resolved": Status.COMPLETED}
    assert status_of({"System.State": "Resolved"}, "Resolved", overrides) is Status.COMPLETED
    assert status_of({"System.State": "Active"}, "InProgress", overrides) is Status.IN_PROGRESS


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 4), (2, 3), (3, 2), (4, 1), (None, 0), (0, 0), (9, 0), (True, 0)]
)
def test_priority_scale(value: Any, expected: int) -> None:
    assert priority({"Microsoft.VSTS.Common.Priority": value}) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Microsoft.VSTS.Scheduling.StoryPoints": 2.5}, 3),
        ({"Microsoft.VSTS.Scheduling.StoryPoints": 0.4}, 0),
        ({"Microsoft.VSTS.Scheduling.Effort": 8.0}, 8),
        ({"Microsoft.VSTS.Scheduling.Size": 13}, 13),
        ({"Microsoft.VSTS.Scheduling.StoryPoints": 1, "Microsoft.VSTS.Scheduling.Effort": 5}, 1),
        ({"Microsoft.VSTS.Scheduling.StoryPoints": "big"}, None),
        ({}, None),
    ],
)
def test_story_points_fall_back_by_process(fields: dict[str, Any], expected: int | None) -> None:
    assert story_points(fields) == expected


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<div>Hello <b>world</b></div>", "Hello world"),
        ("<p>one</p><p>two</p>", "one\ntwo"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<ul><li>x</li><li>y</li></ul>", "- x\n- y"),
        ("Fish &amp; chips&nbsp;&lt;3", "Fish & chips <3"),
        ("<style>p{color:red}</style><p>shown</p><script>alert(1)</script>", "shown"),
        ("plain text, no markup", "plain text, no markup"),
        ("<div>  </div>", None),
        (None, None),
        ("", None),
    ],
)
def test_html_to_text(html: str | None, text: str | None) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("https://dev.azure.com/MyOrg", "dev.azure.com/myorg"),
        ("https://dev.azure.com/myorg/", "dev.azure.com/myorg"),
        ("https://myorg.visualstudio.com", "dev.azure.com/myorg"),
        ("https://MyOrg.visualstudio.com/DefaultCollection", "dev.azure.com/myorg"),
        (
            "https://tfs.corp.example/tfs/DefaultCollection",
            "tfs.corp.example/tfs/defaultcollection",
        ),
        ("http://127.0.0.1:8123/myorg", "127.0.0.1:8123/myorg"),
    ],
)
def test_org_identity(url: str, site: str) -> None:
    assert org_identity(url) == site


def test_web_url_quotes_the_project() -> None:
    assert (
        web_url("https://dev.azure.com/myorg", "My Project", 42)
        == "https://dev.azure.com/myorg/My%20Project/_workitems/edit/42"
    )


def test_map_work_item() -> None:
    raw = {
        "id": 42,
        "rev": 7,
        "url": "https://dev.azure.com/myorg/_apis/wit/workItems/42",
        "fields": {
            "System.Id": 42,
            "System.WorkItemType": "User Story",
            "System.TeamProject": "My Project",
            "System.State": "Closed",
            "System.Title": "Checkout flow",
            "System.Description": "<div>html</div>",
            "Microsoft.VSTS.Common.AcceptanceCriteria": "<ul><li>works</li></ul>",
            "Microsoft.VSTS.Scheduling.StoryPoints": 5.0,
            "Microsoft.VSTS.Common.Priority": 2,
            "System.ChangedDate": "2025-05-01T12:34:56.42Z",
            "Microsoft.VSTS.Common.StateChangeDate": "2025-05-01T12:30:00Z",
            "Microsoft.VSTS.Common.ActivatedDate": "2025-04-28T09:00:00.1234567Z",
        },
    }
    item = map_work_item(raw, config=CONFIG, site="dev.azure.com/myorg", category="Completed")
    assert item.external_id == "dev.azure.com/myorg/42"
    assert item.external_key == "42"
    assert item.external_url == "https://dev.azure.com/MyOrg/My%20Project/_workitems/edit/42"
    assert item.status is Status.COMPLETED
    assert item.updated_at == datetime(2025, 5, 1, 12, 34, 56, 420000, tzinfo=UTC)
    assert item.completed_at == datetime(2025, 5, 1, 12, 30, tzinfo=UTC)  # no ClosedDate
    assert item.started_at == datetime(2025, 4, 28, 9, 0, 0, 123456, tzinfo=UTC)
    assert (item.priority, item.story_points) == (3, 5)
    assert (item.description, item.acceptance_criteria) == ("html", "- works")
    assert item.raw == raw and item.scope == "" and not item.removed


JAMAL_REF = {  # wit 7.1 httpExamples/workItems/GET__wit_WorkItems_id.json, shortened
    "displayName": "Jamal Hartnett",
    "url": "https://vssps.dev.azure.com/fabrikam/_apis/Identities/d291b0c4",
    "_links": {"avatar": {"href": "https://dev.azure.com/mseng/_apis/GraphProfile/x"}},
    "id": "d291b0c4",
    "uniqueName": "fabrikamfiber4@hotmail.com",
    "imageUrl": "https://dev.azure.com/fabrikam/_api/_common/identityImage?id=d291b0c4",
    "descriptor": "aad.YTkz",
}


@pytest.mark.parametrize(
    ("who", "kept", "assignees"),
    [
        (
            JAMAL_REF,
            {k: v for k, v in JAMAL_REF.items() if k != "uniqueName"},
            (Person("Jamal Hartnett", "d291b0c4"),),
        ),
        (
            "Jamal Hartnett <fabrikamfiber4@hotmail.com>",
            "Jamal Hartnett",
            (Person("Jamal Hartnett", None),),
        ),
        (None, None, ()),
    ],
    ids=["IdentityRef", "older text", "absent"],
)
def test_identity_fields_give_the_assignee_and_never_keep_an_address(
    who: Any, kept: Any, assignees: tuple[Person, ...]
) -> None:
    # System.AssignedTo / CreatedBy / ChangedBy as an IdentityRef, an older server's
    # "Name <unique name>" text, or nothing: the assignee is the display name and the identity's
    # id; the unique name (usually an e-mail address) is kept nowhere, raw included.
    fields: dict[str, Any] = {
        "System.WorkItemType": "Bug",
        "System.State": "Active",
        "System.Title": "t",
        "System.Tags": "Blocked",
        "Microsoft.VSTS.Common.Priority": 1,
        "System.ChangedDate": "2025-05-01T12:00:00Z",
    }
    if who is not None:
        fields |= {
            name: who for name in ("System.AssignedTo", "System.CreatedBy", "System.ChangedBy")
        }
    raw = {"id": 7, "rev": 2, "fields": fields, "url": "u"}
    item = map_work_item(raw, config=CONFIG, site="s", category="InProgress")
    assert (item.status, item.priority, item.title) == (Status.BLOCKED, 4, "t")
    assert tuple(item.assignees) == assignees
    for name in ("System.AssignedTo", "System.CreatedBy", "System.ChangedBy"):
        assert item.raw["fields"].get(name) == kept
    assert "hotmail" not in repr(item.raw)


def test_parse_time_variants() -> None:
    assert parse_time("2025-05-01T12:00:00Z") == T
    assert parse_time("2025-05-01T12:00:00.1Z") == T + timedelta(milliseconds=100)
    assert parse_time("2025-05-01T14:00:00+02:00") == T
    assert parse_time("not a date") is None and parse_time(None) is None


def test_wiql_literals_escape_quotes() -> None:
    assert wiql_string("O'Brien") == "'O''Brien'"
    assert wiql_time(T) == "'2025-05-01T12:00:00Z'"
    assert wiql_time(T + timedelta(milliseconds=5)) == "'2025-05-01T12:00:00.005Z'"
    assert wiql_time(T + timedelta(microseconds=7)) == "'2025-05-01T12:00:00.000007Z'"
    assert wiql_time(datetime(2025, 5, 1, 14, 0)) == "'2025-05-01T14:00:00Z'"  # naive = UTC


def test_changes_query_shapes() -> None:
    config = AzureDevOpsConfig(
        organization_url="https://dev.azure.com/o",
        project="p",
        area_path="p\\Team' OR 'a'='a",
        work_item_types=["Bug", "User Story"],
    )
    query = changes_query(
        config, since=T, after=Position(T, 9), upto=Position(T + timedelta(hours=1), 50)
    )
    assert query == (
        "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
        "AND [System.AreaPath] UNDER 'p\\Team'' OR ''a''=''a' "
        "AND [System.WorkItemType] IN ('Bug', 'User Story') "
        "AND [System.ChangedDate] >= '2025-05-01T12:00:00Z' "
        "AND ([System.ChangedDate] > '2025-05-01T12:00:00Z' OR "
        "([System.ChangedDate] = '2025-05-01T12:00:00Z' AND [System.Id] > 9)) "
        "AND ([System.ChangedDate] < '2025-05-01T13:00:00Z' OR "
        "([System.ChangedDate] = '2025-05-01T13:00:00Z' AND [System.Id] <= 50)) "
        "ORDER BY [System.ChangedDate] ASC, [System.Id] ASC"
    )


@pytest.mark.parametrize(
    ("start", "upto"),
    [
        (Position(T, -1), Position(T + timedelta(days=3), MAX_ID)),
        (Position(T, 5), Position(T + timedelta(milliseconds=1), MAX_ID)),
        (Position(T, 5), Position(T + timedelta(microseconds=1), 40)),
        (Position(T, MAX_ID), Position(T + timedelta(microseconds=1), 40)),
        (Position(T, 5), Position(T, 40)),
        (Position(T, -1), Position(T, MAX_ID)),
    ],
)
def test_split_window_is_strictly_inside(start: Position, upto: Position) -> None:
    middle = split_window(start, upto)
    assert start < middle < upto


def test_split_window_gives_up_on_one_item() -> None:
    with pytest.raises(Exception, match="cannot be split"):
        split_window(Position(T, 5), Position(T, 6))


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after_seconds({"Retry-After": later}) or 0) <= 31
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_config_validation() -> None:
    base = {"organization_url": "https://dev.azure.com/o", "project": "p", "token": "x"}
    assert (
        AzureDevOpsConfig.model_validate({**base, "work_item_types": [" ", ""]}).work_item_types
        is None
    )
    assert AzureDevOpsConfig.model_validate({**base, "area_path": "p\\Web\\"}).area_path == "p\\Web"
    for bad in (
        {"batch_size": 201},
        {"batch_size": 0},
        {"wiql_top": 20_000},
        {"organization_url": "dev.azure.com/o"},
        {"project": "  "},
        {"unknown_key": 1},
    ):
        with pytest.raises(ValidationError):
            AzureDevOpsConfig.model_validate({**base, **bad})

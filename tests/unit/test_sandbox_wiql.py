"""The Azure DevOps sandbox's WIQL interpreter (connectors.sandbox.wiql) on its own: tokens, parse
results, conditions on work-item fields, day vs instant dates, ORDER BY, and the server's
refusals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.sandbox import wiql
from connectors.sandbox.wiql import Token, WiqlError

SELECT = "SELECT [System.Id] FROM WorkItems"
T0 = datetime(2025, 4, 1, 8, 30, tzinfo=UTC)


def item(item_id: int, title: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "System.Id": item_id,
        "System.Title": title,
        "System.TeamProject": "My Project",
        "System.AreaPath": "My Project",
        "System.WorkItemType": "User Story",
        "System.State": "New",
        "System.ChangedDate": T0,
    }
    row.update({f"System.{k}" if "." not in k else k: v for k, v in fields.items()})
    return row


ROWS = [
    item(
        1,
        "Alpha",
        State="Active",
        AreaPath="My Project\\Web",
        ChangedDate=T0,
        **{"Microsoft.VSTS.Common.Priority": 2, "Microsoft.VSTS.Scheduling.StoryPoints": 3.0},
    ),
    item(
        2,
        "beta",
        AreaPath="My Project\\Web\\Checkout",
        ChangedDate=T0 + timedelta(hours=20),
        WorkItemType="Bug",
        **{"Microsoft.VSTS.Common.Priority": 1},
    ),
    item(
        3,
        "Gamma",
        State="Closed",
        AreaPath="My Project\\Website",
        ChangedDate=T0 + timedelta(days=2),
        **{"Microsoft.VSTS.Scheduling.StoryPoints": 1.5},
    ),
    item(
        4,
        "delta",
        State="Active",
        AreaPath="My Project\\Mobile",
        TeamProject="Other",
        ChangedDate=T0 + timedelta(days=2, minutes=30),
    ),
]


def ids(query: str, rows: list[dict[str, Any]] = ROWS, **options: Any) -> list[int]:
    parsed = wiql.parse(query, **options)
    matched = parsed.filter(rows)
    parsed.sort(matched)
    return [int(row["System.Id"]) for row in matched]


def where(condition: str, **options: Any) -> list[int]:
    return sorted(ids(f"{SELECT} WHERE {condition}", **options))


def error(query: str, **options: Any) -> str:
    with pytest.raises(WiqlError) as caught:
        wiql.parse(query, **options)
    return str(caught.value)


# -- tokens and parse results -----------------------------------------------------------------
def test_tokenize_kinds() -> None:
    assert wiql.tokenize("SELECT [A] FROM x WHERE [B] = 'it''s' AND [C] >= -1.5 OR @today") == [
        Token("word", "SELECT"),
        Token("field", "[A]"),
        Token("word", "FROM"),
        Token("word", "x"),
        Token("word", "WHERE"),
        Token("field", "[B]"),
        Token("op", "="),
        Token("string", "'it''s'"),
        Token("word", "AND"),
        Token("field", "[C]"),
        Token("op", ">="),
        Token("number", "-1.5"),
        Token("word", "OR"),
        Token("macro", "@today"),
    ]


def test_parse_returns_the_selected_fields_and_the_order() -> None:
    parsed = wiql.parse(
        "select [System.Id], [ System.Title ] from workitems "
        "order by [System.ChangedDate] desc, [System.Id] ASC, [System.Title]"
    )
    assert parsed.fields == ["System.Id", "System.Title"]
    assert parsed.order == [
        ("System.ChangedDate", True),
        ("System.Id", False),
        ("System.Title", False),
    ]
    assert all(parsed.where(row) for row in ROWS)  # no WHERE: everything


def test_every_known_field_has_exactly_one_type_and_a_friendly_name() -> None:
    groups = [
        wiql.DATE_FIELDS,
        wiql.INT_FIELDS,
        wiql.NUMBER_FIELDS,
        wiql.STRING_FIELDS,
        wiql.IDENTITY_FIELDS,
    ]
    assert sum(len(g) for g in groups) == len(wiql.KNOWN_FIELDS)
    assert "System.ChangedDate" in wiql.DATE_FIELDS
    assert "System.Id" in wiql.INT_FIELDS
    assert "System.AssignedTo" in wiql.IDENTITY_FIELDS
    assert set(wiql.FIELD_NAMES) == wiql.KNOWN_FIELDS
    assert len(set(wiql.FIELD_NAMES.values())) == len(wiql.FIELD_NAMES)


def test_fields_by_friendly_name_or_reference_name_without_case() -> None:
    # The published spec's own example: "... AND [State] <> 'Closed' ... order by
    # [Microsoft.VSTS.Common.Priority] asc, [System.CreatedDate] desc".
    parsed = wiql.parse(
        "Select [System.Id], [System.Title], [System.State] From WorkItems Where "
        "[System.WorkItemType] = 'Task' AND [State] <> 'Closed' AND [State] <> 'Removed' "
        "order by [Microsoft.VSTS.Common.Priority] asc, [System.CreatedDate] desc"
    )
    assert parsed.fields == ["System.Id", "System.Title", "System.State"]
    assert parsed.order == [("Microsoft.VSTS.Common.Priority", False), ("System.CreatedDate", True)]
    assert where("[work item type] = 'bug'") == [2]
    assert where("[system.title] = 'alpha'") == [1]
    assert wiql.field_reference("Changed Date") == "System.ChangedDate"
    assert wiql.field_reference("Nope") is None


# -- conditions -------------------------------------------------------------------------------
def test_strings_compare_without_case_and_quotes_escape_by_doubling() -> None:
    assert where("[System.Title] = 'ALPHA'") == [1]
    assert where("[System.Title] <> 'alpha'") == [2, 3, 4]
    rows = [item(7, "it's"), item(8, "its")]
    assert ids(f"{SELECT} WHERE [System.Title] = 'It''s'", rows) == [7]


JAMAL = {"displayName": "Jamal Hartnett", "uniqueName": "fabrikamfiber4@hotmail.com"}
CHRISTIE = {"displayName": "Christie Church", "uniqueName": "fabrikamfiber1@hotmail.com"}


def test_identity_fields_match_display_name_unique_name_or_both() -> None:
    rows = [
        item(1, "a", AssignedTo=JAMAL),
        item(2, "b", AssignedTo=CHRISTIE),
        item(3, "c"),  # unassigned: the field is absent
        item(4, "d", AssignedTo="Jamal Hartnett <fabrikamfiber4@hotmail.com>"),  # older servers
    ]

    def match(condition: str) -> list[int]:
        return sorted(ids(f"{SELECT} WHERE {condition}", rows))

    assert match("[System.AssignedTo] = 'Jamal Hartnett'") == [1, 4]
    assert match("[Assigned To] = 'FABRIKAMFIBER4@hotmail.com'") == [1, 4]
    assert match("[System.AssignedTo] = 'Jamal Hartnett <fabrikamfiber4@hotmail.com>'") == [1, 4]
    assert match("[System.AssignedTo] <> 'Jamal Hartnett'") == [2, 3]
    assert match("[System.AssignedTo] IN ('Christie Church', 'nobody')") == [2]
    assert match("[System.AssignedTo] NOT IN ('Christie Church')") == [1, 3, 4]
    order = ids(f"{SELECT} ORDER BY [System.AssignedTo] DESC, [System.Id]", rows)
    assert order == [1, 4, 2, 3]  # by display name; unassigned first ascending, last here


def test_identity_texts() -> None:
    assert wiql.identity_names(JAMAL) == {
        "jamal hartnett",
        "fabrikamfiber4@hotmail.com",
        "jamal hartnett <fabrikamfiber4@hotmail.com>",
    }
    assert wiql.identity_names("Jamal Hartnett <x@y>") == {
        "jamal hartnett <x@y>",
        "jamal hartnett",
        "x@y",
    }
    assert wiql.identity_names(None) == frozenset()
    assert wiql.identity_display("Jamal Hartnett <x@y>") == "Jamal Hartnett"
    assert wiql.identity_display(JAMAL) == "Jamal Hartnett"
    assert wiql.identity_display(3) is None


def test_in_and_not_in() -> None:
    assert where("[System.State] IN ('active', 'Closed')") == [1, 3, 4]
    assert where("[System.State] NOT IN ('Active')") == [2, 3]
    assert where("[System.Id] IN (2, 4)") == [2, 4]


def test_and_binds_tighter_than_or_not_and_parentheses() -> None:
    assert where("[System.State] = 'New' OR [System.State] = 'Active' AND [System.Id] > 3") == [
        2,
        4,
    ]
    assert where("([System.State] = 'New' OR [System.State] = 'Active') AND [System.Id] > 3") == [4]
    assert where("NOT [System.State] = 'Active'") == [2, 3]
    assert where("NOT ([System.Id] = 1 OR [System.Id] = 2)") == [3, 4]


def test_under_matches_the_path_and_its_children_only() -> None:
    assert where("[System.AreaPath] UNDER 'my project\\web'") == [1, 2]  # not Website
    assert where("[System.AreaPath] NOT UNDER 'My Project\\Web'") == [3, 4]
    assert where("[System.AreaPath] UNDER 'My Project'") == [1, 2, 3, 4]


def test_under_asks_whether_an_area_path_exists() -> None:
    asked: list[str] = []

    def exists(path: str) -> bool:
        asked.append(path)
        return path != "my project\\nope"

    assert where("[System.AreaPath] UNDER 'My Project\\Web'", area_exists=exists) == [1, 2]
    assert asked == ["my project\\web"]  # the literal is compared without case
    message = error(
        f"{SELECT} WHERE [System.AreaPath] UNDER 'My Project\\Nope'", area_exists=exists
    )
    assert message.startswith("TF51011: The specified area path does not exist.")
    # iteration paths are not checked against the areas
    assert where("[System.IterationPath] UNDER 'Nope'", area_exists=lambda p: False) == []


def test_numbers_compare_as_numbers_whatever_the_literal() -> None:
    assert where("[System.Id] = '2'") == [2]
    assert where("[System.Id] > 1 AND [System.Id] <= 3") == [2, 3]
    assert where("[Microsoft.VSTS.Common.Priority] < 2") == [2]
    assert where("[Microsoft.VSTS.Scheduling.StoryPoints] >= 1.5") == [1, 3]


def test_a_missing_value_fails_ordered_comparisons_but_differs_from_everything() -> None:
    assert where("[Microsoft.VSTS.Common.Priority] >= 0") == [1, 2]
    assert where("[Microsoft.VSTS.Common.Priority] <> 2") == [2, 3, 4]


def test_project_macro_is_the_request_project() -> None:
    assert where("[System.TeamProject] = @project", project="MY PROJECT") == [1, 2, 3]
    assert error(f"{SELECT} WHERE [System.TeamProject] = @project") == (
        "TF51011: @project needs a project in the request URL."
    )


def test_today_macro_is_todays_date() -> None:
    today = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
    rows = [
        item(1, "old", ChangedDate=today - timedelta(days=1)),
        item(2, "new", ChangedDate=today),
    ]
    assert ids(f"{SELECT} WHERE [System.ChangedDate] < @today", rows) == [1]
    assert ids(f"{SELECT} WHERE [System.ChangedDate] >= @today", rows) == [2]


# -- dates ------------------------------------------------------------------------------------
def test_without_time_precision_dates_compare_by_day() -> None:
    # T0 is 2025-04-01 08:30; item 2 is 2025-04-02 04:30; 3 and 4 are on 2025-04-03
    assert where("[System.ChangedDate] = '2025-04-01'") == [1]
    assert where("[System.ChangedDate] > '2025-04-01'") == [2, 3, 4]
    assert where("[System.ChangedDate] >= '2025-04-03'") == [3, 4]
    assert error(f"{SELECT} WHERE [System.ChangedDate] > '2025-04-01T10:00:00Z'") == (
        "VS402625: Dates must be entered without a time unless timePrecision is set. "
        "The error is caused by «2025-04-01T10:00:00Z»."
    )


def test_with_time_precision_dates_compare_to_the_instant() -> None:
    condition = "[System.ChangedDate] >= '2025-04-03T08:45:00Z'"
    assert where(condition, time_precision=True) == [4]
    # a literal without an offset is UTC; one with an offset is converted
    assert where("[System.ChangedDate] > '2025-04-03 08:45'", time_precision=True) == [4]
    assert where("[System.ChangedDate] < '2025-04-01T10:30:00+02:00'", time_precision=True) == []
    assert where("[System.ChangedDate] <= '2025-04-01T10:30:00+02:00'", time_precision=True) == [1]
    # a day alone is midnight UTC
    assert where("[System.ChangedDate] < '2025-04-02'", time_precision=True) == [1]


# -- ordering ---------------------------------------------------------------------------------
def test_order_by_sorts_strings_without_case_and_missing_values_first() -> None:
    assert ids(f"{SELECT} ORDER BY [System.Title]") == [1, 2, 4, 3]
    assert ids(f"{SELECT} ORDER BY [System.Title] DESC") == [3, 4, 2, 1]
    assert ids(f"{SELECT} ORDER BY [Microsoft.VSTS.Common.Priority]") == [3, 4, 2, 1]
    assert ids(f"{SELECT} ORDER BY [Microsoft.VSTS.Common.Priority] DESC") == [1, 2, 3, 4]


def test_order_by_several_fields_the_first_wins() -> None:
    assert ids(f"{SELECT} ORDER BY [System.State], [System.ChangedDate] DESC") == [4, 1, 3, 2]


def test_without_order_by_rows_keep_their_order() -> None:
    assert ids(SELECT, list(reversed(ROWS))) == [4, 3, 2, 1]


def test_filter_returns_the_rows_themselves() -> None:
    parsed = wiql.parse(f"{SELECT} WHERE [System.Id] = 3")
    matched: list[Mapping[str, Any]] = parsed.filter(ROWS)
    assert len(matched) == 1 and matched[0] is ROWS[2]


# -- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "TF51006: The query statement ended unexpectedly."),
        (
            "SELEC [System.Id] FROM WorkItems",
            "TF51006: Expecting SELECT. The error is caused by «SELEC».",
        ),
        (
            "SELECT System.Id FROM WorkItems",
            "TF51006: Expecting field name. The error is caused by «System.Id».",
        ),
        (
            "SELECT [System.Nope] FROM WorkItems",
            "TF51005: The query references a field that does not exist. "
            "The error is caused by «System.Nope».",
        ),
        (
            "SELECT [System.Id] FROM Things",
            "TF51006: Expecting WorkItems. The error is caused by «Things».",
        ),
        (f"{SELECT} WHERE", "TF51006: The query statement ended unexpectedly."),
        (f"{SELECT} WHERE ([System.Id] = 1", "TF51006: The query statement ended unexpectedly."),
        (f"{SELECT} extra", "TF51006: Unexpected text. The error is caused by «extra»."),
        (f"{SELECT} WHERE [System.Id] = 1 #", "TF51006: Unexpected text at position 55: « #»"),
        (
            f"{SELECT} ORDER [System.Id]",
            "TF51006: Expecting BY. The error is caused by «[System.Id]».",
        ),
        (
            f"{SELECT} WHERE [System.Title] UNDER 'x'",
            "TF51006: UNDER needs a path field. The error is caused by «System.Title».",
        ),
        (f"{SELECT} WHERE [System.Id] NOT 3", "TF51006: Expecting IN or UNDER after NOT."),
        (
            f"{SELECT} WHERE [System.Id] LIKE 3",
            "TF51006: Expecting an operator. The error is caused by «LIKE».",
        ),
        (
            f"{SELECT} WHERE [System.Id] = @me",
            "TF51006: Unknown macro. The error is caused by «@me».",
        ),
        (
            f"{SELECT} WHERE [System.Id] = (",
            "TF51006: Expecting a value. The error is caused by «(».",
        ),
        (f"{SELECT} WHERE [System.Id] = 'two'", "TF51006: «two» is not a number."),
        (
            f"{SELECT} WHERE [System.Title] = 3",
            "TF51006: A number cannot be compared with «System.Title».",
        ),
        (f"{SELECT} WHERE [System.ChangedDate] = 'nope'", "TF51006: «nope» is not a valid date."),
        (
            f"{SELECT} WHERE [System.Id] IN (1, 2",
            "TF51006: The query statement ended unexpectedly.",
        ),
    ],
)
def test_refusals_carry_the_servers_messages(query: str, message: str) -> None:
    assert error(query) == message

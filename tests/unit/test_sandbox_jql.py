"""The Jira sandbox's JQL interpreter (connectors.sandbox.jql) on its own: parsing, filtering,
ordering, dates in the user's zone, and Jira's error messages, against a small fake site."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from connectors.sandbox import jql
from connectors.sandbox.jql import JqlError

NOW = datetime(2025, 5, 1, 12, 7, 33, tzinfo=UTC)
T0 = datetime(2025, 4, 1, tzinfo=UTC)
PROJECTS = {"ABC": ("Alpha Beta", "10000"), "XYZ": ("Ex Why Zed", "10001")}
CATEGORY_NAMES = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}
PRIORITIES = ["Highest", "High", "Medium", "Low", "Lowest"]


@dataclass
class Issue:
    id: str
    key: str
    summary: str = "An issue"
    status: str = "To Do"
    updated: datetime = T0
    created: datetime = T0
    description: str | None = None
    resolution: str | None = None
    resolutiondate: datetime | None = None
    priority: str | None = "Medium"
    issuetype: str = "Story"
    labels: list[str] = field(default_factory=list)

    @property
    def project(self) -> str:
        return self.key.split("-")[0]


@dataclass
class Site:
    """A JqlSite: two projects, three statuses, Sydney time (UTC+10 in May), a fixed clock."""

    statuses: Mapping[str, str] = field(
        default_factory=lambda: {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}
    )
    time_zone: str = "Australia/Sydney"

    def now(self) -> datetime:
        return NOW

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def project_of(self, value: str) -> str:
        for key, (name, pid) in PROJECTS.items():
            if value.casefold() in (key.casefold(), name.casefold(), pid):
                return key
        raise JqlError(f"The value '{value}' does not exist for the field 'project'.")

    def status_category_name(self, status: str) -> str:
        return CATEGORY_NAMES.get(self.statuses.get(status, ""), "No Category")

    def priority_rank(self, priority: str) -> int:
        return PRIORITIES.index(priority) + 1


SITE = Site()
ISSUES = [
    Issue(
        "10001",
        "ABC-1",
        "Fix the login form",
        "To Do",
        T0 + timedelta(hours=4),
        priority="High",
        labels=["frontend"],
    ),
    Issue(
        "10002",
        "ABC-2",
        "Login is slow",
        "In Progress",
        T0 + timedelta(hours=1),
        description="Slow LOGIN on mobile",
        priority=None,
    ),
    Issue(
        "10003",
        "ABC-10",
        "Export report",
        "Done",
        T0 + timedelta(hours=3),
        priority="Lowest",
        resolution="Done",
        resolutiondate=T0 + timedelta(hours=3),
        issuetype="Bug",
    ),
    Issue(
        "10004",
        "XYZ-1",
        "alpha release",
        "In Progress",
        T0 + timedelta(hours=2),
        priority="Highest",
    ),
    Issue(
        "10005",
        "XYZ-2",
        "Zeta",
        "Done",
        T0 + timedelta(hours=5),
        priority="Medium",
        resolution="Won't Do",
        resolutiondate=T0 + timedelta(hours=5),
    ),
]


def keys(query: str, issues: list[Issue] = ISSUES, site: Site = SITE) -> list[str]:
    return [i.key for i in jql.evaluate(query, issues, site)]


def error(query: str) -> str:
    with pytest.raises(JqlError) as caught:
        jql.parse(query, SITE)
    return str(caught.value)


# -- parse results ----------------------------------------------------------------------------
def test_empty_query_matches_everything_without_order() -> None:
    for text in ("", "   "):
        query = jql.parse(text, SITE)
        assert query.order == ()
        assert all(query.where(i) for i in ISSUES)


def test_order_by_is_parsed_with_aliases_directions_and_quoted_names() -> None:
    query = jql.parse("ORDER BY updatedDate DESC, issuekey, 'priority' asc, createdDate", SITE)
    assert query.order == (
        ("updated", True),
        ("key", False),
        ("priority", False),
        ("created", False),
    )
    assert jql.parse("project = ABC order by id desc", SITE).order == (("id", True),)


def test_keywords_are_case_insensitive() -> None:
    assert keys("PROJECT = abc and STATUS In ('to do') Order By KEY") == ["ABC-1"]


# -- filtering --------------------------------------------------------------------------------
def test_and_binds_tighter_than_or() -> None:
    assert sorted(keys("project = XYZ OR project = ABC AND status = Done")) == [
        "ABC-10",
        "XYZ-1",
        "XYZ-2",
    ]
    assert sorted(keys("(project = XYZ OR project = ABC) AND status = Done")) == [
        "ABC-10",
        "XYZ-2",
    ]


def test_not_negates_a_clause_or_a_group() -> None:
    assert sorted(keys("not project = ABC")) == ["XYZ-1", "XYZ-2"]
    assert sorted(keys("NOT (project = ABC OR status = Done)")) == ["XYZ-1"]
    assert sorted(keys("project = ABC AND NOT status = 'To Do'")) == ["ABC-10", "ABC-2"]


def test_project_by_key_name_or_id() -> None:
    assert sorted(keys("project = 'alpha beta'")) == ["ABC-1", "ABC-10", "ABC-2"]
    assert sorted(keys("project = 10001")) == ["XYZ-1", "XYZ-2"]
    assert sorted(keys("project in (abc, 'Ex Why Zed')")) == sorted(i.key for i in ISSUES)
    assert sorted(keys("project not in (ABC)")) == ["XYZ-1", "XYZ-2"]


def test_values_compare_without_case_and_in_lists() -> None:
    assert keys("status = 'in progress' ORDER BY key") == ["ABC-2", "XYZ-1"]
    assert sorted(keys("status in ('To Do', done)")) == ["ABC-1", "ABC-10", "XYZ-2"]
    assert sorted(keys("status not in (Done)")) == ["ABC-1", "ABC-2", "XYZ-1"]


def test_not_equal_never_matches_an_empty_field() -> None:
    assert "ABC-2" not in keys("priority != High")  # ABC-2 has no priority
    assert sorted(keys("priority != High")) == ["ABC-10", "XYZ-1", "XYZ-2"]
    assert keys("priority is EMPTY") == ["ABC-2"]
    assert "ABC-2" not in keys("priority is not null")


def test_key_and_id_clauses() -> None:
    assert keys("key = abc-10") == ["ABC-10"]
    assert keys("issuekey in (ABC-1, XYZ-2) ORDER BY key") == ["ABC-1", "XYZ-2"]
    assert keys("id = 10004") == ["XYZ-1"]  # digits compare on the id
    assert "ABC-1" not in keys("issue != ABC-1")


def test_status_category_resolution_type_and_labels() -> None:
    assert sorted(keys("statusCategory = 'In Progress'")) == ["ABC-2", "XYZ-1"]
    assert sorted(keys("statusCategory = done")) == ["ABC-10", "XYZ-2"]
    assert sorted(keys("resolution = Unresolved")) == ["ABC-1", "ABC-2", "XYZ-1"]
    assert keys('resolution = "Won\'t Do"') == ["XYZ-2"]
    assert keys("type = bug") == ["ABC-10"]
    assert keys("labels = frontend") == ["ABC-1"]
    assert "ABC-1" not in keys("labels is empty")


def test_text_search_is_a_case_insensitive_substring() -> None:
    assert sorted(keys("summary ~ login")) == ["ABC-1", "ABC-2"]
    assert sorted(keys("text ~ '*LOGIN*'")) == ["ABC-1", "ABC-2"]
    assert keys("description ~ mobile") == ["ABC-2"]
    assert "ABC-1" not in keys("summary !~ login")
    assert sorted(keys("summary !~ login")) == ["ABC-10", "XYZ-1", "XYZ-2"]


def test_string_escapes() -> None:
    issues = [Issue("1", "ABC-1", 'say "hi"\tthere'), Issue("2", "ABC-2", "Abc")]
    assert keys(r'summary = "say \"hi\"\tthere"', issues) == ["ABC-1"]
    assert keys(r'summary = "\u0041bc"', issues) == ["ABC-2"]


# -- dates ------------------------------------------------------------------------------------
def test_absolute_dates_are_read_in_the_site_time_zone() -> None:
    # 2025-05-01 10:00 in Sydney (UTC+10) is midnight UTC.
    midnight = datetime(2025, 5, 1, tzinfo=UTC)
    issues = [
        Issue("1", "ABC-1", updated=midnight - timedelta(seconds=1)),
        Issue("2", "ABC-2", updated=midnight),
        Issue("3", "ABC-3", updated=midnight + timedelta(seconds=59)),
        Issue("4", "ABC-4", updated=midnight + timedelta(minutes=1)),
    ]
    assert sorted(keys('updated >= "2025-05-01 10:00"', issues)) == ["ABC-2", "ABC-3", "ABC-4"]
    assert sorted(keys('updated > "2025/05/01 10:00"', issues)) == ["ABC-3", "ABC-4"]
    assert keys('updated < "2025-05-01 10:00"', issues) == ["ABC-1"]
    assert sorted(keys('updated <= "2025-05-01 10:00"', issues)) == ["ABC-1", "ABC-2"]
    # `=` is the whole minute
    assert sorted(keys('updatedDate = "2025-05-01 10:00"', issues)) == ["ABC-2", "ABC-3"]
    assert sorted(keys('updated != "2025-05-01 10:00"', issues)) == ["ABC-1", "ABC-4"]
    # a date alone is local midnight: 2025-05-01 00:00 Sydney = 2025-04-30 14:00 UTC
    assert len(keys("updated >= 2025-05-01", issues)) == 4
    utc_site = Site(time_zone="UTC")
    assert sorted(keys('updated >= "2025-05-01 00:00"', issues, utc_site)) == [
        "ABC-2",
        "ABC-3",
        "ABC-4",
    ]


def test_relative_dates_count_from_the_site_clock_to_the_minute() -> None:
    # NOW is 12:07:33 UTC, so -15m is 11:52:00.
    at = datetime(2025, 5, 1, 11, 52, tzinfo=UTC)
    issues = [
        Issue("1", "ABC-1", updated=at - timedelta(seconds=1)),
        Issue("2", "ABC-2", updated=at),
        Issue("3", "ABC-3", updated=NOW - timedelta(days=2, minutes=1)),
    ]
    assert keys("updated >= -15m", issues) == ["ABC-2"]
    assert keys("updated < -2d", issues) == ["ABC-3"]
    assert sorted(keys("updated > -1w", issues)) == ["ABC-1", "ABC-2", "ABC-3"]
    assert keys("updated >= +1h", issues) == []


def test_empty_dates_and_resolution_dates() -> None:
    assert sorted(keys("resolved is EMPTY")) == ["ABC-1", "ABC-2", "XYZ-1"]
    assert sorted(keys("resolutiondate is not null")) == ["ABC-10", "XYZ-2"]
    # an issue without a resolution date never satisfies a comparison
    assert sorted(keys("resolved >= 2025-01-01")) == ["ABC-10", "XYZ-2"]
    assert keys("created < 2025-01-01") == []


# -- ordering ---------------------------------------------------------------------------------
def test_without_order_by_issues_come_by_key_descending_numerically() -> None:
    assert keys("") == ["XYZ-2", "XYZ-1", "ABC-10", "ABC-2", "ABC-1"]
    assert jql.DEFAULT_ORDER == (("key", True),)


def test_order_by_fields_and_directions() -> None:
    assert keys("ORDER BY updated") == ["ABC-2", "XYZ-1", "ABC-10", "ABC-1", "XYZ-2"]
    assert keys("ORDER BY updated DESC") == ["XYZ-2", "ABC-1", "ABC-10", "XYZ-1", "ABC-2"]
    assert keys("ORDER BY key") == ["ABC-1", "ABC-2", "ABC-10", "XYZ-1", "XYZ-2"]
    assert keys("ORDER BY id DESC") == ["XYZ-2", "XYZ-1", "ABC-10", "ABC-2", "ABC-1"]
    assert keys("ORDER BY summary") == ["XYZ-1", "ABC-10", "ABC-1", "ABC-2", "XYZ-2"]


def test_order_by_several_keys_the_first_wins() -> None:
    assert keys("ORDER BY status ASC, updated DESC") == [
        "XYZ-2",  # Done
        "ABC-10",
        "XYZ-1",  # In Progress
        "ABC-2",
        "ABC-1",  # To Do
    ]


def test_priority_sorts_by_the_site_scheme_and_none_last() -> None:
    assert keys("ORDER BY priority") == ["XYZ-1", "ABC-1", "XYZ-2", "ABC-10", "ABC-2"]
    assert keys("ORDER BY priority DESC")[0] == "ABC-2"


def test_select_keeps_the_callers_objects_and_evaluate_is_parse_then_select() -> None:
    query = jql.parse("project = XYZ ORDER BY updated", SITE)
    selected = query.select(ISSUES)
    assert [i.key for i in selected] == ["XYZ-1", "XYZ-2"]
    assert all(any(s is i for i in ISSUES) for s in selected)
    assert jql.evaluate("project = XYZ ORDER BY updated", ISSUES, SITE) == selected


# -- errors: Jira's messages ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "project = ABC extra",
            "Error in the JQL Query: Expecting either 'OR' or 'AND' but got 'extra'. "
            "(line 1, character 15)",
        ),
        (
            "project in (ABC XYZ)",
            "Error in the JQL Query: Expecting ',' or ')' but got 'XYZ'. (line 1, character 17)",
        ),
        (
            "project =",
            "Error in the JQL Query: Expecting either a value, list or function but got "
            "'end of query'. (line 1, character 10)",
        ),
        (
            "summary = and",
            "Error in the JQL Query: Expecting either a value, list or function but got 'and'. "
            "(line 1, character 11)",
        ),
        (
            "project in ()",
            "Error in the JQL Query: Expecting either a value, list or function but got ')'. "
            "(line 1, character 13)",
        ),
        (
            "order updated",
            "Error in the JQL Query: Expecting 'by' but got 'updated'. (line 1, character 7)",
        ),
        (
            "project ABC",
            "Error in the JQL Query: Expecting operator but got 'ABC'. (line 1, character 9)",
        ),
        (
            "(project = ABC",
            "Error in the JQL Query: Expecting ')' but got 'end of query'. (line 1, character 15)",
        ),
        (
            "= ABC",
            "Error in the JQL Query: Expecting a field name but got '='. (line 1, character 1)",
        ),
        (
            "updated is x",
            "Error in the JQL Query: Expecting 'EMPTY' or 'NULL' but got 'x'. "
            "(line 1, character 12)",
        ),
        (
            "summary = a&b",
            "Error in the JQL Query: The character '&' is a reserved JQL character. You must "
            "enclose it in a string or use the escape '\\u0026' instead.",
        ),
        ("summary = 'abc", "Error in the JQL Query: unterminated string at character 9."),
        (r'summary = "a\qb"', "Error in the JQL Query: illegal escape sequence at character 10."),
        ("order by bogus", "Not able to sort using field 'bogus'."),
        ("project = ABC ORDER BY", "Not able to sort using field ''."),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("status = Nope", "The value 'Nope' does not exist for the field 'status'."),
        ("nosuch = 1", "Field 'nosuch' does not exist or you do not have permission to view it."),
        ("labels ~ x", "The operator '~' is not supported by the 'labels' field."),
        ("updated in (x)", "The operator 'in' is not supported by the 'updated' field."),
        ("Created ~ x", "The operator '~' is not supported by the 'Created' field."),
        (
            "updated >= tomorrow",
            "Date value 'tomorrow' for field 'updated' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
            "format e.g. '-5d', '4w 2d'.",
        ),
    ],
)
def test_refusals_carry_jiras_messages(query: str, message: str) -> None:
    assert error(query) == message


def test_errors_are_raised_at_parse_time_even_with_no_issues() -> None:
    with pytest.raises(JqlError):
        jql.evaluate("project = NOPE", [], SITE)
    assert jql.evaluate("project = ABC", [], SITE) == []

"""Pure parts of the Jira connector: JQL building, the time-zone literal, mapping, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from jira import JIRAError
from pydantic import ValidationError

from connectors.base import FatalError, RetriableError, Status
from connectors.http import parse_time as parse_jira_time
from connectors.jira import (
    CONNECTING,
    CREDENTIAL_HINTS,
    CredentialsRejected,
    FieldIds,
    JiraConfig,
    ProjectNotFound,
    adf_to_text,
    convert_error,
    jira_priority,
    jira_status,
    jql_quote,
    jql_time_literal,
    map_issue,
    resolve_field,
    retry_after_seconds,
    rich_text,
    scope_jql,
    search_jql,
    site_of,
    story_points,
    strip_order_by,
)

BASE = {"url": "https://acme.atlassian.net", "email": "bot@acme.test"}


# -- config ------------------------------------------------------------------------------------
def test_config_needs_exactly_one_scope() -> None:
    with pytest.raises(ValidationError, match="exactly one of jql or projects"):
        JiraConfig(**BASE)
    with pytest.raises(ValidationError, match="exactly one of jql or projects"):
        JiraConfig(**BASE, jql="project = A", projects=["A"])
    config = JiraConfig(**BASE, projects=[" ABC ", "ABC", "DEF"])
    assert config.projects == ["ABC", "DEF"]
    assert config.api_version == "3" and config.page_size == 100


DC = {"url": "https://jira.corp.example/jira", "projects": ["ABC"]}


@pytest.mark.parametrize(
    ("given", "auth", "version"),
    [
        ({**BASE, "projects": ["A"]}, "cloud", "3"),
        ({**BASE, "projects": ["A"], "rest_api_version": "2"}, "cloud", "2"),
        (DC, "pat", "2"),
        ({**DC, "username": "sync-bot"}, "basic", "2"),
    ],
)
def test_the_way_to_sign_in_follows_the_keys_given(
    given: dict[str, Any], auth: str, version: str
) -> None:
    config = JiraConfig(**given)
    assert config.auth == auth and config.api_version == version


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({**DC, "email": "a@b.c", "username": "bot"}, "give email .Jira Cloud"),
        ({**DC, "rest_api_version": "3"}, "Jira Data Center has REST v2"),
        ({**DC, "username": "bot", "rest_api_version": "3"}, "Jira Data Center has REST v2"),
        ({**DC, "username": "a:b"}, "username must be"),
        ({**DC, "username": " "}, "username must be"),
        ({**DC, "max_result_window": 0}, "max_result_window"),
    ],
)
def test_sign_in_combinations_that_cannot_work_are_one_line_errors(
    given: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem) as info:
        JiraConfig(**given)
    assert info.value.error_count() == 1


@pytest.mark.parametrize(
    "url",
    ["acme.atlassian.net", "ftp://acme", "https://user:pw@acme.atlassian.net", "https://a/?q=1"],
)
def test_config_rejects_urls_that_are_not_a_site(url: str) -> None:
    with pytest.raises(ValidationError):
        JiraConfig(url=url, email="a@b.c", projects=["A"])


def test_config_rejects_control_characters_in_jql_but_allows_newlines() -> None:
    assert JiraConfig(**BASE, jql="project = A\nAND type = Bug").jql
    with pytest.raises(ValidationError):
        JiraConfig(**BASE, jql="project = A\x00")


def test_site_of_keeps_host_port_and_context_path() -> None:
    assert site_of("https://Acme.atlassian.net") == "acme.atlassian.net"
    assert site_of("http://127.0.0.1:8080/jira") == "127.0.0.1:8080/jira"


# -- JQL ---------------------------------------------------------------------------------------
def test_jql_quote_keeps_hostile_values_one_literal() -> None:
    assert jql_quote("ABC") == '"ABC"'
    assert jql_quote('A" OR project != "B') == '"A\\" OR project != \\"B"'
    assert jql_quote("back\\slash") == '"back\\\\slash"'
    # An escaped backslash cannot eat the escape of the closing quote.
    assert jql_quote('A\\" OR x = "') == '"A\\\\\\" OR x = \\""'


@pytest.mark.parametrize(
    ("jql", "stripped"),
    [
        ("project = A ORDER BY created DESC", "project = A"),
        ("project = A order  by rank", "project = A"),
        ('summary ~ "order by x" ORDER BY key', 'summary ~ "order by x"'),
        ("summary ~ 'it\\'s order by' order by key", "summary ~ 'it\\'s order by'"),
        ("ORDER BY created", ""),
        ("reorder by = 1", "reorder by = 1"),
        ("project = A", "project = A"),
    ],
)
def test_strip_order_by(jql: str, stripped: str) -> None:
    assert strip_order_by(jql) == stripped


@pytest.mark.parametrize("jql", ["order by key", "  ORDER BY created DESC ", "ORDER\nBY key"])
def test_a_jql_that_is_only_an_order_by_is_refused(jql: str) -> None:
    """Unbounded: Jira Cloud's search/jql refuses it (its OpenAPI: "requires a bounded query")."""
    with pytest.raises(ValidationError, match="no search restriction"):
        JiraConfig(**BASE, jql=jql)


def test_scope_and_search_jql() -> None:
    projects = JiraConfig(**BASE, projects=["A", 'B"'])
    assert scope_jql(projects) == 'project in ("A", "B\\"")'
    admin = JiraConfig(**BASE, jql="project = A OR project = B order by key")
    assert scope_jql(admin) == "(project = A OR project = B)"
    assert search_jql("(x = 1)", "2025-05-01 10:00") == (
        '(x = 1) AND updated >= "2025-05-01 10:00" ORDER BY updated ASC, key ASC'
    )
    assert search_jql("", "2025-05-01 10:00", order="key ASC") == (
        'updated >= "2025-05-01 10:00" ORDER BY key ASC'
    )


# -- the time literal --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("zone", "at", "literal"),
    [
        ("UTC", datetime(2025, 5, 1, 8, 7, 59, 999000, tzinfo=UTC), "2025-05-01 08:07"),
        ("Australia/Sydney", datetime(2025, 5, 1, 8, 7, 30, tzinfo=UTC), "2025-05-01 18:07"),
        ("Australia/Sydney", datetime(2025, 12, 31, 13, 30, tzinfo=UTC), "2026-01-01 00:30"),
        ("America/Los_Angeles", datetime(2025, 5, 1, 3, 0, 1, tzinfo=UTC), "2025-04-30 20:00"),
        ("Asia/Kolkata", datetime(2025, 5, 1, 8, 7, 30, tzinfo=UTC), "2025-05-01 13:37"),
    ],
)
def test_time_literal_is_local_and_floored(zone: str, at: datetime, literal: str) -> None:
    assert jql_time_literal(at, ZoneInfo(zone)) == literal


def _instants(literal: str, tz: ZoneInfo) -> list[datetime]:
    naive = datetime.strptime(literal, "%Y-%m-%d %H:%M")
    return [naive.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1)]


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Europe/Berlin", "Australia/Sydney"])
def test_time_literal_never_names_a_later_instant_across_dst(zone: str) -> None:
    tz = ZoneInfo(zone)
    start = datetime(2025, 3, 25, tzinfo=UTC)
    checked = 0
    for year_part in (start, datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC)):
        at = year_part
        for _ in range(24 * 4 * 8):  # every 15 minutes for 8 days around the changes
            literal = jql_time_literal(at, tz)
            instants = _instants(literal, tz)
            assert max(instants) <= at, (zone, at, literal)
            assert at - min(instants) <= timedelta(hours=2, minutes=1), (zone, at, literal)
            at += timedelta(minutes=15, seconds=7)
            checked += 1
    assert checked > 2000


def test_time_literal_in_the_repeated_autumn_hour_steps_back() -> None:
    tz = ZoneInfo("America/Los_Angeles")
    first_0130 = datetime(2025, 11, 2, 8, 30, tzinfo=UTC)  # 01:30 PDT; 01:30 PST comes later
    literal = jql_time_literal(first_0130, tz)
    assert max(_instants(literal, tz)) <= first_0130
    assert literal == "2025-11-02 00:30"


def test_unknown_zone_reads_safely_anywhere() -> None:
    at = datetime(2025, 5, 1, 8, 7, 30, tzinfo=UTC)
    literal = jql_time_literal(at, None)
    for zone in ("Etc/GMT+12", "Pacific/Kiritimati", "UTC", "Asia/Kolkata"):
        assert max(_instants(literal, ZoneInfo(zone))) <= at


# -- mapping -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "category", "resolution", "flagged", "expected"),
    [
        ("To Do", "new", None, False, Status.QUEUED),
        ("Backlog", "undefined", None, False, Status.QUEUED),
        ("Open", None, None, False, Status.QUEUED),
        ("In Progress", "indeterminate", None, False, Status.IN_PROGRESS),
        ("In Review", "indeterminate", None, False, Status.PR_READY),
        ("Code Review", "indeterminate", None, False, Status.PR_READY),
        ("PR Open", "indeterminate", None, False, Status.PR_READY),
        ("Preparing", "indeterminate", None, False, Status.IN_PROGRESS),
        ("Blocked", "indeterminate", None, False, Status.BLOCKED),
        ("On Hold", "new", None, False, Status.BLOCKED),
        ("Impeded", "indeterminate", None, False, Status.BLOCKED),
        ("In Progress", "indeterminate", None, True, Status.BLOCKED),
        ("Done", "done", "Done", False, Status.COMPLETED),
        ("Done", "done", None, False, Status.COMPLETED),
        ("Done", "done", "Done", True, Status.COMPLETED),
        ("Done", "done", "Won't Do", False, Status.CANCELLED),
        ("Done", "done", "Won\u2019t Fix", False, Status.CANCELLED),
        ("Closed", "done", "Duplicate", False, Status.CANCELLED),
        ("Done", "done", "declined", False, Status.CANCELLED),
        ("Resolved", "done", "Cannot Reproduce", False, Status.CANCELLED),
        ("Canceled", "done", "Done", False, Status.CANCELLED),
    ],
)
def test_status_mapping(
    name: str, category: str | None, resolution: str | None, flagged: bool, expected: Status
) -> None:
    assert jira_status(name, category, resolution, flagged=flagged) is expected


def test_status_map_override_wins_by_name() -> None:
    overrides = {"qa": Status.PR_READY}
    assert jira_status("QA", "indeterminate", None, overrides=overrides) is Status.PR_READY
    assert jira_status("Dev", "indeterminate", None, overrides=overrides) is Status.IN_PROGRESS


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ({"name": "Highest", "id": "1"}, 4),
        ({"name": "Blocker", "id": "10000"}, 4),
        ({"name": "High", "id": "2"}, 3),
        ({"name": "Critical", "id": "10001"}, 3),
        ({"name": "Medium", "id": "3"}, 2),
        ({"name": "Low", "id": "4"}, 1),
        ({"name": "Lowest", "id": "5"}, 1),
        ({"name": "Minor", "id": "10002"}, 1),
        ({"name": "Trivial", "id": "10003"}, 1),
        ({"name": "Renamed top", "id": "1"}, 4),
        ({"name": "Mystery", "id": "10009"}, 0),
        (None, 0),
    ],
)
def test_priority(priority: Any, expected: int) -> None:
    assert jira_priority(priority) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2.5, 3), (0.5, 1), (0.4, 0), (8.0, 8), (13, 13), ("5", 5), (None, None), (True, None)],
)
def test_story_points_round_half_up(value: object, expected: int | None) -> None:
    assert story_points(value) == expected


def test_adf_to_text_covers_the_common_nodes() -> None:
    doc = {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "heading", "attrs": {"level": 1}, "content": [{"type": "text", "text": "T"}]},
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "see "},
                    {"type": "inlineCard", "attrs": {"url": "https://x.test/1"}},
                    {"type": "text", "text": " "},
                    {"type": "emoji", "attrs": {"shortName": ":tada:", "text": "🎉"}},
                ],
            },
            {
                "type": "orderedList",
                "attrs": {"order": 3},
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": "a"}]},
                            {
                                "type": "bulletList",
                                "content": [
                                    {
                                        "type": "listItem",
                                        "content": [
                                            {
                                                "type": "paragraph",
                                                "content": [{"type": "text", "text": "a.1"}],
                                            }
                                        ],
                                    }
                                ],
                            },
                        ],
                    }
                ],
            },
            {"type": "codeBlock", "content": [{"type": "text", "text": "x = 1\ny = 2"}]},
            {"type": "rule"},
            {
                "type": "blockquote",
                "content": [{"type": "paragraph", "content": [{"type": "text", "text": "q"}]}],
            },
            {
                "type": "taskList",
                "content": [
                    {"type": "taskItem", "attrs": {"state": "DONE"}, "content": [_t("done")]},
                    {"type": "taskItem", "attrs": {"state": "TODO"}, "content": [_t("todo")]},
                ],
            },
            {
                "type": "table",
                "content": [
                    {
                        "type": "tableRow",
                        "content": [
                            {"type": "tableHeader", "content": [_p("k")]},
                            {"type": "tableHeader", "content": [_p("v")]},
                        ],
                    }
                ],
            },
            {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "m"}}]},
        ],
    }
    assert adf_to_text(doc) == (
        "T\n\nsee https://x.test/1 🎉\n\n3. a\n   - a.1\n\nx = 1\ny = 2\n\n---\n\n> q\n\n"
        "[x] done\n[ ] todo\n\nk | v"
    )


def _t(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _p(text: str) -> dict[str, Any]:
    return {"type": "paragraph", "content": [_t(text)]}


def test_rich_text_keeps_v2_strings_and_flattens_adf() -> None:
    assert rich_text("h1. wiki *markup*") == "h1. wiki *markup*"
    assert rich_text({"type": "doc", "version": 1, "content": [_p("x")]}) == "x"
    assert rich_text({"type": "doc", "version": 1, "content": []}) is None
    assert rich_text("") is None and rich_text(None) is None


def test_resolve_field_by_id_name_or_clause_name() -> None:
    fields = [
        {"id": "summary", "name": "Summary", "clauseNames": ["summary"]},
        {"id": "customfield_10016", "name": "Story point estimate", "clauseNames": ["cf[10016]"]},
        {"id": "customfield_10026", "name": "Story Points", "clauseNames": ["Story Points[Num]"]},
    ]
    assert resolve_field(fields, "customfield_10016") == "customfield_10016"
    assert resolve_field(fields, "story point ESTIMATE") == "customfield_10016"
    assert resolve_field(fields, "cf[10016]") == "customfield_10016"
    assert resolve_field(fields, "Story Points") == "customfield_10026"
    assert resolve_field(fields, "Nope") is None


def test_map_issue_v2_shape() -> None:
    raw = {
        "id": "10001",
        "key": "ABC-1",
        "fields": {
            "summary": "Fix login",
            "description": "plain text in v2",
            "updated": "2025-05-01T22:34:56.789+1000",
            "resolutiondate": "2025-05-01T22:30:00.000+1000",
            "priority": {"id": "3", "name": "Medium"},
            "resolution": {"name": "Done"},
            "customfield_10016": 5.0,
            "customfield_10035": "AC text",
            "status": {
                "name": "Done",
                "statusCategory": {"id": 3, "key": "done", "name": "Done"},
            },
        },
    }
    item = map_issue(
        raw,
        site="acme.atlassian.net",
        base_url="https://acme.atlassian.net",
        fields=FieldIds(story_points="customfield_10016", acceptance_criteria="customfield_10035"),
        overrides={},
    )
    assert item.external_id == "acme.atlassian.net/10001"
    assert item.external_key == "ABC-1"
    assert item.external_url == "https://acme.atlassian.net/browse/ABC-1"
    assert item.updated_at == datetime(2025, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)
    assert item.completed_at == datetime(2025, 5, 1, 12, 30, tzinfo=UTC)
    assert item.status is Status.COMPLETED and item.priority == 2 and item.story_points == 5
    assert item.description == "plain text in v2" and item.acceptance_criteria == "AC text"
    assert item.started_at is None and item.raw == raw  # a copy: e-mail addresses scrubbed


def test_parse_jira_time() -> None:
    assert parse_jira_time("2025-05-01T12:34:56.789+0000") == datetime(
        2025, 5, 1, 12, 34, 56, 789000, tzinfo=UTC
    )
    assert parse_jira_time(None) is None


# -- errors ------------------------------------------------------------------------------------
def _jira_error(status: int, headers: dict[str, str] | None = None, text: str = "x") -> JIRAError:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return JIRAError(text, status_code=status, response=response)


def test_convert_error_classes() -> None:
    assert isinstance(convert_error(_jira_error(401), "x"), FatalError)
    bad_jql = convert_error(_jira_error(400, text="Field 'x' does not exist"), "searching")
    assert isinstance(bad_jql, FatalError) and "Field 'x' does not exist" in str(bad_jql)
    assert not isinstance(bad_jql, ProjectNotFound)
    said = (
        "The value 'NOPE' does not exist for the field 'project'. "
        "The value 'it's' does not exist for the field 'project'."
    )
    gone = convert_error(_jira_error(400, text=said), "searching")
    assert isinstance(gone, ProjectNotFound) and gone.projects == ["NOPE", "it's"]
    assert "'NOPE'" in gone.reason and "does not exist" in str(gone)
    status = convert_error(
        _jira_error(400, text="The value 'X' does not exist for the field 'status'."), "s"
    )
    assert not isinstance(status, ProjectNotFound)
    limited = convert_error(_jira_error(429, {"Retry-After": "7"}), "x")
    assert isinstance(limited, RetriableError) and limited.retry_after == 7
    busy = convert_error(_jira_error(503, {"Retry-After": "2"}), "x")
    assert isinstance(busy, RetriableError) and busy.retry_after == 2
    assert isinstance(convert_error(_jira_error(502), "x"), RetriableError)
    assert isinstance(convert_error(_jira_error(404), "x"), FatalError)
    assert isinstance(convert_error(requests.exceptions.ReadTimeout(), "x"), RetriableError)
    assert isinstance(convert_error(requests.exceptions.ConnectionError(), "x"), RetriableError)
    assert convert_error(KeyError("x"), "x") is None


@pytest.mark.parametrize("auth", ["cloud", "pat", "basic"])
def test_a_401_says_what_to_check_for_each_way_of_signing_in(auth: Any) -> None:
    rejected = convert_error(_jira_error(401), "x", auth)
    assert isinstance(rejected, CredentialsRejected)
    assert str(rejected) == f"Jira rejected the credentials (401): {CREDENTIAL_HINTS[auth]}"


def test_a_page_instead_of_json_is_fatal_only_while_connecting() -> None:
    html = json.JSONDecodeError("Expecting value", "<!DOCTYPE html><html>", 0)
    first = convert_error(html, CONNECTING)
    assert isinstance(first, FatalError) and "an HTML page" in str(first)
    empty = convert_error(json.JSONDecodeError("Expecting value", "null;", 0), CONNECTING)
    assert isinstance(empty, FatalError) and "not JSON" in str(empty)
    assert isinstance(convert_error(html, "searching issues"), RetriableError)


def test_an_untrusted_certificate_is_fatal_and_names_ca_bundle() -> None:
    untrusted = requests.exceptions.SSLError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer"
    )
    error = convert_error(untrusted, CONNECTING)
    assert isinstance(error, FatalError) and "set ca_bundle" in str(error)
    other = convert_error(requests.exceptions.SSLError("EOF occurred in violation"), "x")
    assert isinstance(other, RetriableError)  # a dropped TLS connection is the network's


def test_retry_after_forms() -> None:
    now = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "3"}, now) == 3
    assert retry_after_seconds({"Retry-After": "Thu, 01 May 2025 12:00:05 GMT"}, now) == 5
    assert retry_after_seconds({"X-RateLimit-Reset": "2025-05-01T12:00:09Z"}, now) == 9
    assert retry_after_seconds({}, now) is None

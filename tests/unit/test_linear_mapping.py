"""Pure parts of the Linear connector: mapping an issue node, classifying answers, reset waits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import ConnectorError, FatalError, RetriableError, Status
from connectors.linear import (
    Budget,
    budget_wait,
    classify_response,
    format_time,
    map_issue,
    map_issue_status,
    map_nodes,
    map_priority,
    map_story_points,
    parse_time,
    rate_limit_wait,
    read_budgets,
)

NOW = 1_750_000_000.0  # epoch seconds used as "now"


def node(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "2f6c0b1e-8d3a-4c55-9f0e-1a2b3c4d5e6f",
        "identifier": "ENG-123",
        "title": "Add SSO",
        "description": "markdown *kept*",
        "priority": 2,
        "estimate": 3,
        "url": "https://linear.app/acme/issue/ENG-123/add-sso",
        "createdAt": "2025-04-28T08:00:00.000Z",
        "updatedAt": "2025-05-01T12:34:56.789Z",
        "startedAt": "2025-04-29T10:00:00.000Z",
        "completedAt": None,
        "canceledAt": None,
        "archivedAt": None,
        "trashed": None,
        "state": {"id": "s1", "name": "In Review", "type": "started"},
        "team": {"id": "t1", "key": "ENG", "name": "Engineering"},
        "labels": {"nodes": [{"name": "Feature"}]},
    }
    base.update(over)
    return base


def test_map_issue_from_the_notes_example() -> None:
    item = map_issue(node(), scope="ENG", overrides={})
    assert item.external_id == "2f6c0b1e-8d3a-4c55-9f0e-1a2b3c4d5e6f"
    assert item.external_key == "ENG-123"
    assert item.external_url == "https://linear.app/acme/issue/ENG-123/add-sso"
    assert item.status is Status.PR_READY
    assert item.priority == 3 and item.story_points == 3
    assert item.updated_at == datetime(2025, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)
    assert item.started_at == datetime(2025, 4, 29, 10, tzinfo=UTC)
    assert item.completed_at is None and item.removed is False
    assert item.description == "markdown *kept*" and item.scope == "ENG"
    assert item.raw == node()


@pytest.mark.parametrize(
    ("linear", "ours"), [(0, 0), (1, 4), (2, 3), (3, 2), (4, 1), (None, 0), (7, 0), (2.0, 3)]
)
def test_priority_scale(linear: Any, ours: int) -> None:
    assert map_priority(linear) == ours


@pytest.mark.parametrize(
    ("estimate", "points"),
    [
        (0.5, 1),  # half up, as the Jira and Azure DevOps connectors round (not half to even)
        (1.5, 2),
        (2.5, 3),
        (2.4, 2),
        (2.6, 3),
        (3, 3),
        (0, 0),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        ("3", None),  # Linear's estimate is a Float: text is not one
    ],
)
def test_story_points_round_half_up_like_the_other_connectors(estimate: Any, points: Any) -> None:
    assert map_story_points(estimate) == points
    assert map_issue(node(estimate=estimate), scope="ENG", overrides={}).story_points == points


def test_completed_at_falls_back_to_canceled_at_and_trash_is_removed() -> None:
    item = map_issue(
        node(
            canceledAt="2025-05-02T00:00:00.000Z",
            trashed=True,
            archivedAt="2025-05-03T00:00:00.000Z",
            state={"name": "Canceled", "type": "canceled"},
            estimate=None,
        ),
        scope="ENG",
        overrides={},
    )
    assert item.completed_at == datetime(2025, 5, 2, tzinfo=UTC)
    assert item.removed is True and item.status is Status.CANCELLED
    assert item.story_points is None
    archived = map_issue(node(archivedAt="2025-05-03T00:00:00.000Z"), scope="", overrides={})
    assert archived.removed is False


@pytest.mark.parametrize(
    ("state", "labels", "expected"),
    [
        ({"name": "Triage", "type": "triage"}, [], Status.QUEUED),
        ({"name": "Backlog", "type": "backlog"}, [], Status.QUEUED),
        ({"name": "Todo", "type": "unstarted"}, [], Status.QUEUED),
        ({"name": "In Progress", "type": "started"}, [], Status.IN_PROGRESS),
        ({"name": "Code Review", "type": "started"}, [], Status.PR_READY),
        ({"name": "PR open", "type": "started"}, [], Status.PR_READY),
        ({"name": "Preview build", "type": "started"}, [], Status.IN_PROGRESS),
        ({"name": "Done", "type": "completed"}, [], Status.COMPLETED),
        ({"name": "Canceled", "type": "canceled"}, [], Status.CANCELLED),
        ({"name": "Duplicate", "type": "duplicate"}, [], Status.CANCELLED),
        ({"name": "Todo", "type": "unstarted"}, [" Blocked "], Status.BLOCKED),
        ({"name": "Done", "type": "completed"}, ["Blocked"], Status.COMPLETED),
        ({"name": "Weird", "type": "mystery"}, [], Status.QUEUED),
        (None, [], Status.QUEUED),
    ],
)
def test_status_by_state_type(state: Any, labels: list[str], expected: Status) -> None:
    assert map_issue_status(state, labels, {}) is expected


def test_status_map_override_is_by_state_name() -> None:
    overrides = {"in review": Status.IN_PROGRESS, "backlog": Status.CANCELLED}
    review = {"name": "In Review", "type": "started"}
    assert map_issue_status(review, [], overrides) is Status.IN_PROGRESS
    assert map_issue_status({"name": "Backlog", "type": "backlog"}, [], overrides) is (
        Status.CANCELLED
    )
    assert map_issue_status(review, ["Blocked"], overrides) is Status.BLOCKED


def test_times_round_trip_and_bad_times_are_connector_errors() -> None:
    at = parse_time("2025-05-01T12:34:56.789Z")
    assert at is not None and format_time(at) == "2025-05-01T12:34:56.789Z"
    assert parse_time(None) is None
    with pytest.raises(ConnectorError):
        parse_time("yesterday")
    with pytest.raises(ConnectorError):
        map_issue(node(updatedAt=None), scope="", overrides={})


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"description": {"type": "doc"}}, "description"),
        ({"title": ["A"]}, "title"),
        ({"identifier": 12}, "identifier"),
        ({"url": 1}, "url"),
        ({"updatedAt": "tomorrow"}, "updatedAt"),
        ({"updatedAt": 1746100000}, "updatedAt"),
        ({"startedAt": "soon"}, "startedAt"),
        ({"canceledAt": False, "completedAt": None}, "canceledAt"),
        ({"state": "Done"}, "state"),
        ({"state": {"name": 3, "type": "started"}}, "state.name"),
        ({"labels": ["Blocked"]}, "labels"),
        ({"labels": {"nodes": "Blocked"}}, "labels.nodes"),
    ],
)
def test_a_malformed_node_is_rejected_alone_naming_the_field(
    over: dict[str, Any], field: str
) -> None:
    bad = node(id="bad-id", **{"identifier": "ENG-9", **over})
    items, rejected = map_nodes([node(), bad, node(id="other")], scope="ENG", overrides={})
    assert [i.external_id for i in items] == [node()["id"], "other"]
    (r,) = rejected
    assert r.external_id == "bad-id" and r.reason.startswith(field + " ")
    assert r.external_key == ("ENG-9" if "identifier" not in over else None)


# ---------------------------------------------------------------------------------------------
# Classification of answers
# ---------------------------------------------------------------------------------------------
def err(code: str = "", type_: str = "", message: str = "boom", **ext: Any) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, "type": type_, **ext}}]}


def classify(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    return classify_response(status, body, headers or {}, what="test", now=NOW)


def test_good_answer_returns_data() -> None:
    assert classify(200, {"data": {"viewer": {"id": "u"}}}) == {"viewer": {"id": "u"}}


@pytest.mark.parametrize("status", [400, 429, 200])
def test_ratelimited_waits_until_the_epoch_ms_reset(status: int) -> None:
    headers = {
        "X-RateLimit-Requests-Remaining": "0",
        "X-RateLimit-Requests-Reset": str(int((NOW + 42) * 1000)),
        "X-RateLimit-Complexity-Remaining": "5000",
        "X-RateLimit-Complexity-Reset": str(int((NOW + 900) * 1000)),
    }
    with pytest.raises(RetriableError) as info:
        classify(status, err("RATELIMITED", message="Rate limit exceeded"), headers)
    assert info.value.retry_after == pytest.approx(42, abs=0.01)


def test_rate_limit_wait_rules() -> None:
    ms = str(int((NOW + 10) * 1000))
    assert rate_limit_wait({"X-RateLimit-Complexity-Reset": ms}, NOW) == pytest.approx(10, abs=0.01)
    seconds = str(int(NOW + 5))  # epoch seconds tolerated
    assert rate_limit_wait({"X-RateLimit-Requests-Reset": seconds}, NOW) == pytest.approx(5)
    assert rate_limit_wait({"X-RateLimit-Requests-Reset": str(int(NOW * 1000) - 5000)}, NOW) == 0
    far = str(int((NOW + 86_400) * 1000))
    assert rate_limit_wait({"X-RateLimit-Requests-Reset": far}, NOW) == 3600
    assert rate_limit_wait({"Retry-After": "7"}, NOW) == 7
    assert rate_limit_wait({}, NOW) is None
    with pytest.raises(RetriableError) as info:
        classify(400, err(type_="ratelimited"))
    assert info.value.retry_after is None  # no header: the retry policy's backoff


@pytest.mark.parametrize("status", [200, 400, 401])
def test_authentication_error_is_fatal_with_linears_words(status: int) -> None:
    body = err(
        "AUTHENTICATION_ERROR",
        "authentication error",
        "Authentication required, not authenticated",
        userPresentableMessage="You need to authenticate to access this operation.",
    )
    with pytest.raises(FatalError) as info:
        classify(status, body)
    assert str(info.value).startswith("Linear rejected the API key (You need to authenticate")


def test_forbidden_validation_and_transient_graphql_errors() -> None:
    with pytest.raises(FatalError, match="refused access"):
        classify(400, err("FORBIDDEN", "forbidden"))
    with pytest.raises(FatalError, match='rejected the test query: Cannot query field "x"'):
        classify(400, err("GRAPHQL_VALIDATION_FAILED", message='Cannot query field "x"'))
    with pytest.raises(FatalError, match="invalid team"):
        classify(200, {"data": None, **err(type_="invalid input", message="invalid team")})
    with pytest.raises(RetriableError):
        classify(200, err(type_="lock timeout"))
    with pytest.raises(RetriableError):
        classify(400, err("INTERNAL_SERVER_ERROR", "internal error"))


def test_a_query_too_complex_is_fatal_and_says_its_complexity() -> None:
    # Linear's answer to a query above 10,000 points (seen in public bug reports)
    body = err(
        "INPUT_ERROR",
        "invalid input",
        message="Query too complex",
        statusCode=400,
        userError=True,
        userPresentableMessage=(
            "The query is too complex. Complexity: 12304.999999999998. "
            "Maximum allowed complexity: 10000."
        ),
    )
    with pytest.raises(FatalError, match=r"Complexity: 12304\.9+8\. Maximum allowed complexity"):
        classify(400, body)


def test_http_failures() -> None:
    with pytest.raises(RetriableError) as info:
        classify(503, None, {"Retry-After": "3"})
    assert info.value.retry_after == 3
    with pytest.raises(RetriableError):
        classify(502, {"message": "bad gateway"})
    with pytest.raises(FatalError):
        classify(401, None)
    with pytest.raises(FatalError):
        classify(404, None)
    with pytest.raises(ConnectorError):
        classify(200, {"data": "nope"})
    with pytest.raises(ConnectorError):
        classify(200, ["not", "an", "object"])


def ms(seconds_from_now: float) -> str:
    return str(int((NOW + seconds_from_now) * 1000))


def test_rate_limited_by_an_endpoint_limit_waits_for_that_endpoint() -> None:
    # Linear's query- and mutation-specific limits: the global budgets are fine, the endpoint's
    # is spent. Waiting for the global reset (an hour off) would give up; the endpoint's is near.
    headers = {
        "X-RateLimit-Requests-Remaining": "4000",
        "X-RateLimit-Requests-Reset": ms(3000),
        "X-RateLimit-Complexity-Remaining": "200000",
        "X-RateLimit-Complexity-Reset": ms(3000),
        "X-RateLimit-Endpoint-Requests-Limit": "2",
        "X-RateLimit-Endpoint-Requests-Remaining": "0",
        "X-RateLimit-Endpoint-Requests-Reset": ms(20),
        "X-RateLimit-Endpoint-Name": "issues",
    }
    assert rate_limit_wait(headers, NOW) == pytest.approx(20, abs=0.01)


def test_rate_limited_by_complexity_waits_for_the_complexity_reset() -> None:
    # Linear refuses a query that costs more than the points left, even when some are left.
    headers = {
        "X-RateLimit-Requests-Remaining": "4000",
        "X-RateLimit-Requests-Reset": ms(3000),
        "X-RateLimit-Complexity-Remaining": "500",
        "X-RateLimit-Complexity-Reset": ms(30),
    }
    assert rate_limit_wait(headers, NOW, cost=2840) == pytest.approx(30, abs=0.01)
    assert rate_limit_wait(headers, NOW) == pytest.approx(3000, abs=0.01)  # cost unknown


def test_read_budgets_keeps_each_bucket_and_names_the_endpoint() -> None:
    headers = {
        "x-ratelimit-requests-limit": "5000",  # any case
        "x-ratelimit-requests-remaining": "12",
        "x-ratelimit-requests-reset": ms(60),
        "X-RateLimit-Complexity-Remaining": "900",
        "X-RateLimit-Complexity-Reset": ms(90),
        "X-RateLimit-Endpoint-Requests-Remaining": "1",
        "X-RateLimit-Endpoint-Requests-Reset": ms(5),
    }
    found = read_budgets(headers, roots=("issues",))
    assert found["requests"] == Budget(12, NOW + 60, 5000)
    assert found["complexity"] == Budget(900, NOW + 90, None)
    assert found["endpoint:issues"] == Budget(1, NOW + 5, None)  # no name: the query's roots
    named = read_budgets({**headers, "X-RateLimit-Endpoint-Name": "issue"}, roots=("issues",))
    assert set(named) == {"requests", "complexity", "endpoint:issue"}
    assert read_budgets({"X-RateLimit-Requests-Remaining": "3"}) == {}  # no reset: no bucket


def wait_for(budgets: dict[str, Budget], cost: float = 100, roots: tuple[str, ...] = ("issues",)):
    return budget_wait(budgets, cost=cost, roots=roots, now=NOW, pace_below=10)


def test_budget_wait_before_a_request() -> None:
    plenty = Budget(4000, NOW + 3000)
    assert wait_for({"requests": plenty, "complexity": Budget(250_000, NOW + 3000)}) is None
    # the query's cost does not fit the complexity left: wait for its reset
    spent = wait_for({"requests": plenty, "complexity": Budget(99, NOW + 30)})
    assert spent is not None and spent.spent and spent.seconds == pytest.approx(30)
    assert spent.reason == "linear complexity budget low"
    # five pages' worth left: spread them over the time to the reset (1/6 each)
    paced = wait_for({"complexity": Budget(500, NOW + 60)})
    assert paced is not None and not paced.spent and paced.seconds == pytest.approx(10)
    # requests: no request left
    assert wait_for({"requests": Budget(0, NOW + 42)}).seconds == pytest.approx(42)
    # an endpoint's own limit counts for queries to that endpoint only
    endpoint = {"endpoint:issues": Budget(0, NOW + 7)}
    assert wait_for(endpoint).seconds == pytest.approx(7)
    assert wait_for(endpoint).reason == "linear issues endpoint budget low"
    assert wait_for(endpoint, roots=("viewer", "teams")) is None
    # a reset already passed is a refilled bucket; several buckets: the longest wait
    assert wait_for({"requests": Budget(0, NOW - 1)}) is None
    both = wait_for({"requests": Budget(0, NOW + 5), "endpoint:issues": Budget(0, NOW + 8)})
    assert both.seconds == pytest.approx(8) and both.bucket == "endpoint:issues"
    assert wait_for({"requests": Budget(None, NOW + 5)}) is None  # remaining unknown

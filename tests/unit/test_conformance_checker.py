"""The conformance checker (tests/conformance/checker.py) on its own: paths with optional
segments, the API version, query parameters and body fields with their types; and the Azure
DevOps description it ships with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conformance import checker

DESCRIPTION: dict[str, Any] = {
    "tracker": "example",
    "case_insensitive_paths": True,
    "version": {"name": "api-version", "in": ["query", "accept"], "values": ["7.0"]},
    "endpoints": [
        {
            "operation": "search",
            "method": "POST",
            "path": "/{org}/{project}/{team}/_apis/search",
            "path_params": {"project": {"optional": True}, "team": {"optional": True}},
            "query": {
                "$top": {"type": "integer", "format": "int32"},
                "exact": {"type": "boolean"},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "since": {"type": "string", "format": "date-time"},
                "fields": {"type": "array", "items": {"type": "string", "enum": ["id", "key"]}},
            },
            "body": {
                "required": True,
                "schema": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "ids": {
                            "type": "array",
                            "maxItems": 3,
                            "items": {"type": "integer", "format": "int32"},
                        },
                        "policy": {"enum": ["fail", "omit"]},
                        "asOf": {"type": "string", "format": "date-time"},
                        "extra": {"type": "object", "additionalProperties": {"type": "number"}},
                    },
                    "required": ["text"],
                },
            },
        },
        {
            "operation": "states",
            "method": "GET",
            "path": "/{org}/{project}/_apis/types/{type}/states",
            "query": {"depth": {"type": "integer", "required": True}},
        },
        {"operation": "discovery", "method": "OPTIONS", "path": "/{org}/_apis", "version": None},
    ],
}


@dataclass
class Req:
    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(
        default_factory=lambda: {"accept": "application/json;api-version=7.0"}
    )
    body: bytes = b""


def post(path: str = "/o/p/_apis/search", body: Any = None, **query: str) -> Req:
    payload = {"text": "x"} if body is None else body
    return Req("POST", path, {k: [v] for k, v in query.items()}, body=json.dumps(payload).encode())


def problems(request: Req) -> list[str]:
    return [v.problem for v in checker.check_request(DESCRIPTION, request)]


def test_a_conforming_request_has_no_violation() -> None:
    body = {
        "text": "x",
        "ids": [1, 2, 3],
        "policy": "omit",
        "asOf": "2025-05-01T12:00:00.123Z",
        "extra": {"a": 1.5, "b": 2},
    }
    assert problems(post(body=body, **{"$top": "7", "exact": "True", "mode": "a"})) == []
    assert problems(Req("OPTIONS", "/o/_apis", headers={})) == []  # no version needed there
    states = Req("GET", "/o/My%20Project/_apis/TYPES/User%20Story/states", {"depth": ["2"]})
    assert problems(states) == []  # segments decoded, literals without case


def test_optional_path_segments_may_be_left_out() -> None:
    assert problems(post("/o/_apis/search")) == []
    assert problems(post("/o/p/t/_apis/search")) == []
    violations = checker.check_request(DESCRIPTION, post("/o/p/t/u/_apis/search"))
    assert [v.problem for v in violations] == ["no endpoint of the description has this path"]
    assert violations[0].operation is None


def test_method_and_path_must_be_described() -> None:
    assert problems(Req("GET", "/o/p/_apis/search")) == ["method GET not allowed here (['POST'])"]
    assert problems(Req("GET", "/o/p/_apis/other")) == [
        "no endpoint of the description has this path"
    ]
    assert problems(Req("GET", "/o//_apis/search")) == ["the path has an empty segment"]


def test_the_api_version_must_be_there_and_allowed() -> None:
    assert problems(Req("OPTIONS", "/o/_apis")) == []
    no_version = post()
    no_version.headers = {"accept": "application/json"}
    assert problems(no_version) == ["no api-version (in query or accept)"]
    in_query = post(**{"api-version": "7.0"})
    in_query.headers = {}
    assert problems(in_query) == []
    assert problems(post(**{"api-version": "7.1"})) == ["api-version '7.1' is not one of ['7.0']"]


def test_query_parameters_must_be_described_and_typed() -> None:
    assert problems(post(**{"$skip": "1"})) == ["query parameter '$skip' is not in the description"]
    assert problems(post(**{"$top": "x"})) == ["query parameter $top: 'x' is not an integer"]
    assert problems(post(**{"$top": str(2**31)})) == [
        "query parameter $top: 2147483648 is out of the int32 range"
    ]
    assert problems(post(exact="yes")) == ["query parameter exact: 'yes' is not a boolean"]
    assert problems(post(mode="c")) == ["query parameter mode: 'c' is not one of ['a', 'b']"]
    assert problems(post(since="2025-05-01T12:00:00Z")) == []
    assert problems(post(since="2025-05-01")) == [
        "query parameter since: '2025-05-01' is not a date-time"
    ]
    twice = post()
    twice.query = {"$top": ["1", "2"]}
    assert problems(twice) == ["query parameter '$top' sent 2 times"]
    repeated = post()  # an array parameter comes once per item (form style, explode)
    repeated.query = {"fields": ["id", "key"]}
    assert problems(repeated) == []
    repeated.query = {"fields": ["id", "nope"]}
    assert problems(repeated) == ["query parameter fields: 'nope' is not one of ['id', 'key']"]
    assert problems(Req("GET", "/o/p/_apis/types/Bug/states")) == [
        "required query parameter 'depth' missing"
    ]


def test_body_fields_must_be_described_and_typed() -> None:
    assert problems(post(body={"text": "x", "top": 3})) == [
        "body.top: a field the description does not have"
    ]
    assert problems(post(body={"ids": [1]})) == ["body: required field 'text' missing"]
    assert problems(post(body={"text": 3})) == ["body.text: int, not a string"]
    assert problems(post(body={"text": "x", "ids": [1, 2, 3, 4]})) == [
        "body.ids: 4 items, more than 3"
    ]
    assert problems(post(body={"text": "x", "ids": [1, "2", True]})) == [
        "body.ids[1]: str, not an integer",
        "body.ids[2]: bool, not an integer",
    ]
    assert problems(post(body={"text": "x", "policy": "Omit"})) == [
        "body.policy: 'Omit' is not one of ['fail', 'omit']"
    ]
    assert problems(post(body={"text": "x", "asOf": "yesterday"})) == [
        "body.asOf: 'yesterday' is not a date-time"
    ]
    assert problems(post(body={"text": "x", "extra": {"a": "1"}})) == [
        "body.extra.a: str, not a number"
    ]
    assert problems(post(body=["text"])) == ["body: list, not an object"]
    empty = post()
    empty.body = b""
    assert problems(empty) == ["no body, where the description requires one"]
    garbage = post()
    garbage.body = b"{nope"
    assert problems(garbage) == ["the body is not JSON"]
    with_body = Req("GET", "/o/p/_apis/types/Bug/states", {"depth": ["1"]}, body=b"{}")
    assert problems(with_body) == ["a body, where the description has none"]


def test_assert_conforms_lists_every_violation() -> None:
    checker.assert_conforms(DESCRIPTION, [post(), post("/o/_apis/search")])
    with pytest.raises(AssertionError) as failed:
        checker.assert_conforms(DESCRIPTION, [post(), post(x="1"), Req("PUT", "/o/_apis")])
    message = str(failed.value)
    assert message.startswith("2 violation(s) of the example API description in 3 request(s)")
    assert "POST /o/p/_apis/search?x=1 (search): query parameter 'x'" in message
    assert "PUT /o/_apis: method PUT not allowed here (['OPTIONS'])" in message


# -- the Azure DevOps description --------------------------------------------------------------
def test_azure_devops_description_names_its_source_and_the_connectors_endpoints() -> None:
    ado = checker.load("azure_devops")
    assert ado["source"]["file"] == "specification/wit/7.0/workItemTracking.json"
    assert ado["version"]["values"] == ["7.0"]
    operations = {e["operation"]: e for e in ado["endpoints"]}
    assert set(operations) >= {
        "Wiql_Query By Wiql",
        "Work Items_Get Work Items Batch",
        "Work Item Type States_List",
    }
    for endpoint in ado["endpoints"]:  # every one is either in the spec or says where it is from
        assert endpoint["operation"].count("_") == 1 or "x-added" in endpoint
    batch = operations["Work Items_Get Work Items Batch"]["body"]["schema"]
    assert set(batch["properties"]) == {"$expand", "asOf", "errorPolicy", "fields", "ids"}
    assert batch["properties"]["ids"]["maxItems"] == 200


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (  # what the SDK sends for query_by_wiql(..., time_precision=True, top=19000)
            Req(
                "POST",
                "/myorg/My%20Project/_apis/wit/wiql",
                {"timePrecision": ["true"], "$top": ["19000"]},
                body=b'{"query": "SELECT [System.Id] FROM WorkItems"}',
            ),
            [],
        ),
        (
            Req(
                "POST",
                "/myorg/My%20Project/_apis/wit/workItemsBatch",
                body=b'{"ids": [1, 2], "fields": ["System.Title"], "errorPolicy": "omit"}',
            ),
            [],
        ),
        (
            Req(
                "POST",
                "/myorg/My%20Project/_apis/wit/workItemsBatch",
                body=json.dumps({"ids": list(range(201)), "errorPolicy": "Omit"}).encode(),
            ),
            [
                "body.ids: 201 items, more than 200",
                "body.errorPolicy: 'Omit' is not one of ['fail', 'omit']",
            ],
        ),
        (
            Req("POST", "/myorg/My%20Project/_apis/wit/wiql", {"$skip": ["5"]}, body=b"{}"),
            ["query parameter '$skip' is not in the description"],
        ),
        (Req("GET", "/myorg/My%20Project/_apis/wit/workItems/5"), None),  # not used: no endpoint
    ],
    ids=["wiql", "batch", "batch-too-many", "wiql-skip", "unused-endpoint"],
)
def test_azure_devops_description_on_typical_requests(
    request_: Req, expected: list[str] | None
) -> None:
    found = [v.problem for v in checker.check_request(checker.load("azure_devops"), request_)]
    if expected is None:
        assert found == ["no endpoint of the description has this path"]
    else:
        assert found == expected


def test_answers_are_checked_against_the_response_schema() -> None:
    ado = checker.load("azure_devops")
    wiql = Req("POST", "/myorg/p/_apis/wit/wiql", body=b'{"query": "q"}')
    good = {
        "queryType": "flat",
        "queryResultType": "workItem",
        "asOf": "2025-05-01T12:00:00.617Z",
        "columns": [{"referenceName": "System.Id", "name": "ID", "url": "u"}],
        "sortColumns": [
            {"field": {"referenceName": "System.Id", "name": "ID", "url": "u"}, "descending": False}
        ],
        "workItems": [{"id": 1, "url": "u"}],
    }

    def answer(request: Req, body: Any, status: int = 200) -> list[str]:
        return [v.problem for v in checker.check_response(ado, request, status, body)]

    assert answer(wiql, good) == []
    assert answer(wiql, json.dumps(good).encode()) == []  # bytes are parsed
    assert answer(wiql, {**good, "continuationToken": "x"}) == [
        "answer.continuationToken: a field the description does not have"
    ]
    assert answer(wiql, {**good, "queryType": "list"}) == [
        "answer.queryType: 'list' is not one of ['flat', 'tree', 'oneHop']"
    ]
    assert answer(wiql, {**good, "sortColumns": [{"field": "System.Id"}]}) == [
        "answer.sortColumns[0].field: str, not an object"
    ]
    assert answer(wiql, {"message": "VS402337"}, status=400) == []  # errors are not described
    assert answer(wiql, b"{oops") == ["the answer is not JSON"]

    batch = Req("POST", "/myorg/p/_apis/wit/workItemsBatch", body=b'{"ids": [1, 2]}')
    item = {
        "id": 1,
        "rev": 2,
        "fields": {"System.AssignedTo": {"displayName": "x"}, "System.Title": "t", "n": 1.5},
        "url": "u",
        "_links": {"self": {"href": "u"}},
    }
    assert answer(batch, {"count": 2, "value": [item, None]}) == []  # null: omitted id
    assert answer(batch, [item]) == ["answer: list, not an object"]  # arrays come wrapped
    assert answer(batch, {"count": 1, "value": [{**item, "rev": "2"}]}) == [
        "answer.value[0].rev: str, not an integer"
    ]
    assert answer(batch, {"count": 1, "value": [{**item, "_links": {"self": "u"}}]}) == [
        "answer.value[0]._links.self: str, not an object"
    ]
    states = Req("GET", "/myorg/p/_apis/wit/workitemtypes/Bug/states")
    assert (
        answer(
            states,
            {"count": 1, "value": [{"name": "New", "color": "b2b2b2", "category": "Proposed"}]},
        )
        == []
    )
    assert answer(states, {"value": []}) == ["answer: required field 'count' missing"]
    assert answer(Req("OPTIONS", "/myorg/_apis"), {"anything": 1}) == []  # no response schema

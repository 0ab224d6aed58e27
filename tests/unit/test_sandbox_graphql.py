"""The Linear sandbox's GraphQL (connectors.sandbox.graphql) on its own: documents parsed,
validated and coerced against the served schema with graphql-js's rules and texts, execution
through resolvers, Linear's complexity scoring and maximum, filter evaluation, the order of
`issues` and `teams`, the errors Linear answers with, and the served schema checked against
Linear's published one (when LINEAR_SCHEMA names it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from graphql import (
    build_schema,
    parse,
)

from connectors.sandbox import graphql
from connectors.sandbox.graphql import GraphQLError

T0 = datetime(2025, 4, 1, tzinfo=UTC)


def issue(
    n: int,
    team: str = "ENG",
    *,
    created: datetime = T0,
    updated: datetime | None = None,
    state: tuple[str, str] = ("Todo", "unstarted"),
    archived: datetime | None = None,
    completed: datetime | None = None,
) -> dict[str, Any]:
    return {
        "__typename": "Issue",
        "id": f"id-{n:02d}",
        "identifier": f"{team}-{n}",
        "number": n,
        "title": f"Issue {n}",
        "createdAt": graphql.iso(created),
        "updatedAt": graphql.iso(updated or created),
        "startedAt": None,
        "completedAt": graphql.iso(completed) if completed else None,
        "canceledAt": None,
        "archivedAt": graphql.iso(archived) if archived else None,
        "team": {"__typename": "Team", "id": f"team-{team}", "key": team, "name": team.title()},
        "state": {
            "__typename": "WorkflowState",
            "id": f"s-{state[0]}",
            "name": state[0],
            "type": state[1],
        },
    }


NODES = [
    issue(1, created=T0, updated=T0 + timedelta(hours=5)),
    issue(
        2,
        created=T0 + timedelta(hours=1),
        updated=T0 + timedelta(hours=2),
        state=("In Progress", "started"),
    ),
    issue(
        3,
        "OPS",
        created=T0 + timedelta(hours=1),
        updated=T0 + timedelta(hours=9),
        state=("Done", "completed"),
        completed=T0 + timedelta(hours=9),
    ),
    issue(4, "OPS", created=T0 + timedelta(hours=3), archived=T0 + timedelta(days=1)),
]


def listed(args: dict[str, Any], nodes: list[dict[str, Any]] = NODES) -> list[int]:
    found, _ = graphql.select_issues(nodes, args)
    return [node["number"] for node in found]


# -- documents: parse, validate, coerce (graphql-core, graphql-js's rules and texts) ---------
SYNC = """
# the connector's page query, more or less, with an alias, a fragment and a directive
query Sync($team: String!, $after: String, $n: Int = 50, $ids: [ID!]!, $full: Boolean = true) {
  page: issues(first: $n, after: $after, orderBy: updatedAt, includeArchived: true,
               filter: {team: {key: {eq: $team}}, id: {in: $ids}, number: {in: [1, 2.5, -3e2]}}) {
    nodes { ...Row description @include(if: $full) }
    pageInfo { hasNextPage }
  }
}
fragment Row on Issue { id, t: title }
"""


def refusal(call: Any, *args: Any) -> GraphQLError:
    with pytest.raises(GraphQLError) as caught:
        call(*args)
    return caught.value


def test_prepare_reads_the_operation_its_variables_and_roots() -> None:
    prepared = graphql.prepare(SYNC, {"team": "ENG", "ids": []})
    assert prepared.name == "Sync"
    assert prepared.roots == ("issues",)
    assert prepared.variables == {"team": "ENG", "ids": []}
    # 50 (the $n default) x (Issue 1 + id, t, description 0.3 + pageInfo 1 + hasNextPage 0.1)
    assert prepared.complexity == pytest.approx(50 * 2.4)
    assert prepared.points == 120


def test_prepare_takes_the_anonymous_shorthand_and_names_the_operation() -> None:
    assert graphql.prepare("{ viewer { id } }").name is None
    assert graphql.operation_name("query Me { viewer { id } }") == "Me"
    assert graphql.operation_name("{ viewer { id } }") is None
    assert graphql.operation_name("{ nope") is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("mutation { x }", "The Linear sandbox only answers queries, not mutations."),
        ("subscription { x }", "The Linear sandbox only answers queries, not subscriptions."),
        ("fragment F on Issue { id }", 'Fragment "F" is never used.'),
        ("{ issues { ...F } }", 'Unknown fragment "F".'),
        ("{ a } { b }", "This anonymous operation must be the only defined operation."),
        ("{ viewer { id }", "Syntax Error: Expected Name, found <EOF>."),
        ("{ viewer { id } } %", 'Syntax Error: Unexpected character: "%".'),
        ("", "Syntax Error: Unexpected <EOF>."),
        (
            "query Q($a: Int = $b) { viewer { id } }",
            'Syntax Error: Unexpected variable "$b" in constant value.',
        ),
        ("{ x(a: ) }", 'Syntax Error: Unexpected ")".'),
    ],
)
def test_prepare_refuses_what_graphql_refuses(query: str, message: str) -> None:
    error = refusal(graphql.prepare, query)
    assert (error.message, error.code, error.status) == (message, "GRAPHQL_VALIDATION_FAILED", 400)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ bogus }", 'Cannot query field "bogus" on type "Query".'),
        ("{ viewer { bogus } }", 'Cannot query field "bogus" on type "User".'),
        (
            "{ viewer }",
            'Field "viewer" of type "User!" must have a selection of subfields.'
            ' Did you mean "viewer { ... }"?',
        ),
        (
            "{ viewer { id { x } } }",
            'Field "id" must not have a selection since type "ID!" has no subfields.',
        ),
        (
            "{ issues { nodes { state } } }",
            'Field "state" of type "WorkflowState!" must have a selection of subfields.'
            ' Did you mean "state { ... }"?',
        ),
        (
            "{ issues { edges { node { estimate bogus } } } }",
            'Cannot query field "bogus" on type "Issue".',
        ),
        # the refusals the old hand-written reader let through
        (
            "{ issues { nodes { labels(bogus: 1) { nodes { name } } } } }",
            'Unknown argument "bogus" on field "Issue.labels".',
        ),
        (
            "query($n: String) { issues(first: $n) { nodes { id } } }",
            'Variable "$n" of type "String" used in position expecting type "Int".',
        ),
        (
            "{ teams(filter: {key: {eq: 5}}) { nodes { id } } }",
            "String cannot represent a non string value: 5",
        ),
        (
            '{ issues(filter: {id: {eqIgnoreCase: "x"}}) { nodes { id } } }',
            'Field "eqIgnoreCase" is not defined by type "IssueIDComparator".',
        ),
        (
            "{ issues(first: 1.5) { nodes { id } } }",
            "Int cannot represent non-integer value: 1.5",
        ),
        (
            "{ issues(orderBy: title) { nodes { id } } }",
            'Value "title" does not exist in "PaginationOrderBy" enum.',
        ),
        (
            "{ issues(filter: {label: {}}) { nodes { id } } }",
            'Field "label" is not defined by type "IssueFilter".',
        ),
        (
            "{ issues(bogus: 1) { nodes { id } } }",
            'Unknown argument "bogus" on field "Query.issues".',
        ),
        (
            "{ issue { id } }",
            'Field "issue" argument "id" of type "String!" is required, but it was not provided.',
        ),
    ],
)
def test_prepare_refuses_documents_outside_the_schema_with_graphql_js_texts(
    query: str, message: str
) -> None:
    error = refusal(graphql.prepare, query)
    assert error.message == message
    body = error.body()["errors"][0]
    assert body["extensions"] == {
        "code": "GRAPHQL_VALIDATION_FAILED",
        "type": "graphql error",
        "userError": True,
    }  # Linear's validation errors carry no userPresentableMessage
    assert body["locations"] and error.status == 400


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            '{ issues(filter: {labels: {name: {eq: "Bug"}}}) { nodes { id } } }',
            'The Linear sandbox does not serve "IssueFilter.labels" (Linear\'s schema has it).',
        ),
        (
            "{ issues(sort: []) { nodes { id } } }",
            'The Linear sandbox does not serve the argument "sort" of "Query.issues"'
            " (Linear's schema has it).",
        ),
        (
            "{ teams(filter: {private: {eq: true}}) { nodes { id } } }",
            'The Linear sandbox does not serve "TeamFilter.private" (Linear\'s schema has it).',
        ),
    ],
)
def test_what_linear_has_and_the_sandbox_does_not_serve_is_refused_by_name(
    query: str, message: str
) -> None:
    assert refusal(graphql.prepare, query).message == message


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({}, 'Variable "$f" of required type "IssueFilter!" was not provided.'),
        ({"f": None}, 'Variable "$f" of non-null type "IssueFilter!" must not be null.'),
        (
            {"f": {"id": {"eqIgnoreCase": "x"}}},
            'Variable "$f" got invalid value {"eqIgnoreCase": "x"} at "f.id"; Field "eqIgnoreCase"'
            ' is not defined by type "IssueIDComparator".',
        ),
        (
            {"f": {"team": {"key": {"in": [1]}}}},
            'Variable "$f" got invalid value 1 at "f.team.key.in[0]"; String cannot represent a'
            " non string value: 1",
        ),
        (
            {"f": {}, "n": "5"},
            'Variable "$n" got invalid value "5"; Int cannot represent non-integer value: "5"',
        ),
    ],
)
def test_variables_are_coerced_to_their_declared_types(
    variables: dict[str, Any], message: str
) -> None:
    query = "query($f: IssueFilter!, $n: Int) { issues(filter: $f, first: $n) { nodes { id } } }"
    error = refusal(graphql.prepare, query, variables)
    assert error.message == message
    assert (error.code, error.type, error.status) == ("BAD_USER_INPUT", "invalid input", 400)


def test_execute_answers_root_fields_through_the_resolvers_and_projects_the_selection() -> None:
    prepared = graphql.prepare(
        "query($k: String) { me: viewer { __typename name } "
        "teams(filter: {key: {eq: $k}}) { nodes { key } } }",
        {"k": "ENG"},
    )
    calls: list[tuple[str, dict[str, Any]]] = []

    def viewer(parent: Any, args: dict[str, Any]) -> Any:
        calls.append(("viewer", args))
        return {"id": "u1", "name": "Ann", "email": "a@x"}

    def teams(parent: Any, args: dict[str, Any]) -> Any:
        calls.append(("teams", args))
        return {"nodes": [{"id": "t1", "key": "ENG", "name": "Engineering"}]}

    data = graphql.execute(prepared, {"Query.viewer": viewer, "Query.teams": teams})
    assert data == {
        "me": {"__typename": "User", "name": "Ann"},
        "teams": {"nodes": [{"key": "ENG"}]},
    }
    assert calls == [("viewer", {}), ("teams", {"filter": {"key": {"eq": "ENG"}}})]


def test_execute_passes_a_resolvers_refusal_and_fails_loudly_on_its_own_faults() -> None:
    prepared = graphql.prepare("{ issues { nodes { id } } }")

    def refuses(parent: Any, args: dict[str, Any]) -> Any:
        raise GraphQLError("Invalid cursor", code="INVALID_INPUT", type_="invalid input")

    error = refusal(graphql.execute, prepared, {"Query.issues": refuses})
    assert (error.message, error.code) == ("Invalid cursor", "INVALID_INPUT")
    broken = {"Query.issues": lambda parent, args: {"nodes": [{"id": None}]}}
    error = refusal(graphql.execute, prepared, broken)
    assert error.status == 500 and "non-nullable" in error.message


# -- complexity, as Linear documents it --------------------------------------------------------
LINEAR_DOC_SCHEMA = build_schema(
    """
    type Query { user(id: String!): User }
    type User { name: String  createdIssues(first: Int, last: Int): IssueConnection! }
    type IssueConnection { nodes: [Issue!]!  pageInfo: PageInfo! }
    type Issue { id: ID!  title: String  createdAt: String }
    type PageInfo { hasNextPage: Boolean! }
    """
)


def doc_score(query: str) -> float:
    return graphql.complexity(parse(query), schema=LINEAR_DOC_SCHEMA)


def test_complexity_reproduces_the_worked_examples_on_linears_rate_limiting_page() -> None:
    # "1 + 0.1 = 1.1, which equals a complexity of 2 when rounded up"
    assert doc_score('query WhoAmI { user(id: "me") { name } }') == pytest.approx(1.1)
    # user 1 + createdIssues 50 (the default) + id, title, createdAt 15 = 66
    issues = '{ user(id: "me") { createdIssues%s { nodes { id title createdAt } } } }'
    assert doc_score(issues % "") == pytest.approx(66)
    # "with an explicit limit of the first 10 nodes then has a complexity of 14"
    assert doc_score(issues % "(first: 10)") == pytest.approx(14)
    assert doc_score(issues % "(last: 10)") == pytest.approx(14)
    assert doc_score(issues % "(first: 10, last: 20)") == pytest.approx(27)  # the larger


def test_complexity_multiplies_nested_connections_and_counts_fragments() -> None:
    nested = "{ issues(first: 10) { nodes { id labels(first: 3) { nodes { name } } } } }"
    # 10 x (Issue 1 + id 0.1 + 3 x (IssueLabel 1 + name 0.1))
    assert graphql.complexity(parse(nested)) == pytest.approx(10 * (1.1 + 3 * 1.1))
    unbounded = "{ issues(first: 10) { nodes { labels { nodes { name } } } } }"
    assert graphql.complexity(parse(unbounded)) == pytest.approx(10 * (1 + 50 * 1.1))
    paged = "{ issues(first: 2) { nodes { id } pageInfo { hasNextPage endCursor } } }"
    assert graphql.complexity(parse(paged)) == pytest.approx(2 * (1.1 + 1.2))  # pageInfo too
    by_variable = parse("query($n: Int) { issues(last: $n) { nodes { id } } }")
    assert graphql.complexity(by_variable, variables={"n": 4}) == pytest.approx(4.4)
    assert graphql.complexity(by_variable, variables={"n": None}) == pytest.approx(55)
    spread = parse(
        "{ issues(first: 2) { nodes { ...F ... on Issue { title } } } } fragment F on Issue { id }"
    )
    assert graphql.complexity(spread) == pytest.approx(2 * 1.2)
    assert graphql.complexity(parse("{ viewer { id } __typename }")) == pytest.approx(1.2)


def test_a_query_above_linears_maximum_is_refused_as_linear_refuses_it() -> None:
    query = "{ issues(first: 250) { nodes { labels { nodes { name } } } } }"  # 250 x 56 = 14,000
    error = refusal(graphql.prepare, query)
    assert (error.status, error.code, error.type) == (400, "INPUT_ERROR", "invalid input")
    body = error.body()["errors"][0]
    assert body["message"] == "Query too complex"
    assert body["extensions"]["userPresentableMessage"] == (
        "The query is too complex. Complexity: 14000. Maximum allowed complexity: 10000."
    )
    assert body["extensions"]["statusCode"] == 400
    at_the_limit = "{ issues(first: 250) { nodes { id labels(first: 35) { nodes { name } } } } }"
    assert graphql.prepare(at_the_limit).complexity == pytest.approx(250 * (1.1 + 35 * 1.1))
    assert graphql.prepare(at_the_limit).points == 9900


# -- comparators and filters ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("actual", "cond", "comparator", "expected"),
    [
        (2, {"eq": 2}, "NumberComparator", True),
        (2, {"neq": 2}, "NumberComparator", False),
        (2, {"in": [1, 2]}, "NumberComparator", True),
        (2, {"nin": [1, 2]}, "NumberComparator", False),
        (2, {"gt": 1, "lt": 3}, "NumberComparator", True),
        (2, {"gte": 2, "lte": 1}, "NumberComparator", False),
        (None, {"gt": 1}, "NumberComparator", False),
        (None, {"null": True}, "NullableDateComparator", True),
        ("2025-04-01T00:00:00.000Z", {"null": True}, "NullableDateComparator", False),
        ("2025-04-01T00:00:00.000Z", {"null": False}, "NullableDateComparator", True),
        ("2025-04-01T00:00:00.000Z", {"lt": "2025-04-01T01:00:00+00:00"}, "DateComparator", True),
        ("Design", {"eqIgnoreCase": "design"}, "StringComparator", True),
        (None, {"eqIgnoreCase": "design"}, "StringComparator", False),
        ("Design", {"neqIgnoreCase": "DESIGN"}, "StringComparator", False),
        ("Design review", {"contains": "sign", "startsWith": "Des"}, "StringComparator", True),
        ("Design review", {"containsIgnoreCase": "REVIEW"}, "StringComparator", True),
        ("Révision", {"containsIgnoreCaseAndAccent": "revis"}, "StringComparator", True),
        ("Design", {"notContains": "x", "notEndsWith": "n"}, "StringComparator", False),
        ("Design", {"endsWith": "gn", "notStartsWith": "x"}, "StringComparator", True),
        (
            "Design",
            {"startsWithIgnoreCase": "des", "notContainsIgnoreCase": "X"},
            "StringComparator",
            True,
        ),
        ("id-1", {"in": ["id-1"], "neq": "id-2"}, "IDComparator", True),
    ],
)
def test_compare(actual: Any, cond: dict[str, Any], comparator: str, expected: bool) -> None:
    assert graphql.compare(actual, cond, comparator) is expected


def test_compare_checks_every_operator_without_a_short_cut() -> None:
    error = refusal(graphql.compare, 1, {"eq": 2, "like": 1}, "IDComparator")
    assert error.message == 'Field "like" is not defined by type "IDComparator".'
    # each comparator has its own operators: no case-insensitive match on an id, as in Linear
    error = refusal(graphql.compare, "id-1", {"eqIgnoreCase": "ID-1"}, "IDComparator")
    assert error.message == 'Field "eqIgnoreCase" is not defined by type "IDComparator".'
    error = refusal(graphql.compare, 2, {"null": True}, "NumberComparator")
    assert error.message == 'Field "null" is not defined by type "NumberComparator".'
    error = refusal(graphql.compare, 1, 3, "IDComparator")
    assert error.message == 'Expected type "IDComparator" to be an object.'


def test_issue_filters_on_team_state_and_number() -> None:
    assert listed({"filter": {"team": {"key": {"eq": "OPS"}}}}) == [3]
    assert listed({"filter": {"team": {"name": {"eqIgnoreCase": "eng"}}}}) == [2, 1]
    assert listed({"filter": {"state": {"type": {"in": ["started", "completed"]}}}}) == [3, 2]
    assert listed({"filter": {"number": {"in": [1, 3]}}}) == [3, 1]
    assert listed({"filter": {"id": {"eq": "id-02"}}}) == [2]


def test_issue_date_filters_normalise_the_operand() -> None:
    # 02:00+02:00 is midnight UTC: issue 1 was created then
    assert listed({"filter": {"createdAt": {"eq": "2025-04-01T02:00:00+02:00"}}}) == [1]
    assert listed({"filter": {"updatedAt": {"gt": "2025-04-01T04:00:00Z"}}}) == [3, 1]
    assert listed({"filter": {"completedAt": {"gte": "2025-04-01T09:00:00Z"}}}) == [3]
    assert listed({"filter": {"updatedAt": {"in": ["2025-04-01T02:00:00Z"]}}}) == [2]


def test_and_or_combine_filters() -> None:
    both = {"and": [{"team": {"key": {"eq": "ENG"}}}, {"number": {"gte": 2}}]}
    assert listed({"filter": both}) == [2]
    either = {"or": [{"number": {"eq": 1}}, {"team": {"key": {"eq": "OPS"}}}]}
    assert listed({"filter": either}) == [3, 1]
    assert listed({"filter": {"or": []}}) == [3, 2, 1]  # an empty `or` keeps everything


@pytest.mark.parametrize(
    ("flt", "message", "code"),
    [
        ({"bogus": {"eq": "x"}}, 'Field "bogus" is not defined by type "IssueFilter".', None),
        # Linear has IssueFilter.labels: the sandbox says it does not serve it (this case used to
        # be `title`, refused as unknown; Linear has `title` too, and the sandbox now serves it)
        (
            {"labels": {"name": {"eq": "x"}}},
            'The Linear sandbox does not serve "IssueFilter.labels" (Linear\'s schema has it).',
            None,
        ),
        (
            {"state": {"nope": {"eq": 1}}},
            'Field "nope" is not defined by type "WorkflowStateFilter".',
            None,
        ),
        (
            {"id": {"eqIgnoreCase": "ID-01"}},
            'Field "eqIgnoreCase" is not defined by type "IssueIDComparator".',
            None,
        ),
        (
            {"team": {"bogus": {"eq": 1}}},
            'Field "bogus" is not defined by type "TeamFilter".',
            None,
        ),
        (
            {"updatedAt": {"gt": "P1D"}},
            "The Linear sandbox does not accept ISO 8601 durations in filters.",
            None,
        ),
        (
            {"updatedAt": {"gt": "-P1D"}},
            "The Linear sandbox does not accept ISO 8601 durations in filters.",
            None,
        ),
        (
            {"updatedAt": {"gt": "yesterday"}},
            'Variable value "yesterday" is not a valid DateTimeOrDuration.',
            "BAD_USER_INPUT",
        ),
        # every branch is validated, even when another one already decided
        (
            {"or": [{"number": {"eq": 1}}, {"bogus": 1}]},
            'Field "bogus" is not defined by type "IssueFilter".',
            None,
        ),
        (3, 'Expected type "IssueFilter" to be an object.', None),
    ],
)
def test_issue_filter_refusals_even_with_nothing_stored(
    flt: Any, message: str, code: str | None
) -> None:
    for nodes in (NODES, []):
        error = refusal(graphql.select_issues, nodes, {"filter": flt})
        assert error.message == message
        assert error.code == (code or "GRAPHQL_VALIDATION_FAILED")


# -- the order of issues and teams ------------------------------------------------------------
def test_issues_are_newest_created_first_ties_by_id_and_archived_hidden() -> None:
    assert listed({}) == [3, 2, 1]  # 4 is archived; 2 and 3 share createdAt, the ids decide
    assert listed({"includeArchived": True}) == [4, 3, 2, 1]
    assert listed({"includeArchived": False, "orderBy": None}) == [3, 2, 1]


def test_issues_by_update_and_the_returned_sort_key() -> None:
    assert listed({"orderBy": "updatedAt"}) == [3, 1, 2]
    _, key = graphql.select_issues(NODES, {"orderBy": "updatedAt"})
    assert key(NODES[0]) == ("2025-04-01T05:00:00.000Z", "id-01")
    _, key = graphql.select_issues(NODES, {})
    assert key(NODES[0]) == ("2025-04-01T00:00:00.000Z", "id-01")


def test_issues_arguments_and_order_are_checked() -> None:
    error = refusal(graphql.select_issues, NODES, {"bogus": "x"})
    assert error.message == 'Unknown argument "bogus" on field "Query.issues".'
    # `sort` is Linear's ([INTERNAL]), so not "unknown" (as this test used to assert): not served
    error = refusal(graphql.select_issues, NODES, {"sort": "x"})
    assert error.message == (
        'The Linear sandbox does not serve the argument "sort" of "Query.issues"'
        " (Linear's schema has it)."
    )
    error = refusal(graphql.select_issues, NODES, {"orderBy": "title"})
    assert error.message == 'Value "title" does not exist in "PaginationOrderBy" enum.'


def test_teams_are_filtered_and_listed_by_id_descending() -> None:
    teams = [
        {"__typename": "Team", "id": "a", "key": "ENG", "name": "Engineering"},
        {"__typename": "Team", "id": "c", "key": "OPS", "name": "Platform Ops"},
        {"__typename": "Team", "id": "b", "key": "DES", "name": "Design"},
    ]
    found, key = graphql.select_teams(teams, {"first": 10})
    assert [t["key"] for t in found] == ["OPS", "DES", "ENG"]
    assert key(teams[0]) == "a"
    found, _ = graphql.select_teams(teams, {"filter": {"key": {"in": ["ENG", "DES"]}}})
    assert [t["key"] for t in found] == ["DES", "ENG"]
    assert refusal(graphql.select_teams, [], {"filter": {"bogus": {"eq": 1}}}).message == (
        'Field "bogus" is not defined by type "TeamFilter".'
    )
    assert refusal(graphql.select_teams, teams, {"sort": 1}).message == (
        'Unknown argument "sort" on field "Query.teams".'
    )


# -- scalars and errors -----------------------------------------------------------------------
def test_iso_is_utc_milliseconds_z() -> None:
    assert graphql.iso(datetime(2025, 4, 1, 12, 30, 5, 123456)) == "2025-04-01T12:30:05.123Z"
    plus_two = timezone(timedelta(hours=2))
    assert graphql.iso(datetime(2025, 4, 1, 2, 0, tzinfo=plus_two)) == "2025-04-01T00:00:00.000Z"


def test_error_body_is_linears_shape() -> None:
    error = GraphQLError("Nope", code="RATELIMITED", type_="ratelimited", status=429)
    assert error.status == 429
    assert error.body() == {
        "errors": [
            {
                "message": "Nope",
                "extensions": {
                    "code": "RATELIMITED",
                    "type": "ratelimited",
                    "userError": True,
                    "userPresentableMessage": "Nope",
                },
            }
        ],
        "data": None,
    }

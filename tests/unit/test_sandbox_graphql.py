"""The Linear sandbox's GraphQL interpreter (connectors.sandbox.graphql) on its own: the reader,
variables, schema checks, execution and projection, IssueFilter / TeamFilter evaluation, the order
of `issues` and `teams`, and the errors Linear answers with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from connectors.sandbox import graphql
from connectors.sandbox.graphql import EnumValue, GraphQLError, Selection, Var

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


def refusal(call: Any, *args: Any) -> GraphQLError:
    with pytest.raises(GraphQLError) as caught:
        call(*args)
    return caught.value


# -- the reader -------------------------------------------------------------------------------
SYNC = """
# the connector's page query, more or less
query Sync($team: String!, $after: String, $n: Int = 50, $ids: [ID!]!) {
  page: issues(first: $n, after: $after, orderBy: updatedAt, includeArchived: true, x: null,
               filter: {team: {key: {eq: $team}}, number: {in: [1, 2.5, -3e2]}, title: "a\\"b\\u00e9"}) {
    nodes { id, title }
    pageInfo { hasNextPage }
  }
}
"""


def test_parse_reads_the_header_variables_aliases_and_arguments() -> None:
    op = graphql.parse(SYNC)
    assert op.name == "Sync"
    assert op.variables == {
        "team": ("String!", None),
        "after": ("String", None),
        "n": ("Int", 50),
        "ids": ("[ID!]!", None),
    }
    (sel,) = op.fields
    assert (sel.name, sel.alias, sel.key) == ("issues", "page", "page")
    assert sel.args == {
        "first": Var("n"),
        "after": Var("after"),
        "orderBy": EnumValue("updatedAt"),
        "includeArchived": True,
        "x": None,
        "filter": {
            "team": {"key": {"eq": Var("team")}},
            "number": {"in": [1, 2.5, -300.0]},
            "title": 'a"bé',
        },
    }
    assert [f.name for f in sel.fields or []] == ["nodes", "pageInfo"]
    nodes = (sel.fields or [])[0]
    assert nodes.fields == [Selection("id"), Selection("title")]
    assert isinstance(sel.args["filter"]["number"]["in"][0], int)


def test_parse_takes_the_anonymous_shorthand() -> None:
    op = graphql.parse("{ viewer { id } }")
    assert op.name is None and op.variables == {}
    assert op.fields == [Selection("viewer", fields=[Selection("id")])]
    assert graphql.parse("query { viewer { id } }").fields == op.fields


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("mutation { x }", "The Linear sandbox only answers queries, not mutations."),
        ("subscription { x }", "The Linear sandbox only answers queries, not subscriptions."),
        ("fragment F on Issue { id }", "The Linear sandbox only answers queries, not fragments."),
        ("{ issues { ...F } }", "The Linear sandbox does not support fragments."),
        ("{ viewer @include(if: true) { id } }", "The Linear sandbox does not support directives."),
        ("{ a } { b }", "This anonymous operation must be the only defined operation."),
        ("{ viewer { id }", "Syntax Error: Expected name, found '<EOF>'."),
        ("{ viewer { id } } %", "Syntax Error: Unexpected character '%'."),
        ("", "Syntax Error: Expected {, found '<EOF>'."),
        ("query Q($a: Int = $b) { x }", "Syntax Error: Unexpected '$'."),  # defaults are constant
        ("{ x(a: ) }", "Syntax Error: Unexpected ')'."),
    ],
)
def test_parse_refusals(query: str, message: str) -> None:
    error = refusal(graphql.parse, query)
    assert (error.message, error.code, error.status) == (message, "GRAPHQL_VALIDATION_FAILED", 400)


# -- variables --------------------------------------------------------------------------------
def test_required_variables_must_be_given_unless_defaulted() -> None:
    op = graphql.parse(SYNC)
    graphql.check_variables(op, {"team": "ENG", "ids": []})
    error = refusal(graphql.check_variables, op, {"team": "ENG"})
    assert error.message == 'Variable "$ids" of required type "[ID!]!" was not provided.'
    assert (error.code, error.type) == ("BAD_USER_INPUT", "invalid input")
    refusal(graphql.check_variables, op, {"team": None, "ids": []})  # null is not a value
    defaulted = graphql.parse("query($n: Int! = 5) { x }")
    graphql.check_variables(defaulted, {})


def test_resolve_substitutes_variables_defaults_and_enums() -> None:
    declared = graphql.parse(SYNC).variables
    value = {"a": [Var("team"), EnumValue("updatedAt")], "b": Var("n"), "c": Var("after")}
    assert graphql.resolve(value, {"team": "ENG"}, declared) == {
        "a": ["ENG", "updatedAt"],
        "b": 50,  # the declared default
        "c": None,
    }
    error = refusal(graphql.resolve, Var("zz"), {}, declared)
    assert error.message == 'Variable "$zz" is not defined.'


# -- schema checks, execution, projection -----------------------------------------------------
def test_execute_validates_then_answers_each_root_field_through_the_resolver() -> None:
    op = graphql.parse(
        "query($k: String) { me: viewer { __typename name } teams(filter: {key: {eq: $k}}) "
        "{ nodes { key } } }"
    )
    calls: list[tuple[str, dict[str, Any]]] = []

    def root(sel: Selection, args: dict[str, Any]) -> Any:
        calls.append((sel.name, args))
        if sel.name == "viewer":
            return {"__typename": "User", "id": "u1", "name": "Ann", "email": "a@x"}
        return {"nodes": [{"id": "t1", "key": "ENG", "name": "Engineering"}]}

    data = graphql.execute(op, {"k": "ENG"}, root)
    assert data == {
        "me": {"__typename": "User", "name": "Ann"},
        "teams": {"nodes": [{"key": "ENG"}]},
    }
    assert calls == [("viewer", {}), ("teams", {"filter": {"key": {"eq": "ENG"}}})]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ bogus }", 'Cannot query field "bogus" on type "Query".'),
        ("{ viewer { bogus } }", 'Cannot query field "bogus" on type "User".'),
        ("{ viewer }", 'Field "viewer" of type "User" must have a selection of subfields.'),
        ("{ viewer { id { x } } }", 'Field "id" must not have a selection since it is a scalar.'),
        (
            "{ issues { nodes { state } } }",
            'Field "state" of type "WorkflowState" must have a selection of subfields.',
        ),
        (
            "{ issues { edges { node { estimate bogus } } } }",
            'Cannot query field "bogus" on type "Issue".',
        ),
    ],
)
def test_execute_refuses_selections_outside_the_schema_before_resolving(
    query: str, message: str
) -> None:
    def root(sel: Selection, args: dict[str, Any]) -> Any:
        raise AssertionError("resolved an invalid query")

    error = refusal(graphql.execute, graphql.parse(query), {}, root)
    assert error.message == message


def test_execute_accepts_the_connectors_selections() -> None:
    op = graphql.parse(
        "{ issues { nodes { id identifier state { name type } team { key } labels { nodes { name } } "
        "previousIdentifiers } pageInfo { hasNextPage endCursor } edges { cursor } } }"
    )
    data = graphql.execute(op, {}, lambda sel, args: None)
    assert data == {"issues": None}


def test_project_keeps_only_the_selection() -> None:
    fields = graphql.parse("{ id t: title state { name } }").fields
    node = issue(1)
    assert graphql.project([node, None], fields, "nodes") == [
        {"id": "id-01", "t": "Issue 1", "state": {"name": "Todo"}},
        None,
    ]
    assert refusal(graphql.project, node, graphql.parse("{ bogus }").fields, "issue").message == (
        'Cannot query field "bogus" on type "Issue".'
    )
    assert refusal(graphql.project, node, None, "issue").message == (
        'Field "issue" of type "Issue" must have a selection of subfields.'
    )


# -- comparators and filters ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("actual", "cond", "expected"),
    [
        (2, {"eq": 2}, True),
        (2, {"neq": 2}, False),
        (2, {"in": [1, 2]}, True),
        (2, {"nin": [1, 2]}, False),
        (2, {"gt": 1, "lt": 3}, True),
        (2, {"gte": 2, "lte": 1}, False),
        (None, {"gt": 1}, False),
        (None, {"null": True}, True),
        (2, {"null": True}, False),
        (2, {"null": False}, True),
        ("Design", {"eqIgnoreCase": "design"}, True),
        (None, {"eqIgnoreCase": "design"}, False),
    ],
)
def test_compare(actual: Any, cond: dict[str, Any], expected: bool) -> None:
    assert graphql.compare(actual, cond, "NumberComparator") is expected


def test_compare_checks_every_operator_without_a_short_cut() -> None:
    error = refusal(graphql.compare, 1, {"eq": 2, "like": 1}, "IDComparator")
    assert error.message == 'Field "like" is not defined by type "IDComparator".'
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
        ({"title": {"eq": "x"}}, 'Field "title" is not defined by type "IssueFilter".', None),
        (
            {"state": {"nope": {"eq": 1}}},
            'Field is not defined by type "WorkflowStateFilter".',
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
    error = refusal(graphql.select_issues, NODES, {"sort": "x"})
    assert error.message == 'Unknown argument "sort" on field "Query.issues".'
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

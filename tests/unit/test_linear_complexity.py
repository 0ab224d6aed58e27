"""Every query the Linear connector sends, scored the way Linear documents it (each property 0.1,
each object 1, a connection multiplies its children by `first`/`last` or 50; at most 10,000 points
a query: docs/trackers/linear.md#rate-limits), with the scorer the sandbox refuses by
(connectors.sandbox.graphql.complexity, over the document parsed by graphql-core): the worst case
of every allowed page size stays below the connector's ceiling, a quarter under Linear's maximum.

Run with `-s` to see the figures: `pytest tests/unit/test_linear_complexity.py -s`.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import parse

from connectors import linear
from connectors.linear import (
    CHANGES_QUERY,
    CHECK_QUERY,
    COMPLEXITY_CEILING,
    HISTORY_ENTRIES,
    HISTORY_ISSUES,
    HISTORY_MORE_QUERY,
    HISTORY_PAGE,
    HISTORY_QUERY,
    IDS_QUERY,
    LABELS_QUERY,
    MAX_PAGE_SIZE,
    MAX_QUERY_COMPLEXITY,
    PROBE_QUERY,
    LinearConfig,
    LinearConnector,
)
from connectors.sandbox import graphql

ISSUE_FILTER = {"team": {"key": {"eq": "ENG"}}, "updatedAt": {"gte": "2025-05-01T00:00:00.000Z"}}


def page_sizes() -> range:
    """Every page size the config accepts."""
    field = LinearConfig.model_fields["page_size"]
    bounds = {type(m).__name__: m for m in field.metadata}
    low, high = bounds["Ge"].ge, bounds["Le"].le
    assert LinearConfig.model_validate({"team_keys": ["ENG"], "page_size": high}).page_size == high
    with pytest.raises(ValueError):
        LinearConfig.model_validate({"team_keys": ["ENG"], "page_size": high + 1})
    return range(low, high + 1)


def sent(page_size: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each operation the connector sends, with the variables it sends it with."""
    return {
        "SyncCheck": (CHECK_QUERY, {"keys": ["ENG", "OPS"], "first": MAX_PAGE_SIZE}),
        "SyncIssueChanges": (
            CHANGES_QUERY,
            {"filter": ISSUE_FILTER, "last": page_size, "before": "cursor"},
        ),
        "SyncIssueProbe": (PROBE_QUERY, {"filter": ISSUE_FILTER, "after": "cursor"}),
        "SyncIssueIds": (
            IDS_QUERY,
            {
                "filter": {"team": {"key": {"in": ["ENG"]}}},
                "first": LinearConnector.ids_page_size,
                "after": "cursor",
            },
        ),
        "SyncIssueLabels": (LABELS_QUERY, {"id": "issue-uuid", "after": "cursor"}),
        "SyncIssueHistory": (
            HISTORY_QUERY,
            {
                "filter": {"id": {"in": [f"issue-{n}" for n in range(HISTORY_ISSUES)]}},
                "first": HISTORY_ISSUES,
                "entries": HISTORY_ENTRIES,
            },
        ),
        "SyncIssueHistoryMore": (HISTORY_MORE_QUERY, {"id": "issue-uuid", "after": "cursor"}),
    }


def score(query: str, variables: dict[str, Any]) -> float:
    prepared = graphql.prepare(query, variables)  # valid against Linear's schema, or it raises
    assert prepared.complexity == graphql.complexity(parse(query), variables=variables)
    return prepared.complexity


def test_every_query_of_the_connector_is_scored_here() -> None:
    constants = {name for name in vars(linear) if name.endswith("_QUERY")}
    assert constants == {
        "CHANGES_QUERY",
        "CHECK_QUERY",
        "HISTORY_MORE_QUERY",
        "HISTORY_QUERY",
        "IDS_QUERY",
        "LABELS_QUERY",
        "PROBE_QUERY",
    }, "a new query needs its line in sent()"
    names = {graphql.operation_name(query) for query, _ in sent(1).values()}
    assert names == set(sent(1))


def test_the_ceiling_leaves_a_quarter_of_linears_maximum() -> None:
    assert MAX_QUERY_COMPLEXITY == graphql.MAX_COMPLEXITY == 10_000
    assert COMPLEXITY_CEILING <= 0.75 * MAX_QUERY_COMPLEXITY


def test_every_query_stays_under_the_ceiling_at_every_allowed_page_size() -> None:
    worst: dict[str, tuple[float, int]] = {}
    for size in page_sizes():
        for name, (query, variables) in sent(size).items():
            points = score(query, variables)
            if name not in worst or points > worst[name][0]:
                worst[name] = (points, size)
    for name, (points, size) in sorted(worst.items()):
        print(f"{name:<18} worst {points:8.1f} points (page_size {size})")
        assert points < COMPLEXITY_CEILING, f"{name} at page_size {size}: {points} points"


def test_the_changes_page_costs_what_its_fields_say() -> None:
    # Per issue: Issue 1 + 14 properties 1.4 + state 1.3 + team 1.3
    #   + labels(first: 8): 8 x (IssueLabel 1 + name 0.1) + 8 x (pageInfo 1 + hasNextPage 0.1)
    #   + the richer model: parent {id} 1.1 + assignee {id name displayName} 1.3
    #     + cycle {id number name startsAt endsAt completedAt} 1.6
    # and per page slot the page's own pageInfo (1 + 4 x 0.1), multiplied like its nodes.
    model = 1.1 + 1.3 + 1.6
    per_issue = 1 + 1.4 + 1.3 + 1.3 + linear.LABELS_PER_ISSUE * (1.1 + 1.1) + model + 1.4
    figures = {}
    for size in (1, 50, 100, 250):
        query, variables = sent(size)["SyncIssueChanges"]
        figures[size] = score(query, variables)
        assert figures[size] == pytest.approx(size * per_issue)
    print("SyncIssueChanges by page_size:", {k: round(v, 1) for k, v in figures.items()})
    assert figures[250] < COMPLEXITY_CEILING


def test_the_labels_of_an_issue_are_never_an_unbounded_connection() -> None:
    # `labels { nodes { name } }` without `first:` is scored as 50 labels an issue (the fault this
    # guards against: about 61 points an issue, 15,350 for a page of 250).
    document = parse(CHANGES_QUERY)
    unbounded = graphql.complexity(
        parse(CHANGES_QUERY.replace(f"labels(first: {linear.LABELS_PER_ISSUE})", "labels")),
        variables={"filter": ISSUE_FILTER, "last": 250},
    )
    assert unbounded > MAX_QUERY_COMPLEXITY
    assert graphql.complexity(document, variables={"filter": ISSUE_FILTER, "last": 250}) < (
        COMPLEXITY_CEILING
    )


# One IssueHistory entry as the history queries select it: IssueHistory 1 + id, createdAt 0.2
# + actor {id name} 1.2 + botActor {id name type} 1.3 + fromState/toState {name type} 2.4
# + from/toAssignee {name} 2.2 + from/toCycle {number name} 2.4 + from/toParent {identifier}
# 2.2 + four numbers 0.4; and its page slot's pageInfo {hasNextPage endCursor} 1.2, multiplied
# like the entries.
PER_ENTRY = 1.2 + 1.2 + 1.3 + 2.4 + 2.2 + 2.4 + 2.2 + 0.4 + 1.2


def test_the_history_queries_cost_what_their_fields_say() -> None:
    query, variables = sent(1)["SyncIssueHistory"]
    # per issue slot: Issue 1 + id, createdAt 0.2 + state 1.3, and its entries
    per_issue = 2.5 + HISTORY_ENTRIES * PER_ENTRY
    assert score(query, variables) == pytest.approx(HISTORY_ISSUES * per_issue)
    assert score(query, variables) == pytest.approx(linear.HISTORY_GROUP_POINTS)
    query, variables = sent(1)["SyncIssueHistoryMore"]
    assert score(query, variables) == pytest.approx(1 + HISTORY_PAGE * PER_ENTRY)
    assert score(query, variables) == pytest.approx(linear.HISTORY_MORE_POINTS)


def test_the_history_group_fills_the_ceiling_with_issues_not_with_empty_entry_slots() -> None:
    # Slots cost points filled or not: an issue reserves HISTORY_ENTRIES (a typical history),
    # and the group takes as many issues as the ceiling allows (ten more would not fit).
    def group(issues: int, entries: int) -> float:
        ids = [f"issue-{n}" for n in range(issues)]
        variables = {"filter": {"id": {"in": ids}}, "first": issues, "entries": entries}
        return score(HISTORY_QUERY, variables)

    assert group(HISTORY_ISSUES, HISTORY_ENTRIES) < COMPLEXITY_CEILING
    assert group(HISTORY_ISSUES + 10, HISTORY_ENTRIES) > COMPLEXITY_CEILING
    assert group(HISTORY_ISSUES, HISTORY_ENTRIES) / HISTORY_ISSUES < 150  # points an issue

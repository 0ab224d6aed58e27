"""The richer model of an Azure DevOps work item (docs/trackers/azure_devops.md#richer-model):
parent, kind, tags, assignee, iteration (as a sprint) and the integration's `extra_fields`, from
the fields one `workItemsBatch` returns, plus two lists read at most once a run: the project's
iteration tree (dates of each iteration) and the organization's field list (what an
`extra_fields` name refers to). Pure functions: the connector makes the requests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.azure_devops_history import person
from connectors.base import Person, Sprint
from connectors.http import parse_time

F_PARENT = "System.Parent"
F_ITERATION_PATH = "System.IterationPath"
F_ITERATION_ID = "System.IterationId"
F_ASSIGNED = "System.AssignedTo"
F_TAGS = "System.Tags"
F_TYPE = "System.WorkItemType"
#: What the batch asks for beyond the item's own columns (dropped on a server that lacks one).
MODEL_FIELDS = (F_PARENT, F_ITERATION_ID)
#: The iteration tree's depth asked for (14 levels is Azure Boards' nesting limit as we know it,
#: unverified). An item in an iteration deeper than that keeps its id and name, without dates.
ITERATION_DEPTH = 14

#: Work item type name (casefold) -> our kind. Agile, Scrum, CMMI and Basic type names.
KINDS = {
    "epic": "epic",
    "feature": "feature",
    "user story": "story",
    "product backlog item": "story",
    "requirement": "story",
    "task": "task",
    "bug": "bug",
    "issue": "issue",
    "impediment": "issue",
}


def item_kind(name: Any) -> tuple[str | None, str | None]:
    """(our kind, the type's own name); a type of no known process is "other"."""
    if not isinstance(name, str) or not name.strip():
        return None, None
    return KINDS.get(name.strip().casefold(), "other"), name.strip()


def parent_id(value: Any, site: str) -> str | None:
    """System.Parent (an int id) as the parent's external_id; anything else is no parent."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return f"{site}/{value}"


def labels(value: Any) -> tuple[str, ...]:
    """System.Tags, one string "a; b; c"."""
    if not isinstance(value, str):
        return ()
    return tuple(dict.fromkeys(t.strip() for t in value.split(";") if t.strip()))


def assignees(value: Any) -> tuple[Person, ...]:
    """System.AssignedTo: an IdentityRef's displayName and id (never its uniqueName, usually an
    e-mail address), or the "Name <unique name>" text of older servers (the name only)."""
    if value is None or value == "":
        return ()
    name, account = person(value)
    return (Person(name, account),) if name or account else ()


# ---------------------------------------------------------------------------------------------
# Iterations
# ---------------------------------------------------------------------------------------------
def iteration_path(node_path: str) -> str:
    """A classification node's path (`\\Project\\Iteration\\Sprint 1`) in the form of an item's
    System.IterationPath (`Project\\Sprint 1`)."""
    parts = node_path.strip("\\").split("\\")
    if len(parts) >= 2 and parts[1].casefold() == "iteration":
        del parts[1]
    return "\\".join(parts)


def is_root(path: str) -> bool:
    """An iteration path that names the project itself: the item is in no sprint."""
    return "\\" not in path.strip("\\")


def names_a_sprint(fields: Mapping[str, Any]) -> bool:
    """Whether an item's iteration is one below the project root."""
    path = fields.get(F_ITERATION_PATH)
    return isinstance(path, str) and bool(path.strip()) and not is_root(path)


@dataclass(frozen=True, slots=True)
class Iteration:
    node_id: int
    name: str
    path: str  # as System.IterationPath writes it
    starts_at: datetime | None = None
    ends_at: datetime | None = None  # the iteration's last day (finishDate, midnight UTC)


@dataclass(slots=True)
class IterationTree:
    """A project's iterations by node id and by path (casefold)."""

    by_id: dict[int, Iteration] = field(default_factory=dict)
    by_path: dict[str, Iteration] = field(default_factory=dict)

    def add(self, iteration: Iteration) -> None:
        self.by_id[iteration.node_id] = iteration
        self.by_path[iteration.path.casefold()] = iteration


def iteration_tree(root: Any) -> IterationTree:
    """The tree from a classification node (the SDK's WorkItemClassificationNode, or anything
    with its attributes) and its children; nodes without an int id or a path are skipped."""
    tree = IterationTree()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        stack.extend(getattr(node, "children", None) or [])
        node_id, path = getattr(node, "id", None), getattr(node, "path", None)
        if isinstance(node_id, bool) or not isinstance(node_id, int) or not isinstance(path, str):
            continue
        attributes = getattr(node, "attributes", None) or {}
        if not isinstance(attributes, Mapping):
            attributes = {}
        name = getattr(node, "name", None)
        normal = iteration_path(path)
        tree.add(
            Iteration(
                node_id,
                name if isinstance(name, str) and name else normal.rsplit("\\", 1)[-1],
                normal,
                parse_time(attributes.get("startDate")),
                parse_time(attributes.get("finishDate")),
            )
        )
    return tree


def sprint_state(starts: datetime | None, ends: datetime | None, now: datetime) -> str | None:
    """future / active / closed from the iteration's dates (its finish date is its last day,
    a whole day); None without both dates."""
    if starts is None or ends is None:
        return None
    if now < starts:
        return "future"
    if now < ends + timedelta(days=1):
        return "active"
    return "closed"


def sprint_of(
    fields: Mapping[str, Any], tree: IterationTree | None, site: str, now: datetime
) -> Sprint | None:
    """The item's iteration as a Sprint (None at the project root, or when it cannot be
    named): found by System.IterationId, else by path; one the tree lacks keeps its id and
    name, without dates."""
    if not names_a_sprint(fields):
        return None
    path = str(fields[F_ITERATION_PATH]).strip("\\")
    raw_id = fields.get(F_ITERATION_ID)
    node_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    found = None
    if tree is not None:
        found = tree.by_id.get(node_id) if node_id is not None else None
        found = found or tree.by_path.get(path.casefold())
    if found is None:
        if node_id is None:
            return None
        found = Iteration(node_id, path.rsplit("\\", 1)[-1], path)
    return Sprint(
        f"{site}/iterations/{found.node_id}",
        found.name,
        sprint_state(found.starts_at, found.ends_at, now),
        found.starts_at,
        found.ends_at,
    )


# ---------------------------------------------------------------------------------------------
# extra_fields
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExtraField:
    """An `extra_fields` name and the field it resolved to."""

    label: str  # the name the admin gave: the key in work_items.fields
    reference: str  # e.g. Microsoft.VSTS.Common.Severity
    identity: bool = False


@dataclass(frozen=True, slots=True)
class KnownField:
    """One entry of the organization's field list."""

    reference: str
    name: str
    identity: bool = False


def resolve_extra_fields(
    wanted: Sequence[str], known: Iterable[KnownField]
) -> tuple[list[ExtraField], list[str]]:
    """Each wanted name by reference name, else by display name (both without case): the
    resolved fields and the names that resolve to none."""
    by_reference: dict[str, KnownField] = {}
    by_name: dict[str, KnownField] = {}
    for f in known:
        by_reference.setdefault(f.reference.casefold(), f)
        by_name.setdefault(f.name.casefold(), f)
    resolved: list[ExtraField] = []
    unknown: list[str] = []
    for label in wanted:
        hit = by_reference.get(label.casefold()) or by_name.get(label.casefold())
        if hit is None:
            unknown.append(label)
        else:
            resolved.append(ExtraField(label, hit.reference, hit.identity))
    return resolved, unknown


def json_value(value: Any, identity: bool) -> Any:
    """A field's value as JSON: an identity (or anything shaped like one) as its display name,
    never its unique name; numbers that JSON cannot hold as None."""
    if value is None:
        return None
    if identity or (
        isinstance(value, Mapping) and ("uniqueName" in value or "displayName" in value)
    ):
        if isinstance(value, Mapping | str):
            return person(value)[0]
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_value(v, False) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v, False) for v in value]
    return str(value)


def custom_values(fields: Mapping[str, Any], extras: Sequence[ExtraField]) -> dict[str, Any]:
    """The integration's extra fields of one item, keyed by the names the admin gave (absent:
    None)."""
    return {x.label: json_value(fields.get(x.reference), x.identity) for x in extras}


def without_unique_names(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A batch entry as kept in external_data: identities without their uniqueName (usually
    an e-mail address), and the "Name <unique name>" text of older servers as the name."""
    fields = raw.get("fields")
    if not isinstance(fields, Mapping):
        return dict(raw)
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, Mapping) and "uniqueName" in value:
            value = {k: v for k, v in value.items() if k != "uniqueName"}
        elif isinstance(value, str) and _TEXT_IDENTITY.fullmatch(value):
            value = person(value)[0]
        kept[name] = value
    return {**raw, "fields": kept}


_TEXT_IDENTITY = re.compile(r"[^<>]*<[^<>@\s]+@[^<>\s]+>\s*")

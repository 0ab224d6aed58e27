"""A local Azure DevOps (Boards) server that the real `azure-devops` SDK talks to unmodified.

Serves what the SDK calls (docs/trackers/azure_devops.md#requests): the `OPTIONS /{org}/_apis`
location list, `GET /{org}/_apis/ResourceAreas` (empty: "on-prem", so the SDK stays on our base
URL), `POST /{org}/{project}/_apis/wit/wiql` (the WIQL is parsed and evaluated for real, by
`connectors.sandbox.wiql`), `POST /{org}/{project}/_apis/wit/workItemsBatch` and `GET
/{org}/{project}/_apis/wit/workitemtypes/{type}/states`. Every request needs the PAT as Basic auth
(any user name), or a Microsoft Entra token issued by an `EntraSandbox` for Azure DevOps, unexpired,
to a principal added to the organization (`members`). `{org}` may be several segments (an Azure
DevOps Server collection, `tfs/DefaultCollection`); `tls` serves HTTPS; `max_api_version` plays
an older server (Server 2019: "5.0"), to which the SDK negotiates down. Work items live in memory
with explicit ChangedDate values, so tests control upstream time; the server's own clock (`now`)
only answers WIQL `asOf`."""

from __future__ import annotations

import base64
import binascii
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from connectors.sandbox import webhooks, wiql
from connectors.sandbox.base import (
    DemoChange,
    Fault,
    Request,
    Response,
    SandboxServer,
    demo_action,
)
from connectors.sandbox.entra import EntraSandbox
from connectors.sandbox.tls import HttpsMixin, TestCA
from connectors.sandbox.wiql import (
    DATE_FIELDS,
    FIELD_NAMES,
    IDENTITY_FIELDS,
    INT_FIELDS,
    KNOWN_FIELDS,
    NUMBER_FIELDS,
    WiqlError,
)

ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"  # Azure DevOps' Entra application id
WIQL_CAP = 20_000  # the server's hard limit on a WIQL result (VS402337)
BATCH_CAP = 200  # the most ids one workItemsBatch accepts (VS403474)
#: Who creates and changes items unless a test says otherwise ("Name <unique name>").
SANDBOX_USER = "Sandbox User <sandbox.user@example.com>"

# Location rows of the OPTIONS answer: (id, area, resourceName, routeTemplate, resourceVersion).
LOCATIONS: tuple[tuple[str, str, str, str, int], ...] = (
    (
        "e81700f7-3be2-46de-8624-2eb35882fcaa",
        "Location",
        "ResourceAreas",
        "_apis/{resource}/{areaId}",
        1,
    ),
    (
        "1a9c53f7-f243-4447-b110-35ef023636e4",
        "wit",
        "wiql",
        "{project}/{team}/_apis/{area}/{resource}/{id}",
        2,
    ),
    (
        "72c7ddf8-2cdc-4f60-90cd-ab71c14a399b",
        "wit",
        "workItems",
        "{project}/_apis/{area}/{resource}/{id}",
        3,
    ),
    (
        "908509b6-4248-4475-a1cd-829139ba419f",
        "wit",
        "workItemsBatch",
        "{project}/_apis/{area}/{resource}",
        1,
    ),
    (
        "7c9d7a76-4a09-43e8-b5df-bd792f4ac6aa",
        "wit",
        "states",
        "{project}/_apis/{area}/workitemtypes/{type}/{resource}",
        1,
    ),
    (
        "5a172953-1b41-49d3-840a-33f79c3ce89f",
        "wit",
        "classificationNodes",
        "{project}/_apis/{area}/{resource}/{structureGroup}/{*path}",
        2,
    ),
    (
        "b51fd764-e5c2-4b9b-aaf7-3395cf4bdd94",
        "wit",
        "fields",
        "{project}/_apis/{area}/{resource}/{fieldNameOrRefName}",
        2,
    ),
    (
        "f828fe59-dd87-495d-a17c-7a8d6211ca6c",
        "wit",
        "workItemRevisions",
        "{project}/_apis/{area}/reporting/{resource}",
        2,
    ),
)
#: The most revisions one reporting batch holds here, whatever `$maxPageSize` asks: small, so
#: that every test pages (the service's own ceiling is not published).
REPORTING_PAGE_CAP = 50
#: ADO's "never revised" date: System.RevisedDate of an item's latest revision.
NEVER = "9999-01-01T00:00:00Z"

# States of the system processes (Agile, Scrum, CMMI, Basic) plus an "In Review" column that
# inherited processes commonly add. (name, color, category)
AGILE_STORY = [
    ("New", "b2b2b2", "Proposed"),
    ("Active", "007acc", "InProgress"),
    ("In Review", "ff9d00", "InProgress"),
    ("Resolved", "ff9d00", "Resolved"),
    ("Closed", "339933", "Completed"),
    ("Removed", "ffffff", "Removed"),
]
DEFAULT_STATES: dict[str, list[tuple[str, str, str]]] = {
    "User Story": AGILE_STORY,
    "Bug": AGILE_STORY[:2] + AGILE_STORY[3:5],
    "Task": [AGILE_STORY[0], AGILE_STORY[1], AGILE_STORY[4], AGILE_STORY[5]],
    "Feature": AGILE_STORY,
    "Epic": AGILE_STORY,
    "Product Backlog Item": [
        ("New", "b2b2b2", "Proposed"),
        ("Approved", "5688e0", "Proposed"),
        ("Committed", "007acc", "InProgress"),
        ("Done", "339933", "Completed"),
        ("Removed", "ffffff", "Removed"),
    ],
    "Requirement": [
        ("Proposed", "b2b2b2", "Proposed"),
        ("Active", "007acc", "InProgress"),
        ("Resolved", "ff9d00", "Resolved"),
        ("Closed", "339933", "Completed"),
    ],
    "Issue": [
        ("To Do", "b2b2b2", "Proposed"),
        ("Doing", "007acc", "InProgress"),
        ("Done", "339933", "Completed"),
    ],
}


#: The demo team (`seed_demo`, `demo_step`) and the titles of the items it adds while the demo
#: runs.
_DEMO_PEOPLE = (
    "Amara Okafor <amara.okafor@example.com>",
    "Lukas Novak <lukas.novak@example.com>",
    "Mei Tanaka <mei.tanaka@example.com>",
)
_DEMO_NEW = [
    "Wishlist shared between devices",
    "Checkout fails with an expired voucher",
    "Show delivery slots in the cart",
    "App icon badge count is stale",
    "Filter orders by store",
    "Password rules differ between web and app",
    "Reorder from order history",
]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
def ado_time(value: datetime) -> str:
    """ADO's JSON form of a date: UTC, "Z", fractional digits only as many as needed."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += ("." + f"{value.microsecond:06d}").rstrip("0")
    return text + "Z"


def to_ms(value: datetime) -> datetime:
    """ADO keeps dates to the millisecond."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def identity(value: Any) -> dict[str, str]:
    """An identity as the sandbox stores it, `{"displayName", "uniqueName"}`, from "Name <unique
    name>", a bare name (unique name made up from it) or such a dict."""
    if isinstance(value, Mapping):
        display = str(value.get("displayName") or "")
        unique = str(value.get("uniqueName") or "")
    else:
        match = re.fullmatch(r"\s*(.*?)\s*<([^<>]*)>\s*", str(value))
        if match:
            display, unique = match.group(1), match.group(2)
        else:
            display = str(value).strip()
            unique = ".".join(display.casefold().split()) + "@example.com"
    return {"displayName": display or unique, "uniqueName": unique}


def _midnight(value: datetime) -> datetime:
    """An iteration date as the service keeps it: the day, at midnight UTC."""
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def parse_date(value: Any) -> datetime | None:
    """An ISO 8601 date as a client sends it (None when it is not one)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def error_body(message: str, type_key: str = "InvalidQueryException") -> dict[str, Any]:
    """The WrappedException shape ADO uses for every error."""
    return {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": f"Microsoft.TeamFoundation.WorkItemTracking.Server.{type_key}, "
        "Microsoft.TeamFoundation.WorkItemTracking.Server",
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3200,
    }


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------
class AzureDevOpsSandbox(HttpsMixin, SandboxServer):
    """An in-memory Azure DevOps organization with one or more projects."""

    def __init__(
        self,
        token: str | None = "sandbox-pat",
        *,
        organization: str = "myorg",
        project: str = "My Project",
        now: Callable[[], datetime] | None = None,
        entra: EntraSandbox | None = None,
        tls: TestCA | None = None,
        max_api_version: str = "7.2",
        released_version: str = "7.1",
    ) -> None:
        super().__init__()
        self.token = token  # the PAT (None: none is accepted)
        self.entra = entra  # the authority whose tokens are accepted (None: none are)
        #: app ids / object ids of the service principals and managed identities added to the
        #: organization (Organization settings > Users)
        self.members: set[str] = set()
        self.tls = tls
        self.max_api_version, self.released_version = max_api_version, released_version
        self.organization = organization.strip("/")
        self.project = project
        self.projects: dict[str, str] = {}  # casefold -> name
        self.area_paths: set[str] = set()  # casefold
        self.items: dict[int, dict[str, Any]] = {}  # id -> {"rev": int, "fields": {...}}
        #: every revision in the order it was saved: (id, the item's fields then); a reporting
        #: continuation token's first part is a position in it (the watermark)
        self.revision_log: list[tuple[int, dict[str, Any]]] = []
        self.reporting_page_cap = REPORTING_PAGE_CAP
        self.reporting_requests = 0  # reporting revision batches served
        self.states: dict[str, list[tuple[str, str, str]]] = {
            k.casefold(): v for k, v in DEFAULT_STATES.items()
        }
        self.known_fields: set[str] = set(KNOWN_FIELDS)
        #: fields added with `add_field` (custom fields): reference name -> (name, type)
        self.custom_fields: dict[str, tuple[str, str]] = {}
        self.identity_fields: set[str] = set(IDENTITY_FIELDS)
        #: project (casefold) -> iteration path (casefold) -> node (see `add_iteration`)
        self.iterations: dict[str, dict[str, dict[str, Any]]] = {}
        self._next_node = 100  # classification node ids (int, unique in the collection)
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        #: Emulate a server that counts matches before applying $top (then VS402337 even with it).
        self.cap_ignores_top = False
        #: Answer identity fields as "Name <unique name>" text, as servers before api-version 5.0
        #: (TFS 2018) did, instead of IdentityRef objects.
        self.identities_as_strings = False
        self.user = identity(SANDBOX_USER)  # the PAT's user: creates and changes items
        self.wiql_cap = WIQL_CAP  # tests lower it to exercise the VS402337 path cheaply
        self.wiql_refusals = 0  # how many queries were refused with VS402337
        self._throttle: list[float] = []  # Retry-After to put on the next successful responses
        self._edits: list[tuple[str, Callable[[dict[str, Any]], None]]] = []  # see edit_next_answer
        #: id -> field -> what batch answers send for it (see `garble`); the stored item, which
        #: WIQL filters and sorts on, keeps its real value.
        self.garbled: dict[int, dict[str, Any]] = {}
        self._next_id = 1
        self._data_lock = threading.RLock()
        #: Web Hooks service-hook subscriptions (basic auth): add_item/update_item are delivered
        self.hooks = webhooks.WebhookSender(webhooks.azure_devops_headers)
        self.add_project(project)

    # -- data helpers for tests and the demo ------------------------------------------------
    @property
    def organization_url(self) -> str:
        return f"{self.url}/{self.organization}"

    def external_id(self, item_id: int) -> str:
        """The external_id the connector reports for `item_id`."""
        return f"127.0.0.1:{self.port}/{self.organization}/{item_id}".lower()

    def add_project(self, name: str, areas: Iterable[str] = ()) -> None:
        with self._data_lock:
            self.projects[name.casefold()] = name
            self.area_paths.add(name.casefold())
            if name.casefold() not in self.iterations:
                self.iterations[name.casefold()] = {}
                self._add_node(name, name, None, None)  # the project's root iteration
            for area in areas:
                self.add_area(f"{name}\\{area}")

    def add_area(self, path: str) -> None:
        """Register an area path (and its parents)."""
        with self._data_lock:
            parts = path.split("\\")
            for i in range(1, len(parts) + 1):
                self.area_paths.add("\\".join(parts[:i]).casefold())

    def _add_node(
        self, project: str, path: str, starts: datetime | None, finishes: datetime | None
    ) -> dict[str, Any]:
        node = {
            "id": self._next_node,
            "identifier": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.organization}/it/{path}")),
            "name": path.rsplit("\\", 1)[-1],
            "path": path,
            "startDate": starts,
            "finishDate": finishes,
        }
        self._next_node += 1
        self.iterations[project.casefold()][path.casefold()] = node
        return node

    def add_iteration(
        self, path: str, starts: datetime | None = None, finishes: datetime | None = None
    ) -> int:
        """An iteration (`My Project\\Sprint 1`; parents are made as needed, without dates), with
        its start and finish dates (date-only, midnight UTC, as the service keeps them); returns
        its node id (System.IterationId)."""
        with self._data_lock:
            parts = path.strip("\\").split("\\")
            project = self.projects[parts[0].casefold()]
            tree = self.iterations[project.casefold()]
            for depth in range(2, len(parts)):
                above = "\\".join([project, *parts[1:depth]])
                if above.casefold() not in tree:
                    self._add_node(project, above, None, None)
            full = "\\".join([project, *parts[1:]])
            node = tree.get(full.casefold()) or self._add_node(project, full, None, None)
            node["startDate"] = _midnight(starts) if starts else None
            node["finishDate"] = _midnight(finishes) if finishes else None
            return int(node["id"])

    def iteration_node(self, project: str, path: str) -> dict[str, Any]:
        """The node of an iteration path ("" or the project: its root). A path the project does
        not have yet is added, without dates (as `add_area` does for area paths; the service
        would refuse it: TF401347)."""
        wanted = path.strip("\\") or project
        node = self.iterations[project.casefold()].get(wanted.casefold())
        if node is None:
            self.add_iteration(wanted)
            node = self.iterations[project.casefold()][wanted.casefold()]
        return node

    def add_field(
        self, reference: str, name: str, kind: str = "string", *, identity: bool = False
    ) -> None:
        """A custom field of the organization (`Custom.Team`, "Team"), of a field list type
        (string, integer, double, dateTime, identity, ...)."""
        with self._data_lock:
            self.known_fields.add(reference)
            self.custom_fields[reference] = (name, "identity" if identity else kind)
            if identity:
                self.identity_fields.add(reference)

    def set_states(self, work_item_type: str, states: list[tuple[str, str]]) -> None:
        """Define a type's states as (name, category)."""
        with self._data_lock:
            self.states[work_item_type.casefold()] = [(n, "b2b2b2", c) for n, c in states]

    def add_item(
        self,
        title: str,
        *,
        changed: datetime,
        work_item_type: str = "User Story",
        state: str = "New",
        project: str | None = None,
        area_path: str | None = None,
        fields: Mapping[str, Any] | None = None,
        item_id: int | None = None,
    ) -> int:
        """Create a work item; returns its id. `fields` are reference name -> value; identity
        fields take "Name <unique name>" or a name. The sandbox user creates it."""
        with self._data_lock:
            if item_id is None:
                item_id = self._next_id
            self._next_id = max(self._next_id, item_id + 1)
            project = project or self.project
            area = area_path or project
            self.add_area(area)
            at = to_ms(changed)
            values: dict[str, Any] = {
                "System.Id": item_id,
                "System.AreaPath": area,
                "System.TeamProject": project,
                "System.IterationPath": project,
                "System.IterationId": self.iteration_node(project, project)["id"],
                "System.WorkItemType": work_item_type,
                "System.State": state,
                "System.Reason": "New",
                "System.CreatedDate": at,
                "System.ChangedDate": at,
                "System.CreatedBy": self.user,
                "System.ChangedBy": self.user,
                "Microsoft.VSTS.Common.StateChangeDate": at,
                "System.Title": title,
            }
            self.items[item_id] = {"rev": 0, "fields": values}
            self._apply(item_id, fields or {}, at)  # revision 1
            self._announce("workitem.created", item_id)
            return item_id

    def add_items_fast(self, rows: Iterable[tuple[str, datetime]]) -> list[int]:
        """Create many plain User Stories (title, changed) quickly; for large tests."""
        ids: list[int] = []
        with self._data_lock:
            for title, changed in rows:
                item_id = self._next_id
                self._next_id += 1
                at = to_ms(changed)
                self.items[item_id] = {
                    "rev": 1,
                    "fields": {
                        "System.Id": item_id,
                        "System.AreaPath": self.project,
                        "System.TeamProject": self.project,
                        "System.IterationPath": self.project,
                        "System.IterationId": self.iteration_node(self.project, "")["id"],
                        "System.WorkItemType": "User Story",
                        "System.State": "New",
                        "System.Reason": "New",
                        "System.Rev": 1,
                        "System.CreatedDate": at,
                        "System.ChangedDate": at,
                        "System.CreatedBy": self.user,
                        "System.ChangedBy": self.user,
                        "Microsoft.VSTS.Common.StateChangeDate": at,
                        "System.Title": title,
                        "Microsoft.VSTS.Common.Priority": 2,
                    },
                }
                self._record(item_id)
                ids.append(item_id)
        return ids

    def update_item(
        self,
        item_id: int,
        *,
        changed: datetime,
        fields: Mapping[str, Any] | None = None,
        **short: Any,
    ) -> None:
        """Change an item at upstream time `changed` (a new revision). `short` accepts title=,
        state=, tags=, priority=, story_points=, description=, area_path=, assigned_to= for
        convenience, and iteration_path=, parent=. Identity fields take "Name <unique name>" or a
        name ("" unassigns); the change is the sandbox user's unless `System.ChangedBy` says
        otherwise."""
        names = {
            "title": "System.Title",
            "state": "System.State",
            "tags": "System.Tags",
            "priority": "Microsoft.VSTS.Common.Priority",
            "story_points": "Microsoft.VSTS.Scheduling.StoryPoints",
            "description": "System.Description",
            "area_path": "System.AreaPath",
            "assigned_to": "System.AssignedTo",
            "iteration_path": "System.IterationPath",
            "parent": "System.Parent",
        }
        values = dict(fields or {})
        for key, value in short.items():
            values[names[key]] = value
        with self._data_lock:
            self._apply(item_id, values, to_ms(changed))
            self._announce("workitem.updated", item_id)

    def _announce(self, event: str, item_id: int) -> None:
        """The service-hook event of a change, with resource details "none" (as the listener's
        setup steps advise): the envelope and the item's id and revision."""
        if not self.hooks.subscribed:
            return
        payload = {
            "subscriptionId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.url)),
            "notificationId": len(self.hooks.sent) + 1,
            "id": str(uuid.uuid4()),
            "eventType": event,
            "publisherId": "tfs",
            "resource": {"id": item_id, "rev": self.items[item_id]["rev"]},
            "resourceVersion": "1.0",
            "createdDate": datetime.now(UTC).isoformat(),
        }
        self.hooks.deliver(event, payload)

    def _apply(self, item_id: int, values: Mapping[str, Any], at: datetime) -> None:
        item = self.items[item_id]
        current = item["fields"]
        state = values.get("System.State")
        if state is not None and state != current.get("System.State"):
            current["Microsoft.VSTS.Common.StateChangeDate"] = at
            category = self.category_of(current["System.WorkItemType"], state)
            if category == "InProgress" and "Microsoft.VSTS.Common.ActivatedDate" not in current:
                current["Microsoft.VSTS.Common.ActivatedDate"] = at
            if category == "Resolved":
                current["Microsoft.VSTS.Common.ResolvedDate"] = at
            if category == "Completed":
                current["Microsoft.VSTS.Common.ClosedDate"] = at
            elif category != "Removed":
                current.pop("Microsoft.VSTS.Common.ClosedDate", None)
        current["System.ChangedBy"] = self.user  # unless the change names who made it
        if "System.IterationPath" in values:  # the path names a node: its id follows it
            node = self.iteration_node(
                current["System.TeamProject"], values["System.IterationPath"] or ""
            )
            values = {
                **values,
                "System.IterationPath": node["path"],
                "System.IterationId": node["id"],
            }
        for name, value in values.items():
            if name == "System.AreaPath" and value:
                self.add_area(str(value))
            if value is None or value == "":
                current.pop(name, None)
            elif name in self.identity_fields:
                current[name] = identity(value)
            else:
                current[name] = to_ms(value) if isinstance(value, datetime) else value
        current["System.ChangedDate"] = at
        item["rev"] += 1
        current["System.Rev"] = item["rev"]
        self._record(item_id)

    def _record(self, item_id: int) -> None:
        """Keep the revision just saved: in the item's revisions (for `asOf` reads) and the
        organization's revision log (for the reporting API)."""
        item = self.items[item_id]
        snapshot = dict(item["fields"])
        item.setdefault("revisions", []).append(snapshot)
        self.revision_log.append((item_id, snapshot))

    def delete_item(self, item_id: int) -> None:
        """Move an item to the recycle bin: gone from WIQL, `null` in batches."""
        with self._data_lock:
            self.items.pop(item_id, None)

    def category_of(self, work_item_type: str, state: str) -> str | None:
        for name, _, category in self.states.get(work_item_type.casefold(), []):
            if name.casefold() == state.casefold():
                return category
        return None

    def throttle_next(self, count: int, retry_after: float = 1.0) -> None:
        """Put `Retry-After` (and ADO's X-RateLimit-* headers) on the next `count` successful
        responses, as ADO does when it starts delaying a user."""
        with self._lock:
            self._throttle.extend([retry_after] * count)

    def clear_faults(self) -> None:
        """Also this sandbox's own knobs: answers still to be edited or throttled."""
        super().clear_faults()
        with self._lock:
            self._edits.clear()
            self._throttle.clear()

    def edit_next_answer(
        self, path_contains: str, edit: Callable[[dict[str, Any]], None], count: int = 1
    ) -> None:
        """Pass the JSON body of the next `count` successful answers to a path containing
        `path_contains` through `edit` (in place) before it is sent: a proxy or a service fault
        that mangles a well-formed answer. Off unless a test asks for it."""
        with self._lock:
            self._edits.extend([(path_contains, edit)] * count)

    def short_batch_next(self, count: int = 1, *, drop: Iterable[int] | None = None) -> None:
        """The next `count` workItemsBatch answers leave out the entries of `drop` (every id
        asked when None) entirely, with no `null` in their place: an answer that does not account
        for every id it was asked for, unlike errorPolicy=omit, which answers `null` for an id it
        cannot read."""
        dropped = None if drop is None else frozenset(drop)

        def edit(body: dict[str, Any]) -> None:
            value = body.get("value") or []
            kept = [
                w
                for w in value
                if dropped is not None and (w is None or int(w["id"]) not in dropped)
            ]
            body["value"], body["count"] = kept, len(kept)

        self.edit_next_answer("/workItemsBatch", edit, count)

    def garble(self, item_id: int, field: str, value: Any) -> None:
        """From now on batch answers send `value` (JSON as is; None leaves the field out) for
        `field` of `item_id`, while WIQL still filters and sorts on the stored value: one work
        item whose field comes back malformed or wrong-typed."""
        with self._data_lock:
            self.garbled.setdefault(item_id, {})[field] = value

    # -- the demo -----------------------------------------------------------------------------
    def seed_demo(self) -> None:
        """A few dozen believable work items in mixed states across two teams' area paths: two
        epics over the stories, tasks under the first story, two sprints (one closed, one
        active), tags and assignees."""
        self.add_project(self.project, areas=("Web", "Mobile"))
        # Anchored to today's midnight: recent, yet identical when the demo runs again today.
        midnight = self.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        base = midnight - timedelta(days=14)
        stories = [
            ("Checkout: support saved cards", "Active", 1, 8, "Web", ""),
            ("Login with SSO (Entra ID)", "In Review", 2, 5, "Web", ""),
            ("Push notifications for order status", "New", 2, 5, "Mobile", ""),
            ("Offline mode for the catalogue", "New", 3, 13, "Mobile", ""),
            ("Dark theme", "Closed", 4, 3, "Web", ""),
            ("Search results pagination", "Resolved", 2, 3, "Web", ""),
            ("Export invoices as PDF", "Active", 2, 8, "Web", "Blocked; finance"),
            ("Accessibility audit fixes", "Active", 1, 5, "Web", "a11y"),
            ("Onboarding tour", "Removed", 4, 2, "Mobile", ""),
            ("Rate limit the public API", "Closed", 1, 5, "Web", "backend"),
            ("Android 15 edge-to-edge layout", "Active", 2, 3, "Mobile", "Blocked"),
            ("Cart survives app restart", "Closed", 2, 2, "Mobile", ""),
            ("Localise into German and French", "New", 3, 8, "Web", "i18n"),
            ("Order history filters", "In Review", 3, 3, "Web", ""),
            ("Biometric unlock", "New", 2, 5, "Mobile", ""),
        ]
        bugs = [
            ("Crash when rotating on the payment screen", "Active", 1, "Mobile"),
            ("Totals off by one cent with some coupons", "Resolved", 1, "Web"),
            ("Session expires during checkout", "New", 2, "Web"),
            ("Images blurry on retina displays", "Closed", 3, "Web"),
            ("Deep links open the wrong tab", "Active", 2, "Mobile"),
            ("Typo in the password reset email", "Closed", 4, "Web"),
            ("Duplicate order confirmation emails", "New", 1, "Web"),
        ]
        tasks = [
            ("Write migration for saved cards table", "Closed", "Web"),
            ("Add feature flag for SSO", "Active", "Web"),
            ("Set up crash reporting", "New", "Mobile"),
            ("Load test the search endpoint", "Active", "Web"),
            ("Update store screenshots", "Removed", "Mobile"),
        ]
        people = _DEMO_PEOPLE
        sprint_1, sprint_2 = f"{self.project}\\Sprint 1", f"{self.project}\\Sprint 2"
        self.add_iteration(sprint_1, base - timedelta(days=7), base + timedelta(days=6))
        self.add_iteration(sprint_2, base + timedelta(days=7), base + timedelta(days=20))

        def sprint(state: str) -> str | None:
            if state in ("Closed", "Resolved"):
                return sprint_1
            return sprint_2 if state in ("Active", "In Review") else None

        epics = {
            area: self.add_item(
                title,
                changed=base,
                work_item_type="Epic",
                state="Active",
                area_path=f"{self.project}\\{area}",
                fields={"System.Tags": "roadmap", "Microsoft.VSTS.Common.Priority": 1},
            )
            for area, title in (("Web", "Web shop 2.0"), ("Mobile", "Mobile app relaunch"))
        }
        first_story = None
        minutes = 0
        for n, (title, state, priority, points, area, tags) in enumerate(stories):
            minutes += 97
            item = self.add_item(
                title,
                changed=base + timedelta(minutes=minutes),
                area_path=f"{self.project}\\{area}",
                fields={
                    "System.AssignedTo": people[n % len(people)] if state != "New" else None,
                    "Microsoft.VSTS.Common.Priority": priority,
                    "Microsoft.VSTS.Scheduling.StoryPoints": float(points),
                    "System.Description": f"<div><p>As a customer I want <b>{title.lower()}</b>"
                    "</p></div>",
                    "Microsoft.VSTS.Common.AcceptanceCriteria": "<ul><li>Works on web and "
                    "mobile</li><li>Covered by tests</li></ul>",
                    "System.Tags": tags,
                    "System.Parent": epics[area],
                    "System.IterationPath": sprint(state),
                },
            )
            first_story = first_story or item
            self._walk_to(item, state, base + timedelta(minutes=minutes + 600))
        for title, state, priority, area in bugs:
            minutes += 61
            item = self.add_item(
                title,
                changed=base + timedelta(minutes=minutes),
                work_item_type="Bug",
                area_path=f"{self.project}\\{area}",
                fields={
                    "Microsoft.VSTS.Common.Priority": priority,
                    "Microsoft.VSTS.Scheduling.StoryPoints": 1.0,
                    "System.Description": "<p>Steps to reproduce:</p><ol><li>Open the app</li>"
                    "<li>Do the thing</li></ol>",
                    "System.IterationPath": sprint(state),
                },
            )
            self._walk_to(item, state, base + timedelta(minutes=minutes + 300))
        for title, state, area in tasks:
            minutes += 43
            item = self.add_item(
                title,
                changed=base + timedelta(minutes=minutes),
                work_item_type="Task",
                area_path=f"{self.project}\\{area}",
                fields={
                    "Microsoft.VSTS.Common.Priority": 2,
                    "System.Parent": first_story,
                    "System.IterationPath": sprint(state),
                },
            )
            self._walk_to(item, state, base + timedelta(minutes=minutes + 200))

    def _walk_to(self, item_id: int, state: str, at: datetime) -> None:
        """Move an item through Active on its way to `state`, like a real team would."""
        work_item_type = self.items[item_id]["fields"]["System.WorkItemType"]
        if state == "New":
            return
        if self.category_of(work_item_type, "Active") and state not in ("Active", "Removed"):
            self.update_item(item_id, changed=at - timedelta(hours=3), state="Active")
        self.update_item(item_id, changed=at, state=state)

    def demo_step(self, rng: random.Random, now: datetime) -> DemoChange:
        """One thing the demo team does in its project at `now`: adds a story or bug, moves an
        item to the next state of its type (New → Active → … → Closed), hands one to someone
        else, or closes one; each change is a new revision."""
        who = rng.choice(_DEMO_PEOPLE)
        name, by = identity(who)["displayName"], {"System.ChangedBy": who}
        with self._data_lock:
            open_items = sorted(
                item_id for item_id, item in self.items.items()
                if item["fields"]["System.TeamProject"] == self.project
                and item["fields"]["System.WorkItemType"] in ("User Story", "Bug", "Task")
                and self.category_of(
                    item["fields"]["System.WorkItemType"], item["fields"]["System.State"]
                ) not in ("Completed", "Removed")
            )  # fmt: skip
            action = demo_action(rng)
            if action == "create" or not open_items:
                title = _DEMO_NEW[self._next_id % len(_DEMO_NEW)]
                kind = rng.choice(["User Story", "Bug"])
                area = rng.choice(["Web", "Mobile"])
                item_id = self.add_item(
                    title, changed=now, work_item_type=kind,
                    area_path=f"{self.project}\\{area}",
                    fields={"Microsoft.VSTS.Common.Priority": rng.randint(1, 3), **by},
                )  # fmt: skip
                return DemoChange(str(item_id), f"{name} added {kind} {item_id} “{title}”")
            item_id = rng.choice(open_items)
            values = self.items[item_id]["fields"]
            holder = values.get("System.AssignedTo", {}).get("displayName")
            if action == "reassign":
                others = [p for p in _DEMO_PEOPLE if identity(p)["displayName"] != holder]
                other = rng.choice(others)
                self.update_item(item_id, changed=now, fields=by, assigned_to=other)
                return DemoChange(
                    str(item_id), f"{name} assigned {item_id} to {identity(other)['displayName']}"
                )
            kind, before = values["System.WorkItemType"], values["System.State"]
            states = [n for n, _, c in self.states[kind.casefold()] if c != "Removed"]
            after = states[-1] if action == "close" else states[states.index(before) + 1]
            changes: dict[str, Any] = {"state": after}
            if holder is None:
                changes["assigned_to"] = rng.choice(_DEMO_PEOPLE)
            self.update_item(item_id, changed=now, fields=by, **changes)
            verb = "closed" if action == "close" else "moved"
            return DemoChange(str(item_id), f"{name} {verb} {kind} {item_id} {before} → {after}")

    def demo_config(self) -> dict[str, Any]:
        """The integrations.config JSON for a row pointing at this sandbox."""
        return {
            "organization_url": self.organization_url,
            "project": self.project,
            "token": self.token,
        }

    # -- HTTP ---------------------------------------------------------------------------------
    def fault_response(self, fault: Fault) -> Response:
        """Injected faults in ADO's own shapes."""
        headers = dict(fault.headers)
        if fault.kind == "429":
            if fault.retry_after is not None:
                headers.setdefault("Retry-After", str(int(fault.retry_after)))
            headers.setdefault("X-RateLimit-Resource", "ATCPU")
            headers.setdefault("X-RateLimit-Delay", "0.5")
            headers.setdefault("X-RateLimit-Limit", "200")
            headers.setdefault("X-RateLimit-Remaining", "0")
            body = fault.body or error_body(
                "TF400733: The request has been canceled: Request was blocked due to exceeding "
                "usage of resource 'ATCPU' in namespace 'User'.",
                "RequestBlockedException",
            )
            return Response(429, body, headers)
        if fault.kind == "5xx":
            if fault.retry_after is not None:
                headers.setdefault("Retry-After", str(int(fault.retry_after)))
            body = fault.body or error_body(
                "VS800075: The service is temporarily unavailable.", "ServiceUnavailableException"
            )
            return Response(503, body, headers)
        if fault.kind == "401":
            return self._unauthorized()
        if fault.kind == "400_json":
            return Response(400, fault.body or error_body("VS403000: Bad request."), headers)
        return super().fault_response(fault)

    def _unauthorized(self) -> Response:
        # ADO answers a bad PAT with a plain-text 401 (the SDK then raises
        # AzureDevOpsAuthenticationError; a JSON body would surface as a generic service error).
        return Response(
            401,
            b"Access Denied: The Personal Access Token used has expired or is invalid.",
            {
                "Content-Type": "text/plain; charset=utf-8",
                "WWW-Authenticate": 'Basic realm="https://dev.azure.com/"',
            },
        )

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if self.token is None or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, _, password = decoded.partition(":")
        return password == self.token

    def add_member(self, *principal_ids: str) -> None:
        """Add service principals / managed identities (by app id or object id) to the org."""
        with self._lock:
            self.members.update(p.casefold() for p in principal_ids)

    def _bearer_refusal(self, request: Request) -> Response | None:
        """None when the request carries an Entra token this organization takes; else the
        401 Azure DevOps answers: a token that is not (or no longer) valid, or one of a
        principal the organization does not know (TF400813, as the service words it)."""
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        principal = self.entra.principal_of(token, ADO_RESOURCE) if self.entra else None
        if principal is None:
            return Response(
                401,
                b"Access Denied: The access token is expired or is not valid.",
                {
                    "Content-Type": "text/plain; charset=utf-8",
                    "WWW-Authenticate": "Bearer authorization_uri="
                    "https://login.microsoftonline.com/common",
                },
            )
        known = {principal.app_id.casefold(), principal.object_id.casefold()}
        if not known & self.members:
            body = error_body(
                f"TF400813: The user '{principal.object_id}' is not authorized to access this "
                "resource.",
                "UnauthorizedRequestException",
            )
            body["typeName"] = (
                "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, "
                "Microsoft.TeamFoundation.Framework.Server"
            )
            body["eventId"] = 3000
            return Response(401, body)
        return None

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization", "").startswith("Bearer "):
            refusal = self._bearer_refusal(request)
            if refusal is not None:
                return refusal
        elif not self._authorized(request):
            return self._unauthorized()
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        org = self.organization.split("/")
        if [p.casefold() for p in parts[: len(org)]] != [p.casefold() for p in org]:
            return Response(404, error_body("TF400813: Organization not found.", "NotFound"))
        rest = parts[len(org) :]
        response = self._route(request, rest)
        if response.status < 300:
            with self._lock:
                delay = self._throttle.pop(0) if self._throttle else None
                edit = next((e for e in self._edits if e[0] in request.path), None)
                if edit is not None:
                    self._edits.remove(edit)
            if edit is not None and isinstance(response.body, dict):
                edit[1](response.body)
            if delay is not None:
                response.headers.update(
                    {
                        "Retry-After": str(int(delay)),
                        "X-RateLimit-Resource": "ATCPU",
                        "X-RateLimit-Delay": "0.5",
                        "X-RateLimit-Limit": "200",
                        "X-RateLimit-Remaining": "10",
                    }
                )
        return response

    def _route(self, request: Request, rest: list[str]) -> Response:
        lowered = [p.casefold() for p in rest]
        if lowered == ["_apis"] and request.method == "OPTIONS":
            return Response(200, self._locations())
        if lowered == ["_apis", "resourceareas"] and request.method == "GET":
            return Response(200, {"count": 0, "value": []})
        if "_apis" not in lowered:
            return Response(404, error_body("VS800000: Not found.", "NotFound"))
        split = lowered.index("_apis")
        scope, api = rest[:split], lowered[split + 1 :]
        if not self._has_api_version(request):
            return Response(
                400,
                error_body(
                    f"VS800048: No api-version was supplied for the {request.method} request.",
                    "VssVersionNotSpecifiedException",
                ),
            )
        project: str | None = None
        if scope:
            project = self.projects.get(scope[0].casefold())
            if project is None:
                return Response(
                    404,
                    error_body(
                        f"TF200016: The following project does not exist: {scope[0]}. Verify that "
                        "the name of the project is correct and that the project exists on the "
                        "specified Azure DevOps Server.",
                        "ProjectDoesNotExistWithNameException",
                    ),
                )
        if api == ["wit", "wiql"] and request.method == "POST":
            return self._wiql(request, project)
        if api == ["wit", "workitemsbatch"] and request.method == "POST":
            return self._batch(request)
        if api == ["wit", "reporting", "workitemrevisions"] and request.method == "GET":
            return self._reporting(request, project)
        if api == ["wit", "fields"] and request.method == "GET":
            return self._fields_list(request)
        if (
            len(api) >= 3
            and api[:2] == ["wit", "classificationnodes"]
            and request.method == "GET"
            and project is not None
        ):
            return self._classification_node(request, project, api[2], rest[split + 4 :])
        if (
            len(api) == 4
            and api[:2] == ["wit", "workitemtypes"]
            and api[3] == "states"
            and request.method == "GET"
            and project is not None
        ):
            return self._states(rest[split + 3])
        return Response(404, error_body("VS800000: Not found.", "NotFound"))

    @staticmethod
    def _has_api_version(request: Request) -> bool:
        return "api-version=" in request.headers.get("accept", "") or "api-version" in request.query

    def _locations(self) -> dict[str, Any]:
        value = [
            {
                "id": location_id,
                "area": area,
                "resourceName": resource,
                "routeTemplate": template,
                "resourceVersion": version,
                "minVersion": "1.0",
                "maxVersion": self.max_api_version,
                "releasedVersion": self.released_version,
            }
            for location_id, area, resource, template, version in LOCATIONS
        ]
        return {"count": len(value), "value": value}

    # -- WIQL ---------------------------------------------------------------------------------
    def run_wiql(
        self, query: str, *, project: str | None, time_precision: bool, top: int | None
    ) -> list[int]:
        """Evaluate a WIQL query: the matching ids in its order (WiqlError like the server)."""
        return self._evaluate(query, project=project, time_precision=time_precision, top=top)[1]

    def _evaluate(
        self, query: str, *, project: str | None, time_precision: bool, top: int | None
    ) -> tuple[wiql.ParsedQuery, list[int]]:
        with self._data_lock:
            parsed = wiql.parse(
                query,
                project=project,
                time_precision=time_precision,
                area_exists=lambda p: p.casefold() in self.area_paths,
            )
            matched = parsed.filter(item["fields"] for item in self.items.values())
        parsed.sort(matched)
        cap = self.wiql_cap
        if len(matched) > cap and (top is None or top > cap or self.cap_ignores_top):
            with self._lock:
                self.wiql_refusals += 1
            raise WiqlError(
                "VS402337: The number of work items returned exceeds the size limit of "
                f"{cap}. Change the query to return fewer work items."
            )
        if top is not None:
            matched = matched[:top]
        return parsed, [int(f["System.Id"]) for f in matched]

    def _wiql(self, request: Request, project: str | None) -> Response:
        body = request.json()
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, str):
            return Response(400, error_body("VS402602: The query is missing.", "ArgumentException"))
        time_precision = request.query.get("timePrecision", ["false"])[0].lower() == "true"
        top_text = request.query.get("$top", [None])[0]
        try:
            top = int(top_text) if top_text is not None else None
            parsed, ids = self._evaluate(
                query, project=project, time_precision=time_precision, top=top
            )
        except (WiqlError, ValueError) as exc:
            return Response(400, error_body(str(exc)))
        base = self.organization_url
        # WorkItemQueryResult (wit 7.0/7.1): columns are the SELECT list, sortColumns the ORDER
        # BY; a query without ORDER BY gets no sortColumns.
        answer: dict[str, Any] = {
            "queryType": "flat",
            "queryResultType": "workItem",
            "asOf": ado_time(to_ms(self.now())),
            "columns": [self._field_reference(name) for name in parsed.fields],
        }
        if parsed.order:
            answer["sortColumns"] = [
                {"field": self._field_reference(name), "descending": descending}
                for name, descending in parsed.order
            ]
        answer["workItems"] = [{"id": i, "url": f"{base}/_apis/wit/workItems/{i}"} for i in ids]
        return Response(200, answer)

    def _field_reference(self, name: str) -> dict[str, str]:
        """WorkItemFieldReference: reference name, friendly name, REST URL."""
        return {
            "referenceName": name,
            "name": FIELD_NAMES.get(name, name),
            "url": f"{self.organization_url}/_apis/wit/fields/{name}",
        }

    def identity_ref(self, value: Mapping[str, str]) -> dict[str, Any] | str:
        """A stored identity as the service answers it: an IdentityRef (wit 7.1
        `httpExamples/workItems/GET__wit_WorkItems_id.json`), or "Name <unique name>" text when
        the sandbox plays an older server."""
        display, unique = value["displayName"], value["uniqueName"]
        if self.identities_as_strings:
            return f"{display} <{unique}>"
        guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.organization}/{unique.casefold()}"))
        descriptor = "aad." + base64.b64encode(guid.encode()).decode().rstrip("=")
        base = self.organization_url
        return {
            "displayName": display,
            "url": f"{base}/_apis/Identities/{guid}",
            "_links": {"avatar": {"href": f"{base}/_apis/GraphProfile/MemberAvatars/{descriptor}"}},
            "id": guid,
            "uniqueName": unique,
            "imageUrl": f"{base}/_api/_common/identityImage?id={guid}",
            "descriptor": descriptor,
        }

    # -- batch and states --------------------------------------------------------------------
    def _batch(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
            return Response(400, error_body("VS402610: ids are required.", "ArgumentException"))
        ids, fields = body["ids"], body.get("fields")
        if len(ids) > BATCH_CAP:
            return Response(
                400,
                error_body(
                    f"VS403474: The number of work items requested ({len(ids)}) exceeds the "
                    f"limit of {BATCH_CAP}.",
                    "ArgumentException",
                ),
            )
        if fields and body.get("$expand") not in (None, "none", "None"):
            return Response(
                400,
                error_body(
                    "VS403508: The expand parameter can not be used with the fields parameter.",
                    "ArgumentException",
                ),
            )
        for name in fields or []:
            if name not in self.known_fields:
                return Response(
                    400, error_body(f"TF51535: Cannot find field {name}.", "FieldDoesNotExist")
                )
        omit = str(body.get("errorPolicy", "fail")).casefold() == "omit"
        as_of = parse_date(body.get("asOf")) if body.get("asOf") is not None else None
        if body.get("asOf") is not None and as_of is None:
            return Response(400, error_body("asOf is not a valid date.", "ArgumentException"))
        value: list[Any] = []
        with self._data_lock:
            for item_id in ids:
                item = self.items.get(int(item_id))
                if item is not None and as_of is not None:
                    item = self._as_of(item, as_of)  # as it was then (None: not created yet)
                if item is None:
                    if not omit:
                        return Response(
                            404,
                            error_body(
                                f"TF401232: Work item {item_id} does not exist, or you do not "
                                "have permissions to read it.",
                                "WorkItemUnauthorizedAccessException",
                            ),
                        )
                    value.append(None)
                    continue
                value.append(self._render(int(item_id), item, fields))
        return Response(200, {"count": len(value), "value": value})

    def _render(
        self, item_id: int, item: dict[str, Any], fields: list[str] | None
    ) -> dict[str, Any]:
        stored = item["fields"]
        names = fields if fields else list(stored)
        out: dict[str, Any] = {}
        for name in names:
            if name == "System.Rev":
                out[name] = item["rev"]
                continue
            value = stored.get(name)
            if value is None or value == "":  # ADO leaves empty fields out entirely
                continue
            if name in self.identity_fields and isinstance(value, Mapping):
                out[name] = self.identity_ref(value)
            else:
                out[name] = ado_time(value) if isinstance(value, datetime) else value
        for name, value in self.garbled.get(item_id, {}).items():
            if fields and name not in fields:
                continue
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value
        return {
            "id": item_id,
            "rev": item["rev"],
            "fields": out,
            "url": f"{self.organization_url}/_apis/wit/workItems/{item_id}",
        }

    @staticmethod
    def _as_of(item: Mapping[str, Any], at: datetime) -> dict[str, Any] | None:
        """The item's revision in force at `at`: its latest saved at or before then."""
        then = [r for r in item.get("revisions", ()) if r["System.ChangedDate"] <= at]
        if not then:
            return None
        return {"rev": then[-1]["System.Rev"], "fields": then[-1]}

    # -- reporting revisions -----------------------------------------------------------------
    def _reporting(self, request: Request, project: str | None) -> Response:
        """GET {org}[/{project}]/_apis/wit/reporting/workitemrevisions (wit 7.1 "Reporting Work
        Item Revisions_Read Reporting Revisions Get"): revisions in the order they were saved,
        from the watermark of `continuationToken` (or after `startDateTime`, never both), at
        most `$maxPageSize` (capped by the sandbox) per batch, as a ReportingWorkItemRevisionsBatch
        `{values[{id, rev, fields}], continuationToken, isLastBatch, nextLink}`."""
        query = request.query

        def one(name: str) -> str | None:
            return query.get(name, [None])[0]

        def flag(name: str) -> bool:
            return (one(name) or "false").casefold() == "true"

        token, start_text = one("continuationToken"), one("startDateTime")
        if token is not None and start_text is not None:
            return Response(
                400,
                error_body(
                    "The startDateTime and continuationToken parameters cannot be used together.",
                    "ArgumentException",
                ),
            )
        fields = [f.strip() for f in (one("fields") or "").split(",") if f.strip()]
        for name in fields:
            if name not in self.known_fields:
                return Response(
                    400, error_body(f"TF51535: Cannot find field {name}.", "FieldDoesNotExist")
                )
        types = {t.strip().casefold() for t in (one("types") or "").split(",") if t.strip()}
        try:
            size = int(one("$maxPageSize") or self.reporting_page_cap)
            position = int(token.split(";")[0]) if token is not None else 0
        except ValueError:
            return Response(
                400, error_body("Invalid continuationToken or $maxPageSize.", "ArgumentException")
            )
        start = parse_date(start_text) if start_text is not None else None
        if (start_text is not None and start is None) or size < 1 or position < 0:
            return Response(
                400, error_body("Invalid startDateTime or $maxPageSize.", "ArgumentException")
            )
        size = min(size, self.reporting_page_cap)
        latest_only, identity_ref = flag("includeLatestOnly"), flag("includeIdentityRef")
        values: list[dict[str, Any]] = []
        last: tuple[int, int] = (0, 0)
        with self._data_lock:
            log = self.revision_log
            while position < len(log) and len(values) < size:
                item_id, snapshot = log[position]
                position += 1
                item = self.items.get(item_id)  # None: deleted (includeDeleted is not served)
                if item is None or (start is not None and snapshot["System.ChangedDate"] <= start):
                    continue
                if project is not None and snapshot["System.TeamProject"].casefold() != (
                    project.casefold()
                ):
                    continue
                if types and snapshot["System.WorkItemType"].casefold() not in types:
                    continue
                revisions = item["revisions"]
                if latest_only and snapshot is not revisions[-1]:
                    continue
                values.append(self._revision(item_id, snapshot, revisions, fields, identity_ref))
                last = (item_id, snapshot["System.Rev"])
            done = position >= len(log)
        with self._lock:
            self.reporting_requests += 1
        token = f"{position};{last[0]};{last[1]}"
        where = f"/{quote(project)}" if project is not None else ""
        kept = "".join(
            f"&{k}={quote(one(k) or '')}"
            for k in ("fields", "types", "includeIdentityRef", "includeLatestOnly", "$maxPageSize")
            if one(k) is not None
        )
        return Response(
            200,
            {
                "values": values,
                "nextLink": f"{self.organization_url}{where}/_apis/wit/reporting/"
                f"workItemRevisions?continuationToken={token}{kept}&api-version=7.1",
                "continuationToken": token,
                "isLastBatch": done,
            },
        )

    def _revision(
        self,
        item_id: int,
        snapshot: Mapping[str, Any],
        revisions: list[dict[str, Any]],
        fields: list[str],
        identity_ref: bool,
    ) -> dict[str, Any]:
        """One revision as the reporting API answers it: identities as IdentityRef objects
        (includeIdentityRef=true) or "Name <unique name>" text, RevisedDate the time the next
        revision superseded it."""
        rev = int(snapshot["System.Rev"])
        later = revisions[rev] if rev < len(revisions) else None
        stored = {
            **snapshot,
            "System.RevisedDate": later["System.ChangedDate"] if later is not None else NEVER,
        }
        out: dict[str, Any] = {}
        for name in fields or list(stored):
            value = stored.get(name)
            if value is None or value == "":
                continue
            if name in self.identity_fields and isinstance(value, Mapping):
                out[name] = (
                    self.identity_ref(value)
                    if identity_ref
                    else f"{value['displayName']} <{value['uniqueName']}>"
                )
            else:
                out[name] = ado_time(value) if isinstance(value, datetime) else value
        return {"id": item_id, "rev": rev, "fields": out}

    def _states(self, work_item_type: str) -> Response:
        states = self.states.get(work_item_type.casefold())
        if states is None:
            return Response(
                404,
                error_body(
                    f"VS402323: Work item type {work_item_type} does not exist.",
                    "WorkItemTypeNotFoundException",
                ),
            )
        value = [{"name": n, "color": c, "category": cat} for n, c, cat in states]
        return Response(200, {"count": len(value), "value": value})

    # -- classification nodes and fields -------------------------------------------------------
    def _classification_node(
        self, request: Request, project: str, group: str, path: list[str]
    ) -> Response:
        """GET {project}/_apis/wit/classificationnodes/{structureGroup}[/{path}]?$depth=N (wit
        7.0 "Classification Nodes_Get"): the node and `$depth` levels of children. Only the
        Iterations tree is served here (Areas answers 404)."""
        depth_text = request.query.get("$depth", ["0"])[0]
        try:
            depth = int(depth_text)
        except ValueError:
            return Response(400, error_body(f"Invalid $depth: {depth_text}.", "ArgumentException"))
        if depth < 0:
            return Response(400, error_body("$depth must be 0 or more.", "ArgumentException"))
        if group != "iterations":
            return Response(404, error_body("VS800000: Not found.", "NotFound"))
        with self._data_lock:
            wanted = "\\".join([project, *path]) if path else project
            tree = self.iterations[project.casefold()]
            node = tree.get(wanted.casefold())
            if node is None:
                return Response(
                    404,
                    error_body(
                        f"VS402485: The node '{wanted}' does not exist.",
                        "WorkItemTrackingTreeNodeNotFoundException",
                    ),
                )
            return Response(200, self._node(project, node, depth))

    def _node(self, project: str, node: Mapping[str, Any], depth: int) -> dict[str, Any]:
        """A WorkItemClassificationNode: its path carries the structure's `\\Iteration\\`
        segment after the project (the item's System.IterationPath does not)."""
        tree = self.iterations[project.casefold()]
        path = str(node["path"])
        prefix = path.casefold() + "\\"
        children = [
            n
            for key, n in tree.items()
            if key.startswith(prefix) and "\\" not in key[len(prefix) :]
        ]
        parts = path.split("\\")
        shown = "\\" + "\\".join([parts[0], "Iteration", *parts[1:]])
        out: dict[str, Any] = {
            "id": node["id"],
            "identifier": node["identifier"],
            "name": node["name"],
            "structureType": "iteration",
            "hasChildren": bool(children),
            "path": shown,
        }
        attributes = {
            k: ado_time(node[k]) for k in ("startDate", "finishDate") if node[k] is not None
        }
        if attributes:
            out["attributes"] = attributes
        if children and depth > 0:
            children.sort(key=lambda n: int(n["id"]))
            out["children"] = [self._node(project, n, depth - 1) for n in children]
        segments = "/".join(quote(p) for p in parts[1:])
        out["url"] = (
            f"{self.organization_url}/{quote(project)}/_apis/wit/classificationNodes/Iterations"
            + (f"/{segments}" if segments else "")
        )
        return out

    def _fields_list(self, request: Request) -> Response:
        """GET {org}[/{project}]/_apis/wit/fields (wit 7.0 "Fields_List"): every field of the
        organization as a WorkItemField."""
        expand = request.query.get("$expand", [None])[0]
        if expand is not None and expand.casefold() not in (
            "none",
            "extensionfields",
            "includedeleted",
        ):
            return Response(400, error_body(f"Invalid $expand: {expand}.", "ArgumentException"))
        value = []
        with self._data_lock:
            for reference in sorted(self.known_fields):
                name, kind = self.custom_fields.get(
                    reference, (FIELD_NAMES.get(reference, reference), _field_type(reference))
                )
                value.append(
                    {
                        "name": name,
                        "referenceName": reference,
                        "type": kind,
                        "usage": "workItem",
                        "readOnly": reference.startswith("System.")
                        and reference not in ("System.Title", "System.State"),
                        "canSortBy": True,
                        "isQueryable": True,
                        "supportedOperations": [],
                        "isIdentity": reference in self.identity_fields,
                        "isPicklist": False,
                        "isPicklistSuggested": False,
                        "url": f"{self.organization_url}/_apis/wit/fields/{reference}",
                    }
                )
        return Response(200, {"count": len(value), "value": value})


def _field_type(reference: str) -> str:
    """A standard field's type in the field list."""
    if reference in IDENTITY_FIELDS:
        return "identity"
    if reference in DATE_FIELDS:
        return "dateTime"
    if reference in INT_FIELDS:
        return "integer"
    if reference in NUMBER_FIELDS:
        return "double"
    if reference in ("System.AreaPath", "System.IterationPath"):
        return "treePath"
    if reference in ("System.Description", "Microsoft.VSTS.Common.AcceptanceCriteria"):
        return "html"
    return "string"

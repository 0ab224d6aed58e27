"""A Jira Cloud sandbox: the REST endpoints python-jira calls, with a real (small) JQL parser.

Serves `GET /rest/api/{2,3}/serverInfo`, `/field`, `/myself` and `GET|POST .../search/jql`
(enhanced search: `nextPageToken`/`isLast`, no `startAt`, fields filtering, page caps of 100 with
fields and 5000 for ids only). Errors are Jira's `{"errorMessages":[...],"errors":{}}`.

The JQL is parsed for real, so a query the connector builds wrongly, or an injected clause, shows:
an unparseable query is a 400, an unknown project is a 400, and `updated >= "yyyy-MM-dd HH:mm"` is
read in the user's profile time zone (`myself().timeZone`) at minute granularity, as Jira does.
Times in bodies carry the user's offset, as Jira Cloud sends them. v3 renders rich text as ADF,
v2 as plain text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sandbox.base import Fault, Request, Response, SandboxServer

CATEGORIES: dict[str, dict[str, Any]] = {
    "undefined": {"id": 1, "key": "undefined", "colorName": "medium-gray", "name": "No Category"},
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
    "indeterminate": {
        "id": 4,
        "key": "indeterminate",
        "colorName": "yellow",
        "name": "In Progress",
    },
}
DEFAULT_STATUSES = {
    "Backlog": "new",
    "To Do": "new",
    "Selected for Development": "new",
    "In Progress": "indeterminate",
    "In Review": "indeterminate",
    "Code Review": "indeterminate",
    "Blocked": "indeterminate",
    "On Hold": "indeterminate",
    "QA": "indeterminate",
    "Done": "done",
    "Closed": "done",
    "Cancelled": "done",
}
PRIORITIES = [
    "Highest",
    "High",
    "Medium",
    "Low",
    "Lowest",
    "Blocker",
    "Critical",
    "Minor",
    "Trivial",
]

STORY_POINTS_FIELD = "customfield_10016"
ACCEPTANCE_FIELD = "customfield_10035"
FLAGGED_FIELD = "customfield_10021"

STANDARD_FIELDS: list[tuple[str, str, list[str]]] = [
    ("issuekey", "Key", ["id", "issue", "issuekey", "key"]),
    ("summary", "Summary", ["summary"]),
    ("description", "Description", ["description"]),
    ("status", "Status", ["status"]),
    ("priority", "Priority", ["priority"]),
    ("resolution", "Resolution", ["resolution"]),
    ("resolutiondate", "Resolved", ["resolutiondate", "resolved"]),
    ("statuscategorychangedate", "Status Category Changed", ["statusCategoryChangedDate"]),
    ("updated", "Updated", ["updated", "updatedDate"]),
    ("created", "Created", ["created", "createdDate"]),
    ("issuetype", "Issue Type", ["issuetype", "type"]),
    ("project", "Project", ["project"]),
    ("assignee", "Assignee", ["assignee"]),
    ("labels", "Labels", ["labels"]),
]
CUSTOM_FIELDS: list[tuple[str, str, list[str], str]] = [
    (STORY_POINTS_FIELD, "Story point estimate", ["Story point estimate"], "number"),
    (ACCEPTANCE_FIELD, "Acceptance Criteria", ["Acceptance Criteria"], "string"),
    (FLAGGED_FIELD, "Flagged", ["Flagged", "Flagged[Checkboxes]"], "array"),
    ("customfield_10020", "Sprint", ["Sprint"], "array"),
]
IDS_ONLY = frozenset({"id", "key", "issuekey"})


@dataclass
class SandboxIssue:
    """One issue as the sandbox stores it (times aware UTC)."""

    id: str
    key: str
    project: str
    summary: str
    status: str
    updated: datetime
    created: datetime
    status_changed: datetime
    description: str | None = None
    description_adf: dict[str, Any] | None = None  # v3 body when a test wants exact ADF
    acceptance_criteria: str | None = None
    priority: str | None = "Medium"
    story_points: float | None = None
    resolution: str | None = None
    resolutiondate: datetime | None = None
    flagged: bool = False
    issuetype: str = "Story"
    labels: list[str] = field(default_factory=list)
    assignee: str | None = None


class JqlError(ValueError):
    """A query Jira would reject with 400; the message is Jira's errorMessages entry."""


class JiraSandbox(SandboxServer):
    """In-memory Jira Cloud. `clock` (aware) is the server time; None follows the real clock."""

    def __init__(
        self,
        token: str = "sandbox-token",
        *,
        email: str = "sync-bot@example.com",
        time_zone: str = "UTC",
        clock: datetime | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.email = email
        self.time_zone = time_zone
        self.clock = clock
        self.deployment_type = "Cloud"  # tests set "Server" to see the connector refuse
        self.statuses: dict[str, str] = dict(DEFAULT_STATUSES)
        self.projects: dict[str, dict[str, str]] = {}
        self.issues: dict[str, SandboxIssue] = {}
        self._next_id = 10000
        self._numbers: dict[str, int] = {}

    def __enter__(self) -> JiraSandbox:
        self.start()
        return self

    # -- helpers for tests and the demo -------------------------------------------------------
    def now(self) -> datetime:
        return self.clock if self.clock is not None else datetime.now(UTC)

    def set_clock(self, at: datetime | None) -> None:
        self.clock = at

    @property
    def site(self) -> str:
        """The site part of the connector's external ids for this sandbox."""
        return f"127.0.0.1:{self.port}"

    def external_id(self, issue: SandboxIssue) -> str:
        return f"{self.site}/{issue.id}"

    def add_project(self, key: str, name: str | None = None) -> dict[str, str]:
        with self._lock:
            if key not in self.projects:
                pid = str(10000 + len(self.projects))
                self.projects[key] = {"id": pid, "key": key, "name": name or key.title()}
                self._numbers[key] = 0
            return self.projects[key]

    def add_issue(
        self, project: str = "ABC", summary: str = "An issue", *, updated: datetime, **fields: Any
    ) -> SandboxIssue:
        """Create an issue; `fields` are SandboxIssue attributes (status, priority, …)."""
        with self._lock:
            self.add_project(project)
            self._next_id += 1
            self._numbers[project] += 1
            created = fields.pop("created", updated)
            issue = SandboxIssue(
                id=str(self._next_id),
                key=f"{project}-{self._numbers[project]}",
                project=project,
                summary=summary,
                status=fields.pop("status", "To Do"),
                updated=updated,
                created=created,
                status_changed=created,
            )
            self._apply(issue, fields, updated)
            self.issues[issue.id] = issue
            return issue

    def update_issue(self, ref: str, *, at: datetime, **fields: Any) -> SandboxIssue:
        """Change an issue at time `at` (SandboxIssue attributes; status changes keep Jira's rules:
        entering a done status sets a resolution and date, leaving one clears them)."""
        with self._lock:
            issue = self.issue(ref)
            if "status" in fields and fields["status"] != issue.status:
                before = self._category(issue.status)
                issue.status = fields.pop("status")
                after = self._category(issue.status)
                if before != after:
                    issue.status_changed = at
                if after == "done" and issue.resolution is None:
                    issue.resolution = fields.pop("resolution", "Done")
                if after != "done":
                    issue.resolution = issue.resolutiondate = None
            self._apply(issue, fields, at)
            return issue

    def delete_issue(self, ref: str) -> None:
        with self._lock:
            del self.issues[self.issue(ref).id]

    def move_issue(self, ref: str, project: str, *, at: datetime) -> SandboxIssue:
        """Move to another project: a new key, the same id."""
        with self._lock:
            issue = self.issue(ref)
            self.add_project(project)
            self._numbers[project] += 1
            issue.project, issue.key = project, f"{project}-{self._numbers[project]}"
            issue.updated = at
            return issue

    def issue(self, ref: str) -> SandboxIssue:
        with self._lock:
            if ref in self.issues:
                return self.issues[ref]
            for issue in self.issues.values():
                if issue.key == ref:
                    return issue
        raise KeyError(ref)

    def _apply(self, issue: SandboxIssue, fields: dict[str, Any], at: datetime) -> None:
        for name, value in fields.items():
            if not hasattr(issue, name) or name in ("id", "key", "project"):
                raise TypeError(f"unknown issue attribute {name!r}")
            setattr(issue, name, value)
        if self._category(issue.status) == "done" and issue.resolutiondate is None:
            issue.resolution = issue.resolution or "Done"
            issue.resolutiondate = at
        issue.updated = at

    def _category(self, status: str) -> str:
        return self.statuses.get(status, "undefined")

    def seed_demo(self) -> None:
        """Two projects, a few dozen believable issues over the last four weeks."""
        rng = random.Random(42)
        self.add_project("PAY", "Payments")
        self.add_project("WEB", "Web App")
        # Anchored to today's midnight: recent, yet identical when the demo runs again today.
        now = self.now().replace(hour=0, minute=0, second=0, microsecond=0)
        titles = {
            "PAY": [
                "Retry failed card captures with idempotency keys",
                "Show VAT breakdown on invoices",
                "Migrate webhook signing to HMAC-SHA256",
                "Refunds over 30 days fail with a 500",
                "Add SEPA direct debit as a payment method",
                "Reconcile Stripe payouts nightly",
                "Currency rounding differs between cart and invoice",
                "Expose payment status in the customer portal",
                "Alert on-call when the capture queue backs up",
                "PCI scope review for the new checkout iframe",
                "Dunning emails sent twice for annual plans",
                "Support partial captures for split shipments",
                "Upgrade the payments SDK to v12",
                "Document the chargeback workflow",
                "3-D Secure challenge loops on Safari",
                "Store card fingerprints to detect duplicates",
                "Nightly settlement report misses the last hour",
                "Move fraud rules to the rules engine",
            ],
            "WEB": [
                "Dark mode for the dashboard",
                "Login form loses input on validation error",
                "Lazy-load charts below the fold",
                "Keyboard navigation in the date picker",
                "Localise the onboarding flow (de, fr, ja)",
                "Replace moment.js with date-fns",
                "Broken avatar upload on Firefox",
                "Cache API responses with stale-while-revalidate",
                "Accessibility audit fixes (WCAG 2.1 AA)",
                "Add a CSV export to the reports page",
                "Session expires without warning",
                "Right-to-left layout for Arabic and Hebrew",
                "Infinite scroll jumps after loading more items",
                "Feature flag cleanup after the Q2 launch",
                "Slow first paint on the pricing page",
                "Empty states for new workspaces",
            ],
        }
        plan = [
            ("To Do", None, False),
            ("Backlog", None, False),
            ("Selected for Development", None, False),
            ("In Progress", None, False),
            ("In Progress", None, True),
            ("In Review", None, False),
            ("Code Review", None, False),
            ("Blocked", None, False),
            ("Done", "Done", False),
            ("Done", "Done", False),
            ("Done", "Won't Do", False),
            ("Closed", "Duplicate", False),
        ]
        for project, names in titles.items():
            for n, title in enumerate(names):
                status, resolution, flagged = plan[(n * 5 + len(project)) % len(plan)]
                created = now - timedelta(days=rng.randint(8, 28), minutes=rng.randint(0, 600))
                updated = created + timedelta(days=rng.randint(0, 7), minutes=rng.randint(1, 900))
                self.add_issue(
                    project,
                    title,
                    created=created,
                    updated=min(updated, now - timedelta(minutes=n + 1)),
                    status=status,
                    resolution=resolution,
                    flagged=flagged,
                    priority=rng.choice(["Highest", "High", "Medium", "Medium", "Low", "Lowest"]),
                    story_points=rng.choice([None, 1, 2, 3, 5, 8, 13, 0.5]),
                    issuetype=rng.choice(["Story", "Bug", "Task"]),
                    description=f"{title}.\n\nContext: reported by the {project} team.\n"
                    "Steps are in the linked ticket.",
                    acceptance_criteria="Given the change is deployed\nThen the behaviour is "
                    "covered by a test",
                )

    def demo_config(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "email": self.email,
            "token": self.token,
            "projects": ["PAY", "WEB"],
            "story_points_field": "Story point estimate",
            "acceptance_criteria_field": "Acceptance Criteria",
        }

    # -- HTTP ---------------------------------------------------------------------------------
    def fault_response(self, fault: Fault) -> Response:
        """Jira's own error bodies and headers for injected faults."""
        headers = dict(fault.headers)
        if fault.retry_after is not None and fault.kind in ("429", "403_rate_limit", "5xx"):
            headers.setdefault("Retry-After", str(int(fault.retry_after)))
        if fault.kind == "429":
            headers.setdefault("X-RateLimit-Limit", "100")
            headers.setdefault("X-RateLimit-Remaining", "0")
            headers.setdefault("RateLimit-Reason", "jira-burst-based")
            return Response(429, fault.body or _errors("Rate limit exceeded."), headers)
        if fault.kind == "5xx":
            return Response(503, fault.body or _errors("Service Unavailable"), headers)
        if fault.kind == "401":
            return Response(401, fault.body or _errors(_UNAUTHENTICATED), headers)
        if fault.kind == "400_json":
            return Response(400, fault.body or _errors("Bad request"), headers)
        if fault.kind == "403_rate_limit":
            return Response(403, fault.body or _errors("Forbidden"), headers)
        return super().fault_response(fault)

    def handle(self, request: Request) -> Response:
        match = re.fullmatch(r"/rest/api/([23])/(.+)", request.path)
        if match is None:
            return Response(404, _errors("Not found"))
        version, path = match.groups()
        if not self._authorised(request):
            return Response(401, _errors(_UNAUTHENTICATED))
        routes: dict[tuple[str, str], Callable[[Request, str], Response]] = {
            ("GET", "serverInfo"): self._server_info,
            ("GET", "field"): self._fields,
            ("GET", "myself"): self._myself,
            ("GET", "search/jql"): self._search,
            ("POST", "search/jql"): self._search,
        }
        route = routes.get((request.method, path))
        if route is not None:
            with self._lock:
                return route(request, version)
        if path in ("search", "search/"):
            return Response(410, _errors("The requested API has been removed. Use search/jql."))
        return Response(404, _errors(f"No resource at {request.method} {request.path}"))

    def _authorised(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def _server_info(self, request: Request, version: str) -> Response:
        return Response(
            200,
            {
                "baseUrl": self.url,
                "displayUrl": self.url,
                "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0],
                "deploymentType": self.deployment_type,
                "buildNumber": 100289,
                "buildDate": "2025-04-30T00:00:00.000+0000",
                "serverTime": self._time(self.now()),
                "scmInfo": "0",
                "serverTitle": "Jira",
                "defaultLocale": {"locale": "en_US"},
                "serverTimeZone": "Etc/UTC",
            },
        )

    def _fields(self, request: Request, version: str) -> Response:
        listed: list[dict[str, Any]] = [
            {
                "id": fid,
                "key": fid,
                "name": name,
                "custom": False,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": clauses,
            }
            for fid, name, clauses in STANDARD_FIELDS
        ]
        for fid, name, clauses, kind in CUSTOM_FIELDS:
            number = int(fid.rsplit("_", 1)[1])
            listed.append(
                {
                    "id": fid,
                    "key": fid,
                    "name": name,
                    "untranslatedName": name,
                    "custom": True,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [f"cf[{number}]", *clauses],
                    "schema": {"type": kind, "customId": number},
                }
            )
        return Response(200, listed)

    def _myself(self, request: Request, version: str) -> Response:
        return Response(
            200,
            {
                "self": f"{self.url}/rest/api/{version}/user?accountId=5b10ac8d82e05b22cc7d4ef5",
                "accountId": "5b10ac8d82e05b22cc7d4ef5",
                "accountType": "atlassian",
                "emailAddress": self.email,
                "displayName": "Sync Bot",
                "active": True,
                "timeZone": self.time_zone,
                "locale": "en_US",
            },
        )

    def _search(self, request: Request, version: str) -> Response:
        if request.method == "POST":
            try:
                body = request.json() or {}
            except ValueError:
                return Response(400, _errors("Invalid request payload. Refer to the REST API."))
            jql = body.get("jql") or ""
            fields = list(body.get("fields") or [])
            max_results = body.get("maxResults")
            token = body.get("nextPageToken")
        else:
            query = request.query
            jql = (query.get("jql") or [""])[0]
            fields = [f for value in query.get("fields", []) for f in value.split(",") if f]
            max_results = _first(query.get("maxResults"))
            token = _first(query.get("nextPageToken"))
        try:
            matches = self.evaluate(jql)
            offset = self._offset(token, jql)
            size = int(max_results) if max_results not in (None, "") else 50
        except JqlError as exc:
            return Response(400, _errors(str(exc)))
        except ValueError:
            return Response(400, _errors("maxResults must be a number."))
        wanted = set(fields) or {"id"}
        cap = 5000 if wanted <= IDS_ONLY else 100
        size = max(1, min(size, cap))
        chunk = matches[offset : offset + size]
        end = offset + len(chunk)
        body_out: dict[str, Any] = {
            "issues": [self._render(issue, wanted, version) for issue in chunk],
            "isLast": end >= len(matches),
        }
        if end < len(matches):
            body_out["nextPageToken"] = _page_token(end, jql)
        return Response(200, body_out)

    def _offset(self, token: str | None, jql: str) -> int:
        if not token:
            return 0
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            if decoded["q"] != _jql_hash(jql):
                raise ValueError
            return int(decoded["o"])
        except (ValueError, KeyError, TypeError):
            raise JqlError("The provided next page token is invalid or expired.") from None

    # -- JQL ----------------------------------------------------------------------------------
    def evaluate(self, jql: str) -> list[SandboxIssue]:
        """The issues a JQL query returns, in its order; JqlError where Jira would answer 400."""
        with self._lock:
            predicate, order = _Parser(jql, self).parse()
            found = [issue for issue in self.issues.values() if predicate(issue)]
            for name, descending in reversed(order or [("key", True)]):
                found.sort(key=_SORT_KEYS[name], reverse=descending)
            return found

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def project_of(self, value: str) -> str:
        """The project key a JQL project value names (key, name or id), else JqlError."""
        folded = value.casefold()
        for key, project in self.projects.items():
            if folded in (key.casefold(), project["name"].casefold(), project["id"]):
                return key
        raise JqlError(f"The value '{value}' does not exist for the field 'project'.")

    # -- rendering ----------------------------------------------------------------------------
    def _time(self, at: datetime | None) -> str | None:
        """Jira's `2025-05-01T22:34:56.789+1000`, in the user's zone."""
        if at is None:
            return None
        local = at.astimezone(self.zone())
        return (
            local.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{local.microsecond // 1000:03d}"
            + (local.strftime("%z"))
        )

    def _render(self, issue: SandboxIssue, wanted: set[str], version: str) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog",
            "id": issue.id,
            "self": f"{self.url}/rest/api/{version}/issue/{issue.id}",
            "key": issue.key,
        }
        values = self._field_values(issue, version)
        names = values.keys() if wanted & {"*all", "*navigable"} else wanted
        fields = {n: values[n] for n in names if n in values and f"-{n}" not in wanted}
        if fields or not wanted <= IDS_ONLY:
            rendered["fields"] = fields
        return rendered

    def _field_values(self, issue: SandboxIssue, version: str) -> dict[str, Any]:
        base = f"{self.url}/rest/api/{version}"
        category = self._category(issue.status)
        project = self.projects[issue.project]
        return {
            "summary": issue.summary,
            "description": self._rich(issue.description, issue.description_adf, version),
            "status": {
                "self": f"{base}/status/{_stable_id(issue.status)}",
                "description": "",
                "iconUrl": f"{self.url}/images/icons/statuses/generic.png",
                "name": issue.status,
                "id": _stable_id(issue.status),
                "statusCategory": {
                    "self": f"{base}/statuscategory/{CATEGORIES[category]['id']}",
                    **CATEGORIES[category],
                },
            },
            "priority": (
                {
                    "self": f"{base}/priority/{_priority_id(issue.priority)}",
                    "iconUrl": f"{self.url}/images/icons/priorities/{issue.priority.lower()}.svg",
                    "name": issue.priority,
                    "id": _priority_id(issue.priority),
                }
                if issue.priority
                else None
            ),
            "resolution": (
                {
                    "self": f"{base}/resolution/{_stable_id(issue.resolution)}",
                    "id": _stable_id(issue.resolution),
                    "description": "",
                    "name": issue.resolution,
                }
                if issue.resolution
                else None
            ),
            "resolutiondate": self._time(issue.resolutiondate),
            "statuscategorychangedate": self._time(issue.status_changed),
            "updated": self._time(issue.updated),
            "created": self._time(issue.created),
            "issuetype": {"id": _stable_id(issue.issuetype), "name": issue.issuetype},
            "project": {
                "self": f"{base}/project/{project['id']}",
                "projectTypeKey": "software",
                **project,
            },
            "assignee": (
                {"accountId": _stable_id(issue.assignee), "displayName": issue.assignee}
                if issue.assignee
                else None
            ),
            "labels": list(issue.labels),
            STORY_POINTS_FIELD: issue.story_points,
            ACCEPTANCE_FIELD: self._rich(issue.acceptance_criteria, None, version),
            FLAGGED_FIELD: (
                [{"self": f"{base}/customFieldOption/10019", "value": "Impediment", "id": "10019"}]
                if issue.flagged
                else None
            ),
            "customfield_10020": None,
        }

    @staticmethod
    def _rich(text: str | None, adf: dict[str, Any] | None, version: str) -> Any:
        if version == "2":
            return text
        if adf is not None:
            return adf
        return text_to_adf(text) if text else None


_UNAUTHENTICATED = "Client must be authenticated to access this resource."


def _errors(*messages: str) -> dict[str, Any]:
    return {"errorMessages": list(messages), "errors": {}}


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None


def _stable_id(name: str) -> str:
    return str(10000 + int(hashlib.sha1(name.encode()).hexdigest()[:4], 16))


def _priority_id(name: str) -> str:
    """Jira's default scheme numbers Highest..Lowest 1-5; other priorities get 10000+ ids."""
    return str(PRIORITIES.index(name) + 1) if name in PRIORITIES else _stable_id(name)


def _jql_hash(jql: str) -> str:
    return hashlib.sha1(jql.encode()).hexdigest()[:12]


def _page_token(offset: int, jql: str) -> str:
    raw = json.dumps({"o": offset, "q": _jql_hash(jql)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def text_to_adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: blank lines split paragraphs, newlines are hardBreaks."""
    paragraphs = []
    for block in text.split("\n\n"):
        inline: list[dict[str, Any]] = []
        for n, line in enumerate(block.split("\n")):
            if n:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": paragraphs}


def _key_order(issue: SandboxIssue) -> tuple[str, int]:
    return issue.project, int(issue.key.rsplit("-", 1)[1])


_SORT_KEYS: dict[str, Callable[[SandboxIssue], Any]] = {
    "updated": lambda i: i.updated,
    "created": lambda i: i.created,
    "key": _key_order,
    "id": lambda i: int(i.id),
    "summary": lambda i: i.summary.casefold(),
    "status": lambda i: i.status.casefold(),
    "priority": lambda i: int(_priority_id(i.priority)) if i.priority else 10**9,
}
_SORT_ALIASES = {"updateddate": "updated", "createddate": "created", "issuekey": "key"}

# ---------------------------------------------------------------------------------------------
# A JQL subset: clauses joined by AND / OR / NOT and parentheses, ORDER BY.
# ---------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|!~|>=|<=|=|>|<|~|\(|\)|,)
      | (?P<word>[A-Za-z0-9_.\-\[\]:/+*]+)
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", " ": " "}
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
_RELATIVE = re.compile(r"([-+]?)(\d+)([wdhm])")
_UNIT = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1)}
_UNIT["m"] = timedelta(minutes=1)

Predicate = Callable[[SandboxIssue], bool]


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # string | op | word | end
    text: str  # the value (unescaped for strings)
    at: int


def _tokenize(jql: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(jql):
        if jql[pos:].strip() == "":
            break
        m = _TOKEN.match(jql, pos)
        if m is None or m.end() == pos:
            bad = jql[pos:].lstrip()[:1]
            if bad in "\"'":
                raise JqlError(f"Error in the JQL Query: unterminated string at character {pos}.")
            raise JqlError(
                f"Error in the JQL Query: The character '{bad}' is a reserved JQL character. You "
                f"must enclose it in a string or use the escape '\\u{ord(bad):04x}' instead."
            )
        kind = m.lastgroup or "word"
        text = m.group(kind)
        if kind == "string":
            text = _unescape(text[1:-1], m.start(kind))
        tokens.append(_Tok(kind, text, m.start(kind)))
        pos = m.end()
    tokens.append(_Tok("end", "", len(jql)))
    return tokens


def _unescape(body: str, at: int) -> str:
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1 : i + 2]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            if nxt not in _ESCAPES:
                raise JqlError(
                    f"Error in the JQL Query: illegal escape sequence at character {at}."
                )
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


class _Parser:
    """Recursive descent over the tokens; builds a predicate and the ORDER BY list."""

    def __init__(self, jql: str, sandbox: JiraSandbox) -> None:
        self.tokens = _tokenize(jql)
        self.pos = 0
        self.sandbox = sandbox

    # -- token helpers ------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> _Tok:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def is_word(self, *words: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok.kind == "word" and tok.text.casefold() in words

    def take(self) -> _Tok:
        tok = self.peek()
        self.pos += 1
        return tok

    def expect_op(self, op: str) -> None:
        tok = self.take()
        if tok.kind != "op" or tok.text != op:
            raise self.error(f"Expecting '{op}'", tok)

    def error(self, what: str, tok: _Tok) -> JqlError:
        got = tok.text if tok.kind != "end" else "end of query"
        return JqlError(
            f"Error in the JQL Query: {what} but got '{got}'. (line 1, character {tok.at + 1})"
        )

    # -- grammar ------------------------------------------------------------------------------
    def parse(self) -> tuple[Predicate, list[tuple[str, bool]]]:
        predicate: Predicate = lambda issue: True  # noqa: E731
        if not self.is_word("order"):
            if self.peek().kind == "end":
                return predicate, []
            predicate = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.is_word("order"):
            self.take()
            if not self.is_word("by"):
                raise self.error("Expecting 'by'", self.peek())
            self.take()
            order = self.order_list()
        if self.peek().kind != "end":
            raise self.error("Expecting either 'OR' or 'AND'", self.peek())
        return predicate, order

    def order_list(self) -> list[tuple[str, bool]]:
        order = []
        while True:
            tok = self.take()
            name = _SORT_ALIASES.get(tok.text.casefold(), tok.text.casefold())
            if tok.kind not in ("word", "string") or name not in _SORT_KEYS:
                raise JqlError(f"Not able to sort using field '{tok.text}'.")
            descending = False
            if self.is_word("asc", "desc"):
                descending = self.take().text.casefold() == "desc"
            order.append((name, descending))
            if not (self.peek().kind == "op" and self.peek().text == ","):
                return order
            self.take()

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.is_word("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else lambda i: any(p(i) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.is_word("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else lambda i: all(p(i) for p in parts)

    def not_expr(self) -> Predicate:
        if self.is_word("not"):
            self.take()
            inner = self.not_expr()
            return lambda i: not inner(i)
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.take()
            inner = self.or_expr()
            self.expect_op(")")
            return inner
        return self.clause()

    def clause(self) -> Predicate:
        tok = self.take()
        if tok.kind not in ("word", "string"):
            raise self.error("Expecting a field name", tok)
        name = tok.text.casefold()
        operator = self.operator()
        if operator in ("in", "not in"):
            values = self.value_list()
        elif operator in ("is", "is not"):
            if not self.is_word("empty", "null"):
                raise self.error("Expecting 'EMPTY' or 'NULL'", self.peek())
            self.take()
            values = []
        else:
            values = [self.value()]
        return _clause(self.sandbox, name, tok.text, operator, values)

    def operator(self) -> str:
        tok = self.take()
        if tok.kind == "op" and tok.text not in ("(", ")", ","):
            return tok.text
        if tok.kind == "word" and tok.text.casefold() in ("in", "is"):
            word = tok.text.casefold()
            if self.is_word("not"):
                self.take()
                return f"{word} not" if word == "is" else "not in"
            return word
        if tok.kind == "word" and tok.text.casefold() == "not" and self.is_word("in"):
            self.take()
            return "not in"
        raise self.error("Expecting operator", tok)

    def value(self) -> str:
        tok = self.take()
        if tok.kind not in ("word", "string") or (
            tok.kind == "word" and tok.text.casefold() in ("and", "or", "order", "not")
        ):
            raise self.error("Expecting either a value, list or function", tok)
        return tok.text

    def value_list(self) -> list[str]:
        self.expect_op("(")
        values = [self.value()]
        while True:
            tok = self.take()
            if tok.kind == "op" and tok.text == ")":
                return values
            if tok.kind != "op" or tok.text != ",":
                raise self.error("Expecting ',' or ')'", tok)
            values.append(self.value())


def _clause(
    sandbox: JiraSandbox, name: str, shown: str, operator: str, values: list[str]
) -> Predicate:
    """A predicate for `field operator values`."""
    if name in ("updated", "updateddate", "created", "createddate", "resolved", "resolutiondate"):
        return _date_clause(sandbox, name, shown, operator, values)
    getter = _getter(sandbox, name, shown, values)
    wanted = {v.casefold() for v in values}
    if operator in ("=", "in"):
        return lambda i: (getter(i) or "").casefold() in wanted
    if operator in ("!=", "not in"):
        # JQL's != never matches an empty field
        return lambda i: (getter(i) or "") != "" and (getter(i) or "").casefold() not in wanted
    if operator == "is":
        return lambda i: not getter(i)
    if operator == "is not":
        return lambda i: bool(getter(i))
    if operator in ("~", "!~") and name in ("summary", "text", "description"):
        needle = values[0].casefold().strip("*")
        found: Predicate = lambda i: needle in (getter(i) or "").casefold()  # noqa: E731
        return found if operator == "~" else (lambda i: not found(i))
    raise JqlError(f"The operator '{operator}' is not supported by the '{shown}' field.")


def _getter(
    sandbox: JiraSandbox, name: str, shown: str, values: list[str]
) -> Callable[[SandboxIssue], str | None]:
    if name == "project":
        keys = [sandbox.project_of(v) for v in values]
        values[:] = keys  # compare on keys from now on
        return lambda i: i.project
    if name in ("key", "issuekey", "issue", "id"):
        return lambda i: i.key if not values or not values[0].isdigit() else i.id
    if name == "status":
        known = {s.casefold() for s in sandbox.statuses}
        for v in values:
            if v.casefold() not in known:
                raise JqlError(f"The value '{v}' does not exist for the field 'status'.")
        return lambda i: i.status
    if name == "statuscategory":
        return lambda i: CATEGORIES[sandbox.statuses.get(i.status, "undefined")]["name"]
    if name == "resolution":
        return lambda i: i.resolution or "Unresolved"
    if name == "priority":
        return lambda i: i.priority
    if name in ("type", "issuetype"):
        return lambda i: i.issuetype
    if name in ("summary", "text"):
        return lambda i: i.summary
    if name == "description":
        return lambda i: i.description
    if name == "labels":
        return lambda i: " ".join(i.labels) or None
    raise JqlError(f"Field '{shown}' does not exist or you do not have permission to view it.")


def _date_clause(
    sandbox: JiraSandbox, name: str, shown: str, operator: str, values: list[str]
) -> Predicate:
    attr = {"updateddate": "updated", "createddate": "created", "resolved": "resolutiondate"}
    attr_name = attr.get(name, name)
    if operator in ("is", "is not"):
        empty = operator == "is"
        return lambda i: (getattr(i, attr_name) is None) == empty
    if operator not in ("=", "!=", ">", ">=", "<", "<="):
        raise JqlError(f"The operator '{operator}' is not supported by the '{shown}' field.")
    at = _date_value(sandbox, shown, values[0])
    compare: dict[str, Callable[[datetime], bool]] = {
        ">=": lambda t: t >= at,
        ">": lambda t: t > at,
        "<=": lambda t: t <= at,
        "<": lambda t: t < at,
        "=": lambda t: at <= t < at + timedelta(minutes=1),
        "!=": lambda t: not at <= t < at + timedelta(minutes=1),
    }
    test = compare[operator]

    def predicate(issue: SandboxIssue) -> bool:
        value = getattr(issue, attr_name)
        return value is not None and test(value)

    return predicate


def _date_value(sandbox: JiraSandbox, shown: str, literal: str) -> datetime:
    """A JQL date literal as an instant: absolute ones read in the user's time zone (fold 0),
    relative ones (`-15m`, `-2d`) from the sandbox clock, both at minute granularity."""
    text = literal.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        sign, amount, unit = relative.groups()
        delta = _UNIT[unit] * int(amount)
        at = sandbox.now() + (-delta if sign == "-" else delta)
        return at.replace(second=0, microsecond=0)
    for fmt in _DATE_FORMATS:
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=sandbox.zone()).astimezone(UTC)
    raise JqlError(
        f"Date value '{literal}' for field '{shown}' is invalid. Valid formats include: "
        "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
        "e.g. '-5d', '4w 2d'."
    )

"""A Jira Cloud sandbox: the REST endpoints python-jira calls, with a real (small) JQL parser.

Serves `GET /rest/api/{2,3}/serverInfo`, `/field`, `/myself` and `GET|POST .../search/jql`
(enhanced search: `nextPageToken`/`isLast`, no `startAt`, fields filtering, page caps of 100 with
fields and 5000 for ids only). Errors are Jira's `{"errorMessages":[...],"errors":{}}`.

The JQL is parsed for real (`connectors.sandbox.jql`), so a query the connector builds wrongly, or
an injected clause, shows: an unparseable query is a 400, an unknown project is a 400, and
`updated >= "yyyy-MM-dd HH:mm"` is read in the user's profile time zone (`myself().timeZone`) at
minute granularity, as Jira does.
Times in bodies carry the user's offset, as Jira Cloud sends them. v3 renders rich text as ADF,
v2 as plain text. `page_cap` lowers the largest page the search answers, as Jira Cloud may return
fewer issues than `maxResults` asks.

OAuth 2.0 (3LO): with `oauth` set to an `AtlassianAuthSandbox`, the sandbox also plays
api.atlassian.com: every route under `/ex/jira/{cloud_id}/…` for `Bearer` tokens that server says
are alive (else 401; another cloudId is a 404), and `/oauth/token/accessible-resources` answered by
it. At the site's own routes only Basic signs in, so a 3LO token is a 401 there, as on Jira Cloud.

The richer model, in each deployment's own shape: `issuetype` with `subtask` (and Cloud's
`hierarchyLevel`), `assignee` (Cloud `accountId`, DC `name`/`key`, both with the `emailAddress`
Jira sends), `parent` (Cloud: every child; DC: sub-tasks, an epic's children carry its key in the
Epic Link field instead), the Sprint field (`add_sprint`; Cloud objects, DC
`…Sprint@…[id=…,…]` strings), custom fields a test adds (`add_field`, values in
`SandboxIssue.custom`). Moving an issue to another parent or sprint (`update_issue(parent=…,
sprint=…)`) bumps `updated` and writes a changelog history, as Jira does. JQL's `key in (…)`
naming no issue is Jira's 400, unless DC's search is sent `validateQuery=false`.

Fault knobs for what Jira itself should never send but a client must not trust blindly:
`corrupt_issue()` serves chosen keys of one issue instead of the real ones (a garbage `updated`,
a wrong-typed field), without changing where it sorts; `answer_short()` cuts search answers short
while `nextPageToken` and `isLast: false` still promise more.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sandbox import jql as jql_language
from connectors.sandbox import webhooks
from connectors.sandbox.atlassian import AtlassianAuthSandbox
from connectors.sandbox.base import (
    DemoChange,
    Fault,
    Request,
    Response,
    SandboxServer,
    demo_action,
)
from connectors.sandbox.jql import JqlError

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

PEOPLE = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson"]  # demo actors
#: The demo team's next step from each status it works in (`demo_step`; others: In Progress).
_DEMO_NEXT = {"In Progress": "In Review", "In Review": "Done", "Code Review": "Done"}
#: Summaries of the issues the demo team files while the demo runs.
_DEMO_NEW = [
    "Payout export times out for large merchants",
    "Add Apple Pay to the mobile checkout",
    "Invoice PDF cuts off long addresses",
    "Retry budget for the card network is too low",
    "Show the last four digits on receipts",
    "Billing page flashes unstyled content",
    "Audit log for refund approvals",
    "Dashboard totals disagree with the CSV export",
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
SPRINT_FIELD = "customfield_10020"
EPIC_LINK_FIELD = "customfield_10101"  # Data Center only: Cloud's epics' children carry `parent`
GREENHOPPER = "com.pyxis.greenhopper.jira:"
#: (id, name, JQL names, schema) of the site's custom fields, as GET /field lists them
CUSTOM_FIELDS: list[tuple[str, str, list[str], dict[str, Any]]] = [
    (STORY_POINTS_FIELD, "Story point estimate", ["Story point estimate"], {"type": "number"}),
    (ACCEPTANCE_FIELD, "Acceptance Criteria", ["Acceptance Criteria"], {"type": "string"}),
    (FLAGGED_FIELD, "Flagged", ["Flagged", "Flagged[Checkboxes]"], {"type": "array"}),
    (
        SPRINT_FIELD,
        "Sprint",
        ["Sprint"],
        {"type": "array", "items": "json", "custom": GREENHOPPER + "gh-sprint"},
    ),
]
#: Issue types that are sub-tasks, and the hierarchy level Jira Cloud gives each type.
SUBTASK_TYPES = frozenset({"Sub-task", "Subtask"})
HIERARCHY = {"Epic": 1, "Sub-task": -1, "Subtask": -1}
IDS_ONLY = frozenset({"id", "key", "issuekey"})


#: attribute -> (changelog `field`, `fieldtype`, `fieldId` on Cloud)
CHANGE_FIELDS: dict[str, tuple[str, str, str | None]] = {
    "status": ("status", "jira", "status"),
    "resolution": ("resolution", "jira", "resolution"),
    "assignee": ("assignee", "jira", "assignee"),
    "priority": ("priority", "jira", "priority"),
    "story_points": ("Story point estimate", "custom", STORY_POINTS_FIELD),
    "sprint": ("Sprint", "custom", "customfield_10020"),
    "parent": ("IssueParentAssociation", "jira", None),
}


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
    sprint: str | None = None  # the name of the sprint it is in (see `add_sprint`)
    parent: str | None = None  # the key of its parent (an epic, or the parent of a sub-task)
    custom: dict[str, Any] = field(default_factory=dict)  # field id -> its JSON value, as is
    corrupt: dict[str, Any] = field(default_factory=dict)  # fault knob: keys served instead
    # its changelog, oldest first: `ChangeHistory`s as `record_change` made them
    histories: list[History] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class History:
    """One changelog entry: its id, who made it (a display name), when, and the changed fields
    as `(field, from, to)` in the sandbox's own values (rendered in Jira's shape per deployment).
    """

    id: str
    author: str
    created: datetime
    changes: tuple[tuple[str, Any, Any], ...]


@dataclass(frozen=True, slots=True)
class SandboxSprint:
    """A sprint of a scrum board (Jira Software), as the Sprint field carries it."""

    id: int
    name: str
    state: str = "active"  # "future" | "active" | "closed"
    board: int = 1
    start: datetime | None = None
    end: datetime | None = None
    complete: datetime | None = None
    goal: str = ""


#: Issue attributes Jira keeps a changelog for, in the order a history lists them.
CHANGELOG_ATTRIBUTES = ("status", "resolution", "assignee", "priority", "story_points", "sprint",
                        "parent")  # fmt: skip


class JiraSandbox(SandboxServer):
    """In-memory Jira Cloud. `clock` (aware) is the server time; None follows the real clock."""

    def __init__(
        self,
        token: str = "sandbox-token",
        *,
        email: str = "sync-bot@example.com",
        time_zone: str = "UTC",
        clock: datetime | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        self.tls = tls  # serve HTTPS with this server context (a test's own CA signed its cert)
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
        self.page_cap: int | None = None  # at most this many issues per search answer
        # at most this many histories in an issue's changelog in a search answer (the most
        # recent ones; Cloud's is 100, reports say 40 on search/jql) and, on Cloud, in
        # `GET issue/{id}?expand=changelog`; None: all of them
        self.changelog_cap: int | None = 100
        self._next_history = 20000
        # projects the signed-in user has no Browse Projects permission on: Jira answers as if
        # they did not exist (JQL naming one is a 400, their issues are never listed)
        self.unbrowsable: set[str] = set()
        # OAuth 2.0 (3LO): this sandbox also plays api.atlassian.com. The authorization server
        # whose access tokens the gateway (/ex/jira/{cloud_id}/…) accepts; None: no gateway.
        self.oauth: AtlassianAuthSandbox | None = None
        self.cloud_id = "11111111-2222-4333-8444-555555555555"
        self.sprints: dict[str, SandboxSprint] = {}  # by name
        # custom fields a test adds to GET /field (id, name, schema); values in issue.custom
        self.extra_fields: list[tuple[str, str, dict[str, Any]]] = []
        self._validate_query = True  # DC's validateQuery=false: unknown keys are no 400
        #: admin webhooks with a secret: every add_issue/update_issue is delivered, signed
        self.hooks = webhooks.WebhookSender(webhooks.jira_headers)

    def __enter__(self) -> JiraSandbox:
        self.start()
        return self

    def start(self, port: int = 0) -> JiraSandbox:
        super().start(port)
        if self.tls is not None and self._server is not None:
            # Handshakes happen in the request threads (on first read), not in the accept loop.
            self._server.socket = self.tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        return self

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://127.0.0.1:{self.port}"

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
            self._announce("jira:issue_created", issue, updated)
            return issue

    def update_issue(
        self, ref: str, *, at: datetime, by: str = "Sync Bot", **fields: Any
    ) -> SandboxIssue:
        """Change an issue at time `at` (SandboxIssue attributes; status changes keep Jira's rules:
        entering a done status sets a resolution and date, leaving one clears them). The change
        of every tracked attribute goes into the issue's changelog as one history by `by`."""
        with self._lock:
            issue = self.issue(ref)
            before = {name: getattr(issue, name) for name in CHANGELOG_ATTRIBUTES}
            self._update(issue, at, fields)
            changes = tuple(
                (name, before[name], getattr(issue, name))
                for name in CHANGELOG_ATTRIBUTES
                if getattr(issue, name) != before[name]
            )
            if changes:
                self._next_history += 1
                issue.histories.append(History(str(self._next_history), by, at, changes))
            self._announce("jira:issue_updated", issue, at)
            return issue

    def _announce(self, event: str, issue: SandboxIssue, at: datetime) -> None:
        """The webhook event of a change, in Jira's envelope (the issue by id, key and self)."""
        if not self.hooks.subscribed:
            return
        payload = {
            "timestamp": int(at.timestamp() * 1000),
            "webhookEvent": event,
            "issue_event_type_name": "issue_created"
            if event.endswith("created")
            else "issue_generic",
            "issue": {
                "id": issue.id,
                "key": issue.key,
                "self": f"{self.url}/rest/api/3/issue/{issue.id}",
            },
        }
        self.hooks.deliver(event, payload)

    def _update(self, issue: SandboxIssue, at: datetime, fields: dict[str, Any]) -> None:
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

    def corrupt_issue(self, ref: str, **values: Any) -> None:
        """Fault knob: serve these keys of the issue instead of the real ones, without changing
        where it sorts. `id`, `key` and `fields` replace the issue's top-level keys; any other
        name replaces that field inside `fields` (when the answer carries it); a value of `...`
        drops the key."""
        with self._lock:
            self.issue(ref).corrupt.update(values)

    def add_sprint(self, name: str, state: str = "active", **values: Any) -> SandboxSprint:
        """Define a sprint (ids count from 1; `start`, `end`, `complete`, `goal`, `board`)."""
        with self._lock:
            sprint = SandboxSprint(len(self.sprints) + 1, name, state, **values)
            self.sprints[name] = sprint
            return sprint

    def sprint_of(self, name: str) -> SandboxSprint:
        """A sprint by name; one never defined is active, with an id made from its name."""
        return self.sprints.get(name) or SandboxSprint(int(_stable_id(name)), name)

    def add_field(self, field_id: str, name: str, schema: dict[str, Any]) -> None:
        """Add a custom field to GET /field (its values go in `SandboxIssue.custom`)."""
        with self._lock:
            self.extra_fields.append((field_id, name, schema))

    def issue_key_exists(self, key: str) -> bool:
        """For JQL's `key` clause: whether an issue has this key (always, under DC's
        validateQuery=false, where a key naming nothing is no error)."""
        if not self._validate_query:
            return True
        return self._visible(key) is not None

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
        # the richer model: two epics a project, two sprints, labels, assignees
        epics = {
            "PAY": ["Checkout reliability", "Invoicing and tax"],
            "WEB": ["Dashboard polish", "Internationalisation"],
        }
        self.add_sprint(
            "Sprint 23", "closed", start=now - timedelta(days=28), end=now - timedelta(days=14),
            complete=now - timedelta(days=14), goal="Stabilise payments",
        )  # fmt: skip
        self.add_sprint(
            "Sprint 24", "active", start=now - timedelta(days=14), end=now + timedelta(days=1),
            goal="Ship dark mode, SEPA",
        )  # fmt: skip
        labels = [
            ["backend"],
            ["frontend"],
            ["tech-debt"],
            ["customer"],
            [],
            ["backend", "security"],
        ]
        for project, names in epics.items():
            for name in names:
                self.add_issue(
                    project, name, issuetype="Epic", created=now - timedelta(days=30),
                    updated=now - timedelta(days=30), status="In Progress",
                )  # fmt: skip
        for project, names in titles.items():
            project_epics = [i.key for i in self.issues.values() if i.project == project]
            for n, title in enumerate(names):
                status, resolution, flagged = plan[(n * 5 + len(project)) % len(plan)]
                created = now - timedelta(days=rng.randint(8, 28), minutes=rng.randint(0, 600))
                updated = created + timedelta(days=rng.randint(0, 7), minutes=rng.randint(1, 900))
                updated = min(updated, now - timedelta(minutes=n + 1))
                issue = self.add_issue(
                    project,
                    title,
                    created=created,
                    updated=created,
                    priority=rng.choice(["Highest", "High", "Medium", "Medium", "Low", "Lowest"]),
                    story_points=rng.choice([None, 1, 2, 3, 5, 8, 13, 0.5]),
                    issuetype=rng.choice(["Story", "Bug", "Task"]),
                    description=f"{title}.\n\nContext: reported by the {project} team.\n"
                    "Steps are in the linked ticket.",
                    acceptance_criteria="Given the change is deployed\nThen the behaviour is "
                    "covered by a test",
                )
                self._walk_demo(issue, status, resolution, updated, PEOPLE[n % len(PEOPLE)])
                issue.flagged = flagged
                issue.labels = list(labels[n % len(labels)])
                issue.parent = project_epics[n % 2] if n % 3 else None
                issue.sprint = ("Sprint 23", "Sprint 24", None)[n % 3]

    def _walk_demo(
        self, issue: SandboxIssue, status: str, resolution: str | None, end: datetime, who: str
    ) -> None:
        """Move a demo issue from To Do to `status` by `end`, as people would (so its changelog
        gives start and completion times): picked up, worked on, reviewed, finished."""
        span = end - issue.created
        steps: list[str] = []
        if self._category(status) != "new":
            steps.append("In Progress")
            if (
                status in ("In Review", "Code Review", "Blocked")
                or self._category(status) == "done"
            ):
                steps.append("In Review" if status not in ("Code Review", "Blocked") else status)
        if status not in steps and status != "To Do":
            steps.append(status)
        self.update_issue(issue.id, at=issue.created + span / 10, by=who, assignee=who)
        for n, step in enumerate(steps, start=1):
            at = end if n == len(steps) else issue.created + span * n / (len(steps) + 1)
            extra = {"resolution": resolution} if step == status and resolution else {}
            self.update_issue(issue.id, at=at, by=who, status=step, **extra)
        if issue.updated < end:
            self.update_issue(issue.id, at=end, by=who)

    def demo_step(self, rng: random.Random, now: datetime) -> DemoChange:
        """One thing the demo team does in PAY and WEB at `now`: files an issue, moves one a step
        along To Do → In Progress → In Review → Done (a blocked one back to In Progress), hands
        one to someone else, or resolves one; each change is a changelog entry by its author."""
        who = rng.choice(PEOPLE)
        with self._lock:
            projects = sorted(p for p in self.projects if p in ("PAY", "WEB"))
            issues = [
                i for i in self.issues.values()
                if i.project in projects and i.issuetype != "Epic"
                and self._category(i.status) != "done"
            ]  # fmt: skip
            action = demo_action(rng)
            if action == "create" or not issues:
                project = rng.choice(projects)
                title = _DEMO_NEW[self._numbers[project] % len(_DEMO_NEW)]
                new = self.add_issue(
                    project, title, created=now, updated=now,
                    issuetype=rng.choice(["Story", "Bug", "Task"]),
                    priority=rng.choice(["High", "Medium", "Low"]),
                    description=f"{title}.", sprint="Sprint 24",
                )  # fmt: skip
                return DemoChange(new.key, f"{who} created {new.key} “{title}”")
            issue = rng.choice(issues)
            if action == "reassign":
                other = rng.choice([p for p in PEOPLE if p != issue.assignee])
                self.update_issue(issue.id, at=now, by=who, assignee=other)
                return DemoChange(issue.key, f"{who} assigned {issue.key} to {other}")
            if action == "close":
                self.update_issue(issue.id, at=now, by=who, status="Done", resolution="Done")
                return DemoChange(issue.key, f"{who} resolved {issue.key} as Done")
            before = issue.status
            step = _DEMO_NEXT.get(before, "In Progress")
            changes: dict[str, Any] = {"status": step}
            if issue.assignee is None:
                changes["assignee"] = who
            self.update_issue(issue.id, at=now, by=who, **changes)
            return DemoChange(issue.key, f"{who} moved {issue.key} {before} → {step}")

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
        if request.path == "/oauth/token/accessible-resources" and self.oauth is not None:
            return self.oauth.handle(request)  # api.atlassian.com serves both
        gateway = re.fullmatch(r"/ex/jira/([^/]+)(/.*)", request.path)
        if gateway is not None:
            return self._gateway(request, *gateway.groups())
        # A 3LO access token does not sign in at the site's own URL: only Basic does here.
        return self._site(request, request.path, self._authorised(request))

    def _gateway(self, request: Request, cloud_id: str, path: str) -> Response:
        """api.atlassian.com/ex/jira/{cloudId}/…: the site's REST API for OAuth 2.0 (3LO)
        access tokens the authorization server issued and that are still alive."""
        if self.oauth is None or cloud_id != self.cloud_id:
            return Response(404, _errors("Site temporarily unavailable"))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.oauth.valid(token):
            return Response(401, {"code": 401, "message": "Unauthorized"})
        return self._site(request, path, True)

    def site_resource(self) -> dict[str, Any]:
        """This site as accessible-resources lists it (for the authorization sandbox)."""
        return {
            "id": self.cloud_id,
            "url": self.url,
            "name": "sandbox",
            "scopes": ["read:jira-work", "read:jira-user", "offline_access"],
            "avatarUrl": f"{self.url}/avatar.png",
        }

    def _site(self, request: Request, full_path: str, authorised: bool) -> Response:
        match = re.fullmatch(r"/rest/api/([23])/(.+)", full_path)
        if match is None:
            return Response(404, _errors("Not found"))
        version, path = match.groups()
        if path == "serverInfo" and "authorization" not in request.headers:
            return self._server_info(request, version)  # Jira answers it anonymously
        if not authorised:
            return Response(401, _errors(_UNAUTHENTICATED))
        routes: dict[tuple[str, str], Callable[[Request, str], Response]] = {
            ("GET", "serverInfo"): self._server_info,
            ("GET", "field"): self._fields,
            ("GET", "myself"): self._myself,
            ("GET", "status"): self._statuses,
            ("GET", "search/jql"): self._search,
            ("POST", "search/jql"): self._search,
        }
        route = routes.get((request.method, path))
        if route is not None:
            with self._lock:
                return route(request, version)
        issue_path = re.fullmatch(r"issue/([^/]+)(/changelog)?", path)
        if request.method == "GET" and issue_path is not None:
            ref, changelog = issue_path.groups()
            with self._lock:
                if changelog:
                    return self._changelog_page(request, version, ref)
                return self._issue_get(request, version, ref)
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
        for fid, name, clauses, schema in self._custom_fields():
            number = int(fid.rsplit("_", 1)[1])
            listed.append(
                {
                    "id": fid,
                    "key": fid,
                    "name": name,
                    "custom": True,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [f"cf[{number}]", *clauses],
                    "schema": {**schema, "customId": number},
                }
            )
        return Response(200, listed)

    def _custom_fields(self) -> list[tuple[str, str, list[str], dict[str, Any]]]:
        added = [(fid, name, [name], schema) for fid, name, schema in self.extra_fields]
        return [*CUSTOM_FIELDS, *added]

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
            problem = search_body_problem(body)
            if problem is not None:
                return Response(400, _errors(problem))
            jql = body.get("jql") or ""
            fields = list(body.get("fields") or [])
            max_results = body.get("maxResults")
            token = body.get("nextPageToken")
            expand = _expanded(body.get("expand"))
        else:
            query = request.query
            jql = (query.get("jql") or [""])[0]
            fields = [f for value in query.get("fields", []) for f in value.split(",") if f]
            max_results = _first(query.get("maxResults"))
            token = _first(query.get("nextPageToken"))
            expand = _expanded(query.get("expand"))
        try:
            if not jql_language.is_bounded(jql, self):
                raise JqlError(jql_language.UNBOUNDED)
            matches = self.evaluate(jql)
            offset = self._offset(token, jql)
            size = int(max_results) if max_results not in (None, "") else 50
        except JqlError as exc:
            return Response(400, _errors(str(exc)))
        except ValueError:
            return Response(400, _errors("maxResults must be a number."))
        wanted = set(fields) or {"id"}
        cap = 5000 if wanted <= IDS_ONLY else 100
        size = max(1, min(size, cap, self.page_cap or cap))
        chunk = matches[offset : offset + size]
        end = offset + len(chunk)
        keep = self._cut()
        logs = self.changelog_cap if "changelog" in expand else 0
        body_out: dict[str, Any] = {
            "issues": [self._render(issue, wanted, version, logs) for issue in chunk[:keep]],
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

    # -- JQL (the language is connectors.sandbox.jql; this sandbox is its JqlSite) -------------
    def evaluate(self, jql: str) -> list[SandboxIssue]:
        """The issues a JQL query returns, in its order; JqlError where Jira would answer 400."""
        with self._lock:
            visible = [i for i in self.issues.values() if i.project not in self.unbrowsable]
            return jql_language.evaluate(jql, visible, self)

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def project_of(self, value: str) -> str:
        """The project key a JQL project value names (key, name or id), else JqlError."""
        folded = value.casefold()
        for key, project in self.projects.items():
            if key in self.unbrowsable:
                continue  # Jira does not tell "no permission" from "no such project"
            if folded in (key.casefold(), project["name"].casefold(), project["id"]):
                return key
        raise JqlError(f"The value '{value}' does not exist for the field 'project'.")

    def status_category_name(self, status: str) -> str:
        """What JQL's `statusCategory` compares: the name of the status's category."""
        return str(CATEGORIES[self._category(status)]["name"])

    def priority_rank(self, priority: str) -> int:
        """Where JQL's `ORDER BY priority` puts a priority: its id in the default scheme."""
        return int(_priority_id(priority))

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

    def _render(
        self, issue: SandboxIssue, wanted: set[str], version: str, changelog: int | None = 0
    ) -> dict[str, Any]:
        """An issue with the `wanted` fields; with its changelog (the `changelog` most recent
        histories, all of them for None) unless that is 0."""
        rendered: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog",
            "id": issue.id,
            "self": f"{self.url}/rest/api/{version}/issue/{issue.id}",
            "key": issue.key,
        }
        if changelog != 0:
            rendered["changelog"] = self._changelog(issue, changelog)
        values = self._field_values(issue, version)
        names = values.keys() if wanted & {"*all", "*navigable"} else wanted
        fields = {n: values[n] for n in names if n in values and f"-{n}" not in wanted}
        if fields or not wanted <= IDS_ONLY:
            rendered["fields"] = fields
        for name, value in issue.corrupt.items():
            top = name in ("id", "key", "fields")
            target = rendered if top else rendered.get("fields")
            if not isinstance(target, dict) or not (top or name in target):
                continue  # a field this answer does not carry stays absent
            if value is ...:
                target.pop(name, None)
            else:
                target[name] = value
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
            "issuetype": self._issuetype(issue.issuetype, version),
            "project": {
                "self": f"{base}/project/{project['id']}",
                "projectTypeKey": "software",
                **project,
            },
            "assignee": self._user(issue.assignee) if issue.assignee else None,
            "parent": self._parent(issue, version),
            "labels": list(issue.labels),
            STORY_POINTS_FIELD: issue.story_points,
            ACCEPTANCE_FIELD: self._rich(issue.acceptance_criteria, None, version),
            FLAGGED_FIELD: (
                [{"self": f"{base}/customFieldOption/10019", "value": "Impediment", "id": "10019"}]
                if issue.flagged
                else None
            ),
            SPRINT_FIELD: [self._sprint_value(self.sprint_of(issue.sprint))]
            if issue.sprint
            else None,
            **issue.custom,
        }

    def _issuetype(self, name: str, version: str) -> dict[str, Any]:
        """Cloud's `IssueTypeDetails`: with `subtask` and `hierarchyLevel`."""
        return {
            "self": f"{self.url}/rest/api/{version}/issuetype/{_stable_id(name)}",
            "id": _stable_id(name),
            "description": "",
            "iconUrl": f"{self.url}/images/icons/issuetypes/{name.lower()}.svg",
            "name": name,
            "subtask": name in SUBTASK_TYPES,
            "avatarId": 10300,
            "hierarchyLevel": HIERARCHY.get(name, 0),
        }

    def _user(self, name: str) -> dict[str, Any]:
        """A user field's value on Cloud (with the e-mail address Jira may send)."""
        return {
            "self": f"{self.url}/rest/api/3/user?accountId={_stable_id(name)}",
            "accountId": _stable_id(name),
            "emailAddress": _email_of(name),
            "displayName": name,
            "active": True,
            "timeZone": self.time_zone,
            "accountType": "atlassian",
        }

    def _parent(self, issue: SandboxIssue, version: str) -> dict[str, Any] | None:
        """The `parent` field: the parent's id, key and a few of its fields (Cloud: every
        level; Data Center overrides this for sub-tasks only)."""
        parent = self._visible(issue.parent) if issue.parent else None
        if parent is None:
            return None
        values = {
            "summary": parent.summary,
            "status": {"name": parent.status, "id": _stable_id(parent.status)},
            "issuetype": self._issuetype(parent.issuetype, version),
        }
        return {
            "id": parent.id,
            "key": parent.key,
            "self": f"{self.url}/rest/api/{version}/issue/{parent.id}",
            "fields": values,
        }

    def _sprint_value(self, sprint: SandboxSprint) -> Any:
        """One sprint in the Sprint field: an object on Cloud."""
        value: dict[str, Any] = {
            "id": sprint.id,
            "name": sprint.name,
            "state": sprint.state,
            "boardId": sprint.board,
            "goal": sprint.goal,
        }
        for key, at in (("startDate", sprint.start), ("endDate", sprint.end)):
            if at is not None:
                value[key] = _utc_time(at)
        if sprint.complete is not None:
            value["completeDate"] = _utc_time(sprint.complete)
        return value

    # -- changelog ----------------------------------------------------------------------------
    def _statuses(self, request: Request, version: str) -> Response:
        """`GET /rest/api/{2,3}/status`: every status with its category."""
        base = f"{self.url}/rest/api/{version}"
        return Response(
            200,
            [
                {
                    "self": f"{base}/status/{_stable_id(name)}",
                    "description": "",
                    "iconUrl": f"{self.url}/images/icons/statuses/generic.png",
                    "name": name,
                    "id": _stable_id(name),
                    "statusCategory": {
                        "self": f"{base}/statuscategory/{CATEGORIES[category]['id']}",
                        **CATEGORIES[category],
                    },
                }
                for name, category in self.statuses.items()
            ],
        )

    def _visible(self, ref: str) -> SandboxIssue | None:
        try:
            issue = self.issue(ref)
        except KeyError:
            return None
        return None if issue.project in self.unbrowsable else issue

    def _issue_get(self, request: Request, version: str, ref: str) -> Response:
        """`GET issue/{idOrKey}?fields=&expand=changelog`: Cloud caps the changelog as in the
        search (`changelog_cap`), Data Center gives it whole."""
        issue = self._visible(ref)
        if issue is None:
            return Response(404, _errors(_NO_ISSUE))
        fields = [f for value in request.query.get("fields", []) for f in value.split(",") if f]
        expand = _expanded(request.query.get("expand"))
        cap = self._issue_changelog_cap() if "changelog" in expand else 0
        return Response(200, self._render(issue, set(fields) or {"*all"}, version, cap))

    def _issue_changelog_cap(self) -> int | None:
        return self.changelog_cap

    def _changelog(self, issue: SandboxIssue, cap: int | None) -> dict[str, Any]:
        """`changelog` of an expanded issue: the `cap` most recent histories, oldest first."""
        histories = issue.histories if cap is None else issue.histories[-cap:]
        return {
            "startAt": 0,
            "maxResults": len(histories),
            "total": len(issue.histories),
            "histories": [self._history(h) for h in histories],
        }

    def _changelog_page(self, request: Request, version: str, ref: str) -> Response:
        """Cloud's `GET issue/{idOrKey}/changelog?startAt=&maxResults=` (oldest first, at most
        100 a page)."""
        issue = self._visible(ref)
        if issue is None:
            return Response(404, _errors(_NO_ISSUE))
        try:
            start = max(0, int(_first(request.query.get("startAt")) or 0))
            size = max(1, min(100, int(_first(request.query.get("maxResults")) or 100)))
        except ValueError:
            return Response(400, _errors("startAt and maxResults must be numbers."))
        values = issue.histories[start : start + size]
        end = start + len(values)
        here = f"{self.url}/rest/api/{version}/issue/{ref}/changelog"
        body: dict[str, Any] = {
            "self": f"{here}?maxResults={size}&startAt={start}",
            "maxResults": size,
            "startAt": start,
            "total": len(issue.histories),
            "isLast": end >= len(issue.histories),
            "values": [self._history(h) for h in values],
        }
        if end < len(issue.histories):
            body["nextPage"] = f"{here}?maxResults={size}&startAt={end}"
        return Response(200, body)

    def _history(self, history: History) -> dict[str, Any]:
        return {
            "id": history.id,
            "author": self._author(history.author),
            "created": self._time(history.created),
            "items": [self._change_item(*change) for change in history.changes],
        }

    def _author(self, name: str) -> dict[str, Any]:
        """A changelog's author: on Cloud the user object a user field holds (Data Center
        overrides this with its own shape)."""
        return self._user(name)

    def _user_value(self, name: str) -> str:
        """What a user field's `from`/`to` holds: the accountId on Cloud."""
        return _stable_id(name)

    def _change_item(self, name: str, old: Any, new: Any) -> dict[str, Any]:
        label, kind, field_id = self._change_field(name)
        item: dict[str, Any] = {"field": label, "fieldtype": kind}
        if field_id is not None:
            item["fieldId"] = field_id
        for side, value in (("from", old), ("to", new)):
            raw, text = self._change_value(name, value)
            item[side], item[f"{side}String"] = raw, text
        return item

    def _change_field(self, name: str) -> tuple[str, str, str | None]:
        return CHANGE_FIELDS[name]

    def _change_value(self, name: str, value: Any) -> tuple[str | None, str | None]:
        """An attribute's value as a changelog item's (`from`, `fromString`)."""
        if value is None:
            return None, None
        if name == "assignee":
            return self._user_value(value), value
        if name == "priority":
            return _priority_id(value), value
        if name == "story_points":
            return None, f"{value:g}"
        if name == "parent":
            parent = self._visible(value)
            return (parent.id if parent else None), value
        if name == "sprint":
            return str(self.sprint_of(value).id), value
        return _stable_id(str(value)), str(value)

    @staticmethod
    def _rich(text: str | None, adf: dict[str, Any] | None, version: str) -> Any:
        if version == "2":
            return text
        if adf is not None:
            return adf
        return text_to_adf(text) if text else None


_UNAUTHENTICATED = "Client must be authenticated to access this resource."
_NO_ISSUE = "Issue does not exist or you do not have permission to see it."


def _expanded(value: object) -> set[str]:
    """The names an `expand` asks for: a comma list (query or Cloud body) or a list (DC body)."""
    values = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return {part.strip() for v in values if isinstance(v, str) for part in v.split(",")}


def _utc_time(at: datetime) -> str:
    """A sprint date as Jira Cloud's Agile model writes it: `2025-05-01T10:00:00.000Z`."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _email_of(name: str) -> str:
    return name.casefold().replace(" ", ".") + "@example.com"


#: `SearchAndReconcileRequestBean`, the body of `POST /rest/api/{2,3}/search/jql` in Jira Cloud's
#: OpenAPI description: these properties, none nullable, `additionalProperties: false`.
SEARCH_BODY: dict[str, tuple[type, type | None]] = {
    "expand": (str, None),
    "fields": (list, str),
    "fieldsByKeys": (bool, None),
    "jql": (str, None),
    "maxResults": (int, None),
    "nextPageToken": (str, None),
    "properties": (list, str),
    "reconcileIssues": (list, int),
}


def search_body_problem(body: object) -> str | None:
    """Why a search/jql POST body does not match the published schema, or None. (The wording is
    the sandbox's; the rule is the schema's.)"""
    if not isinstance(body, dict):
        return "Invalid request payload. Refer to the REST API."
    for key, value in body.items():
        if key not in SEARCH_BODY:
            return f'Unrecognized field "{key}": not a property of SearchAndReconcileRequestBean.'
        kind, item = SEARCH_BODY[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if ok and item is not None:
            ok = all(
                isinstance(v, item) and not (item is int and isinstance(v, bool)) for v in value
            )
        if not ok:
            return f"Invalid value for {key!r}: expected {kind.__name__}, got {_json_type(value)}."
    return None


def _json_type(value: object) -> str:
    return "null" if value is None else type(value).__name__


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


# ---------------------------------------------------------------------------------------------
# Jira Data Center / Server
# ---------------------------------------------------------------------------------------------
#: The Server `SearchRequest` (jira.js `src/server/models/searchRequest.ts`): the body of
#: `POST /rest/api/2/search`, these keys only.
SERVER_SEARCH_BODY: dict[str, tuple[type, type | None]] = {
    "expand": (list, str),
    "fields": (list, str),
    "jql": (str, None),
    "maxResults": (int, None),
    "startAt": (int, None),
    "validateQuery": (bool, None),
}

#: The 500 Jira DC answers past `jira.search.platform.max.result.window` (KB "Handling JQL REST
#: API searching exceeding max_result_window"), a Jersey status document.
SEARCH_LIMIT = (
    "Search limit exceeded. We couldn't complete your search because it requests {asked:,} "
    "results which exceeded the search platform limit of {window:,}. Try refining your query or "
    "contact your Jira administrator. Repeating the same search may not work."
)


class JiraDataCenterSandbox(JiraSandbox):
    """In-memory Jira Data Center 10.x: REST v2 only (`/rest/api/3/...` and `search/jql` are 404,
    "null for uri", as Jersey answers an unknown resource), `serverInfo.deploymentType` "Server",
    the Server search `GET|POST /rest/api/2/search` (`startAt`, `maxResults` clamped to
    `max_results_cap` and echoed, `total`; a 500 "Search limit exceeded" when `startAt +
    maxResults` passes `result_window`), personal access tokens as `Authorization: Bearer` and
    basic auth with `username`/`password` (a PAT sent as a basic password is a 401), and the DC
    rate limiter's headers on 429. JQL is the same language, without Cloud's refusal of an
    unbounded query."""

    def __init__(
        self,
        token: str = "sandbox-pat",
        *,
        username: str = "sync-bot",
        password: str = "sandbox-password",
        time_zone: str = "UTC",
        clock: datetime | None = None,
        tls: ssl.SSLContext | None = None,
        max_results_cap: int = 1000,  # jira.search.views.default.max
        result_window: int = 10_000,  # jira.search.platform.max.result.window
    ) -> None:
        super().__init__(
            token, email=f"{username}@example.com", time_zone=time_zone, clock=clock, tls=tls
        )
        self.deployment_type = "Server"
        self.username = username
        self.password = password
        self.max_results_cap = max_results_cap
        self.result_window = result_window

    def __enter__(self) -> JiraDataCenterSandbox:
        self.start()
        return self

    def demo_config(self) -> dict[str, Any]:
        config = super().demo_config()
        del config["email"]  # a personal access token alone
        return config

    # -- HTTP ---------------------------------------------------------------------------------
    def fault_response(self, fault: Fault) -> Response:
        """DC's rate limiter (8.6+): a token bucket per user; its headers on a 429."""
        if fault.kind == "429":
            headers = {
                "X-RateLimit-Limit": "20",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Interval-Seconds": "1",
                "X-RateLimit-FillRate": "10",
                "retry-after": str(int(fault.retry_after or 0)),
                **fault.headers,
            }
            return Response(429, fault.body or _errors("Rate limit exceeded."), headers)
        return super().fault_response(fault)

    def handle(self, request: Request) -> Response:
        match = re.fullmatch(r"/rest/api/2/(.+)", request.path)
        if match is None:
            return self._no_resource(request)
        if match.group(1) == "serverInfo" and "authorization" not in request.headers:
            return self._server_info(request, "2")  # anonymous; wrong credentials are a 401
        if not self._authorised(request):
            return Response(
                401,
                _errors(
                    "You are not authenticated. Authentication required to perform this operation."
                ),
                {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"},
            )
        routes: dict[tuple[str, str], Callable[[Request, str], Response]] = {
            ("GET", "serverInfo"): self._server_info,
            ("GET", "field"): self._fields,
            ("GET", "myself"): self._myself,
            ("GET", "status"): self._statuses,
            ("GET", "search"): self._server_search,
            ("POST", "search"): self._server_search,
        }
        route = routes.get((request.method, match.group(1)))
        issue_path = re.fullmatch(r"issue/([^/]+)", match.group(1))
        if route is None and request.method == "GET" and issue_path is not None:
            with self._lock:  # no changelog route on Data Center: expand=changelog on the issue
                return self._issue_get(request, "2", issue_path.group(1))
        if route is None:
            return self._no_resource(request)
        with self._lock:
            return route(request, "2")

    def _no_resource(self, request: Request) -> Response:
        return Response(
            404, {"message": f"null for uri: {self.url}{request.path}", "status-code": 404}
        )

    def _authorised(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return value == self.token  # a personal access token
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (self.username, self.password)
        return False

    def _server_info(self, request: Request, version: str) -> Response:
        return Response(
            200,
            {
                "baseUrl": self.url,
                "version": "10.3.4",
                "versionNumbers": [10, 3, 4],
                "deploymentType": self.deployment_type,
                "buildNumber": 10030004,
                "buildDate": "2025-02-18T00:00:00.000+0000",
                "databaseBuildNumber": 10030004,
                "serverTime": self._time(self.now()),
                "scmInfo": "0a0b0c0d0e0f",
                "serverTitle": "Jira",
            },
        )

    def _custom_fields(self) -> list[tuple[str, str, list[str], dict[str, Any]]]:
        epic_link = (
            EPIC_LINK_FIELD,
            "Epic Link",
            ["Epic Link"],
            {"type": "any", "custom": GREENHOPPER + "gh-epic-link"},
        )
        return [*super()._custom_fields(), epic_link]

    def _fields(self, request: Request, version: str) -> Response:
        listed = super()._fields(request, version)
        for field_ in listed.body:  # DC lists fields without Cloud's `key`
            field_.pop("key", None)
        return listed

    def _myself(self, request: Request, version: str) -> Response:
        return Response(
            200,
            {
                "self": f"{self.url}/rest/api/2/user?username={self.username}",
                "key": "JIRAUSER10100",
                "name": self.username,
                "emailAddress": self.email,
                "avatarUrls": {"48x48": f"{self.url}/secure/useravatar?avatarId=10122"},
                "displayName": "Sync Bot",
                "active": True,
                "deleted": False,
                "timeZone": self.time_zone,
                "locale": "en_US",
                "groups": {"size": 1, "items": []},
                "applicationRoles": {"size": 1, "items": []},
                "expand": "groups,applicationRoles",
            },
        )

    def _server_search(self, request: Request, version: str) -> Response:
        if request.method == "POST":
            try:
                body = request.json() or {}
            except ValueError:
                return Response(400, _errors("Invalid request payload. Refer to the REST API."))
            problem = server_search_body_problem(body)
            if problem is not None:
                return Response(400, _errors(problem))
            jql = body.get("jql") or ""
            fields = list(body.get("fields") or [])
            start_at: object = body.get("startAt", 0)
            max_results: object = body.get("maxResults", 50)
            expand = _expanded(body.get("expand"))
        else:
            query = request.query
            jql = (query.get("jql") or [""])[0]
            fields = [f for value in query.get("fields", []) for f in value.split(",") if f]
            start_at = _first(query.get("startAt")) or 0
            max_results = _first(query.get("maxResults")) or 50
            expand = _expanded(query.get("expand"))
        try:
            start, size = int(str(start_at)), int(str(max_results))
        except ValueError:
            return Response(400, _errors("startAt and maxResults must be numbers."))
        validate = body.get("validateQuery", True) if request.method == "POST" else None
        if request.method != "POST":
            validate = (_first(request.query.get("validateQuery")) or "true").casefold() != "false"
        try:
            self._validate_query = bool(validate)
            matches = self.evaluate(jql)
        except JqlError as exc:
            return Response(400, _errors(str(exc)))
        finally:
            self._validate_query = True
        start = max(0, start)
        size = max(0, min(size, self.max_results_cap))  # clamped, and the cap echoed
        if start + size > self.result_window:
            text = SEARCH_LIMIT.format(asked=start + size, window=self.result_window)
            return Response(
                500,
                f"<status><status-code>500</status-code><message>{text}</message></status>".encode(),
                {"Content-Type": "application/xml"},
            )
        served = min(size, self.page_cap) if self.page_cap else size
        chunk = matches[start : start + served]
        keep = self._cut()
        wanted = set(fields) or {"*navigable"}
        cap = self.changelog_cap if "changelog" in expand else 0
        return Response(
            200,
            {
                "expand": "names,schema",
                "startAt": start,
                "maxResults": size,
                "total": len(matches),
                "issues": [self._render(issue, wanted, version, cap) for issue in chunk[:keep]],
            },
        )

    def _field_values(self, issue: SandboxIssue, version: str) -> dict[str, Any]:
        values = super()._field_values(issue, version)
        if issue.assignee:  # DC users have a name and key, no accountId
            values["assignee"] = {
                "self": f"{self.url}/rest/api/2/user?username={self._user_value(issue.assignee)}",
                "name": self._user_value(issue.assignee),
                "key": f"JIRAUSER{_stable_id(issue.assignee)}",
                "emailAddress": _email_of(issue.assignee),
                "displayName": issue.assignee,
                "active": True,
                "timeZone": self.time_zone,
            }
        # DC: `parent` is a sub-task's; an epic's children carry its key in Epic Link
        parent = values.get("parent")
        subtask = issue.issuetype in SUBTASK_TYPES
        values[EPIC_LINK_FIELD] = parent["key"] if parent and not subtask else None
        if not subtask:
            values.pop("parent", None)
        return values

    def _issuetype(self, name: str, version: str) -> dict[str, Any]:
        described = super()._issuetype(name, version)
        del described["hierarchyLevel"]  # Cloud's; DC knows sub-tasks only
        return described

    def _sprint_value(self, sprint: SandboxSprint) -> Any:
        """DC's Sprint field holds GreenHopper's `Sprint.toString()` strings."""
        parts = {
            "id": sprint.id,
            "rapidViewId": sprint.board,
            "state": sprint.state.upper(),
            "name": sprint.name,
            "startDate": self._dc_time(sprint.start),
            "endDate": self._dc_time(sprint.end),
            "completeDate": self._dc_time(sprint.complete),
            "activatedDate": self._dc_time(sprint.start),
            "sequence": sprint.id,
            "goal": sprint.goal,
            "autoStartStop": "false",
            "synced": "false",
            "incompleteIssuesDestinationId": "<null>",
        }
        body = ",".join(f"{k}={v}" for k, v in parts.items())
        return f"com.atlassian.greenhopper.service.sprint.Sprint@{sprint.id:x}5f2[{body}]"

    def _dc_time(self, at: datetime | None) -> str:
        return at.astimezone(self.zone()).isoformat(timespec="milliseconds") if at else "<null>"

    def _issue_changelog_cap(self) -> int | None:
        return None  # Data Center gives an issue's whole changelog with expand=changelog

    def _author(self, name: str) -> dict[str, Any]:
        """A Data Center user: name and key (and the e-mail address Jira also sends)."""
        login = name.casefold().replace(" ", ".")
        return {
            "self": f"{self.url}/rest/api/2/user?username={login}",
            "name": login,
            "key": f"JIRAUSER{_stable_id(name)}",
            "emailAddress": _email_of(name),
            "displayName": name,
            "active": True,
            "timeZone": self.time_zone,
        }

    def _user_value(self, name: str) -> str:
        return name.casefold().replace(" ", ".")  # DC's changelog names users by login

    def _change_field(self, name: str) -> tuple[str, str, str | None]:
        label, kind, _ = super()._change_field(name)  # DC items carry no fieldId
        return ("Epic Link", "custom", None) if name == "parent" else (label, kind, None)


def server_search_body_problem(body: object) -> str | None:
    """Why a `POST /rest/api/2/search` body is not a Server `SearchRequest`, or None."""
    if not isinstance(body, dict):
        return "Invalid request payload. Refer to the REST API."
    for key, value in body.items():
        if key not in SERVER_SEARCH_BODY:
            return f'Unrecognized field "{key}" (class SearchRequestBean), not marked as ignorable'
        kind, item = SERVER_SEARCH_BODY[key]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if ok and item is not None:
            ok = all(isinstance(v, item) for v in value)
        if not ok:
            return f"Invalid value for {key!r}: expected {kind.__name__}, got {_json_type(value)}."
    return None

"""A local Linear: one POST `/graphql` endpoint that answers the GraphQL it is sent the way
api.linear.app does (docs/trackers/linear.md#sandbox).

What it reproduces:
- Linear's schema, the part served (`linear.graphql`, Linear's names, types, nullability and
  arguments): every document is parsed, validated, its variables coerced and its complexity
  scored by `connectors.sandbox.graphql` (graphql-core, graphql-js's rules and texts), so what
  Linear refuses is refused with Linear's error body, HTTP 400. Root fields: `viewer`, `teams`,
  `issues`, `issue(id:)` (the UUID or the identifier); `Issue.labels` and `Issue.history` are
  connections; `Issue.parent` (sub-issues; never a loop), `Issue.assignee` (a User: its
  `email` is served, as Linear serves it) and `Issue.cycle` (a Cycle of the issue's own team,
  left when the issue moves to another team; `completedAt` once `complete_cycle` ends it).
- history: every change it makes is one IssueHistory entry (the from/to pairs of the fields it
  changed, its actor, its time), served by `Issue.history` newest first with Relay paging.
- `issues` as Linear lists them: newest first by `createdAt` (default) or `updatedAt`
  (`orderBy: updatedAt` = most recently updated first), ties by id; Relay pagination with
  `first`/`after` and `last`/`before` (at most 250; default first 50); cursors are issue ids and are
  resolved against the issue's *current* sort key, as Linear's are; `pageInfo` on every page;
  `includeArchived` (default false hides archived and trashed issues); the `IssueFilter` fields the
  schema keeps (`team`, `id`, `number`, `title`, `state`, the issue times, `and`/`or`) with every
  comparator operator.
- authentication: a personal API key raw in `Authorization` (an OAuth token as `Bearer …` when the
  sandbox is given one); anything else gets Linear's AUTHENTICATION_ERROR body (HTTP 400, as
  Linear answers GraphQL errors; `auth_error_status` changes it).
- OAuth 2.0 (`POST /oauth/token`, as api.linear.app/oauth/token): form-encoded bodies only; the
  client authenticates with `client_id` + `client_secret` in the body or HTTP Basic
  (`oauth_clients`); `grant_type=refresh_token` rotates: each refresh returns a new refresh token
  and kills the one it was given (reusing it is `invalid_grant`); `grant_type=client_credentials`
  when the app allows it (`client_credentials=True`), with no refresh token. Access tokens live
  `access_lifetime` seconds (Linear: 24 h; tests shorten it to cross an expiry) and are accepted as
  `Bearer …` only until then: an expired, revoked or unknown one gets the AUTHENTICATION_ERROR
  body with `oauth_error_status` (401). `consent()` stands for the admin's consent (a refresh
  token as the code exchange returns it), `revoke_grants()` for the app being revoked.
- rate limits: request and complexity budgets per window, and endpoint-specific request limits
  (`endpoint_limits`); `X-RateLimit-Requests-*`, `X-RateLimit-Complexity-*`,
  `X-RateLimit-Endpoint-*` (resets in epoch milliseconds) and `X-Complexity` (the query's score,
  rounded up); a query above 10,000 points is refused ("Query too complex", INPUT_ERROR); a budget
  that cannot take a request, or an injected "429"/`rate_limit_next()` fault, is HTTP 400 with
  `{"errors":[{"message":"Rate limit exceeded","extensions":{"code":"RATELIMITED",…}}]}`.
Not reproduced: mutations; `sort:` ([INTERNAL]) and the filter fields the schema leaves out, each
refused by name as not served; ISO durations in date filters (refused explicitly, never ignored).
"""

from __future__ import annotations

import base64
import html
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

from connectors.sandbox import graphql, webhooks
from connectors.sandbox.base import (
    DemoChange,
    Fault,
    Request,
    Response,
    SandboxServer,
    demo_action,
)
from connectors.sandbox.graphql import GraphQLError, Prepared, iso

ORG_KEY = "acme"
MAX_PAGE = 250

WORKFLOW = (  # (name, type) of each team's workflow states, Linear's defaults plus review
    ("Triage", "triage"),
    ("Backlog", "backlog"),
    ("Todo", "unstarted"),
    ("In Progress", "started"),
    ("In Review", "started"),
    ("Done", "completed"),
    ("Canceled", "canceled"),
    ("Duplicate", "duplicate"),
)
PRIORITY_LABELS = {0: "No priority", 1: "Urgent", 2: "High", 3: "Medium", 4: "Low"}


# ---------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Window:
    """One fixed rate-limit window of an endpoint-specific limit."""

    start: float
    used: int = 0


class LinearSandbox(SandboxServer):
    """Linear's GraphQL API on 127.0.0.1 with issues held in memory."""

    auth_error_status = 400  # Linear answers GraphQL errors, authentication included, with 400

    def __init__(
        self,
        token: str = "lin_api_sandbox",
        *,
        oauth_token: str | None = None,
        requests_limit: int = 5000,
        complexity_limit: int = 250_000,
        rate_window: float = 3600.0,
        endpoint_limits: Mapping[str, tuple[int, float]] | None = None,
        endpoint_headers: str = "always",
        teams: Sequence[tuple[str, str]] = (("ENG", "Engineering"),),
        oauth_clients: Mapping[str, str] | None = None,
        access_lifetime: float = 86_400.0,
        client_credentials: bool = False,
    ) -> None:
        super().__init__()
        self.token = token
        self.oauth_token = oauth_token
        #: OAuth apps: client_id -> client_secret
        self.oauth_clients = dict(oauth_clients or {})
        self.access_lifetime = access_lifetime
        self.client_credentials = client_credentials
        self.oauth_error_status = 401
        self._access_tokens: dict[str, tuple[str, float]] = {}  # token -> (client, expiry epoch)
        self._refresh_tokens: dict[str, str] = {}  # live refresh token -> client
        self.refreshes = 0  # refresh_token grants answered (tests count rotations)
        self.issued: list[str] = []  # every token it ever issued (tests grep outputs for them)
        self.client_grants = 0  # client_credentials grants answered
        self.requests_limit = requests_limit
        self.complexity_limit = complexity_limit
        self.rate_window = rate_window
        #: root field -> (requests, window seconds): Linear's "query- and mutation-specific
        #: request limits", lower than the global one, each with its own window
        self.endpoint_limits = dict(endpoint_limits or {})
        #: "always": the X-RateLimit-Endpoint-* headers come on every answer of a limited
        #: endpoint; "when_limited": only on the answer that refuses (Linear's page is unclear)
        self.endpoint_headers = endpoint_headers
        self._endpoint_windows: dict[str, _Window] = {}
        self.ratelimited = 0  # answers refused with RATELIMITED (tests count them)
        self.viewer_id = _stable_id("viewer")
        #: id -> User (the viewer is one; e-mail addresses are served, as Linear serves them)
        self._users: dict[str, dict[str, Any]] = {}
        self.add_user("Sandbox Admin", display_name="admin", email="admin@sandbox.test")
        self._cycles: dict[str, dict[str, Any]] = {}  # id -> Cycle
        #: issue id -> its IssueHistory entries, in the order they were recorded
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._teams: dict[str, dict[str, Any]] = {}  # key -> team
        self._issues: dict[str, dict[str, Any]] = {}  # id -> stored node (no url)
        self._numbers: dict[str, int] = {}
        #: id -> field -> what answers send for it (see `garble_issue`)
        self._garbled: dict[str, dict[str, Any]] = {}
        self._hollow: list[tuple[int, bool]] = []  # see hollow_pages_next
        self._window_start = time.time()
        self._requests_used = 0
        self._complexity_used = 0.0
        self._budget_lock = threading.RLock()
        #: webhook subscriptions: every add_issue/update_issue is delivered, signed as Linear signs
        self.hooks = webhooks.WebhookSender(webhooks.linear_headers)
        for key, name in teams:
            self.add_team(key, name)

    # -- data helpers (tests, demo, benchmarks) ------------------------------------------------
    def add_team(self, key: str, name: str) -> dict[str, Any]:
        with self._lock:
            team: dict[str, Any] = {"__typename": "Team", "id": _stable_id(f"team/{key}")}
            team.update(key=key, name=name)
            team["_states"] = [
                {
                    "__typename": "WorkflowState",
                    "id": _stable_id(f"state/{key}/{n}"),
                    "name": n,
                    "type": t,
                }
                for n, t in WORKFLOW
            ]
            self._teams[key] = team
            self._numbers.setdefault(key, 0)
            return _public_team(team)

    def add_user(
        self, name: str, *, display_name: str | None = None, email: str | None = None
    ) -> str:
        """A workspace member (the first one added is the viewer); returns its id."""
        with self._lock:
            user_id = self.viewer_id if not self._users else _stable_id(f"user/{name}")
            handle = display_name or name.split()[0].casefold()
            self._users[user_id] = {
                "__typename": "User",
                "id": user_id,
                "name": name,
                "displayName": handle,
                "email": email or f"{handle}@sandbox.test",
            }
            return user_id

    def add_cycle(
        self,
        team_key: str,
        number: int,
        *,
        starts_at: datetime,
        ends_at: datetime,
        name: str | None = None,
    ) -> str:
        """A cycle of a team (Linear's sprints); returns its id."""
        with self._lock:
            cycle_id = _stable_id(f"cycle/{team_key}/{number}")
            self._cycles[cycle_id] = {
                "__typename": "Cycle",
                "id": cycle_id,
                "number": float(number),
                "name": name,
                "startsAt": iso(starts_at),
                "endsAt": iso(ends_at),
                "completedAt": None,
                "_team": team_key,
            }
            return cycle_id

    def complete_cycle(self, cycle_id: str, *, at: datetime) -> None:
        """The cycle ends (`completedAt`). As in Linear, its issues are not edited by it: their
        `updatedAt` stays, so a sync learns of it when it reads one of them again."""
        with self._lock:
            self._cycles[cycle_id]["completedAt"] = iso(at)

    def history_of(self, issue_id: str) -> list[dict[str, Any]]:
        """The IssueHistory entries recorded for an issue, oldest first (tests)."""
        with self._lock:
            return [dict(h) for h in self._history.get(issue_id, [])]

    def add_issue(
        self,
        team_key: str = "ENG",
        *,
        title: str,
        updated_at: datetime,
        created_at: datetime | None = None,
        state: str = "Todo",
        priority: int = 0,
        estimate: float | None = None,
        description: str | None = None,
        labels: Iterable[str] = (),
        started_at: datetime | None = None,
        completed_at: datetime | None = None,
        canceled_at: datetime | None = None,
        archived_at: datetime | None = None,
        trashed: bool = False,
        issue_id: str | None = None,
        assignee: str | None = None,
        cycle: str | None = None,
        parent: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Create an issue with explicit upstream timestamps; returns its node (with url).
        `assignee` (a user id), `cycle` (a cycle id) and `parent` (an issue id) are recorded in
        a first IssueHistory entry by `actor` (a user id; default the viewer), as Linear records
        them; the initial state is not in the history (Linear's entries need not carry it)."""
        with self._lock:
            team = self._teams[team_key]
            self._numbers[team_key] += 1
            number = self._numbers[team_key]
            node: dict[str, Any] = {
                "__typename": "Issue",
                "id": issue_id or str(uuid.uuid4()),
                "identifier": f"{team_key}-{number}",
                "number": number,
                "title": title,
                "description": description,
                "priority": float(priority),
                "priorityLabel": PRIORITY_LABELS.get(priority, "No priority"),
                "estimate": None if estimate is None else float(estimate),
                "createdAt": iso(created_at or updated_at),
                "updatedAt": iso(updated_at),
                "startedAt": iso(started_at) if started_at else None,
                "completedAt": iso(completed_at) if completed_at else None,
                "canceledAt": iso(canceled_at) if canceled_at else None,
                "archivedAt": iso(archived_at) if archived_at else None,
                "trashed": True if trashed else None,
                "state": dict(self._state(team, state)),
                "team": _public_team(team),
                "labels": _labels(labels),
                "previousIdentifiers": [],
                "url": None,  # filled per answer: it points back at this sandbox
                "_assignee": None,
                "_cycle": None,
                "_parent": None,
            }
            self._issues[node["id"]] = node
            self._history[node["id"]] = []
            at = created_at or updated_at
            entry = self._entry(node, at, actor)
            for key, value in (("assignee", assignee), ("cycle", cycle), ("parent", parent)):
                if value is not None:
                    self._apply(node, key, value, at, entry)
            if any(k.startswith(("from", "to")) for k in entry):
                self._history[node["id"]].append(entry)
            self._announce("create", node)
            return self._view(node)

    def update_issue(
        self, issue_id: str, *, at: datetime, actor: str | None = None, **changes: Any
    ) -> dict[str, Any]:
        """Change an issue at upstream time `at`, by `actor` (a user id; default the viewer).
        Keys: title, description, priority, estimate, state (a workflow state name; sets
        startedAt/completedAt/canceledAt as Linear does), assignee (a user id or None), cycle (a
        cycle id or None), parent (an issue id or None), labels, started_at, completed_at,
        canceled_at, archived_at, trashed, team_key (a move: new identifier, old one kept in
        previousIdentifiers). Each call is one IssueHistory entry, as one edit is in Linear,
        with the from/to pair of every field it changed."""
        with self._lock:
            node = self._issues[issue_id]
            entry = self._entry(node, at, actor)
            for key, value in changes.items():
                self._apply(node, key, value, at, entry)
            node["updatedAt"] = iso(at)
            self._history[issue_id].append(entry)
            self._announce("update", node)
            return self._view(node)

    def _announce(self, action: str, node: dict[str, Any]) -> None:
        """The `Issue` webhook event of a change, to every subscription: Linear's envelope, with
        the signing time (`webhookTimestamp`, ms) inside the signed body."""
        if not self.hooks.subscribed:
            return
        now = time.time()
        payload = {
            "action": action,
            "type": "Issue",
            "data": self._view(node),
            "url": self._view(node)["url"],
            "createdAt": iso(datetime.fromtimestamp(now, UTC)),
            "organizationId": _stable_id("organization"),
            "webhookTimestamp": int(now * 1000),
            "webhookId": _stable_id("webhook"),
        }
        self.hooks.deliver("Issue", payload)

    def archive_issue(self, issue_id: str, *, at: datetime) -> dict[str, Any]:
        return self.update_issue(issue_id, at=at, archived_at=at)

    def trash_issue(self, issue_id: str, *, at: datetime) -> dict[str, Any]:
        """Delete as Linear does: into the trash (`trashed: true`, `archivedAt` set)."""
        return self.update_issue(issue_id, at=at, trashed=True, archived_at=at)

    def issue(self, issue_id: str) -> dict[str, Any]:
        with self._lock:
            return self._view(self._issues[issue_id])

    def issue_ids(self) -> list[str]:
        with self._lock:
            return list(self._issues)

    def garble_issue(self, issue_id: str, **fields: Any) -> None:
        """From now on answers send these values (JSON as is, whatever the schema says) for the
        issue's fields where a query selects them, while filters, order and cursors still use the
        stored ones: one issue that comes back with a malformed or wrong-typed field."""
        with self._lock:
            self._garbled.setdefault(issue_id, {}).update(fields)

    def hollow_pages_next(self, count: int = 1, *, keep: int = 0, cursors: bool = True) -> None:
        """The next `count` `issues` pages keep only their first `keep` nodes while `pageInfo`
        stays as it was (hasNextPage / hasPreviousPage still promising more; with `cursors`
        False, start and end cursors null, as an empty page has them): an answer that breaks
        Relay's promise, as a faulty proxy or an overloaded service might send it."""
        with self._lock:
            self._hollow.extend([(keep, cursors)] * count)

    def rate_limit_next(self, count: int = 1, *, reset_in: float = 1.0, status: int = 400) -> None:
        """The next `count` requests are rate limited as Linear does it: HTTP 400 (or 429) with
        RATELIMITED and an X-RateLimit-Requests-Reset `reset_in` seconds after the answer."""
        self.inject(
            Fault("429", count, retry_after=reset_in, headers={"X-Sandbox-Status": str(status)})
        )

    def seed_demo(self) -> None:
        """Two teams, three dozen believable issues in mixed states over the last five weeks."""
        if "OPS" not in self._teams:
            self.add_team("OPS", "Platform Ops")
        # Anchored to today's midnight with stable ids: recent, yet identical when the demo runs
        # again today (a second run then changes nothing instead of duplicating every issue).
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        # People act on the issues: each issue's moves are recorded in its history (so the demo's
        # dashboards have start and completion times from history).
        people = [
            self.add_user(name, email=f"{name.split()[0].casefold()}@acme.example")
            for name in ("Maya Chen", "Tomás Ortega", "Priya Nair", "Jonas Berg")
        ]
        # Each team's cycles: the last one (completed), the current one, the next one.
        cycles = {
            key: [
                self.add_cycle(
                    key,
                    number,
                    starts_at=now + timedelta(days=14 * (number - 3) - 7),
                    ends_at=now + timedelta(days=14 * (number - 3) + 7),
                )
                for number in (2, 3, 4)
            ]
            for key in ("ENG", "OPS")
        }
        for key in cycles:
            self.complete_cycle(cycles[key][0], at=now - timedelta(days=7))
        # Epics: parent issues whose sub-issues are some of the issues below.
        epics: dict[int, str] = {}
        for e, (team, title, children) in enumerate(_DEMO_EPICS):
            created = now - timedelta(days=36, hours=e)
            epic = self.add_issue(
                team,
                title=title,
                created_at=created,
                updated_at=created,
                state="In Progress",
                priority=2,
                labels=("Epic",),
                issue_id=_stable_id(f"demo-epic/{e}"),
                assignee=people[e % len(people)],
                actor=people[e % len(people)],
            )
            epics.update(dict.fromkeys(children, epic["id"]))
        for n, spec in enumerate(_DEMO):
            team, title, state, priority, estimate, labels = spec
            created = now - timedelta(days=35) + timedelta(hours=19 * n)
            updated = created + timedelta(hours=5 + (n * 7) % 60)
            state_type = dict(WORKFLOW)[state]
            who = people[n % len(people)]
            moves: list[tuple[datetime, dict[str, Any]]] = []
            if state_type in ("started", "completed"):
                moves.append((created + timedelta(hours=3), {"state": "In Progress"}))
            if state_type == "completed":
                moves.append((created + timedelta(hours=4), {"state": "In Review"}))
            if state_type in ("completed", "canceled", "duplicate") or state == "In Review":
                moves.append((updated, {"state": state}))
            elif state == "In Progress":
                moves.append((updated, {"assignee": who}))
            initial = state if not moves else "Todo"
            unassigned = state_type in ("triage", "backlog") or state == "In Progress"
            self.add_issue(
                team,
                title=title,
                created_at=created,
                updated_at=created if moves else updated,
                state=initial,
                priority=priority,
                estimate=estimate,
                labels=labels,
                description=f"## Context\n{title}.\n\n- [ ] acceptance: works in staging",
                issue_id=_stable_id(f"demo-issue/{n}"),
                actor=who,
                assignee=None if unassigned else who,  # In Progress: assigned by a move below
                cycle=_demo_cycle(cycles[team], state_type, updated, now, n),
                parent=epics.get(n),
            )
            for at, change in moves:
                self.update_issue(_stable_id(f"demo-issue/{n}"), at=at, actor=who, **change)
        self.archive_issue(_stable_id("demo-issue/2"), at=now - timedelta(days=2))
        self.trash_issue(_stable_id(f"demo-issue/{len(_DEMO) - 1}"), at=now - timedelta(days=1))

    def demo_step(self, rng: random.Random, now: datetime) -> DemoChange:
        """One thing the demo team does in ENG and OPS at `now`: creates an issue, moves one a
        step along Todo → In Progress → In Review → Done, hands one to someone else, or closes
        one; the first close of a demo run deletes instead (into the trash, as Linear deletes).
        Each edit is an IssueHistory entry by its author."""
        with self._lock:
            people = sorted(self._users, key=lambda u: self._users[u]["name"])
            who = rng.choice(people)
            name = self._users[who]["name"]
            issues = [
                node for node in self._issues.values()
                if node["team"]["key"] in ("ENG", "OPS") and not node["archivedAt"]
                and node["state"]["type"] in ("triage", "backlog", "unstarted", "started")
                and "Epic" not in (n["name"] for n in node["labels"]["nodes"])
            ]  # fmt: skip
            action = demo_action(rng)
            if action == "create" or not issues:
                team = rng.choice(["ENG", "OPS"])
                number = self._numbers[team] + 1
                title = _DEMO_NEW[number % len(_DEMO_NEW)]
                new = self.add_issue(
                    team, title=title, created_at=now, updated_at=now,
                    priority=rng.randint(1, 4), description=f"{title}.",
                    issue_id=_stable_id(f"demo-live/{team}/{number}"), actor=who,
                )  # fmt: skip
                key = new["identifier"]
                return DemoChange(key, f"{name} created {key} “{title}”")
            node = rng.choice(issues)
            key, before = node["identifier"], node["state"]["name"]
            if action == "reassign":
                other = rng.choice([p for p in people if p != node["_assignee"]])
                self.update_issue(node["id"], at=now, actor=who, assignee=other)
                return DemoChange(key, f"{name} assigned {key} to {self._users[other]['name']}")
            if action == "close" and not getattr(self, "_demo_trashed", False):
                self._demo_trashed = True  # one deletion a demo run
                self.trash_issue(node["id"], at=now)
                return DemoChange(key, f"{name} deleted {key}")
            after = "Done" if action == "close" else _DEMO_NEXT.get(before, "In Progress")
            changes: dict[str, Any] = {"state": after}
            if node["_assignee"] is None:
                changes["assignee"] = who
            self.update_issue(node["id"], at=now, actor=who, **changes)
            return DemoChange(key, f"{name} moved {key} {before} → {after}")

    def demo_config(self) -> dict[str, Any]:
        """`integrations.config` for a Linear row pointing at this sandbox."""
        return {
            "api_url": f"{self.url}/graphql",
            "team_keys": sorted(self._teams),
            "token": self.token,
            "page_size": 50,
        }

    # -- OAuth (tests) -------------------------------------------------------------------------
    def consent(self, client_id: str) -> str:
        """What an admin's consent and the code exchange leave the app with: a live refresh
        token of `client_id`."""
        with self._lock:
            if client_id not in self.oauth_clients:
                raise KeyError(client_id)
            token = f"lin_oauth_rt_{uuid.uuid4().hex}"
            self._refresh_tokens[token] = client_id
            self.issued.append(token)
            return token

    def revoke_grants(self) -> None:
        """The app's authorization revoked in Linear: every refresh and access token dies."""
        with self._lock:
            self._refresh_tokens.clear()
            # kept, expired: a revoked token is refused as one (not as an unknown header)
            self._access_tokens = {t: (c, 0.0) for t, (c, _) in self._access_tokens.items()}

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (as if its lifetime had passed)."""
        with self._lock:
            self._access_tokens = {t: (c, 0.0) for t, (c, _) in self._access_tokens.items()}

    def live_refresh_tokens(self) -> list[str]:
        with self._lock:
            return list(self._refresh_tokens)

    def live_access_tokens(self) -> list[str]:
        now = time.time()
        with self._lock:
            return [t for t, (_, exp) in self._access_tokens.items() if exp > now]

    # -- HTTP ----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path.startswith(f"/{ORG_KEY}/issue/"):
            return self._web_page(request.path)
        if request.path == "/oauth/token":
            return self._token_endpoint(request)
        if request.path != "/graphql" or request.method != "POST":
            return Response(404, {"message": "Not found"}, self._rate_headers())
        header = request.headers.get("authorization")
        oauth = self._oauth_access(header)
        if oauth is False:  # one of our OAuth tokens, expired or revoked
            return self.auth_failure(self.oauth_error_status)
        if oauth is None and not self._authorised(header):
            return self.auth_failure()
        if not self._spend_request():
            return self._rate_limited(self._rate_headers())
        try:
            prepared = self._prepare(request)
        except GraphQLError as exc:
            return Response(exc.status, exc.body(), self._rate_headers())
        refused = self._spend_query(prepared)
        if refused is not None:
            return refused
        try:
            with self._lock:
                data = graphql.execute(prepared, self._resolvers())
                self._garble(data)
        except GraphQLError as exc:
            return Response(exc.status, exc.body(), self._rate_headers(roots=prepared.roots))
        headers = self._rate_headers(prepared.points, prepared.roots)
        return Response(200, {"data": data}, headers)

    def auth_failure(self, status: int | None = None) -> Response:
        body = GraphQLError(
            "Authentication required, not authenticated",
            code="AUTHENTICATION_ERROR",
            type_="authentication error",
        ).body()
        body["errors"][0]["extensions"]["userPresentableMessage"] = (
            "You need to authenticate to access this operation."
        )
        return Response(status or self.auth_error_status, body, self._rate_headers())

    def fault_response(self, fault: Fault) -> Response:
        headers = {k: v for k, v in fault.headers.items() if not k.startswith("X-Sandbox-")}
        if fault.kind == "429":
            # An injected limit says the request budget is spent until `retry_after` from now.
            limited = {**self._rate_headers(), "X-RateLimit-Requests-Remaining": "0"}
            if fault.retry_after is None:
                for name in ("X-RateLimit-Requests-Reset", "X-RateLimit-Complexity-Reset"):
                    limited.pop(name, None)
            else:
                reset = time.time() + fault.retry_after
                limited["X-RateLimit-Requests-Reset"] = str(int(reset * 1000))
            status = int(fault.headers.get("X-Sandbox-Status", "400"))
            response = self._rate_limited({**limited, **headers}, status)
            if fault.body is not None:
                response.body = fault.body
            return response
        if fault.kind == "401":
            response = self.auth_failure()
            response.headers.update(headers)
            return response
        if fault.kind == "400_json" and fault.body is None:
            error = GraphQLError('Cannot query field "bogus" on type "Query".', presentable=False)
            return Response(400, error.body(), {**self._rate_headers(), **headers})
        response = super().fault_response(fault)
        response.headers = {**self._rate_headers(), **response.headers}
        return response

    # -- internals -----------------------------------------------------------------------------
    def _authorised(self, header: str | None) -> bool:
        if header is None:
            return False
        if header == self.token:
            return True
        return self.oauth_token is not None and header == f"Bearer {self.oauth_token}"

    def _oauth_access(self, header: str | None) -> bool | None:
        """None: not a token this OAuth server issued; else whether it is still valid."""
        if header is None or not header.startswith("Bearer "):
            return None
        with self._lock:
            issued = self._access_tokens.get(header.removeprefix("Bearer "))
        if issued is None:
            return None
        return issued[1] > time.time()

    def _token_endpoint(self, request: Request) -> Response:
        """RFC 6749 token endpoint as Linear serves it: form-encoded, errors as
        `{"error", "error_description"}` (400; 401 for client authentication)."""
        if request.method != "POST":
            return Response(405, {"error": "invalid_request", "error_description": "POST only"})
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "Body must be form-encoded")
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            try:
                pair = base64.b64decode(basic.removeprefix("Basic ")).decode()
            except ValueError:
                pair = ""
            basic_id, _, basic_secret = pair.partition(":")
            client_id, secret = unquote(basic_id), unquote(basic_secret)
        if not client_id or self.oauth_clients.get(client_id) != secret or not secret:
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "refresh_token":
                given = form.get("refresh_token")
                if not given:
                    return _oauth_error(400, "invalid_request", "Missing refresh_token")
                if self._refresh_tokens.get(given) != client_id:
                    return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
                del self._refresh_tokens[given]  # rotation: the token just used is dead
                self.refreshes += 1
                refresh: str | None = f"lin_oauth_rt_{uuid.uuid4().hex}"
                self._refresh_tokens[str(refresh)] = client_id
            elif grant_type == "client_credentials":
                if not self.client_credentials:
                    return _oauth_error(
                        400,
                        "unauthorized_client",
                        "Client does not support the client_credentials grant type",
                    )
                self.client_grants += 1
                refresh = None
            else:
                return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
            access = f"lin_oauth_{uuid.uuid4().hex}"
            self._access_tokens[access] = (client_id, time.time() + self.access_lifetime)
            self.issued += [access] if refresh is None else [access, refresh]
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": _whole(self.access_lifetime),
            "scope": form.get("scope") or "read",
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return Response(200, body, {"Cache-Control": "no-store"})

    def _prepare(self, request: Request) -> Prepared:
        try:
            payload = request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise GraphQLError(
                "POST body missing, invalid Content-Type, or JSON object has no keys.",
                code="BAD_REQUEST",
            )
        variables = payload.get("variables") or {}
        if not isinstance(variables, dict):
            raise GraphQLError("Variables must be an object.", code="BAD_REQUEST")
        name = payload.get("operationName")
        return graphql.prepare(payload["query"], variables, name if isinstance(name, str) else None)

    def _garble(self, data: dict[str, Any]) -> None:
        """Overwrite the selected fields of garbled issues in an executed answer (on the wire,
        past the schema's serialisation, as a faulty proxy or service would send them)."""
        if not self._garbled:
            return
        for value in data.values():
            nodes = value.get("nodes") if isinstance(value, dict) else None
            for node in nodes or []:
                changes = self._garbled.get(str(node.get("id"))) if isinstance(node, dict) else None
                for name, garbled in (changes or {}).items():
                    if name in node:
                        node[name] = garbled

    def _resolvers(self) -> dict[str, graphql.Resolver]:
        """The fields the sandbox computes; every other field is read from the stored dicts."""
        return {
            "Query.viewer": lambda _, args: self._viewer(),
            "Query.teams": lambda _, args: self._teams_page(args),
            "Query.issues": lambda _, args: self._issues_page(args),
            "Query.issue": lambda _, args: self._one_issue(args["id"]),
            "Issue.labels": lambda issue, args: self._label_page(issue, args),
            "Issue.history": lambda issue, args: self._history_page(issue, args),
            **{
                f"Issue.{name}": self._issue_link(name, kind)
                for name, kind in (("assignee", "user"), ("cycle", "cycle"), ("parent", "issue"))
            },
            **{
                f"IssueHistory.{side}{name}": self._history_link(f"{side}{name}Id", kind)
                for side in ("from", "to")
                for name, kind in (
                    ("State", "state"),
                    ("Assignee", "user"),
                    ("Cycle", "cycle"),
                    ("Parent", "issue"),
                )
            },
            "IssueHistory.actor": self._history_link("actorId", "user"),
        }

    def _history_link(self, key: str, kind: str) -> graphql.Resolver:
        """An IssueHistory's related object, looked up by the id the entry stores."""

        def resolve(entry: Mapping[str, Any], args: dict[str, Any]) -> dict[str, Any] | None:
            found = entry.get(key)
            return None if found is None else self._related(kind, found)

        return resolve

    def _issue_link(self, name: str, kind: str) -> graphql.Resolver:
        """An issue's assignee, cycle or parent: the id its stored node keeps (`_<name>`)."""

        def resolve(issue: Mapping[str, Any], args: dict[str, Any]) -> dict[str, Any] | None:
            found = self._issues[issue["id"]][f"_{name}"]
            return None if found is None else self._related(kind, found)

        return resolve

    def _related(self, kind: str, found: str) -> dict[str, Any]:
        if kind == "user":
            return self._users[found]
        if kind == "cycle":
            return _public_team(self._cycles[found])
        if kind == "issue":
            return self._view(self._issues[found])
        return next(dict(s) for t in self._teams.values() for s in t["_states"] if s["id"] == found)

    def _history_page(self, issue: Mapping[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        """`Issue.history(...)`: the issue's entries newest first by `orderBy` (createdAt by
        default; ties by id), as Linear lists its connections, Relay-sliced (default first 50);
        cursors are entry ids."""
        order = args.get("orderBy") or "createdAt"
        if order not in ("createdAt", "updatedAt"):
            raise GraphQLError(f'Value "{order}" does not exist in "PaginationOrderBy" enum.')
        entries = sorted(
            self._history.get(issue["id"], []), key=lambda h: (h[order], h["id"]), reverse=True
        )
        return _slice(entries, args)

    def _viewer(self) -> dict[str, Any]:
        return self._users[self.viewer_id]

    def _teams_page(self, args: dict[str, Any]) -> dict[str, Any]:
        teams = (_public_team(t) for t in self._teams.values())
        listed, sort_key = graphql.select_teams(teams, args)
        return self._page(listed, args, sort_key)

    def _issues_page(self, args: dict[str, Any]) -> dict[str, Any]:
        nodes, sort_key = graphql.select_issues(self._issues.values(), args)
        page = self._page(nodes, args, sort_key, view=self._view)
        if self._hollow:
            keep, cursors = self._hollow.pop(0)
            page["nodes"], page["edges"] = page["nodes"][:keep], page["edges"][:keep]
            if not cursors:
                page["pageInfo"].update(startCursor=None, endCursor=None)
        return page

    def _one_issue(self, key: str) -> dict[str, Any]:
        """`issue(id:)` takes the UUID or the identifier (ENG-123), archived and trashed too."""
        node = self._issues.get(key) or next(
            (
                n
                for n in self._issues.values()
                if key in (n["identifier"], *n["previousIdentifiers"])
            ),
            None,
        )
        if node is None:
            raise GraphQLError(
                "Entity not found: Issue",
                code="INPUT_ERROR",
                type_="invalid input",
                presentable="Could not find referenced Issue.",
            )
        return self._view(node)

    def _label_page(self, issue: Mapping[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        """`Issue.labels(...)`: the issue's labels in their stored order, filtered, sliced by
        Relay's algorithm (default first 50, like every connection); cursors are label ids."""
        flt = args.get("filter")
        graphql.check_input(flt, "IssueLabelFilter")
        labels = [
            label
            for label in (issue.get("labels") or {}).get("nodes") or []
            if graphql.match(label, flt, "IssueLabelFilter")
        ]
        return _slice(labels, args)

    def _page(
        self,
        ordered: list[dict[str, Any]],
        args: Mapping[str, Any],
        sort_key: Callable[[Mapping[str, Any]], Any],
        view: Callable[[dict[str, Any]], dict[str, Any]] = lambda n: n,
    ) -> dict[str, Any]:
        """Relay slicing of a newest-first list (the spec's algorithm, keyed like Linear's)."""
        first, last = _page_sizes(args)
        edges = ordered
        has_prev = has_next = False
        if args.get("after") is not None:
            pivot = self._cursor_key(args["after"], sort_key)
            has_prev = any(sort_key(n) >= pivot for n in edges)
            edges = [n for n in edges if sort_key(n) < pivot]
        if args.get("before") is not None:
            pivot = self._cursor_key(args["before"], sort_key)
            has_next = any(sort_key(n) <= pivot for n in edges)
            edges = [n for n in edges if sort_key(n) > pivot]
        if first is not None and len(edges) > first:
            edges, has_next = edges[:first], True
        if last is not None and len(edges) > last:
            edges, has_prev = edges[len(edges) - last :], True
        return _connection([view(n) for n in edges], has_prev=has_prev, has_next=has_next)

    def _cursor_key(self, cursor: Any, sort_key: Callable[[Mapping[str, Any]], Any]) -> Any:
        # Linear's cursors name an entity; its *current* sort value is where the page starts.
        node = self._issues.get(str(cursor)) or next(
            (t for t in self._teams.values() if t["id"] == cursor), None
        )
        if node is None:
            raise _invalid_cursor()
        return sort_key(node)

    def _view(self, node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if not k.startswith("_")}
        out["url"] = f"{self.url}/{ORG_KEY}/issue/{node['identifier']}/{_slug(node['title'])}"
        return out

    def _state(self, team: Mapping[str, Any], name: str) -> dict[str, Any]:
        for state in team["_states"]:
            if state["name"].casefold() == name.casefold():
                return dict(state)
        raise ValueError(f"team {team['key']} has no workflow state {name!r}")

    def _entry(self, node: Mapping[str, Any], at: datetime, actor: str | None) -> dict[str, Any]:
        """A new IssueHistory entry of `node` (its from/to pairs are added by `_apply`)."""
        actor_id = actor or self.viewer_id
        if actor_id not in self._users:
            raise ValueError(f"no user {actor_id!r}")
        return {
            "__typename": "IssueHistory",
            # stable: the same changes to the same issue have the same ids in every process
            "id": _stable_id(f"history/{node['id']}/{len(self._history.get(node['id'], []))}"),
            "createdAt": iso(at),
            "updatedAt": iso(at),
            "actorId": actor_id,
            "botActor": None,
            "_issue": node["id"],
        }

    def _apply(
        self, node: dict[str, Any], key: str, value: Any, at: datetime, entry: dict[str, Any]
    ) -> None:
        if key in ("title", "description"):
            node[key] = value
        elif key == "priority":
            entry.update(fromPriority=node["priority"], toPriority=float(value))
            node["priority"] = float(value)
            node["priorityLabel"] = PRIORITY_LABELS.get(int(value), "No priority")
        elif key == "estimate":
            new = None if value is None else float(value)
            entry.update(fromEstimate=node["estimate"], toEstimate=new)
            node["estimate"] = new
        elif key in ("assignee", "cycle", "parent"):
            known = {"assignee": self._users, "cycle": self._cycles, "parent": self._issues}[key]
            if value is not None and value not in known:
                raise ValueError(f"update_issue: no {key} {value!r}")
            if key == "parent" and value is not None and self._is_below(value, node["id"]):
                raise ValueError("update_issue: an issue cannot be its own ancestor")
            if (
                key == "cycle"
                and value is not None
                and self._cycles[value]["_team"] != (node["team"]["key"])
            ):
                raise ValueError("update_issue: a cycle belongs to another team")
            entry.update({f"from{key.title()}Id": node[f"_{key}"], f"to{key.title()}Id": value})
            node[f"_{key}"] = value
        elif key == "labels":
            node["labels"] = _labels(value)
        elif key in ("started_at", "completed_at", "canceled_at", "archived_at"):
            camel = {"started_at": "startedAt", "completed_at": "completedAt"}.get(key)
            camel = camel or {"canceled_at": "canceledAt", "archived_at": "archivedAt"}[key]
            node[camel] = iso(value) if value else None
        elif key == "trashed":
            node["trashed"] = True if value else None
        elif key == "state":
            before = node["state"]["id"]
            self._move_state(node, value, at)
            entry.update(fromStateId=before, toStateId=node["state"]["id"])
        elif key == "team_key":
            team = self._teams[value]
            self._numbers[value] += 1
            node["previousIdentifiers"] = [*node["previousIdentifiers"], node["identifier"]]
            node["number"] = self._numbers[value]
            node["identifier"] = f"{value}-{node['number']}"
            node["team"] = _public_team(team)
            before = node["state"]["id"]
            node["state"] = self._state(team, node["state"]["name"])
            entry.update(fromStateId=before, toStateId=node["state"]["id"])
            if node["_cycle"] is not None:  # cycles are a team's own: the move leaves it
                entry.update(fromCycleId=node["_cycle"], toCycleId=None)
                node["_cycle"] = None
        else:
            raise ValueError(f"update_issue: unknown change {key!r}")

    def _is_below(self, issue_id: str, ancestor: str) -> bool:
        """Whether `issue_id` is `ancestor` or one of its sub-issues, at any depth."""
        seen: set[str] = set()
        current: str | None = issue_id
        while current is not None and current not in seen:
            if current == ancestor:
                return True
            seen.add(current)
            current = self._issues[current]["_parent"]
        return False

    def _move_state(self, node: dict[str, Any], name: str, at: datetime) -> None:
        team = self._teams[node["team"]["key"]]
        state = self._state(team, name)
        node["state"] = state
        kind = state["type"]
        if kind in ("started", "completed") and node["startedAt"] is None:
            node["startedAt"] = iso(at)
        node["completedAt"] = iso(at) if kind == "completed" else None
        node["canceledAt"] = iso(at) if kind in ("canceled", "duplicate") else None

    # -- rate limits ---------------------------------------------------------------------------
    def _roll_window(self) -> None:
        now = time.time()
        if now - self._window_start >= self.rate_window:
            self._window_start, self._requests_used, self._complexity_used = now, 0, 0.0
        for name, (_, window) in self.endpoint_limits.items():
            current = self._endpoint_windows.get(name)
            if current is None or now - current.start >= window:
                self._endpoint_windows[name] = _Window(now)

    def _budget_reset(self) -> float:
        return self._window_start + self.rate_window

    def _spend_request(self) -> bool:
        with self._budget_lock:
            self._roll_window()
            if self._requests_used >= self.requests_limit:
                return False
            self._requests_used += 1
            return True

    def _spend_query(self, prepared: Prepared) -> Response | None:
        """Charge a query its complexity and its endpoints one request each, or answer
        RATELIMITED when a budget cannot take it (nothing is charged then)."""
        with self._budget_lock:
            self._roll_window()
            if prepared.points > self.complexity_limit - self._complexity_used:
                return self._rate_limited(self._rate_headers(roots=prepared.roots))
            for name in prepared.roots:
                if name in self.endpoint_limits:
                    limit, _ = self.endpoint_limits[name]
                    if self._endpoint_windows[name].used >= limit:
                        headers = self._rate_headers(roots=prepared.roots, limited=name)
                        return self._rate_limited(headers)
            self._complexity_used += prepared.points
            for name in prepared.roots:
                if name in self.endpoint_limits:
                    self._endpoint_windows[name].used += 1
            return None

    def _rate_headers(
        self, complexity: int = 0, roots: Sequence[str] = (), limited: str | None = None
    ) -> dict[str, str]:
        """Linear's rate-limit headers (resets in epoch milliseconds): the request and
        complexity budgets always, an endpoint's own limit for a query that uses one (the
        tightest, or `limited`, the one that refused it)."""
        with self._budget_lock:
            self._roll_window()
            reset_ms = str(int(self._budget_reset() * 1000))
            headers = {
                "X-RateLimit-Requests-Limit": str(self.requests_limit),
                "X-RateLimit-Requests-Remaining": str(
                    max(0, self.requests_limit - self._requests_used)
                ),
                "X-RateLimit-Requests-Reset": reset_ms,
                "X-RateLimit-Complexity-Limit": str(self.complexity_limit),
                "X-RateLimit-Complexity-Remaining": str(
                    max(0, int(self.complexity_limit - self._complexity_used))
                ),
                "X-RateLimit-Complexity-Reset": reset_ms,
                "X-Complexity": str(complexity),
            }
            endpoints = [n for n in roots if n in self.endpoint_limits]
            if limited is None and self.endpoint_headers != "always":
                endpoints = []
            if limited is not None:
                endpoints = [limited]
            if endpoints:
                name = min(endpoints, key=self._endpoint_left)
                limit, window = self.endpoint_limits[name]
                current = self._endpoint_windows[name]
                headers.update(
                    {
                        "X-RateLimit-Endpoint-Requests-Limit": str(limit),
                        "X-RateLimit-Endpoint-Requests-Remaining": str(self._endpoint_left(name)),
                        "X-RateLimit-Endpoint-Requests-Reset": str(
                            int((current.start + window) * 1000)
                        ),
                        "X-RateLimit-Endpoint-Name": name,
                    }
                )
            return headers

    def _endpoint_left(self, name: str) -> int:
        return max(0, self.endpoint_limits[name][0] - self._endpoint_windows[name].used)

    def _rate_limited(self, headers: dict[str, str], status: int = 400) -> Response:
        with self._budget_lock:
            self.ratelimited += 1
        body = GraphQLError(
            "Rate limit exceeded", code="RATELIMITED", type_="ratelimited", status=status
        ).body()
        body["errors"][0]["extensions"]["userPresentableMessage"] = (
            "Too many requests. Please try again later."
        )
        return Response(status, body, {**headers, "X-Complexity": "0"})

    def _web_page(self, path: str) -> Response:
        identifier = path.split("/")[3] if path.count("/") >= 3 else ""
        with self._lock:
            node = next((n for n in self._issues.values() if n["identifier"] == identifier), None)
        if node is None:
            return Response(404, b"<h1>Issue not found</h1>", {"Content-Type": "text/html"})
        page = f"<h1>{html.escape(identifier)}: {html.escape(node['title'])}</h1>"
        return Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


def _page_sizes(args: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """`first` / `last` checked (0..MAX_PAGE); `first: 50` when neither is given."""
    first, last = args.get("first"), args.get("last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and (not isinstance(value, int) or not 0 <= value <= MAX_PAGE):
            raise GraphQLError(
                f"{name} must be between 0 and {MAX_PAGE}",
                code="BAD_USER_INPUT",
                type_="invalid input",
            )
    if first is None and last is None:
        first = graphql.DEFAULT_PAGE
    return first, last


def _slice(nodes: list[dict[str, Any]], args: Mapping[str, Any]) -> dict[str, Any]:
    """Relay slicing of a fixed list whose cursors are its nodes' ids (an issue's labels, its
    history)."""
    first, last = _page_sizes(args)
    ids = [n["id"] for n in nodes]
    start, end = 0, len(nodes)
    for name, cursor in (("after", args.get("after")), ("before", args.get("before"))):
        if cursor is None:
            continue
        if cursor not in ids:
            raise _invalid_cursor()
        if name == "after":
            start = ids.index(cursor) + 1
        else:
            end = ids.index(cursor)
    edges = nodes[start:end]
    has_prev, has_next = start > 0, end < len(nodes)
    if first is not None and len(edges) > first:
        edges, has_next = edges[:first], True
    if last is not None and len(edges) > last:
        edges, has_prev = edges[len(edges) - last :], True
    return _connection(edges, has_prev=has_prev, has_next=has_next)


def _connection(nodes: list[dict[str, Any]], *, has_prev: bool, has_next: bool) -> dict[str, Any]:
    """A Relay connection of `nodes` (each with an `id`, its cursor)."""
    return {
        "nodes": nodes,
        "edges": [{"node": v, "cursor": v["id"]} for v in nodes],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_prev,
            "startCursor": nodes[0]["id"] if nodes else None,
            "endCursor": nodes[-1]["id"] if nodes else None,
        },
    }


def _invalid_cursor() -> GraphQLError:
    return GraphQLError(
        "Invalid cursor: the entity was not found",
        code="INVALID_INPUT",
        type_="invalid input",
    )


def _public_team(team: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in team.items() if not k.startswith("_")}


def _labels(names: Iterable[str]) -> dict[str, Any]:
    return {
        "__typename": "IssueLabelConnection",
        "nodes": [
            {"__typename": "IssueLabel", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, n)), "name": n}
            for n in names
        ],
    }


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-")[:60] or "issue"


#: The demo team's next step from each state it works in (`demo_step`; others: In Progress).
_DEMO_NEXT = {"In Progress": "In Review", "In Review": "Done"}
#: Titles of the issues the demo team creates while the demo runs.
_DEMO_NEW = [
    "Alert when the sync queue backs up",
    "Rotate the staging database password",
    "Speed up the CI cache restore",
    "Onboarding checklist for new engineers",
    "Trim unused feature flags",
    "Move cron jobs to the scheduler",
    "Dashboards for the new region",
]
_DEMO: list[tuple[str, str, str, int, float | None, tuple[str, ...]]] = [
    ("ENG", "Add SAML single sign-on for enterprise workspaces", "In Progress", 2, 8, ("Feature",)),
    ("ENG", "Crash when exporting a board with 10k cards", "Done", 1, 3, ("Bug",)),
    ("ENG", "Migrate session store from Redis 6 to Valkey", "Backlog", 3, 5, ()),
    ("ENG", "Dark mode contrast fails WCAG AA on badges", "Todo", 4, 1, ("Bug", "Design")),
    ("ENG", "Webhook retries ignore Retry-After", "In Review", 2, 2, ("Bug",)),
    ("ENG", "Paginate the audit log API", "In Progress", 3, 3, ("API",)),
    ("ENG", "Rate-limit password reset emails", "Done", 1, 2, ("Security",)),
    ("ENG", "CSV import drops rows with emoji in the title", "Todo", 2, 2, ("Bug",)),
    ("ENG", "Search ranks archived projects above active ones", "Backlog", 3, 3, ()),
    ("ENG", "Upgrade to PostgreSQL 16 in staging", "In Progress", 2, 5, ("Blocked",)),
    ("ENG", "Mobile: offline queue loses edits after app restart", "Triage", 1, None, ("Bug",)),
    ("ENG", "Remove the legacy v1 REST endpoints", "Canceled", 4, 8, ()),
    ("ENG", "Slack unfurl shows the wrong assignee", "Duplicate", 3, 1, ("Bug",)),
    ("ENG", "Keyboard shortcut to move an issue to the next cycle", "Todo", 4, 1, ("Feature",)),
    ("ENG", "Cache team membership lookups", "In Review", 3, 2, ("Performance",)),
    ("ENG", "Flaky test: test_sync_resumes_after_restart", "In Progress", 3, 1, ("Tech debt",)),
    ("ENG", "GDPR export includes deleted comments", "Todo", 1, 3, ("Security", "Blocked")),
    ("ENG", "Show estimate totals per cycle", "Done", 3, 3, ("Feature",)),
    ("ENG", "Time zone of due dates shifts by one day in Sydney", "Done", 2, 2, ("Bug",)),
    ("ENG", "Add OpenTelemetry traces to the sync worker", "Backlog", 4, 5, ()),
    ("ENG", "Bulk-edit labels from the list view", "In Progress", 3, 5, ("Feature",)),
    ("ENG", "Attachments over 25 MB fail silently", "Todo", 2, 2, ("Bug",)),
    ("OPS", "Rotate the production database credentials", "Done", 1, 1, ("Security",)),
    ("OPS", "Terraform drift in the eu-west load balancer", "In Progress", 2, 3, ()),
    ("OPS", "Alert fatigue: tune the disk-usage pager threshold", "Todo", 3, 1, ()),
    ("OPS", "Move CI runners to arm64", "Backlog", 4, 8, ()),
    ("OPS", "Backups restore test for Q3", "In Review", 2, 3, ()),
    ("OPS", "Certificate renewal failed for status page", "Done", 1, 1, ("Incident",)),
    ("OPS", "Kubernetes 1.30 upgrade", "In Progress", 2, 8, ("Blocked",)),
    ("OPS", "Document the on-call handover", "Todo", 4, 1, ("Docs",)),
    ("OPS", "Decommission the old VPN", "Canceled", 4, 2, ()),
    ("OPS", "Cost report: unattached volumes", "Triage", 3, None, ()),
    ("OPS", "Staging is down after the DNS change", "Done", 1, 2, ("Incident",)),
    ("OPS", "Log retention to 30 days for PII streams", "Todo", 2, 2, ("Security",)),
    ("OPS", "Grafana dashboards for the sync daemon", "In Progress", 3, 3, ()),
    ("OPS", "Spam issue created by a test script", "Todo", 0, None, ()),
]


#: (team, title, indexes in _DEMO of its sub-issues)
_DEMO_EPICS: list[tuple[str, str, tuple[int, ...]]] = [
    ("ENG", "Enterprise readiness", (0, 5, 6, 16)),
    ("ENG", "Import and export you can trust", (1, 7, 21)),
    ("OPS", "Platform upgrades", (25, 28, 23)),
]


def _demo_cycle(
    cycles: Sequence[str], state_type: str, updated: datetime, now: datetime, n: int
) -> str | None:
    """The cycle a demo issue is in: done before the current cycle, the last one; done since or
    under way, the current one; half the planned ones, the next one; the rest none."""
    if state_type == "completed":
        return cycles[0] if updated < now - timedelta(days=7) else cycles[1]
    if state_type == "started":
        return cycles[1]
    if state_type == "unstarted" and n % 2 == 0:
        return cycles[2]
    return None


def _stable_id(name: str) -> str:
    """A UUID that is the same in every sandbox process (ids in the demo stay put across runs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://linear.sandbox/{name}"))


def _oauth_error(status: int, error: str, description: str) -> Response:
    return Response(status, {"error": error, "error_description": description})


def _whole(seconds: float) -> float | int:
    """Seconds as Linear writes them (an integer), unless a test asked for a fraction."""
    return int(seconds) if float(seconds).is_integer() else seconds

"""The connector contract: the WorkItem record, the Connector protocol, errors, status mapping.

Connectors know nothing of the database; the sync run knows nothing of any tracker. A connector
turns one tracker's API into pages of `WorkItem`s, oldest change first, and says after each page
how far the run may safely resume from (`Page.checkpoint`).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class Status(enum.StrEnum):
    """The statuses of `work_items.status`: every tracker's states map onto these."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    PR_READY = "pr_ready"
    COMPLETED = "completed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


PRIORITY_NONE, PRIORITY_LOW, PRIORITY_MEDIUM, PRIORITY_HIGH, PRIORITY_HIGHEST = range(5)


# ---------------------------------------------------------------------------------------------
# Errors: what to do about them is in the class, not in the message.
# ---------------------------------------------------------------------------------------------
class ConnectorError(Exception):
    """Base of every error a connector raises on purpose. Messages never contain secrets."""


class RetriableError(ConnectorError):
    """Transient: 429, 5xx, timeouts, malformed bodies from an overloaded proxy. Retry later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(ConnectorError):
    """Retrying will not help until someone changes something: bad credentials, bad config."""


class ConfigError(FatalError):
    """`integrations.config` does not validate, or a secret it names cannot be resolved."""


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
# The tracker-neutral kinds of `work_items.item_type` (the tracker's own name is kept beside it).
ITEM_TYPES = (
    "epic", "feature", "story", "task", "bug", "sub_task", "issue", "pull_request", "other",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Person:
    """Someone an item is assigned to: a display name or login and the tracker's account id,
    never an e-mail address."""

    name: str | None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Sprint:
    """A sprint, iteration, cycle or milestone an item belongs to, as the tracker names it.
    `external_id` is unique per source (site-qualified where the tracker's ids are per site)."""

    external_id: str
    name: str
    state: str | None = None  # "future" | "active" | "closed"
    starts_at: datetime | None = None
    ends_at: datetime | None = None


HISTORY_FIELDS = ("status", "assignee", "parent", "sprint", "priority", "story_points")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of a tracked field as the tracker recorded it, with its own time and actor.

    `change_id` is the tracker's id of the change (a Jira history id, an Azure DevOps revision, a
    GitHub event id, a Linear IssueHistory id): with `field` it makes a re-read a no-op. The value
    at creation is an entry whose `from_value` is None. For `status`, the values are the tracker's
    own names and `from_status`/`to_status` their mapping onto `Status` (through the admin's
    `status_map`, as the item's own status). Actors are a display name or login and the tracker's
    account id, never an e-mail address."""

    change_id: str
    field: str  # one of HISTORY_FIELDS
    changed_at: datetime
    from_value: str | None = None
    to_value: str | None = None
    from_status: Status | None = None
    to_status: Status | None = None
    actor_name: str | None = None
    actor_id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One upstream item, mapped onto the columns of `work_items`.

    `external_id` is the tracker's immutable id (site-qualified where ids are only unique per site);
    `external_key` is the human key people type (`ABC-123`, `owner/repo#42`).
    `scope` names the cursor this item advances (a repository, a project); "" when the connector
    has one cursor. `started_at` / `completed_at` are the tracker's own timestamps when it has them.
    """

    external_id: str
    title: str
    status: Status
    updated_at: datetime
    external_key: str | None = None
    description: str | None = None
    acceptance_criteria: str | None = None
    priority: int = PRIORITY_NONE
    story_points: int | None = None
    external_url: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    scope: str = ""
    removed: bool = False  # the tracker says it is deleted/trashed: the row is marked, not dropped
    # changes the connector read with the item (stored idempotently; more may come later)
    history: Sequence[HistoryEntry] = ()
    # its history did not come whole with it (a changelog cut at the search's limit): the worker
    # asks `HistorySource.history` for it by id, within the run's history budget
    history_pending: bool = False
    # The richer model (0012). The parent's external_id in the same source (linked whichever of
    # the two is synced first); the kind of item (one of ITEM_TYPES) and the tracker's name for
    # it; labels; assignees; the sprints/iterations/cycles/milestones it is in now; the
    # integration's `extra_fields`, keyed by the name the admin gave.
    parent_external_id: str | None = None
    item_type: str | None = None
    item_type_name: str | None = None
    labels: Sequence[str] = ()
    assignees: Sequence[Person] = ()
    sprints: Sequence[Sprint] = ()
    custom_fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An upstream item that cannot be stored (a connector cannot map it, or the store cannot
    keep it). Recorded as a `work_item_rejected` activity row naming it, while the rest of the
    page and every later page still land: one bad item never freezes an integration."""

    external_id: str
    reason: str
    external_key: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of changes. `checkpoint` maps scope -> upstream time up to which everything has now
    been yielded (safe to resume from once this page commits). An empty mapping means "do not
    advance yet" (e.g. a tracker that lists newest first can only checkpoint at the end).
    A rejected item counts as yielded: the checkpoint may pass it."""

    items: Sequence[WorkItem]
    checkpoint: Mapping[str, datetime] = field(default_factory=dict)
    rejected: Sequence[Rejected] = ()  # items of this page that could not be mapped
    # scope -> why this credential cannot read it any more (not found, forbidden): the other
    # scopes go on; the run fails at its end, naming it
    lost: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryTodo:
    """What history a run asks for, within `budget` requests: `feeds` maps each scope whose
    history comes from a feed (a project's revisions, a repository's issue events) to the token
    it resumes from (None: from the start); `items` are external ids whose history is read one by
    one (oldest change first)."""

    feeds: Mapping[str, str | None]
    items: Sequence[str]
    budget: int


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """History read apart from the items. `entries` by external id (an item the store does not
    hold yet keeps them until it arrives); `checkpoint`: feed scope -> the token to resume from
    once this page commits; `through`: feed scope -> the upstream time up to which its history
    is now read; `complete`: item ids whose history is now read whole; `requests`: what the page
    cost (counted against the budget)."""

    entries: Mapping[str, Sequence[HistoryEntry]]
    checkpoint: Mapping[str, str] = field(default_factory=dict)
    through: Mapping[str, datetime] = field(default_factory=dict)
    complete: Sequence[str] = ()
    requests: int = 1


@dataclass(frozen=True, slots=True)
class ScopeIds:
    """Part of the complete listing of one scope, from `all_ids` (the deletion sweep and the
    census). `lost` says this credential cannot read the scope any more (a repository, project or
    team not found or forbidden), with the reason: its items are never marked deleted for it.
    It iterates (and measures) as its ids."""

    scope: str
    ids: Sequence[str]
    lost: str | None = None

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class CredentialExpiry:
    """When the credential a connector authenticates with stops working, as the tracker or the
    credential itself says (a PAT's expiration header, a certificate's notAfter, a minted token's
    `expires_at`). `renewable` credentials are renewed by the connector on its own (installation
    and Entra tokens, OAuth access tokens): they feed the gauge but never an expiry warning."""

    kind: str  # e.g. "pat", "app_installation_token", "entra_token", "oauth_access", "certificate"
    expires_at: datetime
    renewable: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    """An OAuth grant as the token endpoint answered it. `refresh_token` is the rotated one (the
    previous one is dead once this is issued); None for grants without refresh."""

    access_token: SecretStr
    expires_at: datetime
    refresh_token: SecretStr | None = None


class GrantVault(Protocol):
    """Where an OAuth grant lives between runs, processes and replicas (the worker keeps it
    encrypted in a table only its role can read). Connectors never see the database."""

    async def access(
        self,
        refresh: Callable[[SecretStr], Awaitable[Grant]],
        *,
        seed: SecretStr | None,
        margin: timedelta,
    ) -> Grant:
        """The stored grant while its access token is good for `margin` more; else, under the
        integration's row lock, `refresh(stored refresh token, or seed when none is stored)`, whose
        answer is stored and committed before it is returned (a rotated refresh token is never
        lost). `refresh` raises FatalError for a revoked grant: nothing is stored then."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the worker hands a connector for one run."""

    integration_id: str
    token: SecretStr | None  # None when the config authenticates another way (`uses_token`)
    cache_dir: Path
    deadline: float | None = None  # time.monotonic() after which a connector must not sleep
    on_wait: Callable[[str, float], None] = lambda reason, seconds: None  # rate-limit waits
    max_retries: int = 5
    sleep_cap: float = 120.0  # never wait longer than this for one retry
    # the worker's environment: where `*_env` config keys (client secrets, private keys) resolve
    environ: Mapping[str, str] = field(default_factory=dict)
    # every secret a connector resolves or mints at run time goes here first (redacted everywhere)
    on_secret: Callable[[str], None] = lambda secret: None
    # what the connector learns of its credential's expiry (gauge, status, warnings ahead)
    on_credential: Callable[[CredentialExpiry], None] = lambda expiry: None
    vault: GrantVault | None = None  # OAuth grants with rotating refresh tokens
    # a problem the run goes on past (an `extra_fields` name that no longer resolves): a stable
    # code and one plain sentence, never a secret; logged, and kept as a `sync_warning` row
    on_warning: Callable[[str, str], None] = lambda code, message: None

    def bearer(self) -> SecretStr:
        """The resolved token of a token-authenticated config."""
        if self.token is None:
            raise ConfigError("no token: set one of token, token_env, token_file")
        return self.token

    def secret(
        self, key: str, value: SecretStr | None, env: str | None, file: Path | None
    ) -> SecretStr:
        """A secret given inline, by environment variable or by file (config keys `key`,
        `key_env`, `key_file`), registered for redaction before it is returned."""
        resolved = resolve_secret(key, value, env, file, self.environ)
        self.on_secret(resolved.get_secret_value())
        return resolved


# ---------------------------------------------------------------------------------------------
# Config: the keys every connector shares
# ---------------------------------------------------------------------------------------------
class ConnectorConfig(BaseModel):
    """Common keys of `integrations.config`. Each connector subclasses this with its own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    token_env: str | None = None
    token_file: Path | None = None
    status_map: dict[str, Status] = {}
    # Only items updated on or after this day (UTC) are synced: for huge instances whose old
    # history nobody needs. Applied by the sync run to every scope's `since`.
    start_date: date | None = None
    # TLS towards a self-hosted tracker (Jira Data Center, GitHub Enterprise Server, Azure DevOps
    # Server): a corporate CA bundle (file or directory), or an explicit verify_tls: false, which
    # the worker logs at every run and `status` shows. Never a silent "don't verify".
    ca_bundle: Path | None = None
    verify_tls: bool = True
    # requests a run may spend on history for this integration (default: the worker's
    # C9_SYNC_HISTORY_BUDGET; 0 reads none)
    history_budget: int | None = Field(default=None, ge=0)
    # The secret the tracker's webhook deliveries are checked with (docs/webhooks.md), given like
    # the token; none: the webhook listener answers 404 for this integration.
    webhook_secret: SecretStr | None = None
    webhook_secret_env: str | None = None
    webhook_secret_file: Path | None = None
    #: what a tracker without custom fields calls its items ("GitHub issues"): its config then
    #: refuses `extra_fields` saying why, not with pydantic's bare "extra inputs are not permitted"
    no_custom_fields: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _extra_fields_only_where_they_exist(cls, data: Any) -> Any:
        if cls.no_custom_fields and isinstance(data, Mapping) and "extra_fields" in data:
            raise ValueError(
                f"extra_fields: {cls.no_custom_fields} have no custom fields to read"
                " (extra_fields is for Jira and Azure DevOps); remove the key"
            )
        return data

    @model_validator(mode="after")
    def _tls_is_one_choice(self) -> ConnectorConfig:
        if self.ca_bundle is not None and not self.verify_tls:
            raise ValueError("give ca_bundle or verify_tls: false, not both")
        return self

    def tls_verify(self) -> bool | str:
        """What `requests`' `verify` and httpx's `verify` take: True, False or a CA bundle path."""
        if self.ca_bundle is not None:
            return os.path.expanduser(str(self.ca_bundle))
        return self.verify_tls

    @model_validator(mode="after")
    def _one_token_source(self) -> ConnectorConfig:
        for key in ("token", "webhook_secret"):
            keys = (key, f"{key}_env", f"{key}_file")
            given = [k for k in keys if getattr(self, k) is not None]
            if len(given) > 1:
                raise ValueError(f"give only one of {', '.join(keys)} (got {', '.join(given)})")
        return self

    @field_validator("status_map")
    @classmethod
    def _fold_status_keys(cls, value: dict[str, Status]) -> dict[str, Status]:
        return {k.strip().casefold(): v for k, v in value.items()}

    def uses_token(self) -> bool:
        """False when this config authenticates without `token*` (an app key, a client secret,
        an OAuth grant): then the worker resolves no token and `ConnectorContext.token` is None."""
        return True

    def resolve_token(self, environ: Mapping[str, str]) -> SecretStr:
        """The token, read from wherever the config says. Errors name the key, never the value."""
        return resolve_secret("token", self.token, self.token_env, self.token_file, environ)

    def has_webhook_secret(self) -> bool:
        return any(
            v is not None
            for v in (self.webhook_secret, self.webhook_secret_env, self.webhook_secret_file)
        )

    def resolve_webhook_secret(self, environ: Mapping[str, str]) -> SecretStr:
        """The webhook secret, read as the token is; the caller registers it for redaction.
        Shorter than 16 characters is refused: it signs requests anyone can send."""
        secret = resolve_secret(
            "webhook_secret",
            self.webhook_secret,
            self.webhook_secret_env,
            self.webhook_secret_file,
            environ,
        )
        if len(secret.get_secret_value()) < 16:
            raise ConfigError("webhook_secret: shorter than 16 characters (use a random one)")
        return secret


def resolve_secret(
    key: str,
    value: SecretStr | None,
    env: str | None,
    file: Path | None,
    environ: Mapping[str, str],
) -> SecretStr:
    """A secret from config key `key` (inline), `key_env` (environment variable) or `key_file`
    (a file, e.g. a PEM key or a Kubernetes secret mount). Errors name the key, never the value."""
    if value is not None:
        return value
    if env is not None:
        found = environ.get(env)
        if not found:
            raise ConfigError(f"{key}_env: environment variable {env!r} is not set")
        return SecretStr(found.strip())
    if file is not None:
        try:
            text = Path(os.path.expanduser(file)).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{key}_file: cannot read {str(file)!r} ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{key}_file: {str(file)!r} is not text") from None
        if not text:
            raise ConfigError(f"{key}_file: {str(file)!r} is empty")
        return SecretStr(text)
    raise ConfigError(f"no {key}: set one of {key}, {key}_env, {key}_file")


def map_status(native: str | None, default: Status, overrides: Mapping[str, Status]) -> Status:
    """The admin's `status_map` wins over the connector's default mapping (names compared
    case-insensitively)."""
    if native is not None:
        override = overrides.get(native.strip().casefold())
        if override is not None:
            return override
    return default


# Every character that is not alphanumeric (str.isalnum): re's Unicode \w is exactly isalnum()
# and the underscore
_NOT_ALNUM = re.compile(r"[\W_]")


def status_name_suggests(name: str | None, *words: str) -> bool:
    """True when a native status name contains one of `words` (case-insensitive, whole words:
    every character that is not a letter or digit separates words)."""
    if not name:
        return False
    folded = f" {_NOT_ALNUM.sub(' ', name.casefold())} "
    return any(f" {w} " in folded for w in words)


def http_url(value: str, key: str, example: str) -> str:
    """Validate a config URL: http(s), a host, no credentials, query or fragment; trailing "/"
    dropped. Errors name the key and show an example, never the (possibly secret-bearing) value."""
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key} must be an http(s) URL such as {example}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{key} must be a bare address (no credentials, query or fragment)")
    return value


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (naive input is taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------
@runtime_checkable
class Connector(Protocol):
    """What the sync run calls. Built only by `connect` below, from a config validated by the
    class's own `config_model`."""

    source: ClassVar[str]  # 'jira' | 'github' | 'azure_devops' | 'linear'
    config_model: ClassVar[type[ConnectorConfig]]
    overlap: ClassVar[timedelta]  # re-read this much before the committed high-water mark

    def __init__(self, config: Any, ctx: ConnectorContext) -> None:
        """`config` is an instance of `config_model` (typed Any: each connector names its own)."""

    async def check(self) -> None:
        """Credentials and scope work, else raise FatalError with a clear message."""

    async def scopes(self) -> list[str]:
        """Every scope this config covers: the keys of `changes`' checkpoints and of its items'
        `scope` (a repository, a project, a team; [""] for one cursor). A scope dropped from
        the config marks its items out of scope; a scope added is read in full. Async: a
        pattern such as `acme/*` is resolved by listing what the credential can read (once a
        run, completely or an error: a short listing would mark items out of scope)."""
        ...

    def changes(self, since: Mapping[str, datetime]) -> AsyncIterator[Page]:
        """Pages of items changed at or after `since[scope]` (overlap already subtracted by the
        caller; a scope missing from `since` is read in full), oldest change first."""
        ...

    def all_ids(self) -> AsyncIterator[ScopeIds]:
        """Every external_id that exists upstream, scope by scope (a scope may come in several
        parts), for the deletion sweep and the census. Complete or an error: never a listing cut
        short. A scope this credential cannot read is one `ScopeIds(scope, [], lost=reason)`."""
        ...

    async def aclose(self) -> None:
        """Release clients and threads."""


@runtime_checkable
class HistorySource(Protocol):
    """A connector that reads history apart from its items (optional: without it, history is
    what comes with the items). The worker calls it after the item pages, only for scopes whose
    items changed beyond their feed's `through` and for items marked `history_pending`."""

    # Optional class attribute `history_batch: int` (default 1): how many items' history one
    # request reads; the worker hands `history` up to budget x history_batch pending items.

    def feed_scopes(self) -> Sequence[str]:
        """The scopes whose history comes from a feed ([] when all comes per item)."""
        ...

    def history(self, todo: HistoryTodo) -> AsyncIterator[HistoryPage]:
        """Pages of history, each committed before the next is asked for; stop before the
        budget is spent (a page's `requests` say what it cost)."""
        ...


@runtime_checkable
class Remappable(Protocol):
    """A connector class that maps a stored item again without its tracker (`c9-sync remap`,
    after an admin edits `status_map`): the item's `external_data` (the `raw` its mapping kept)
    through the same pure mapping function the sync uses, with the config as it is now.

    Optional instance method `mapping_context() -> Mapping[str, Any] | None`, for connectors
    whose mapping needs something learnt online besides the raw (Jira's custom field ids, Azure
    DevOps' state categories): called after each run, it returns that as JSON (None: nothing
    learnt); the worker keeps it (merged over what earlier runs learnt) and hands it back here."""

    @classmethod
    def map_stored(
        cls,
        config: Any,
        raw: Mapping[str, Any],
        *,
        scope: str,
        context: Mapping[str, Any],
    ) -> WorkItem:
        """`raw` mapped with `config` (an instance of `config_model`), `scope` the row's sync
        scope, `context` what `mapping_context` returned ({} when the connector has none).
        Raises (any exception, named in the remap's report) when `raw` cannot be mapped, and
        ConfigError when `context` lacks what the config needs (run a sync first)."""
        ...


def connect(cls: type[Connector], config: ConnectorConfig, ctx: ConnectorContext) -> Connector:
    """The one way to construct a connector: the class and a config its model validated."""
    if not isinstance(config, cls.config_model):
        raise ConfigError(f"{cls.source}: config is not a {cls.config_model.__name__}")
    return cls(config, ctx)


ENTRY_POINT_GROUP = "claude_nine_sync.connectors"
Source = Literal["azure_devops", "jira", "github", "linear"]

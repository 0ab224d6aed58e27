"""The model test of convergence, shared by every tracker.

A `hypothesis.stateful` machine makes random upstream histories in a tracker's sandbox (creates,
edits, status changes, moves between scopes, deletions and restores, tie groups of many items
sharing one change time, edits while a run is paging, a tracker clock ahead of or behind the
worker's, the config's scope widened and narrowed, now or while a run pages) and interleaves them
with sync runs (incremental, sometimes `--full`) hit by faults (429 with Retry-After, 5xx,
timeouts, connection resets, malformed and short pages, a malformed item, a worker killed
mid-run, PostgreSQL connections terminated mid-run). A run may fail because of a fault; it must
never lose what was committed. After every run cheap invariants hold (`check_run`); at the end,
with every fault gone, one clean incremental run with its sweep and then one clean `--full` run
must each leave PostgreSQL holding exactly what the sandbox holds (`final_check`, `converged`).

The only tracker-specific part is a `Driver` (tests/model/test_<tracker>.py). It knows how to
create/edit/change status/move/delete/restore items in its sandbox (`can_move`, `can_restore`
say which it has), set the sandbox's clock (`offset`, `now()`, `before_run()`), inject faults
(`inject`, `corrupt`/`heal`), build the integration's config for a set of scopes (`config`,
with `variants` an admin switches between, and `cursor_scopes` when the connector's scopes are
not the config's), draw per-example knobs (`knobs`: page sizes, a time zone) and compute the row
the worker must hold for each live item (`live()` -> `Expected`, from docs/trackers/<tracker>.md,
not from the connector's code). Refs are external_ids. A tracker's test module is then a driver
and three lines:

    class LinearMachine(ConvergenceMachine):
        driver_class = LinearDriver

    def test_linear_converges(model_env): run_model(LinearMachine, model_env)

A scenario the model found can be replayed by hand: make the machine, call its rules as methods
(`setup`, `upstream`, `sync_clean`, `reconfigure`, ...; `data` arguments take any object whose
`draw()` returns the values in turn), then `teardown()` (which runs the final check).

Profiles: `C9_MODEL_PROFILE=ci` (default: bounded, derandomized, no example database; what CI
runs) or `long` (2,000 random examples per tracker, `C9_MODEL_EXAMPLES` to bound it; run by
hand or nightly). `C9_MODEL_SHRINK=0` reports a failure as found, unshrunk. Figures of what ran
are printed at the end (`pytest -s`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from connectors.sandbox.base import Request, SandboxServer
from tests.helpers import imported_items, make_integration, make_team, runs_ended
from worker import db, sync
from worker.settings import Settings
from worker.store import census as census_store
from worker.store import sync as store
from worker.sync import RunOptions

T = TypeVar("T")

#: Figures of the examples run in this process (printed by `run_model`).
STATS: Counter[str] = Counter()

# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------
_COMMON: dict[str, Any] = {
    "deadline": None,  # every step talks HTTP and SQL: its time says nothing
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile(
    "ci",
    max_examples=15,
    stateful_step_count=30,
    derandomize=True,  # the same examples on every CI run
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    **_COMMON,
)
settings.register_profile(
    "long",
    # C9_MODEL_EXAMPLES bounds a run by hand (what fits); the profile itself is 2,000.
    max_examples=int(os.environ.get("C9_MODEL_EXAMPLES", "2000")),
    stateful_step_count=30,
    database=None,
    **_COMMON,
)
PROFILE = os.environ.get("C9_MODEL_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise RuntimeError(f"C9_MODEL_PROFILE={PROFILE!r}: use 'ci' or 'long'")
#: pytest-timeout for one tracker's model test (0: none, for the long profile).
TIMEOUT = 0 if PROFILE == "long" else 300


# ---------------------------------------------------------------------------------------------
# What a driver says about an item, and the operations the rules draw
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Expected:
    """The row the worker must hold for one live upstream item (as its connector maps it)."""

    external_id: str
    external_key: str
    title: str
    description: str | None
    status: str  # ours: queued, in_progress, pr_ready, completed, blocked, cancelled
    scope: str  # the cursor scope it lives in (a repository, a project)
    updated_at: datetime  # the tracker's change time: `source_updated_at`
    synced: bool = True  # False: the config leaves this kind out (a pull request, say)


@dataclass(frozen=True, slots=True)
class Op:
    """One upstream operation, resolved against the sandbox when it is applied (maybe later, while
    a run is paging). `pick` chooses a live item and `scope` a scope (both modulo what exists),
    `choice` a status or flavour (the driver's meaning, modulo its choices)."""

    kind: str  # create | edit | status | move | delete | restore
    pick: int = 0
    scope: int = 0
    choice: int = 0
    text: str = ""


DAYS = 3 * 86400

#: Faults a run can be hit by. HTTP ones are armed at the run's `at`-th request.
HTTP_FAULTS = ("429", "5xx", "timeout", "reset", "malformed", "short")
#: Run faults: a worker killed (its task cancelled) after its first committed page, while a
#: request is out, or inside a page's transaction (before its cursor is written); a graceful stop
#: after the first page; every PostgreSQL connection of the database terminated while a request
#: is out or inside a page's transaction; one item served malformed (until healed).
RUN_FAULTS = (
    "kill_after_page",
    "kill_at_request",
    "kill_in_commit",
    "stop_after_page",
    "pg_terminate",
    "pg_terminate_in_commit",
    "corrupt",
)
KILLS = ("kill_after_page", "kill_at_request", "kill_in_commit")
DATABASE_FAULTS = ("pg_terminate", "pg_terminate_in_commit")

TEXT = st.text(alphabet=st.sampled_from("abcdefghij XYZ0123-_ éß東😀"), min_size=1, max_size=12)


def op_strategy(kinds: Sequence[str]) -> st.SearchStrategy[Op]:
    return st.builds(
        Op,
        kind=st.sampled_from(list(kinds)),
        pick=st.integers(0, 1000),
        scope=st.integers(0, 10),
        choice=st.integers(0, 20),
        text=TEXT,
    )


# ---------------------------------------------------------------------------------------------
# The tracker-specific part
# ---------------------------------------------------------------------------------------------
class Driver(abc.ABC):
    """One tracker's sandbox, driven as the model asks. Refs are external_ids."""

    source: ClassVar[str]  # the integrations.type
    scopes: ClassVar[tuple[str, ...]]  # every scope of the sandbox (the config covers a subset)
    granularity: ClassVar[timedelta]  # the tracker's time resolution
    can_move: ClassVar[bool] = False
    can_restore: ClassVar[bool] = False
    #: Config variants an admin switches between besides the scopes (the driver's meaning, e.g.
    #: GitHub with or without pull requests); `config()` and `live()` follow `variant`.
    variants: ClassVar[int] = 1

    def __init__(self) -> None:
        self.offset = timedelta(0)  # tracker clock - worker clock
        self.variant = 0

    @property
    @abc.abstractmethod
    def sandbox(self) -> SandboxServer: ...

    @staticmethod
    def knobs() -> st.SearchStrategy[dict[str, Any]]:
        """Per-example settings of the tracker (page sizes, time zone, ...), drawn once."""
        return st.just({})

    @abc.abstractmethod
    def start(self, knobs: dict[str, Any]) -> None:
        """Start the sandbox with these knobs, its scopes existing and empty."""

    def stop(self) -> None:
        self.sandbox.stop()

    def now(self) -> datetime:
        """The tracker's clock: the worker's plus `offset`, at the tracker's resolution."""
        at = datetime.now(UTC) + self.offset
        step = self.granularity.total_seconds()
        return datetime.fromtimestamp(at.timestamp() // step * step, UTC)

    def before_run(self) -> None:  # noqa: B027 (optional: most sandboxes need nothing)
        """Called before each run (a sandbox whose server clock must be set, ...)."""

    @abc.abstractmethod
    def config(self, scopes: Sequence[str]) -> dict[str, Any]:
        """The `integrations.config` covering `scopes`."""

    def cursor_scopes(self, scopes: Sequence[str]) -> set[str]:
        """The connector's scopes (its cursor keys, `sync_scope`) for a config covering
        `scopes` (a repository's pull requests may be one more, say)."""
        return set(scopes)

    @abc.abstractmethod
    def create(self, scope: str, title: str, choice: int, at: datetime) -> str: ...

    @abc.abstractmethod
    def edit(self, ref: str, text: str, choice: int, at: datetime) -> None:
        """Change the title or (per `choice`) the description."""

    @abc.abstractmethod
    def set_status(self, ref: str, choice: int, at: datetime) -> None: ...

    def move(self, ref: str, scope: str, at: datetime) -> str | None:
        """Move to `scope`; the item's ref after the move, None when it cannot move."""
        return None

    @abc.abstractmethod
    def delete(self, ref: str) -> None: ...

    def version_of_removed(self, ref: str) -> datetime | None:
        """The change time of an item that is no longer live but still served, marked deleted (a
        Linear issue in the trash: deleting it is a change the worker reads); None when the
        tracker no longer serves it at all."""
        return None

    def restore(self, at: datetime) -> str | None:
        """Restore the item deleted last (when the tracker can); its ref, or None."""
        return None

    @abc.abstractmethod
    def corrupt(self, ref: str) -> None:
        """Serve the item malformed (rejected on its own) until `heal()`."""

    @abc.abstractmethod
    def heal(self) -> None: ...

    @abc.abstractmethod
    def inject(self, kind: str, count: int) -> None:
        """Arm one of HTTP_FAULTS for the next `count` list requests (or the next one)."""

    def clear_faults(self) -> None:
        self.sandbox.clear_faults()

    @abc.abstractmethod
    def live(self) -> dict[str, Expected]:
        """Every live item of every scope, by ref, as the worker must hold it (`synced` False for
        the ones the current config leaves out)."""


# ---------------------------------------------------------------------------------------------
# Where an example's database comes from
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Env:
    pg_url: str  # the server's maintenance URL
    template: str  # a database with every migration applied (tests/conftest.py)
    home: Path  # the worker's home (cache directories)


def url_for(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def _is_database_lost(exc: BaseException) -> bool:
    """An error that says the run's connection died (what a terminated backend looks like).
    asyncpg may also say "cannot switch to state 15; another operation (2) is in progress"
    (InternalClientError) when the next query races the server's goodbye on a pooled connection:
    the worker re-raises that too, as its connection is closed."""
    lost = asyncpg.PostgresConnectionError | asyncpg.InterfaceError | asyncpg.InternalClientError
    if isinstance(exc, lost | OSError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("57")  # operator intervention


@dataclass(slots=True)
class RunRecord:
    """What the model knows of one run."""

    full: bool
    fault: str | None
    outcome: str  # a RunResult outcome, or killed / database_lost
    started_before: datetime | None = None


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------
class ConvergenceMachine(RuleBasedStateMachine):
    driver_class: ClassVar[type[Driver]]
    env: ClassVar[Env]

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.driver = self.driver_class()
        self.failed = False  # a step raised: teardown skips the final check
        self.started = False
        self.db_name = f"c9_model_{uuid.uuid4().hex[:12]}"
        self.pool: asyncpg.Pool | None = None
        self.admin: asyncpg.Connection | None = None  # the checks' connection
        self.side: asyncpg.Connection | None = None  # what the sandbox's hook does in the database
        self.hooks_running = 0  # sandbox hooks in progress (on request threads)
        self.hooks_lock = threading.Lock()
        self.integration: uuid.UUID | None = None
        self.settings: Settings | None = None
        self.configured: list[str] = []
        self.ever: set[str] = set()  # every ref an item ever had
        self.latest: dict[str, datetime] = {}  # ref -> the newest change time it ever had
        self.runs: list[RunRecord] = []
        self.during_run: list[tuple[int, Callable[[], None]]] = []  # (request no., action)
        self.requests_this_run = 0
        self.task: asyncio.Task[sync.RunResult] | None = None
        self.lost_grace = False  # runs right after a terminated database may fail with it
        self.corrupted: set[str] = set()  # refs served malformed until healed
        self.background_errors: list[BaseException] = []

    # -- plumbing ---------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    @contextlib.contextmanager
    def step(self, name: str = "") -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        except BaseException:
            self.failed = True
            raise
        finally:
            if name:
                STATS[f"step {name}"] += 1
                STATS[f"seconds {name}"] += round(time.monotonic() - started, 2)

    @initialize(
        # Seconds the tracker's clock is ahead of the worker's. Mostly days behind: its history
        # then runs in steps of minutes (wider than the connectors' 5-minute overlap, which
        # would re-read, and hide, what an incremental walk missed) and never reaches the
        # worker's clock (which would cap every cursor and re-read everything).
        offset=st.sampled_from([-DAYS, -DAYS, -DAYS, -DAYS, -600, -90, -1, 0, 1, 90, 600]),
        sweep_every=st.sampled_from([0, 0, 1, 3]),
        first=st.sets(st.integers(0, 10), min_size=1, max_size=3),
        seed=st.integers(3, 9),  # at least one item in each of the three scopes
        data=st.data(),
    )
    def setup(
        self, offset: int, sweep_every: int, first: set[int], seed: int, data: st.DataObject
    ) -> None:
        with self.step("setup"):
            drawn = data.draw(self.driver.knobs(), label="knobs")
            self.driver.offset = timedelta(seconds=offset)
            self.driver.start(drawn)
            self.driver.sandbox.between_requests = self._between_requests
            self.settings = Settings(
                home=self.env.home, backoff_base_seconds=60, sweep_every_runs=sweep_every
            )
            self.configured = self._scopes_of(first)
            self.run(self._open())
            self.started = True
            for n in range(seed):  # items in every scope before the first run
                self.apply(Op("create", scope=n, choice=n, text=f"seed {n}"))

    def _scopes_of(self, picked: set[int]) -> list[str]:
        scopes = self.driver.scopes
        return sorted({scopes[i % len(scopes)] for i in picked})

    async def _open(self) -> None:
        admin = await asyncpg.connect(self.env.pg_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.db_name}" TEMPLATE "{self.env.template}"')
        finally:
            await admin.close()
        url = url_for(self.env.pg_url, self.db_name)
        self.admin = await db.connect(url)
        self.side = await db.connect(url)
        self.pool = await db.create_pool(url, max_size=4)
        team = await make_team(self.admin, f"model-{self.db_name[-6:]}")
        self.integration = await make_integration(
            self.admin,
            team,
            self.driver.source,
            self.driver.config(self.configured),
            interval=60,
        )

    def teardown(self) -> None:
        try:
            if self.started and not self.failed:
                with self.step("final_check"):
                    self.run(self.final_check())
        finally:
            try:
                self.run(self._close())
            finally:
                self.runner.close()
                self.driver.stop()

    async def _close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.admin is not None:
            await self.admin.close()
        if self.side is not None:
            await self.side.close()
        admin = await asyncpg.connect(self.env.pg_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        finally:
            await admin.close()

    # -- upstream operations ------------------------------------------------------------------
    def _refs(self) -> list[str]:
        return sorted(self.driver.live())

    def apply(self, op: Op, at: datetime | None = None, ref: str | None = None) -> None:
        STATS[f"op {op.kind}"] += 1
        self._apply(op, at, ref)

    def _apply(self, op: Op, at: datetime | None, ref: str | None) -> None:
        """Apply one operation to the sandbox (on the test's thread or, while a run pages, on
        the sandbox's request thread), and remember the newest change time of what it touched.
        `ref` names the item instead of `op.pick`."""
        driver = self.driver
        at = at or driver.now()
        scope = driver.scopes[op.scope % len(driver.scopes)]
        if ref is None:
            refs = self._refs()
            ref = refs[op.pick % len(refs)] if refs else None
        touched: list[str] = []
        if op.kind == "create":
            touched.append(driver.create(scope, op.text, op.choice, at))
        elif ref is None:
            pass
        elif op.kind == "edit":
            driver.edit(ref, op.text, op.choice, at)
            touched.append(ref)
        elif op.kind == "status":
            driver.set_status(ref, op.choice, at)
            touched.append(ref)
        elif op.kind == "move":
            moved = driver.move(ref, scope, at)
            if moved is not None:
                touched.append(moved)
        elif op.kind == "delete":
            driver.delete(ref)
            touched.append(ref)
        if op.kind == "restore":
            restored = driver.restore(at)
            if restored is not None:
                touched.append(restored)
        live = driver.live()
        for r in touched:
            self.ever.add(r)
            version = live[r].updated_at if r in live else driver.version_of_removed(r)
            if version is not None:
                self.latest[r] = max(self.latest.get(r, version), version)

    def _op_kinds(self) -> list[str]:
        kinds = ["create", "create", "edit", "status", "delete"]
        if self.driver_class.can_move:
            kinds.append("move")
        if self.driver_class.can_restore:
            kinds.append("restore")
        return kinds

    @rule(data=st.data(), gap=st.sampled_from([0, 0, 1, 61, 400]))
    def upstream(self, data: st.DataObject, gap: int) -> None:
        with self.step("upstream"):
            self.driver.offset += timedelta(seconds=gap)  # since the last change upstream
            for op in data.draw(st.lists(op_strategy(self._op_kinds()), min_size=1, max_size=4)):
                self.apply(op)

    @rule(data=st.data(), after=st.integers(1, 8))
    def upstream_while_paging(self, data: st.DataObject, after: int) -> None:
        """Operations applied between two requests of the next run (never if it makes fewer)."""
        with self.step("upstream_while_paging"):
            ops = data.draw(st.lists(op_strategy(self._op_kinds()), min_size=1, max_size=3))

            def later() -> None:
                for op in ops:
                    self.apply(op)

            self.during_run.append((after, later))

    @rule(
        scope=st.integers(0, 10),
        n=st.integers(2, 12) | st.integers(2, 12) | st.integers(2, 12) | st.integers(99, 104),
        fresh=st.integers(0, 12),
        text=TEXT,
        while_paging=st.one_of(st.none(), st.integers(1, 6)),
    )
    def tie_group(
        self, scope: int, n: int, fresh: int, text: str, while_paging: int | None
    ) -> None:
        """Many items of one scope changed at one instant (a bulk edit): more than a page."""

        def bulk() -> None:
            at = self.driver.now()
            target = self.driver.scopes[scope % len(self.driver.scopes)]
            live = self.driver.live()
            mine = sorted(r for r, e in live.items() if e.scope == target)
            edits = mine[: max(0, n - fresh)]
            for ref in edits:
                self.apply(Op("edit", text=text), at, ref)
            for _ in range(n - len(edits)):
                self.apply(Op("create", scope=scope, text=text), at)

        with self.step("tie_group"):
            if while_paging is None:
                bulk()
            else:
                self.during_run.append((while_paging, bulk))

    @rule(seconds=st.sampled_from([1, 61, 400, 3600]))
    def tracker_clock_jumps_ahead(self, seconds: int) -> None:
        """Time passes upstream faster than here (or the worker's clock steps back): never
        backwards upstream."""
        with self.step("tracker_clock_jumps_ahead"):
            self.driver.offset += timedelta(seconds=seconds)

    @rule(
        picked=st.sets(st.integers(0, 10), min_size=1, max_size=3),
        variant=st.integers(0, 3),
        while_paging=st.none() | st.none() | st.integers(1, 6),
    )
    def reconfigure(self, picked: set[int], variant: int, while_paging: int | None) -> None:
        """An admin edits the config: the scope is widened or narrowed (now, or while the next
        run pages: that run goes on with the config it read)."""
        loop = self.runner.get_loop()

        def edit() -> None:
            self.configured = self._scopes_of(picked)
            self.driver.variant = variant % self.driver.variants
            assert self.admin is not None and self.side is not None
            write = (self.admin if while_paging is None else self.side).execute(
                "UPDATE integrations SET config = $2::jsonb WHERE id = $1",
                self.integration,
                self.driver.config(self.configured),
            )
            if while_paging is None:
                self.run(write)
            else:  # on the sandbox's thread, while the run's loop waits for an answer
                asyncio.run_coroutine_threadsafe(write, loop).result(30)

        with self.step("reconfigure"):
            if while_paging is None:
                edit()
            else:
                self.during_run.append((while_paging, edit))

    # Three rules run syncs (rules are drawn alike): about a third of the steps are runs.
    @rule()
    def sync_clean(self) -> None:
        with self.step("sync_clean"):
            self.run(self._sync(False, None, 1, 1))

    @rule(
        full=st.booleans(),
        fault=st.sampled_from(HTTP_FAULTS),
        at=st.integers(1, 8),
        count=st.sampled_from([1, 1, 2, 6]),
    )
    def sync_http_fault(self, full: bool, fault: str, at: int, count: int) -> None:
        with self.step("sync_http_fault"):
            self.run(self._sync(full, fault, at, count))

    @rule(
        full=st.booleans(),
        fault=st.one_of(st.none(), st.sampled_from(RUN_FAULTS)),
        at=st.integers(1, 8),
    )
    def sync_run_fault(self, full: bool, fault: str | None, at: int) -> None:
        with self.step("sync_run_fault"):
            self.run(self._sync(full, fault, at, 1))

    @precondition(lambda self: self.corrupted)
    @rule()
    def heal(self) -> None:
        with self.step("heal"):
            self.heal_all()

    def heal_all(self) -> None:
        """Malformed items served well-formed again, by an edit (what changes an item upstream):
        the next incremental run reads them."""
        self.driver.heal()
        live = self.driver.live()
        for ref in sorted(self.corrupted):
            if ref in live:
                self.apply(Op("edit", text="healed"), ref=ref)
        self.corrupted = set()

    # -- runs ---------------------------------------------------------------------------------
    def _between_requests(self, request: Request) -> None:
        """The sandbox's hook, on its request thread: fire what is due at this request."""
        with self.hooks_lock:
            self.hooks_running += 1
        try:
            self.requests_this_run += 1
            due = [a for n, a in self.during_run if n == self.requests_this_run]
            for action in due:
                try:
                    action()
                except BaseException as exc:  # reported by the run's step, not lost in a thread
                    self.background_errors.append(exc)
        finally:
            with self.hooks_lock:
                self.hooks_running -= 1

    async def _hooks_settled(self) -> None:
        """Wait for hooks still running on request threads (a run killed while a request was
        out ends before that request's hook has)."""
        deadline = time.monotonic() + 60
        # polled: the hooks run on other threads and may themselves need this loop
        while self.hooks_running and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert not self.hooks_running, "a sandbox hook did not end"

    async def _terminate_backends(self) -> None:
        """What a PostgreSQL restart does to the worker: every connection of the example's
        database dies (the model's own two aside)."""
        assert self.admin is not None and self.side is not None
        await self.side.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1",
            self.admin.get_server_pid(),
        )

    async def _sync(self, full: bool, fault: str | None, at: int, count: int) -> None:
        assert self.pool is not None and self.settings is not None
        loop = asyncio.get_running_loop()
        before = await self.rows()
        cursor_before = await self.cursor()
        self.driver.before_run()
        stop = asyncio.Event()
        pages = 0

        def on_page(result: sync.RunResult) -> None:
            nonlocal pages
            pages += 1
            if pages == 1 and fault == "kill_after_page" and self.task is not None:
                self.task.cancel()
            if pages == 1 and fault == "stop_after_page":
                stop.set()

        if fault in HTTP_FAULTS:
            kind = fault
            self.during_run.append((at, lambda: self.driver.inject(kind, count)))
        elif fault == "kill_at_request":
            self.during_run.append(
                (at, lambda: loop.call_soon_threadsafe(lambda: self.task and self.task.cancel()))
            )
        elif fault == "pg_terminate":
            self.during_run.append(
                (
                    at,
                    lambda: asyncio.run_coroutine_threadsafe(
                        self._terminate_backends(), loop
                    ).result(30),
                )
            )
        elif fault == "corrupt":
            refs = self._refs()
            if refs:
                self.driver.corrupt(refs[at % len(refs)])
                self.corrupted.add(refs[at % len(refs)])
        save_cursor = store.save_cursor
        if fault in ("kill_in_commit", "pg_terminate_in_commit"):
            # Inside a page's transaction: its rows and activity are written, its cursor not yet.
            calls = 0

            async def faulty_save_cursor(*args: Any, **kwargs: Any) -> None:
                nonlocal calls
                calls += 1
                if calls == 1 + at % 2:
                    if fault == "kill_in_commit" and self.task is not None:
                        self.task.cancel()
                    else:
                        await self._terminate_backends()
                await save_cursor(*args, **kwargs)

            store.save_cursor = faulty_save_cursor  # type: ignore[assignment]
        self.requests_this_run = 0
        record = RunRecord(full, fault, "?", datetime.now(UTC))
        options = RunOptions(force=True, full=full, stop=stop, on_page=on_page)
        self.task = asyncio.create_task(
            sync.run_integration(
                self.pool, self.integration, self.settings, environ={}, options=options
            )  # type: ignore[arg-type]
        )
        try:
            result = await self.task
            record.outcome = result.outcome
            if result.outcome == "failed":
                # Only an injected fault may fail a run.
                assert fault is not None or self.lost_grace, (
                    f"a run without a fault failed: {result.error_class}: {result.reason}"
                )
            if result.outcome == "skipped":
                raise AssertionError(f"a forced run was skipped: {result.reason}")
            self.lost_grace = False
        except asyncio.CancelledError:
            assert fault in KILLS, "run cancelled by itself"
            record.outcome = "killed"
        except Exception as exc:
            if not (_is_database_lost(exc) and (fault in DATABASE_FAULTS or self.lost_grace)):
                raise
            record.outcome = "database_lost"
            self.lost_grace = True
        finally:
            store.save_cursor = save_cursor  # type: ignore[assignment]
            await self._hooks_settled()
            self.task = None
            self.during_run.clear()
            self.driver.clear_faults()
        if self.background_errors:
            raise self.background_errors[0]
        self.runs.append(record)
        STATS[f"run {record.outcome}"] += 1
        STATS[f"fault {fault}"] += 1
        await self.check_run(before)
        if not full:
            # An incremental run only moves a kept scope's cursor forward (a --full run starts
            # from nothing, and may leave it behind where it stopped).
            after = await self.cursor()
            for scope, mark in cursor_before.items():
                if scope in self.driver.cursor_scopes(self.configured) and scope in after:
                    assert after[scope] >= mark, f"cursor of {scope} went back: {mark} -> {after}"

    # -- invariants after every run -------------------------------------------------------------
    async def cursor(self) -> dict[str, datetime]:
        assert self.admin is not None
        raw = await self.admin.fetchval(
            "SELECT cursor FROM integration_sync_state WHERE integration_id = $1",
            self.integration,
        )
        return store.cursor_from_json(raw)

    async def rows(self) -> dict[str, asyncpg.Record]:
        assert self.admin is not None
        rows = await self.admin.fetch(
            "SELECT * FROM work_items WHERE source = $1", self.driver.source
        )
        return {r["external_id"]: r for r in rows}

    async def check_run(self, before: dict[str, asyncpg.Record]) -> None:
        """Cheap invariants after every run, whatever happened to it."""
        assert self.admin is not None
        dupes = await self.admin.fetch(
            "SELECT external_id, count(*) FROM work_items GROUP BY source, external_id"
            " HAVING count(*) > 1"
        )
        assert not dupes, f"duplicate rows: {dupes}"
        after = await self.rows()
        # What was committed stays: no row disappears, no row goes back to an older version.
        lost = set(before) - set(after)
        assert not lost, f"rows lost: {sorted(lost)}"
        for ext, row in before.items():
            assert after[ext]["source_updated_at"] >= row["source_updated_at"], (
                f"{ext} went back to an older version"
            )
        for ext, row in after.items():
            assert ext in self.ever, f"a row for an item that never existed: {ext}"
            assert row["source_updated_at"] <= self.latest[ext], (
                f"{ext}: source_updated_at {row['source_updated_at']} is newer than the"
                f" tracker's newest version {self.latest[ext]}"
            )
        state = await self.admin.fetchrow(
            "SELECT cursor, last_started_at FROM integration_sync_state WHERE integration_id = $1",
            self.integration,
        )
        if state is not None:
            for scope, mark in store.cursor_from_json(state["cursor"]).items():
                assert mark <= state["last_started_at"], (
                    f"cursor of {scope} at {mark} passed the run's start {state['last_started_at']}"
                )

    # -- the final check ---------------------------------------------------------------------
    async def final_check(self) -> None:
        """With every fault gone: one clean incremental run with its sweep (what the daemon
        converges to by itself), then one clean --full run; after each, PostgreSQL must hold
        exactly what the sandbox holds. The first catches an update an incremental walk lost (a
        --full run would re-read it and hide the loss)."""
        self.heal_all()
        self.during_run.clear()
        for full in (False, True):
            before = await self.rows()
            result = await self._final_run(full)
            await self.converged(result, "--full" if full else "incremental + sweep", before)
        STATS["examples checked"] += 1

    async def _final_run(self, full: bool) -> sync.RunResult:
        assert self.pool is not None and self.settings is not None
        self.driver.before_run()
        self.requests_this_run = 0
        result = await sync.run_integration(
            self.pool,
            self.integration,  # type: ignore[arg-type]
            self.settings.model_copy(update={"sweep_every_runs": 1}),
            environ={},
            options=RunOptions(force=True, full=full),
        )
        assert result.outcome == "succeeded", f"the final run: {result.summary()}"
        self.runs.append(RunRecord(full, None, result.outcome))
        return result

    async def converged(
        self, result: sync.RunResult, after: str, before: dict[str, asyncpg.Record]
    ) -> None:
        """PostgreSQL holds what the sandbox holds (rows, marks, census, activity); `before`:
        the rows before the run."""
        assert self.admin is not None
        rows = await self.rows()
        STATS["rows checked"] += len(rows)
        live = self.driver.live()
        configured = self.driver.cursor_scopes(self.configured)
        wanted = {ref: e for ref, e in live.items() if e.scope in configured and e.synced}
        if not wanted:
            # A listing with no item in any scope marks nothing (worker/sweep.py: likelier a lost
            # permission or a mis-scoped query than everything deleted; pinned by
            # test_a_sweep_that_lists_no_item_at_all_marks_nothing): rows stay as they were, and
            # the census says the tracker listed nothing.
            STATS["final listing empty"] += 1
            # Only a page marks rows then: one that read an item the tracker still serves,
            # deleted (a Linear issue in the trash; found by the long profile: the last item
            # deleted, then the final run).
            marked = {
                ext
                for ext, r in rows.items()
                if r["removed_upstream_at"] is not None
                and (ext not in before or before[ext]["removed_upstream_at"] is None)
            }
            assert result.removed == len(marked), f"{after}: removed={result.removed}, {marked}"
            swept = {ext for ext in marked if self.driver.version_of_removed(ext) is None}
            assert not swept, f"{after}: a sweep that listed nothing marked rows: {swept}"
            census = (await census_store.latest(self.admin, self.integration)).get(
                self.integration,  # type: ignore[arg-type]
                [],
            )
            assert {c.scope for c in census} == configured
            assert all((c.upstream, c.missing, c.lost) == (0, 0, None) for c in census), census
            await self._check_activity(rows)
            return

        # Present rows are exactly the live in-scope items, field by field.
        present = {
            ext: r
            for ext, r in rows.items()
            if r["removed_upstream_at"] is None and r["out_of_scope_at"] is None
        }
        assert set(present) == set(wanted), (
            f"{after}: present rows {sorted(present)} != live in-scope items {sorted(wanted)}"
        )
        for ref, e in wanted.items():
            r = present[ref]
            got = (
                r["external_key"],
                r["title"],
                r["description"],
                r["status"],
                r["sync_scope"],
                r["source_updated_at"],
            )
            want = (e.external_key, e.title, e.description, e.status, e.scope, e.updated_at)
            assert got == want, f"{after}: {ref}: row {got} != upstream {want}"
            assert (r["completed_at"] is not None) == (r["status"] == "completed"), dict(r)
        keys = Counter(r["external_key"] for r in present.values())
        assert not [k for k, n in keys.items() if n > 1], f"one key on two present rows: {keys}"
        # Every other row says why it is not present.
        for ext, r in rows.items():
            if ext in wanted:
                continue
            if r["sync_scope"] not in configured:
                # out of scope, unless it was marked removed before its scope left the config
                marks = (r["out_of_scope_at"] is not None, r["removed_upstream_at"] is not None)
                assert marks in ((True, False), (False, True)), f"{after}: {ext}: marks {marks}"
            else:
                assert r["removed_upstream_at"] is not None, f"{after}: {ext}: gone, not marked"
                assert r["out_of_scope_at"] is None, f"{after}: {ext}: out of a configured scope"

        # The census: every configured scope counted, nothing missing.
        census = (await census_store.latest(self.admin, self.integration)).get(
            self.integration,  # type: ignore[arg-type]
            [],
        )
        by_scope = {c.scope: c for c in census}
        assert set(by_scope) == configured, f"census scopes {sorted(by_scope)}"
        for scope in configured:
            c = by_scope[scope]
            upstream = sum(1 for e in wanted.values() if e.scope == scope)
            assert (c.upstream, c.held, c.missing, c.lost) == (upstream, upstream, 0, None), (
                f"{after}: census of {scope}: {c}, sandbox holds {upstream}"
            )

        await self._check_activity(rows)

    async def _check_activity(self, rows: dict[str, asyncpg.Record]) -> None:
        """The activity log tells each row's story: created once (its own row, or in the
        `work_items_imported` row of a first read's page, with its status), and its last
        status, removal and scope events agree with the row."""
        assert self.admin is not None
        events = await self.admin.fetch(
            "SELECT work_item_id, event_type, metadata FROM activity_logs"
            " WHERE work_item_id IS NOT NULL ORDER BY created_at, id"
        )
        by_item: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for e in events:
            by_item.setdefault(e["work_item_id"], []).append(e)
        imported = await imported_items(self.admin)
        assert set(imported) <= set(rows), f"imported, not stored: {set(imported) - set(rows)}"
        for ext, row in rows.items():
            story = by_item.get(row["id"], [])
            kinds = [e["event_type"] for e in story]
            created = kinds.count("work_item_created") + (ext in imported)
            assert created == 1, f"{ext}: {kinds}, imported: {ext in imported}"
            status = removed = out = None
            if ext in imported:  # (before anything else of the item: it was stored then)
                status, removed, out = imported[ext], False, False
            for e in story:
                meta = e["metadata"]
                kind = e["event_type"]
                if "new_status" in meta:
                    status = meta["new_status"]
                elif "status" in meta:
                    status = meta["status"]
                if kind == "work_item_created":  # first seen already deleted: `removed`
                    removed, out = bool(meta.get("removed", False)), False
                elif kind == "work_item_removed":
                    removed, out = True, False  # whoever marks it removed, it is in scope
                elif kind == "work_item_restored":
                    removed = False
                    if "status" in meta:  # read again by a page: in scope too
                        out = False
                elif kind == "work_item_out_of_scope":
                    out = True
                elif kind == "work_item_back_in_scope":
                    out = False
            assert status == row["status"], (
                f"{ext}: last logged status {status}, row {row['status']}"
            )
            assert removed == (row["removed_upstream_at"] is not None), f"{ext}: removal {kinds}"
            assert out == (row["out_of_scope_at"] is not None), f"{ext}: scope {kinds}"
        # (a run that changed nothing has no row of its own: quiet rows and the state count it)
        completed = await runs_ended(self.admin, ["sync_completed"])
        assert completed == sum(1 for r in self.runs if r.outcome == "succeeded"), (
            f"{completed} runs logged as completed for {[r.outcome for r in self.runs]}"
        )


def run_model(machine: type[ConvergenceMachine], env: Env) -> None:
    """Run a tracker's machine under the selected profile (`C9_MODEL_SHRINK=0`: report the first
    failing example as found, unshrunk)."""
    machine.env = env
    STATS.clear()
    started = time.monotonic()
    chosen = settings.get_profile(PROFILE)
    if os.environ.get("C9_MODEL_SHRINK") == "0":
        chosen = settings(chosen, phases=[Phase.explicit, Phase.generate])
    try:
        run_state_machine_as_test(machine, settings=chosen)
    finally:
        figures = ", ".join(f"{k}: {v}" for k, v in sorted(STATS.items()))
        print(
            f"\nmodel {machine.driver_class.source} ({PROFILE}):"
            f" {time.monotonic() - started:.0f}s; {figures}"
        )

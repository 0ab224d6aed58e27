"""Admin commands: `c9-sync integrations …` (list, add, test, enable, disable, set-interval,
sync-now, remove). `c9-sync status` is in `worker.health`.

Integrations are named by id (a UUID) or by `TEAM/TYPE` (unique per the schema). Exit codes: 0 ok,
1 a check or an operation failed, 2 bad input (one line on stderr). Tokens are never printed:
`config` is never selected for display, output goes through `worker.views` (which scrubs every
registered secret), and validation errors name the key and the reason, never the value.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

from connectors import registry
from connectors.base import (
    ConfigError,
    Connector,
    ConnectorConfig,
    ConnectorContext,
    FatalError,
    RetriableError,
)
from worker import health, migrate, redact, store, views
from worker.settings import Settings

EXIT_OK, EXIT_FAILED = 0, 1
MIN_INTERVAL = 5  # integrations_sync_interval_check

# ---------------------------------------------------------------------------------------------
# SQL (every value is a parameter)
# ---------------------------------------------------------------------------------------------
_FIND_BY_ID = """
SELECT i.id, t.name AS team, i.type, i.is_active, i.sync_interval, i.config
FROM integrations i JOIN teams t ON t.id = i.team_id WHERE i.id = $1
"""

_FIND_BY_NAME = """
SELECT i.id, t.name AS team, i.type, i.is_active, i.sync_interval, i.config
FROM integrations i JOIN teams t ON t.id = i.team_id WHERE t.name = $1 AND i.type = $2
"""

_INSERT = """
INSERT INTO integrations (id, team_id, type, name, config, is_active, sync_interval)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
"""

_SET_ACTIVE = "UPDATE integrations SET is_active = $2 WHERE id = $1"
_SET_INTERVAL = "UPDATE integrations SET sync_interval = $2 WHERE id = $1"
# An admin asking for a run now wants it now: no backoff wait, and a fresh failure count is not
# faked (consecutive_failures stays, so `status` still shows the history).
_CLEAR_BACKOFF = (
    "UPDATE integration_sync_state SET next_attempt_at = NULL WHERE integration_id = $1"
)
_NOTIFY_SYNC_NOW = (
    "SELECT pg_notify($1, json_build_object('op', 'sync_now', 'id', $2::uuid, 'at', now())::text)"
)
_DELETE = "DELETE FROM integrations WHERE id = $1"
_COUNT_ITEMS = "SELECT count(*) FROM work_items WHERE integration_id = $1"


@dataclass(frozen=True, slots=True)
class Target:
    """One integration, as an admin command needs it (config only for `test`, never shown)."""

    id: uuid.UUID
    team: str
    type: str
    is_active: bool
    sync_interval: int
    config: Any

    @property
    def label(self) -> str:
        return f"{self.team}/{self.type}"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _usage(message: str) -> Exception:
    from worker.cli import UsageError  # lazy: cli imports this module

    return UsageError(message)


def _interval(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {value!r}") from None
    if seconds < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_INTERVAL} seconds, got {seconds}")
    return seconds


async def resolve(conn: asyncpg.Connection, ref: str) -> Target:
    """An integration by id or by TEAM/TYPE; UsageError when there is none."""
    try:
        row = await conn.fetchrow(_FIND_BY_ID, uuid.UUID(ref))
    except ValueError:
        team, slash, type_ = ref.rpartition("/")
        if not slash or not team or not type_:
            raise _usage(
                f"{ref!r} is neither an integration id (UUID) nor TEAM/TYPE (e.g. Alpha/github)"
            ) from None
        row = await conn.fetchrow(_FIND_BY_NAME, team, type_)
    if row is None:
        raise _usage(f"no integration {ref!r} (see `c9-sync integrations list`)")
    return Target(**dict(row))


def _load_config_arg(value: str) -> Any:
    """`--config` is JSON, or `@FILE` (`@-`: standard input). Errors never echo the text."""
    if value.startswith("@"):
        where = value[1:]
        try:
            text = sys.stdin.read() if where == "-" else Path(where).read_text()
        except OSError as exc:
            raise _usage(f"--config: cannot read {where!r} ({exc.strerror})") from None
    else:
        text = value
    try:
        config = json.loads(text)
    except ValueError as exc:
        pos = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        raise _usage(
            f"--config: not valid JSON (line {pos[0]}, column {pos[1]})"
            if pos[0]
            else "--config: not valid JSON"
        ) from None
    if not isinstance(config, dict):
        raise _usage("--config: must be a JSON object")
    return config


def _connector_class(type_: str) -> type[Connector]:
    if type_ not in registry.available():
        known = ", ".join(sorted(registry.available())) or "none"
        raise _usage(f"unknown integration type {type_!r} (installed: {known})")
    try:
        return registry.load(type_)
    except FatalError as exc:
        raise _usage(str(exc)) from None


def _validate(cls: type[Connector], raw: Any) -> ConnectorConfig:
    """The connector's own model; ConfigError naming keys and reasons, never values."""
    from worker.sync import config_error_message

    if not isinstance(raw, dict):
        raise ConfigError("invalid integrations.config: must be a JSON object")
    try:
        return cls.config_model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(config_error_message(exc)) from None


async def run_check(
    cls: type[Connector],
    config: ConnectorConfig,
    integration_id: uuid.UUID,
    settings: Settings,
    environ: dict[str, str],
    within: float,
) -> str | None:
    """Build the connector as a run would and call `check()`. None when it passed, else a plain
    sentence saying what failed. Few, short retries: an admin is waiting."""
    try:
        token = config.resolve_token(environ)
    except ConfigError as exc:
        return f"{exc} (in this shell's environment; the worker resolves it in its own)"
    redact.register(token.get_secret_value())
    ctx = ConnectorContext(
        integration_id=str(integration_id),
        token=token,
        cache_dir=settings.cache_dir / cls.source,
        deadline=time.monotonic() + within,
        max_retries=2,
        sleep_cap=min(5.0, within / 4),
    )
    try:
        ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the cache directory {ctx.cache_dir} ({exc.strerror})"
    connector: Connector | None = None
    try:
        connector = cls(config, ctx)  # type: ignore[call-arg]
        await asyncio.wait_for(connector.check(), within)
    except TimeoutError:
        return f"no answer from the tracker within {within:.0f}s"
    except RetriableError as exc:
        return f"the tracker did not answer properly (temporary; try again later): {exc}"
    except FatalError as exc:
        return str(exc)
    except Exception as exc:  # a connector's bug or an SDK's surprise: still one line
        return f"{type(exc).__name__}: {exc}"
    finally:
        if connector is not None:
            try:
                await connector.aclose()
            except Exception as exc:
                views.say(f"warning: closing the connector failed: {type(exc).__name__}")
    return None


def _fail(message: str) -> int:
    print(f"c9-sync: {redact.scrub(message)}", file=sys.stderr)
    return EXIT_FAILED


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
async def cmd_list(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        rows = await health.overview(conn)
    finally:
        await conn.close()
    if args.team:
        rows = [r for r in rows if r.team == args.team]
    if args.json:
        views.print_json([health.health_json(r) for r in rows])
        return EXIT_OK
    if not rows:
        views.say("no integrations" + (f" for team {args.team!r}" if args.team else ""))
        return EXIT_OK
    now = datetime.now(UTC)
    views.print_table(
        "integrations",
        (
            "id",
            "team",
            "type",
            "name",
            "active",
            "interval",
            "last sync",
            "last result",
            "failures",
        ),
        [
            (
                r.id,
                r.team,
                r.type,
                r.name or "",
                "yes" if r.active else "no",
                f"{r.interval_s}s",
                health.ago(r.last_success_at, now) or "never",
                r.last_result,
                r.consecutive_failures,
            )
            for r in rows
        ],
    )
    return EXIT_OK


async def cmd_add(args: argparse.Namespace, settings: Settings, url: str) -> int:
    import os

    cls = _connector_class(args.type)
    raw = _load_config_arg(args.config)
    try:
        config = _validate(cls, raw)
    except ConfigError as exc:
        raise _usage(str(exc)) from None
    new_id = uuid.uuid4()
    conn = await migrate.connect_current(url)
    try:
        team_id = await conn.fetchval("SELECT id FROM teams WHERE name = $1", args.team)
        if team_id is None and not args.create_team:
            raise _usage(f"no team named {args.team!r} (create it first, or pass --create-team)")
        existing = await conn.fetchval(
            "SELECT i.id FROM integrations i JOIN teams t ON t.id = i.team_id"
            " WHERE t.name = $1 AND i.type = $2",
            args.team,
            args.type,
        )
        if existing is not None:
            raise _usage(
                f"team {args.team!r} already has a {args.type} integration ({existing}):"
                " change it, or remove it first"
            )
        if args.no_check:
            views.say("check skipped (--no-check)")
        else:
            problem = await run_check(cls, config, new_id, settings, dict(os.environ), args.timeout)
            if problem:
                return _fail(
                    f"check failed, nothing saved: {problem}"
                    " (fix the config, or save it anyway with --no-check)"
                )
            views.say(f"check passed: {args.type} credentials and scope work")
        async with conn.transaction():
            if team_id is None:
                team_id = await conn.fetchval(
                    "INSERT INTO teams (name, product, repo_path) VALUES ($1, $1, '') RETURNING id",
                    args.team,
                )
                views.say(f"created team {args.team!r}")
            await conn.execute(
                _INSERT,
                new_id,
                team_id,
                args.type,
                args.name,
                raw,
                not args.inactive,
                args.interval,
            )
    except asyncpg.UniqueViolationError:
        raise _usage(f"team {args.team!r} already has a {args.type} integration") from None
    finally:
        await conn.close()
    state = "inactive (enable it to start syncing)" if args.inactive else "active"
    views.say(
        f"added {args.team}/{args.type} {new_id}: every {args.interval}s, {state}",
    )
    if config.token is not None:
        views.say(
            "warning: the token is stored in integrations.config; prefer token_env or token_file"
            " so it stays out of the database and its backups"
        )
    return EXIT_OK


async def cmd_test(args: argparse.Namespace, settings: Settings, url: str) -> int:
    import os

    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
    finally:
        await conn.close()
    try:
        cls = registry.load(target.type)
        config = _validate(cls, target.config)
    except FatalError as exc:
        return _fail(f"{target.label}: check FAILED: {exc}")
    started = time.monotonic()
    problem = await run_check(cls, config, target.id, settings, dict(os.environ), args.timeout)
    if problem:
        return _fail(f"{target.label}: check FAILED: {problem}")
    views.say(
        f"{target.label}: ok, credentials and scope work"
        f" (checked in {time.monotonic() - started:.1f}s)"
    )
    return EXIT_OK


async def _set_active(args: argparse.Namespace, url: str, active: bool) -> int:
    word = "enabled" if active else "disabled"
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        if target.is_active == active:
            views.say(f"{target.label} is already {word}")
            return EXIT_OK
        await conn.execute(_SET_ACTIVE, target.id, active)
    finally:
        await conn.close()
    views.say(f"{target.label} {word}" + ("" if active else ": running workers stop scheduling it"))
    return EXIT_OK


async def cmd_enable(args: argparse.Namespace, settings: Settings, url: str) -> int:
    return await _set_active(args, url, True)


async def cmd_disable(args: argparse.Namespace, settings: Settings, url: str) -> int:
    return await _set_active(args, url, False)


async def cmd_set_interval(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        await conn.execute(_SET_INTERVAL, target.id, args.seconds)
    finally:
        await conn.close()
    views.say(f"{target.label}: interval {target.sync_interval}s -> {args.seconds}s")
    return EXIT_OK


async def cmd_sync_now(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        if not target.is_active:
            raise _usage(f"{target.label} is disabled: enable it first")
        async with conn.transaction():
            await conn.execute(_CLEAR_BACKOFF, target.id)
            # Delivered at commit. `at` is by the database's clock: workers compare it with
            # `last_started_at` (also the database's) under the lock, so one replica runs it.
            await conn.execute(_NOTIFY_SYNC_NOW, store.NOTIFY_CHANNEL, target.id)
    finally:
        await conn.close()
    views.say(
        f"{target.label}: sync requested (backoff cleared, running workers notified);"
        f" to run it here and now: c9-sync sync --integration {target.id} --force"
    )
    return EXIT_OK


async def cmd_remove(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        if not args.yes:
            if not sys.stdin.isatty():
                raise _usage(f"removing {target.label} needs --yes (no terminal to ask on)")
            prompt = f"remove {target.label} ({target.id})? [y/N] "
            answer = await asyncio.to_thread(input, prompt)
            if answer.strip().lower() not in ("y", "yes"):
                views.say("nothing removed")
                return EXIT_FAILED
        items = await conn.fetchval(_COUNT_ITEMS, target.id)
        await conn.execute(_DELETE, target.id)
    finally:
        await conn.close()
    views.say(
        f"removed {target.label} ({target.id}); its {items} work item(s) and their history are kept"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the admin commands to the `c9-sync` parser."""
    p = sub.add_parser(
        "integrations", help="list, add, check, enable, disable, reschedule, remove integrations"
    )
    isub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def ref(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("integration", metavar="ID|TEAM/TYPE", help="e.g. Alpha/github")

    q = isub.add_parser("list", help="every integration with its last result (never its config)")
    q.add_argument("--team", metavar="NAME", help="only this team's integrations")
    q.add_argument("--json", action="store_true", help="JSON instead of a table")
    q.set_defaults(func=cmd_list)

    q = isub.add_parser(
        "add", help="validate a config, check its credentials and scope, then save it"
    )
    q.add_argument("--team", required=True, metavar="NAME")
    q.add_argument("--type", required=True, metavar="TYPE", help="github, jira, azure_devops, …")
    q.add_argument(
        "--config",
        required=True,
        metavar="JSON|@FILE",
        help="the integration's config (@- reads stdin)",
    )
    q.add_argument("--name", metavar="TEXT", help="a display name")
    q.add_argument("--interval", type=_interval, default=300, metavar="SECONDS")
    q.add_argument("--inactive", action="store_true", help="save it paused")
    q.add_argument("--no-check", action="store_true", help="save without calling the tracker")
    q.add_argument("--create-team", action="store_true", help="create the team when missing")
    q.add_argument("--timeout", type=health.positive, default=60.0, metavar="SECONDS")
    q.set_defaults(func=cmd_add)

    for name in ("test", "check"):
        q = isub.add_parser(name, help="call the tracker: do the credentials and scope work?")
        ref(q)
        q.add_argument("--timeout", type=health.positive, default=60.0, metavar="SECONDS")
        q.set_defaults(func=cmd_test)

    q = isub.add_parser("enable", help="start syncing it (running workers pick it up)")
    ref(q)
    q.set_defaults(func=cmd_enable)
    q = isub.add_parser("disable", help="pause it (its data stays)")
    ref(q)
    q.set_defaults(func=cmd_disable)

    q = isub.add_parser("set-interval", help="change how often it syncs")
    ref(q)
    q.add_argument("seconds", type=_interval, metavar="SECONDS")
    q.set_defaults(func=cmd_set_interval)

    q = isub.add_parser("sync-now", help="clear its backoff and ask running workers to sync it")
    ref(q)
    q.set_defaults(func=cmd_sync_now)

    q = isub.add_parser("remove", help="delete it (its work items and history are kept)")
    ref(q)
    q.add_argument("--yes", action="store_true", help="do not ask")
    q.set_defaults(func=cmd_remove)

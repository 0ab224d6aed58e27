"""Admin commands: `c9-sync integrations …` (list, add, test, enable, disable, set-interval,
sync-now, webhook, reset, census, remove). `c9-sync status` is in `worker.commands.status`.

Integrations are named by id (a UUID), by `TEAM/TYPE/NAME` (unique per the schema), or by
`TEAM/TYPE` while the team has one integration of that type (with several, it is a usage error
that lists them). Exit codes: 0 ok, 1 a check or an operation failed, 2 bad input (one line on
stderr). Tokens are never printed:
`config` is never selected for display, output goes through `worker.views` (which scrubs every
registered secret), and validation errors name the key and the reason, never the value.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from connectors import registry
from connectors.base import ConfigError, Connector, ConnectorError, FatalError
from worker import connecting, db, health, migrate, redact, sweep, views
from worker.commands.common import Subparsers, interval, positive
from worker.commands.status import census_json, health_labels
from worker.errors import EXIT_FAILED, EXIT_OK, UsageError
from worker.settings import Settings
from worker.store import integrations as store
from worker.store import notify
from worker.store import sync as sync_store
from worker.store.integrations import Integration
from worker.webhooks import setup as webhook_setup


async def resolve(conn: asyncpg.Connection, ref: str) -> Integration:
    """An integration by id, by TEAM/TYPE/NAME, or by TEAM/TYPE when the team has only one of
    that type; UsageError (one line, naming the candidates) when there is none or several."""
    try:
        found = await store.get_integration(conn, uuid.UUID(ref))
    except ValueError:
        head, slash, tail = ref.rpartition("/")
        if not slash or not head or not tail:
            raise UsageError(
                f"{ref!r} is neither an integration id (UUID) nor TEAM/TYPE[/NAME]"
                " (e.g. Alpha/github or Alpha/jira/site-b)"
            ) from None
        found = _one(ref, await store.find(conn, ref))
    if found is None:
        raise UsageError(f"no integration {ref!r} (see `c9-sync integrations list`)")
    return found


def _one(ref: str, matches: list[Integration]) -> Integration | None:
    """The match a target names, or UsageError listing every candidate when it names several."""
    exact = [m for m in matches if f"{m.team_name}/{m.type}/{m.name}" == ref]
    chosen = exact or matches
    if len(chosen) <= 1:
        return chosen[0] if chosen else None
    first = chosen[0]
    listed = ", ".join(f"{m.team_name}/{m.type}/{m.name} ({m.id})" for m in chosen)
    raise UsageError(
        f"{ref!r} is ambiguous: team {first.team_name!r} has {len(chosen)} {first.type}"
        f" integrations: {listed}; name one as TEAM/TYPE/NAME or by id"
    )


def integration_name(value: str) -> str:
    """argparse type: a name for `add --name` (what tells a team's integrations of one type
    apart): not blank, at most 255 characters (the column's size)."""
    name = value.strip()
    if not name:
        raise argparse.ArgumentTypeError("must not be blank")
    if len(name) > 255:
        raise argparse.ArgumentTypeError(f"at most 255 characters, got {len(name)}")
    return name


def _load_config_arg(value: str) -> Any:
    """`--config` is JSON, or `@FILE` (`@-`: standard input). Errors never echo the text."""
    if value.startswith("@"):
        where = value[1:]
        try:
            text = sys.stdin.read() if where == "-" else Path(where).read_text()
        except OSError as exc:
            raise UsageError(f"--config: cannot read {where!r} ({exc.strerror})") from None
    else:
        text = value
    try:
        config = json.loads(text)
    except ValueError as exc:
        pos = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        raise UsageError(
            f"--config: not valid JSON (line {pos[0]}, column {pos[1]})"
            if pos[0]
            else "--config: not valid JSON"
        ) from None
    if not isinstance(config, dict):
        raise UsageError("--config: must be a JSON object")
    return config


def _connector_class(type_: str) -> type[Connector]:
    if type_ not in registry.available():
        known = ", ".join(sorted(registry.available())) or "none"
        raise UsageError(f"unknown integration type {type_!r} (installed: {known})")
    try:
        return registry.load(type_)
    except FatalError as exc:
        raise UsageError(str(exc)) from None


def _taken(team: str, type_: str, name: str, taken: uuid.UUID | None) -> str:
    return (
        f"team {team!r} already has a {type_} integration named {name!r}"
        + (f" ({taken})" if taken else "")
        + ": give this one another --name, or change or remove that one"
    )


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
        targets = health_labels(rows)
        views.print_json([{**health.health_json(r), "target": targets[r.id]} for r in rows])
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
    cls = _connector_class(args.type)
    name = args.name or args.type  # what the schema names an unnamed row (schema/0008)
    raw = _load_config_arg(args.config)
    try:
        config = connecting.validate_config(cls, raw)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    new_id = uuid.uuid4()
    conn = await migrate.connect_current(url)
    try:
        team_id = await store.team_id(conn, args.team)
        if team_id is None and not args.create_team:
            raise UsageError(
                f"no team named {args.team!r} (create it first, or pass --create-team)"
            )
        existing = await store.find_named(conn, args.team, args.type, name)
        if existing is not None:
            raise UsageError(_taken(args.team, args.type, name, existing.id))
        if args.no_check:
            views.say("check skipped (--no-check)")
        else:
            problem = await connecting.check_connection(
                cls, config, new_id, settings, dict(os.environ), args.timeout
            )
            if problem:
                return _fail(
                    f"check failed, nothing saved: {problem}"
                    " (fix the config, or save it anyway with --no-check)"
                )
            views.say(f"check passed: {args.type} credentials and scope work")
        async with conn.transaction():
            if team_id is None:
                team_id = await store.insert_team(
                    conn, args.team, product=args.team, repo_path="", status="stopped",
                    reactivate=False,
                )  # fmt: skip
                views.say(f"created team {args.team!r}")
            added = await store.insert_integration(
                conn,
                integration_id=new_id,
                team_id=team_id,
                type_=args.type,
                name=name,
                config=raw,
                active=not args.inactive,
                interval=args.interval,
                replace=False,
            )
            if added is None:  # added by someone else while the check ran
                taken = await store.find_named(conn, args.team, args.type, name)
                raise UsageError(_taken(args.team, args.type, name, taken.id if taken else None))
        saved = await store.get_integration(conn, new_id)
    finally:
        await conn.close()
    state = "inactive (enable it to start syncing)" if args.inactive else "active"
    target = saved.label if saved else f"{args.team}/{args.type}/{name}"
    views.say(f"added {target} {new_id}: every {args.interval}s, {state}")
    if config.token is not None:
        views.say(
            "warning: the token is stored in integrations.config; prefer token_env or token_file"
            " so it stays out of the database and its backups"
        )
    return EXIT_OK


async def cmd_test(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
    finally:
        await conn.close()
    try:
        cls = registry.load(target.type)
        config = connecting.validate_config(cls, target.config)
    except FatalError as exc:
        return _fail(f"{target.label}: check FAILED: {exc}")
    started = time.monotonic()
    problem = await connecting.check_connection(
        cls, config, target.id, settings, dict(os.environ), args.timeout,
        grants_db=lambda: db.connection(url),
    )  # fmt: skip
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
        await store.set_active(conn, [target.id], active)
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
        await store.set_interval(conn, target.id, args.seconds)
    finally:
        await conn.close()
    views.say(f"{target.label}: interval {target.sync_interval}s -> {args.seconds}s")
    return EXIT_OK


async def cmd_sync_now(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        if not target.is_active:
            raise UsageError(f"{target.label} is disabled: enable it first")
        async with conn.transaction():
            await store.clear_backoff(conn, target.id)
            await notify.request_sync_now(conn, target.id)
    finally:
        await conn.close()
    views.say(
        f"{target.label}: sync requested (backoff cleared, running workers notified);"
        f" to run it here and now: c9-sync sync --integration {target.id} --force"
    )
    return EXIT_OK


async def cmd_webhook(args: argparse.Namespace, settings: Settings, url: str) -> int:
    """The listener's URL for it and the tracker's setup steps; the secret only by where it is."""
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
    finally:
        await conn.close()
    if target.type not in webhook_setup.SOURCES:
        raise UsageError(f"{target.label}: {target.type} integrations have no webhook listener")
    try:
        config = connecting.validate_config(registry.load(target.type), target.config)
    except ConfigError as exc:  # names keys and reasons, never values
        raise UsageError(f"{target.label}: {exc}") from None
    if args.base_url:
        base = args.base_url.rstrip("/")
    elif settings.webhook_port:
        base = f"http://{settings.webhook_host}:{settings.webhook_port}"
    else:
        base = "https://<your ingress>"
    hook_url = f"{base}/hooks/{target.id}"
    lines = [f"{target.label}: webhook URL {hook_url}"]
    if not settings.webhook_port:
        lines.append(
            "The listener is off in this environment: start the worker with"
            " C9_SYNC_WEBHOOK_PORT (and C9_SYNC_WEBHOOK_HOST), behind an ingress that"
            " terminates TLS and forwards /hooks/ to it."
        )
    if not config.has_webhook_secret():
        lines.append(
            "No webhook secret yet: add webhook_secret_env (or webhook_secret_file) to the"
            " integration's config; until then deliveries are answered 404."
        )
    lines.append(f"In {target.type}:")
    lines += [
        f"  {n}. {step}"
        for n, step in enumerate(webhook_setup.steps(target.type, hook_url, config), 1)
    ]
    lines.append(
        "Deliveries only ask for a run sooner; polling every"
        f" {target.sync_interval}s stays on, so a lost delivery costs freshness, never data."
    )
    views.say("\n".join(lines))
    return EXIT_OK


async def cmd_reset(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        state = await sync_store.get_state(conn, target.id)
        if args.scope is not None and args.scope not in state.cursor:
            known = ", ".join(sorted(state.cursor)) or "none yet"
            raise UsageError(
                f"{target.label} has no cursor for scope {args.scope!r} (has: {known})"
            )
        # Under the run lock: a run in progress would write its own cursor back over the reset.
        if not await notify.try_lock_integration(conn, target.id):
            return _fail(f"{target.label} is running right now: reset it when the run has ended")
        try:
            await sync_store.forget_cursor(conn, target.id, args.scope)
        finally:
            await notify.unlock_integration(conn, target.id)
    finally:
        await conn.close()
    what = f"scope {args.scope!r}" if args.scope is not None else "every scope"
    views.say(
        f"{target.label}: cursor of {what} forgotten; its next run reads it in full (items are"
        f" kept and only what differs is rewritten). To run it now:"
        f" c9-sync integrations sync-now {target.label}"
    )
    return EXIT_OK


async def cmd_census(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        try:
            connector, config = connecting.open_connector(
                target.id,
                target.type,
                target.config,
                settings,
                dict(os.environ),
                deadline=time.monotonic() + args.timeout,
                grants_db=lambda: db.connection(url),
            )
        except FatalError as exc:
            return _fail(f"{target.label}: census FAILED: {exc}")
        fields = {"integration_id": str(target.id), "source": target.type}
        try:
            listing = await asyncio.wait_for(sweep.list_upstream(connector), args.timeout)
        except (TimeoutError, ConnectorError) as exc:
            problem = (
                f"no answer within {args.timeout:.0f}s" if isinstance(exc, TimeoutError) else exc
            )
            return _fail(f"{target.label}: census FAILED: {problem}")
        finally:
            await connecting.close_quietly(connector)
        census = await sweep.take_census(
            conn, target, listing, fields, alarm=config.start_date is None
        )
    finally:
        await conn.close()
    if args.json:
        views.print_json([census_json(c) for c in census])
    else:
        views.print_table(
            f"census of {target.label}",
            ("scope", "upstream", "held", "removed", "missing", "lost"),
            [
                (c.scope or "(all)", c.upstream, c.held, c.removed, c.missing, c.lost or "")
                for c in census
            ],
        )
        if config.start_date is not None:
            views.say(
                f"start_date {config.start_date}: older items upstream are missing on purpose"
            )
    bad = any(c.lost for c in census) or (
        config.start_date is None and any(c.missing for c in census)
    )
    return EXIT_FAILED if bad else EXIT_OK


async def cmd_remove(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(f"removing {target.label} needs --yes (no terminal to ask on)")
            prompt = f"remove {target.label} ({target.id})? [y/N] "
            answer = await asyncio.to_thread(input, prompt)
            if answer.strip().lower() not in ("y", "yes"):
                views.say("nothing removed")
                return EXIT_FAILED
        items = await store.delete(conn, target.id)
    finally:
        await conn.close()
    views.say(
        f"removed {target.label} ({target.id}); its {items} work item(s) and their history are kept"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------
def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "integrations", help="list, add, check, enable, disable, reschedule, remove integrations"
    )
    isub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def ref(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "integration",
            metavar="ID|TEAM/TYPE[/NAME]",
            help="e.g. Alpha/github; Alpha/jira/site-b when the team has several of a type",
        )

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
        help="the integration's config (@- reads stdin). Common keys: token_env | token_file |"
        " token, status_map, start_date (YYYY-MM-DD: only items updated since then),"
        " webhook_secret_env | webhook_secret_file (see `integrations webhook`); the"
        " tracker's own keys are in the README",
    )
    q.add_argument(
        "--name",
        type=integration_name,
        metavar="TEXT",
        help="tells the team's integrations of one type apart (default: the type); needed for a"
        " second one of a type, which is then named TEAM/TYPE/NAME",
    )
    q.add_argument("--interval", type=interval, default=300, metavar="SECONDS")
    q.add_argument("--inactive", action="store_true", help="save it paused")
    q.add_argument("--no-check", action="store_true", help="save without calling the tracker")
    q.add_argument("--create-team", action="store_true", help="create the team when missing")
    q.add_argument("--timeout", type=positive, default=60.0, metavar="SECONDS")
    q.set_defaults(func=cmd_add)

    for name in ("test", "check"):
        q = isub.add_parser(name, help="call the tracker: do the credentials and scope work?")
        ref(q)
        q.add_argument("--timeout", type=positive, default=60.0, metavar="SECONDS")
        q.set_defaults(func=cmd_test)

    q = isub.add_parser("enable", help="start syncing it (running workers pick it up)")
    ref(q)
    q.set_defaults(func=cmd_enable)
    q = isub.add_parser("disable", help="pause it (its data stays)")
    ref(q)
    q.set_defaults(func=cmd_disable)

    q = isub.add_parser("set-interval", help="change how often it syncs")
    ref(q)
    q.add_argument("seconds", type=interval, metavar="SECONDS")
    q.set_defaults(func=cmd_set_interval)

    q = isub.add_parser("sync-now", help="clear its backoff and ask running workers to sync it")
    ref(q)
    q.set_defaults(func=cmd_sync_now)

    q = isub.add_parser(
        "webhook", help="print the webhook URL and the tracker's setup steps (never the secret)"
    )
    ref(q)
    q.add_argument(
        "--base-url",
        metavar="URL",
        help="the public address of the listener (the ingress), e.g. https://c9.example.com",
    )
    q.set_defaults(func=cmd_webhook)

    q = isub.add_parser(
        "reset",
        help="forget its cursor: the next run reads everything (or one --scope) in full;"
        " nothing is deleted",
    )
    ref(q)
    q.add_argument(
        "--scope", metavar="SCOPE", help="only this scope (a repository, project or team key)"
    )
    q.set_defaults(func=cmd_reset)

    q = isub.add_parser(
        "census",
        help="list every item upstream now and compare with what is held, per scope"
        " (exit 1 when items are missing or a scope cannot be read)",
    )
    ref(q)
    q.add_argument("--timeout", type=positive, default=600.0, metavar="SECONDS")
    q.add_argument("--json", action="store_true", help="JSON instead of a table")
    q.set_defaults(func=cmd_census)

    q = isub.add_parser("remove", help="delete it (its work items and history are kept)")
    ref(q)
    q.add_argument("--yes", action="store_true", help="do not ask")
    q.set_defaults(func=cmd_remove)

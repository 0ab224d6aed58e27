"""The one path from an `integrations` row to a live connector: load the class, validate the
config with the connector's own model, resolve the secret, build the context, construct.

Used by the sync run (`open_connector`) and by `integrations add/test` (`check_connection`).
Errors name config keys and reasons, never values: a token may be in them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from connectors import registry
from connectors.base import (
    ConfigError,
    Connector,
    ConnectorConfig,
    ConnectorContext,
    CredentialExpiry,
    FatalError,
    GrantVault,
    RetriableError,
    connect,
)
from worker import redact, telemetry, vault
from worker.logs import get_logger
from worker.settings import Settings

log = get_logger(__name__)

ConnectorLoader = Callable[[str], type[Connector]]


def config_error_message(exc: ValidationError) -> str:
    """Pydantic's own text quotes the input (a token could be in it): keep location + reason."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']}")
    return "invalid integrations.config: " + "; ".join(parts)


def validate_config(cls: type[Connector], raw: Any) -> ConnectorConfig:
    """The connector's own model; ConfigError naming keys and reasons, never values."""
    if not isinstance(raw, dict):
        raise ConfigError("invalid integrations.config: must be a JSON object")
    try:
        return cls.config_model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(config_error_message(exc)) from None


def build(
    cls: type[Connector],
    config: ConnectorConfig,
    integration_id: uuid.UUID,
    settings: Settings,
    environ: Mapping[str, str],
    *,
    deadline: float,
    on_wait: Callable[[str, float], None] | None = None,
    max_retries: int = 5,
    sleep_cap: float = 120.0,
    on_credential: Callable[[CredentialExpiry], None] | None = None,
    vault: GrantVault | None = None,
    on_warning: Callable[[str, str], None] | None = None,
) -> Connector:
    """Resolve the token when the config uses one (registered for redaction at once; every
    secret the connector resolves or mints later is registered through `on_secret`), make the
    cache dir, construct."""
    token = config.resolve_token(environ) if config.uses_token() else None
    if token is not None:
        redact.register(token.get_secret_value())
    ctx = ConnectorContext(
        integration_id=str(integration_id),
        token=token,
        cache_dir=settings.cache_dir / cls.source,
        deadline=deadline,
        max_retries=max_retries,
        sleep_cap=sleep_cap,
        environ=environ,
        on_secret=redact.register,
        vault=vault,
    )
    if on_wait is not None:
        ctx = replace(ctx, on_wait=on_wait)
    if on_credential is not None:
        ctx = replace(ctx, on_credential=on_credential)
    if on_warning is not None:
        ctx = replace(ctx, on_warning=on_warning)
    try:
        ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FatalError(
            f"cannot create the cache directory {ctx.cache_dir} ({exc.strerror})"
        ) from None
    return connect(cls, config, ctx)


def grant_vault(
    grants_db: vault.Connect | None, integration_id: uuid.UUID, settings: Settings
) -> GrantVault | None:
    """The OAuth grant vault of one integration, when a database is at hand for it."""
    if grants_db is None:
        return None
    return vault.DatabaseVault(grants_db, integration_id, settings.secret_keys, redact.register)


def open_connector(
    integration_id: uuid.UUID,
    type_: str,
    raw_config: Any,
    settings: Settings,
    environ: Mapping[str, str],
    *,
    deadline: float,
    loader: ConnectorLoader = registry.load,
    on_credential: Callable[[CredentialExpiry], None] | None = None,
    grants_db: vault.Connect | None = None,
    on_warning: Callable[[str, str], None] | None = None,
) -> tuple[Connector, ConnectorConfig]:
    """The connector for one sync run, and its validated config; rate-limit waits are logged
    and counted, what it learns of its credential's expiry goes to `on_credential`.
    `grants_db` reaches the OAuth grants (oauth_grants) of OAuth configs."""
    cls = loader(type_)
    config = validate_config(cls, raw_config)

    def on_wait(reason: str, seconds: float) -> None:
        telemetry.RATE_LIMIT_WAITS.labels(source=type_).inc(seconds)
        log.info(
            "rate_limit_wait",
            integration_id=str(integration_id),
            source=type_,
            what=reason,
            seconds=round(seconds, 2),
        )

    connector = build(
        cls,
        config,
        integration_id,
        settings,
        environ,
        deadline=deadline,
        on_wait=on_wait,
        on_credential=on_credential,
        vault=grant_vault(grants_db, integration_id, settings),
        on_warning=on_warning,
    )
    return connector, config


async def check_connection(
    cls: type[Connector],
    config: ConnectorConfig,
    integration_id: uuid.UUID,
    settings: Settings,
    environ: Mapping[str, str],
    within: float,
    on_credential: Callable[[CredentialExpiry], None] | None = None,
    *,
    grants_db: vault.Connect | None = None,
) -> str | None:
    """Build the connector as a run would and call `check()`. None when it passed, else a plain
    sentence saying what failed. Few, short retries: an admin is waiting. What the check
    learns of the credential's expiry goes to `on_credential` (to show it). With `grants_db`,
    an OAuth config refreshes through the stored grant as a run would (under the row's lock)."""
    try:
        connector = build(
            cls,
            config,
            integration_id,
            settings,
            environ,
            deadline=time.monotonic() + within,
            max_retries=2,
            sleep_cap=min(5.0, within / 4),
            on_credential=on_credential,
            vault=grant_vault(grants_db, integration_id, settings),
        )
    except ConfigError as exc:  # the token: this shell's environment is not the worker's
        return f"{exc} (in this shell's environment; the worker resolves it in its own)"
    except FatalError as exc:
        return str(exc)
    try:
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
        await close_quietly(connector)
    return None


async def close_quietly(connector: Connector) -> None:
    try:
        await connector.aclose()
    except Exception:
        log.exception("connector_close_failed", source=connector.source)

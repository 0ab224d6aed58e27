"""Structured logging: one line per event, an event name plus fields, never a secret.

JSON lines when stderr is not a terminal (or `C9_SYNC_LOG_FORMAT=json`), readable lines on a
terminal. Every resolved secret is registered with `redact.register` and scrubbed from each line as
a last line of defence.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from worker import redact

_CONTEXT_KEYS = ("integration_id", "source", "run_id")


class EventLogger:
    """`log.info("sync_completed", integration_id=..., created=3)`."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        line.update(_jsonable(getattr(record, "fields", {})))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact.scrub(json.dumps(line, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = getattr(record, "fields", {})
        ordered = sorted(fields.items(), key=lambda kv: (kv[0] not in _CONTEXT_KEYS, kv[0]))
        rest = " ".join(f"{k}={_text(v)}" for k, v in ordered)
        line = f"{ts} {record.levelname:<7} {record.getMessage()} {rest}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact.scrub(line)


def _text(value: Any) -> str:
    text = json.dumps(_jsonable(value), ensure_ascii=False)
    return text[1:-1] if text.startswith('"') and " " not in text else text


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Install the handler on the root logger (idempotent)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_c9_sync", False):
            root.removeHandler(old)
    handler._c9_sync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries' chatter (SDK retries, pgserver's lifecycle) only at WARNING and above.
    for noisy in ("pgserver", "urllib3", "httpx", "httpcore", "apscheduler", "msrest", "github"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))

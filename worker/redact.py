"""Secret scrubbing: the last line of defence for logs, activity_logs and CLI output.

Each secret the worker resolves (tokens, the database password) is registered here; `scrub`
replaces any occurrence in a string. Code still never formats secrets on purpose.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()


def register(secret: str | None) -> None:
    # Very short values would mask ordinary words; tokens are never that short.
    if secret and len(secret) >= 6:
        with _lock:
            _secrets.add(secret)


def scrub(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(r"\1" + MASK + "@", text)


# user:password@ inside any URL-looking text
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.IGNORECASE)


def dsn_for_display(dsn: str) -> str:
    """A database URL with its password masked (the host, port, database stay visible)."""
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)

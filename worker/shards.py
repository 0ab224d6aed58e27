"""Which replica ticks which integration: replicas share the ticks instead of all attempting
every one.

Each integration belongs to one live replica, chosen by rendezvous hashing (the replica whose
hash with the integration's id is highest): every replica that sees the same set of replicas
computes the same owner without talking to the others, and a replica that joins or leaves moves
only its own share. A replica that does not see itself among the live ones (its LISTEN
connection is down, or it is starting) owns every integration, as every replica did before
sharing: two replicas ticking one integration is waste the run lock absorbs, never a gap.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Collection, Iterable


def name_for_this_process() -> str:
    """A replica's name, as other replicas see it: the host, the process and a random part (two
    schedulers of one process, or a process id reused in a fresh container, are two replicas).
    Short enough for `application_name` (63 bytes) behind its prefix."""
    return f"{socket.gethostname()[:28]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _weight(replica: str, integration_id: uuid.UUID) -> int:
    digest = hashlib.blake2b(f"{replica}/{integration_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(integration_id: uuid.UUID, replicas: Iterable[str]) -> str:
    """The replica that ticks this integration (`replicas`: not empty)."""
    return max(replicas, key=lambda r: (_weight(r, integration_id), r))


def owned(me: str, replicas: Collection[str], ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The integrations among `ids` that `me` ticks, when `replicas` are the live ones."""
    if me not in replicas:
        return set(ids)  # not seen by the others (yet): tick everything, as alone
    if len(replicas) == 1:
        return set(ids)
    return {i for i in ids if owner(i, replicas) == me}

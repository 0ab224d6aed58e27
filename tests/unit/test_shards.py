"""Rendezvous sharing of ticks between replicas (worker.shards): one owner per integration,
the same on every replica, and a replica joining or leaving moves only its own share."""

from __future__ import annotations

import uuid

from worker import shards

IDS = [uuid.UUID(int=n * 7919 + 13) for n in range(3000)]
THREE = frozenset({"a:1:x", "b:1:y", "c:1:z"})


def test_every_integration_has_exactly_one_owner_and_the_shares_are_even() -> None:
    shares = {r: shards.owned(r, THREE, IDS) for r in THREE}
    assert set().union(*shares.values()) == set(IDS)
    assert sum(len(s) for s in shares.values()) == len(IDS)  # disjoint
    assert all(800 < len(s) < 1200 for s in shares.values()), {r: len(s) for r, s in shares.items()}


def test_a_replica_that_joins_takes_only_from_the_others_share_what_becomes_its_own() -> None:
    four = THREE | {"d:1:w"}
    before = {i: shards.owner(i, THREE) for i in IDS}
    after = {i: shards.owner(i, four) for i in IDS}
    moved = [i for i in IDS if before[i] != after[i]]
    assert all(after[i] == "d:1:w" for i in moved)  # nothing moves between the old three
    assert 550 < len(moved) < 950  # about a quarter


def test_a_replica_that_leaves_hands_only_its_own_share_on() -> None:
    two = THREE - {"b:1:y"}
    for i in IDS:
        if shards.owner(i, THREE) != "b:1:y":
            assert shards.owner(i, two) == shards.owner(i, THREE)


def test_a_replica_the_others_do_not_see_ticks_everything() -> None:
    # starting, or its LISTEN connection down: two replicas ticking one integration is waste the
    # run lock absorbs, never a gap
    assert shards.owned("e:1:v", THREE, IDS) == set(IDS)
    assert shards.owned("a:1:x", frozenset(), IDS) == set(IDS)
    assert shards.owned("a:1:x", frozenset({"a:1:x"}), IDS) == set(IDS)


def test_names_differ_between_schedulers_of_one_process() -> None:
    assert shards.name_for_this_process() != shards.name_for_this_process()
    assert len("c9-sync replica " + shards.name_for_this_process()) <= 63

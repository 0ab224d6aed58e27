"""connectors.base.status_name_suggests: whole words of a native status name."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.base import status_name_suggests


def by_characters(name: str | None, *words: str) -> bool:
    """The rule spelt out: every character that is not a letter or digit separates words."""
    if not name:
        return False
    folded = " " + "".join(c if c.isalnum() else " " for c in name.casefold()) + " "
    return any(f" {w} " in folded for w in words)


def test_whole_words_case_insensitively() -> None:
    assert status_name_suggests("In Progress", "in progress")
    assert status_name_suggests("status: WIP!", "wip")
    assert status_name_suggests("blocked_by_infra", "blocked")
    assert not status_name_suggests("unblocked", "blocked")
    assert not status_name_suggests("in--progress", "in progress")  # two separators, two spaces
    assert not status_name_suggests(None, "blocked")
    assert not status_name_suggests("", "blocked")


@given(
    st.text(alphabet=st.sampled_from("aBiInNpProgresSwWlLcCkKdD _-:/.!1²ǅßẞİ\u00a0\u200b")),
    st.sampled_from(["blocked", "in progress", "wip", "done", "ss"]),
)
def test_as_the_rule_spelt_out(name: str, word: str) -> None:
    assert status_name_suggests(name, word) == by_characters(name, word)

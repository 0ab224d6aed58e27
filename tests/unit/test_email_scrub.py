"""The e-mail scrubs skip a value only when walking it would change nothing (their fast path,
`connectors.http.json_mentions`, reads the value's JSON text instead of its fields)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connectors.github_model import without_emails
from connectors.http import json_mentions
from connectors.jira_model import _scrubbed, scrub_emails

ADDRESSES = ["ada@example.com", " bob@example.org ", "not an address", "@", "a@b", "x@y.z"]
KEYS = st.sampled_from(["emailAddress", "email", "name", "@", '"email":']) | st.text(max_size=6)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)  # (lone surrogates included: orjson refuses them)
    | st.sampled_from(ADDRESSES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=24,
)


@given(JSON)
def test_jira_scrub_of_a_value_is_its_walk(value: Any) -> None:
    assert scrub_emails(value) == _scrubbed(value)


@given(st.dictionaries(KEYS, JSON, max_size=5))
def test_a_github_issue_whose_text_has_no_email_key_has_none(raw: dict[str, Any]) -> None:
    if not json_mentions(raw, b'"email":'):
        assert without_emails(raw) == raw


def test_what_orjson_cannot_encode_is_walked() -> None:
    assert json_mentions({"title": "half \ud800 a pair"}, b"nothing like this")
    assert scrub_emails({"emailAddress": None, "t": "\ud800"}) == {"t": "\ud800"}

"""jsonb values go as JSON text, cleaned while encoded: the same value `clean_json` makes, and
an unchanged payload is encoded as it stands."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from worker import sanitize


def test_a_clean_payload_is_its_own_json() -> None:
    raw = {"title": "emoji 🚀 ✓", "n": [1, 2.5, True, None], "עברית": {"x": "\\u0000 as text"}}
    text = sanitize.json_text(raw)
    assert json.loads(text) == raw


def test_what_jsonb_refuses_is_cleaned_as_clean_json_cleans_it() -> None:
    raw = {
        "nul\x00key": "a\x00b",
        "half": ["\ud83d", "x\udc00y"],
        "nan": float("nan"),
        "inf": [float("inf"), -float("inf")],
        "when": datetime(2026, 1, 2, tzinfo=UTC),
        "tuple": ("a", 1),
    }
    text = sanitize.json_text(raw)
    assert json.loads(text) == sanitize.clean_json(raw)
    assert json.loads(text) == {
        "nulkey": "ab",
        "half": ["", "xy"],
        "nan": None,
        "inf": [None, None],
        "when": "2026-01-02 00:00:00+00:00",
        "tuple": ["a", 1],
    }
    text.encode()  # (no lone surrogate left: UTF-8 takes it)


def test_text_loses_nul_and_lone_surrogates_only() -> None:
    assert sanitize.clean_text("a\x00b\ud800c 🚀") == "abc 🚀"
    assert sanitize.clean_text("plain") == "plain"
    assert sanitize.clean_text("x" * 600, sanitize.TITLE_MAX) == "x" * 499 + "…"

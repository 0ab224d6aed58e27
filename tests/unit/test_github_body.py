"""connectors.github.decoded_body: a response body read as PyGithub's Requester reads it."""

from __future__ import annotations

import json

import pytest

from connectors.github import decoded_body


@pytest.mark.parametrize(
    "body",
    [
        '[{"id": 1, "title": "ünïcode 🚀", "body": null, "labels": []}]',
        '{"message": "Not Found", "documentation_url": "https://docs.github.com"}',
        '[{"title": "half \\ud800 a pair"}]',  # orjson refuses a lone surrogate
        '{"n": NaN, "i": Infinity}',  # and these
        '{"k": 1, "k": 2}',  # the later key wins in both
    ],
)
def test_json_text_decodes_as_json_does(body: str) -> None:
    got, want = decoded_body(body), json.loads(body)
    # (NaN is not equal to itself: compare the texts json writes of both)
    assert json.dumps(got) == json.dumps(want)


def test_an_integer_past_64_bits_is_read_as_a_number_close_to_it() -> None:
    # orjson reads it as a float, json as an int: GitHub's ids and counts are far below 2^63, so
    # no answer of GitHub's has one
    assert decoded_body('{"big": 123456789012345678901234567890}') == {"big": 1.2345678901234568e29}


def test_an_empty_body_is_none_and_text_that_is_not_json_is_kept_as_data() -> None:
    assert decoded_body("") is None
    html = "<html><body>502 Bad Gateway</body></html>"
    assert decoded_body(html) == {"data": html}


@pytest.mark.parametrize("body", ['{"this is": not json', "[1, 2"])
def test_malformed_json_is_the_decoders_error(body: str) -> None:
    with pytest.raises(ValueError):
        decoded_body(body)

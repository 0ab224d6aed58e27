"""GitHub credential config, repository patterns and the pure parts of app auth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import ConfigError
from connectors.github import GitHubConfig, GitHubConnector
from connectors.github_app import jwt_refused, normalised_pem, pat_expiry
from connectors.github_repos import is_pattern, matches
from worker.connecting import validate_config

PLANTED_KEY = "-----BEGIN RSA PRIVATE KEY-----\nPLANTEDkey\n-----END RSA PRIVATE KEY-----"


def config_error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(GitHubConnector, raw)
    message = str(info.value)
    assert "\n" not in message and "PLANTED" not in message
    return message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"app_id": 1, "private_key": PLANTED_KEY, "token": "PLANTED-tok"},
            "give a token (token) or a GitHub App (app_id), not both",
        ),
        ({"app_id": 1}, "app_id needs exactly one of private_key, private_key_env"),
        (
            {"app_id": 1, "private_key": PLANTED_KEY, "private_key_env": "K"},
            "(got private_key, private_key_env)",
        ),
        ({"private_key_env": "K"}, "private_key_env belong to a GitHub App: give app_id too"),
        ({"token": "PLANTED-tok", "installation_id": 5}, "installation_id belong to a GitHub App"),
        ({"app_id": "not an id", "private_key_env": "K"}, "app_id must be the app's numeric ID"),
        ({"app_id": 1, "private_key_env": "K", "installation_id": 0}, "installation_id"),
        ({"token": "PLANTED-tok", "repos": ["acme/*/x"]}, "is not of the form"),
        ({"token": "PLANTED-tok", "repos": ["*/web"]}, "is not of the form"),
    ],
)
def test_credentials_are_one_kind_with_one_line_errors(raw: dict[str, Any], expected: str) -> None:
    assert expected in config_error({"repos": ["acme/web"], **raw})


def test_an_app_config_uses_no_token() -> None:
    app = GitHubConfig(repos=["acme/*"], app_id=12345, private_key_env="K")
    assert app.app_id == "12345" and not app.uses_token()
    by_client_id = GitHubConfig(repos=["acme/web"], app_id="Iv23liAbC.d-1", private_key_env="K")
    assert by_client_id.app_id == "Iv23liAbC.d-1"
    assert GitHubConfig(repos=["acme/web"], token="t").uses_token()
    assert "PLANTED" not in repr(GitHubConfig(repos=["a/b"], app_id=1, private_key=PLANTED_KEY))


def test_patterns_are_kept_and_matched_without_case() -> None:
    config = GitHubConfig(repos=["acme/*", "Acme/*", "acme/svc-?", "other/one"], token="t")
    assert config.repos == ["acme/*", "acme/svc-?", "other/one"]
    assert [is_pattern(r) for r in config.repos] == [True, True, False]
    assert matches("ACME/Web", "acme/*")
    assert matches("acme/svc-a", "acme/svc-?") and not matches("acme/svc-ab", "acme/svc-?")
    assert not matches("acmeco/web", "acme/*") and not matches("other/acme", "acme/*")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-12 09:00:00 UTC", datetime(2026, 10, 12, 9, 0, tzinfo=UTC)),
        ("2026-10-12 11:00:00 +0200", datetime(2026, 10, 12, 9, 0, tzinfo=UTC)),
        ("2026-10-12 09:00 UTC", datetime(2026, 10, 12, 9, 0, tzinfo=UTC)),
        ("tomorrow", None),
        ("", None),
        (None, None),
    ],
)
def test_pat_expiry_header(value: str | None, expected: datetime | None) -> None:
    assert pat_expiry(value) == expected


def test_escaped_newlines_in_a_pem_are_restored() -> None:
    one_line = PLANTED_KEY.replace("\n", "\\n")
    assert normalised_pem(one_line) == PLANTED_KEY + "\n"
    assert normalised_pem(PLANTED_KEY + "\n\n") == PLANTED_KEY + "\n"


@pytest.mark.parametrize(
    ("message", "clock"),
    [
        (
            "'Issued at' claim ('iat') must be an Integer representing the time that the "
            "assertion was issued",
            True,
        ),
        (
            "'Expiration time' claim ('exp') must be a numeric value representing the future "
            "time at which the assertion expires",
            True,
        ),
        ("'Expiration time' claim ('exp') is too far in the future", True),
        ("A JSON web token could not be decoded", False),
        ("Missing 'issuer' claim ('iss') in assertion", False),
    ],
)
def test_jwt_refusals_say_what_to_check(message: str, clock: bool) -> None:
    text = str(jwt_refused(message))
    assert message in text
    assert ("clock may be off" in text) is clock
    assert ("check app_id" in text) is not clock

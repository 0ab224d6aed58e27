"""Every conformance description (tests/conformance/*.json) says where it was read: the
repository, the file in it and the commit, so anyone can read the same text again; and none
keeps an `x-unread*` note (a part written from a vendor's prose docs instead of its published
description must be read, or dropped, before it checks anything)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import checker

DESCRIPTIONS = sorted(Path(checker.HERE).glob("*.json"))
COMMIT = re.compile(r"\b[0-9a-f]{40}\b")
COMMIT_ID = re.compile(r"[0-9a-f]{40}")
REPOSITORY = re.compile(r"github\.com/[\w.-]+/[\w.-]+")


def _unread_keys(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).startswith("x-unread"):
                yield f"{path}.{key}"
            yield from _unread_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _unread_keys(item, f"{path}[{n}]")


def source_problems(description: dict[str, Any]) -> list[str]:
    """Why a description's `source` does not name where it was read, and its x-unread keys.

    The repository: a `repository` key or a github.com/<owner>/<name> in `file`. The file: a
    `file` key. The commit: a `commit` key that is exactly 40 hex digits, or `commits` (one per
    file), or a commit written in `file` (a file vendored in another repository)."""
    source = description.get("source")
    if not isinstance(source, dict):
        return ["no source"]
    problems = []
    file = source.get("file")
    if not isinstance(file, str) or not file.strip():
        problems.append("source names no file")
        file = ""
    repository = source.get("repository")
    if not (isinstance(repository, str) and REPOSITORY.search(repository)) and not (
        REPOSITORY.search(file)
    ):
        problems.append("source names no repository (github.com/<owner>/<name>)")
    if "commit" in source:
        if not (isinstance(source["commit"], str) and COMMIT_ID.fullmatch(source["commit"])):
            problems.append(f"source commit is not a bare commit id: {source['commit']!r}")
    elif "commits" in source:
        commits = source["commits"]
        if not (
            isinstance(commits, dict)
            and commits
            and all(isinstance(c, str) and COMMIT_ID.fullmatch(c) for c in commits.values())
        ):
            problems.append("source commits is not a map of files to commit ids")
    elif not COMMIT.search(file):
        problems.append("source names no commit")
    problems += [f"{key} left (read it or drop it)" for key in _unread_keys(description)]
    return problems


@pytest.mark.parametrize("path", DESCRIPTIONS, ids=[p.stem for p in DESCRIPTIONS])
def test_each_description_names_its_source_and_has_nothing_unread(path: Path) -> None:
    description = json.loads(path.read_text(encoding="utf-8"))
    assert source_problems(description) == []


def test_there_are_descriptions_to_check() -> None:
    assert {p.stem for p in DESCRIPTIONS} >= {"azure_devops", "github", "jira", "jira_dc"}


def test_a_source_without_commit_or_with_unread_parts_is_refused() -> None:
    # The shape github.json had before its App endpoints and shared parameters were read.
    before = {
        "source": {
            "repository": "https://github.com/github/rest-api-description",
            "file": "descriptions/api.github.com/api.github.com.yaml",
            "commit": "0000036e42b5e7121c2b1ac244cb7bba1d2f3914 (as stored by the search tool)",
            "x-unread": "the shared parameters are written from GitHub's REST docs",
            "x-unread-apps": "the App operations were written from GitHub's REST reference",
        },
        "endpoints": [{"query": {"since": {"type": "string", "x-unread": "docs"}}}],
    }
    assert source_problems(before) == [
        "source commit is not a bare commit id: "
        "'0000036e42b5e7121c2b1ac244cb7bba1d2f3914 (as stored by the search tool)'",
        ".source.x-unread left (read it or drop it)",
        ".source.x-unread-apps left (read it or drop it)",
        ".endpoints[0].query.since.x-unread left (read it or drop it)",
    ]
    assert source_problems({"source": {"file": "spec.json"}, "endpoints": []}) == [
        "source names no repository (github.com/<owner>/<name>)",
        "source names no commit",
    ]
    assert source_problems({"endpoints": []}) == ["no source"]
    vendored = {"file": "spec.json as vendored in github.com/a/b at commit " + "ab" * 20}
    assert source_problems({"source": vendored, "endpoints": []}) == []


def test_the_github_description_has_what_was_read() -> None:
    github = checker.load("github")
    ops = {e["operation"]: e for e in github["endpoints"]}
    issues = ops["issues/list-for-repo"]["query"]
    assert list(issues) == [  # the operation's parameters, in its order, sent or not
        "milestone", "state", "assignee", "type", "creator", "mentioned", "issue_field_values",
        "labels", "sort", "direction", "since", "per_page", "page",
    ]  # fmt: skip
    assert issues["since"]["format"] == "date-time"
    assert "maximum" not in issues["per_page"]  # "(max 100)" is only in its description
    full = ops["repos/get"]["response"]["schema"]
    assert len(full["required"]) == 75 and "has_downloads" not in full["required"]
    assert {"has_discussions", "network_count", "subscribers_count"} <= set(full["required"])
    minimal = ops["repos/list-for-org"]["response"]["schema"]["items"]
    assert len(minimal["required"]) == 46 and "has_issues" not in minimal["required"]
    token = ops["apps/create-installation-access-token"]
    assert token["body"]["required"] is False
    assert token["response"]["schema"]["required"] == ["token", "expires_at"]
    assert "format" not in token["response"]["schema"]["properties"]["expires_at"]
    permissions = token["body"]["schema"]["properties"]["permissions"]["properties"]
    assert len(permissions) == 55 and permissions["workflows"]["enum"] == ["write"]

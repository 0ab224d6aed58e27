"""The pieces of `c9-sync remap` that need no database: what a run learnt is merged, never
erased; the history's defaults; each connector's offline mapping refuses what it cannot map."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.azure_devops import AzureDevOpsConfig, AzureDevOpsConnector
from connectors.base import ConfigError, HistoryEntry, Remappable, Status
from connectors.github import GitHubConnector
from connectors.jira import JiraConfig, JiraConnector
from connectors.linear import LinearConnector
from tests.integration.connectors.contract import T0
from worker import sanitize
from worker.sync import merge_context


def test_a_runs_context_is_merged_over_the_kept_one_key_by_key() -> None:
    kept = {"states": {"web": {"bug": {"active": "InProgress"}, "gone": None}}, "n": 1}
    learnt = {"states": {"web": {"task": {"done": "Completed"}, "gone": {"x": "Proposed"}}}}
    assert merge_context(kept, learnt) == {
        "states": {
            "web": {
                "bug": {"active": "InProgress"},  # not read this run: kept
                "task": {"done": "Completed"},
                "gone": {"x": "Proposed"},  # a value replaced
            }
        },
        "n": 1,
    }
    assert kept["states"]["web"].keys() == {"bug", "gone"}  # the kept one is not changed


def test_a_status_keeps_its_default_only_where_the_map_in_force_did_not_name_it() -> None:
    entries = [
        ("x", HistoryEntry("1", "status", T0, None, "To Do", None, Status.QUEUED)),
        (
            "x",
            HistoryEntry("2", "status", T0, "To Do", " IN review", Status.QUEUED, Status.COMPLETED),
        ),
        ("x", HistoryEntry("3", "assignee", T0, None, "Ada")),
    ]
    columns = sanitize.history_columns(entries, {"in review": Status.COMPLETED})
    assert columns["from_default"] == [None, "queued", None]
    assert columns["to_default"] == ["queued", None, None]


@pytest.mark.parametrize(
    "cls", [JiraConnector, AzureDevOpsConnector, GitHubConnector, LinearConnector]
)
def test_every_connector_maps_stored_items_offline(cls: type[Any]) -> None:
    assert isinstance(cls, Remappable)


def test_jira_refuses_without_the_field_ids_its_config_names() -> None:
    config = JiraConfig.model_validate(
        {
            "url": "https://acme.atlassian.net",
            "email": "a@acme.example",
            "token": "t",
            "projects": ["ABC"],
            "story_points_field": "Story Points",
        }
    )
    raw = {"id": "1", "key": "ABC-1", "fields": {"updated": "2025-05-01T08:00:00.000+0000"}}
    stale = {"story_points_field": "Points", "acceptance_criteria_field": None}
    with pytest.raises(ConfigError, match="run a sync"):
        JiraConnector.map_stored(
            config, raw, scope="ABC", context={"fields": {}, "resolved_from": stale}
        )
    resolved = {
        "fields": {"story_points": "customfield_10016"},
        "resolved_from": {**stale, "story_points_field": "Story Points"},
    }
    raw["fields"]["customfield_10016"] = 2.5
    item = JiraConnector.map_stored(config, raw, scope="ABC", context=resolved)
    assert (item.story_points, item.scope, item.status) == (3, "ABC", Status.QUEUED)


def test_azure_devops_refuses_an_item_whose_types_states_were_never_read() -> None:
    config = AzureDevOpsConfig.model_validate(
        {"organization_url": "https://dev.azure.com/acme", "project": "Web", "token": "t"}
    )
    raw = {
        "id": 7,
        "fields": {
            "System.WorkItemType": "Bug",
            "System.State": "Fixing",
            "System.ChangedDate": "2025-05-01T08:00:00Z",
        },
    }
    with pytest.raises(ValueError, match="'Bug' in 'Web' are not known yet"):
        AzureDevOpsConnector.map_stored(config, raw, scope="Web/*/*", context={})
    context = {"states": {"web": {"bug": {"fixing": "Resolved"}}}}
    item = AzureDevOpsConnector.map_stored(config, raw, scope="Web/*/*", context=context)
    # "Fixing" alone would be guessed InProgress; its category says Resolved: pr_ready
    assert item.status is Status.PR_READY

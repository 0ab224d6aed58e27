"""Azure DevOps connector against its sandbox, through the real azure-devops SDK: the shared
contract plus what is particular to ADO (WIQL windows past the 20,000 cap, POST retries, batch
size, state categories, WIQL escaping)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.azure_devops import AzureDevOpsConfig, AzureDevOpsConnector
from connectors.base import ConnectorContext
from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from tests.integration.connectors.contract import PLANTED_TOKEN, ConnectorContract

PAGE = 5  # batch_size in tests: "several pages" with a handful of items
TOP = 7  # wiql_top in tests: the contract's larger seeds need more than one WIQL window


class AdoHarness:
    """The contract's Harness for Azure DevOps."""

    page_size = PAGE

    def __init__(self, sandbox: AzureDevOpsSandbox, cache_dir: Path) -> None:
        self.sandbox = sandbox
        self.cache_dir = cache_dir
        self.ids: dict[str, int] = {}

    def seed(self, count: int, *, start: datetime, step: timedelta) -> list[str]:
        out = []
        for n in range(count):
            item_id = self.sandbox.add_item(
                f"Story {n}",
                changed=start + step * n,
                fields={"Microsoft.VSTS.Common.Priority": 2},
            )
            external_id = self.sandbox.external_id(item_id)
            self.ids[external_id] = item_id
            out.append(external_id)
        return out

    def update(
        self, external_id: str, *, at: datetime, title: str | None = None, done: bool | None = None
    ) -> None:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if done is not None:
            changes["state"] = "Closed" if done else "Active"
        self.sandbox.update_item(self.ids[external_id], changed=at, **changes)

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> AzureDevOpsConnector:
        values: dict[str, Any] = {
            "organization_url": self.sandbox.organization_url,
            "project": self.sandbox.project,
            "batch_size": PAGE,
            "wiql_top": TOP,
            "request_timeout": 2.0,
            **config,
        }
        ctx = ConnectorContext(
            integration_id="test",
            token=SecretStr(token),
            cache_dir=self.cache_dir,
            max_retries=3,
            sleep_cap=5.0,
        )
        return AzureDevOpsConnector(AzureDevOpsConfig.model_validate(values), ctx)


@pytest.fixture
def sandbox() -> Iterator[AzureDevOpsSandbox]:
    with AzureDevOpsSandbox(token=PLANTED_TOKEN) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        yield server


@pytest.fixture
def harness(sandbox: AzureDevOpsSandbox, tmp_path: Path) -> AdoHarness:
    return AdoHarness(sandbox, tmp_path)


class TestAzureDevOpsContract(ConnectorContract):
    pass

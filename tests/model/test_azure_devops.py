"""The model test of convergence for Azure DevOps Boards (tests/model/framework.py): one project,
one scope per configured work item type (`work_item_types` widened and narrowed), items whose type
is changed (the same id, another scope), deletions into the Recycle Bin (gone from WIQL, `null` in
a batch with errorPolicy omit) and restores from it, small WIQL `$top` and result caps (the
(ChangedDate, Id) continuation and the VS402337 bisection) and small batches drawn per example."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import strategies as st

from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from tests.model.framework import TIMEOUT, ConvergenceMachine, Driver, Env, Expected, run_model

TOKEN = "model-token"
PROJECT = "My Project"
TYPES = ("Bug", "Task", "User Story")
WIT = "/_apis/wit/"  # every WIQL, batch and states request


def scope_of(work_item_type: str) -> str:
    """The connector's cursor scope of one type (docs/trackers/azure_devops.md#overview)."""
    return f"{PROJECT}/*/{work_item_type}"


def expected_description(stored: str | None) -> str | None:
    """docs/trackers/azure_devops.md#response-bodies: HTML converted to text. The model writes
    plain text or one `<p>` of it (runs of spaces collapse there)."""
    if not stored:
        return None
    if stored.startswith("<p>"):
        return " ".join(stored[3:-4].split()) or None
    return stored.strip() or None


class AzureDevOpsDriver(Driver):
    source = "azure_devops"
    scopes = tuple(scope_of(t) for t in TYPES)
    granularity = timedelta(milliseconds=1)  # ChangedDate is kept to the millisecond
    can_move = True  # "Change type": the same id, another type, so another scope
    can_restore = True  # from the Recycle Bin

    def __init__(self) -> None:
        super().__init__()
        self._sandbox = AzureDevOpsSandbox(token=TOKEN, project=PROJECT, now=self.now)
        self._sandbox.timeout_stall = 0.8  # > the config's request_timeout
        self.knob: dict[str, Any] = {}
        self.bin: list[tuple[int, dict[str, Any]]] = []  # the Recycle Bin, newest last

    @property
    def sandbox(self) -> AzureDevOpsSandbox:
        return self._sandbox

    @staticmethod
    def knobs() -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {
                "batch_size": st.integers(2, 5),
                "wiql_top": st.sampled_from([3, 5, 19_000]),
                # a server that refuses results above this many (VS402337), maybe before $top
                "wiql_cap": st.sampled_from([20_000, 20_000, 6, 11]),
                "cap_ignores_top": st.booleans(),
            }
        )

    def start(self, knobs: dict[str, Any]) -> None:
        self.knob = knobs
        self._sandbox.wiql_cap = knobs["wiql_cap"]
        self._sandbox.cap_ignores_top = knobs["cap_ignores_top"]
        self._sandbox.start()

    def config(self, scopes: Sequence[str]) -> dict[str, Any]:
        return {
            "organization_url": self._sandbox.organization_url,
            "project": PROJECT,
            "token": TOKEN,
            "work_item_types": [s.rsplit("/", 1)[1] for s in scopes],
            "batch_size": self.knob["batch_size"],
            "wiql_top": self.knob["wiql_top"],
            "request_timeout": 0.5,
        }

    def ref(self, item_id: int) -> str:
        return self._sandbox.external_id(item_id)

    def _id(self, ref: str) -> int:
        return int(ref.rsplit("/", 1)[1])

    def _states(self, work_item_type: str) -> list[str]:
        return [name for name, _, _ in self._sandbox.states[work_item_type.casefold()]]

    def _state_fields(self, work_item_type: str, choice: int) -> dict[str, Any]:
        """A state of the type, and (every other choice) the `Blocked` tag on or off."""
        states = self._states(work_item_type)
        fields: dict[str, Any] = {"System.State": states[choice % len(states)]}
        if (choice // len(states)) % 2:
            fields["System.Tags"] = "Blocked; ui" if choice % 3 else ""
        return fields

    def create(self, scope: str, title: str, choice: int, at: datetime) -> str:
        work_item_type = scope.rsplit("/", 1)[1]
        fields = self._state_fields(work_item_type, choice)
        state = fields.pop("System.State")
        item_id = self._sandbox.add_item(
            title, changed=at, work_item_type=work_item_type, state=state, fields=fields
        )
        return self.ref(item_id)

    def edit(self, ref: str, text: str, choice: int, at: datetime) -> None:
        if choice % 3 == 0:
            self._sandbox.update_item(self._id(ref), changed=at, title=text)
        else:
            description = text if choice % 3 == 1 else f"<p>{text}</p>"
            self._sandbox.update_item(self._id(ref), changed=at, description=description)

    def set_status(self, ref: str, choice: int, at: datetime) -> None:
        item_id = self._id(ref)
        work_item_type = self._sandbox.items[item_id]["fields"]["System.WorkItemType"]
        self._sandbox.update_item(
            item_id, changed=at, fields=self._state_fields(work_item_type, choice)
        )

    def move(self, ref: str, scope: str, at: datetime) -> str | None:
        """Change the item's type; a state the new type lacks becomes its first."""
        item_id = self._id(ref)
        fields = self._sandbox.items[item_id]["fields"]
        work_item_type = scope.rsplit("/", 1)[1]
        if fields["System.WorkItemType"] == work_item_type:
            return None
        states = self._states(work_item_type)
        state = fields["System.State"] if fields["System.State"] in states else states[0]
        self._sandbox.update_item(
            item_id,
            changed=at,
            fields={"System.WorkItemType": work_item_type, "System.State": state},
        )
        return ref

    def delete(self, ref: str) -> None:
        item_id = self._id(ref)
        with self._sandbox._data_lock:
            self.bin.append((item_id, self._sandbox.items[item_id]))
            self._sandbox.delete_item(item_id)

    def restore(self, at: datetime) -> str | None:
        """Restore the item deleted last: back with its id and a new revision."""
        if not self.bin:
            return None
        item_id, item = self.bin.pop()
        with self._sandbox._data_lock:
            self._sandbox.items[item_id] = item
            self._sandbox.update_item(item_id, changed=at)
        return self.ref(item_id)

    def corrupt(self, ref: str) -> None:
        self._sandbox.garble(self._id(ref), "System.Title", 5)

    def heal(self) -> None:
        with self._sandbox._data_lock:
            self._sandbox.garbled.clear()

    def inject(self, kind: str, count: int) -> None:
        if kind == "short":
            # a batch answer that leaves ids out without a `null` for them
            self._sandbox.short_batch_next(count)
        elif kind == "timeout":
            self._sandbox.fail_next("timeout", 1, path_contains=WIT)
        else:
            self._sandbox.fail_next(kind, count, retry_after=0, path_contains=WIT)  # type: ignore[arg-type]

    def _status(self, fields: dict[str, Any]) -> str:
        """docs/trackers/azure_devops.md#status-mapping, for the states above."""
        category = self._sandbox.category_of(fields["System.WorkItemType"], fields["System.State"])
        if category == "InProgress":
            tags = [t.strip().casefold() for t in str(fields.get("System.Tags", "")).split(";")]
            if "blocked" in tags:
                return "blocked"
            return "pr_ready" if "review" in fields["System.State"].casefold() else "in_progress"
        return {
            "Proposed": "queued",
            "Resolved": "pr_ready",
            "Completed": "completed",
            "Removed": "cancelled",
        }[str(category)]

    def live(self) -> dict[str, Expected]:
        with self._sandbox._data_lock:
            out: dict[str, Expected] = {}
            for item_id, item in self._sandbox.items.items():
                fields = item["fields"]
                out[self.ref(item_id)] = Expected(
                    external_id=self.ref(item_id),
                    external_key=str(item_id),
                    title=fields.get("System.Title", ""),
                    description=expected_description(fields.get("System.Description")),
                    status=self._status(fields),
                    scope=scope_of(fields["System.WorkItemType"]),
                    updated_at=fields["System.ChangedDate"],
                )
            return out


class AzureDevOpsMachine(ConvergenceMachine):
    driver_class = AzureDevOpsDriver


@pytest.mark.timeout(TIMEOUT)
def test_azure_devops_converges(model_env: Env) -> None:
    run_model(AzureDevOpsMachine, model_env)

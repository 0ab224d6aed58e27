"""deploy/grafana: the shipped dashboard and its provisioning.

Every SQL query of the dashboard (its panels' and its variable's) runs, with Grafana's macros
expanded as Grafana expands them, against a migrated database the demo's four sandboxes filled,
as a login role of the read-only `c9_dashboard` group: each must answer rows, without error. The
dashboard JSON is read back through Grafana's own models (grafana-foundation-sdk), so a key
Grafana does not know (a typo, a wrong nesting) is caught; its Prometheus queries name only
metrics the worker exports."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client import REGISTRY

from tests.integration.test_roles import ROLES_SQL, url_as
from worker import demo, sync, telemetry  # noqa: F401  (sync, telemetry: the worker's metrics)
from worker.settings import Settings

GRAFANA = Path(__file__).parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "c9-sync.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "c9-sync.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "c9-sync.yaml"
COMPOSE = GRAFANA.parent / "compose.yaml"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every target of that data source type."""
    for panel in panels():
        for target in panel["targets"]:
            if target["datasource"]["type"] == kind:
                yield panel["title"], target


def datasource_uids() -> dict[str, str]:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return {d["uid"]: d["type"] for d in provisioned}


# ---------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------
def keys_lost(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Paths of our JSON that Grafana's model drops or changes on a round trip."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return [path or "/"]
        lost = []
        for key, value in ours.items():
            if key not in theirs:
                lost.append(f"{path}/{key}")
            else:
                lost += keys_lost(value, theirs[key], f"{path}/{key}")
        return lost
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [path]
        return [
            p
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for p in keys_lost(a, b, f"{path}/{i}")
        ]
    return [] if ours == theirs else [path]


def test_the_dashboard_reads_back_through_grafanas_own_model_without_losing_a_key() -> None:
    ours = dashboard()
    theirs = json.loads(json.dumps(Dashboard.from_json(ours), cls=JSONEncoder))
    assert keys_lost(ours, theirs) == []
    assert ours["uid"] and ours["title"] and ours["schemaVersion"] >= 39


def test_panels_have_unique_ids_fit_the_grid_and_do_not_overlap() -> None:
    every = dashboard()["panels"]
    assert len({p["id"] for p in every}) == len(every)
    taken: set[tuple[int, int]] = set()
    for panel in every:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_panel_and_query_names_a_provisioned_data_source() -> None:
    uids = datasource_uids()
    assert uids == {
        "c9-postgres": "grafana-postgresql-datasource",
        "c9-prometheus": "prometheus",
    }
    for panel in panels():
        assert uids[panel["datasource"]["uid"]] == panel["datasource"]["type"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    for variable in dashboard()["templating"]["list"]:
        assert uids[variable["datasource"]["uid"]] == variable["datasource"]["type"]
    # What a dashboard needs to show, per the issue: the queue, status counts, flow, health.
    titles = " | ".join(p["title"] for p in panels()).lower()
    for needed in ("work queue", "by status", "throughput", "completion time", "last success",
                   "runs by outcome", "rate-limit", "run duration"):  # fmt: skip
        assert needed in titles, needed


def test_provisioning_loads_the_dashboards_compose_mounts() -> None:
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./")
    )
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    # Every `${VAR}` of the data sources is set for Grafana's process.
    wanted = set(re.findall(r"\$\{(\w+)\}", DATASOURCES.read_text()))
    assert wanted and wanted <= set(grafana["environment"])
    assert grafana["environment"]["C9_GRAFANA_PG_USER"] == "grafana"


def test_prometheus_queries_name_only_metrics_the_worker_exports() -> None:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = {
        metric.name + suffix
        for metric in REGISTRY.collect()
        if metric.name.startswith("c9_")
        for suffix in suffixes.get(metric.type, ("",))
    }
    assert "c9_sync_runs_total" in names  # the worker's metrics are registered
    used = set()
    for title, target in queries("prometheus"):
        found = set(re.findall(r"\bc9_\w+", target["expr"]))
        assert found, title
        used |= found
    assert used <= names, used - names
    prometheus = yaml.safe_load((GRAFANA.parent / "prometheus" / "prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"worker:{Settings().http_port}"]


# ---------------------------------------------------------------------------------------------
# Every SQL query, as the dashboard role, on demo data
# ---------------------------------------------------------------------------------------------
def grafana_sql(text: str, teams: list[uuid.UUID], now: datetime) -> str:
    """Grafana's expansion of the macros and the variable the dashboard uses: `$__timeFilter(c)`
    is `c BETWEEN '<from>' AND '<to>'` (the dashboard's default range, 30 days), a multi-value
    variable is its values quoted and comma-separated."""
    start, end = (now - timedelta(days=30)).isoformat(), now.isoformat()
    text = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", text)
    text = text.replace("$team", ",".join(f"'{t}'" for t in teams))
    assert "$" not in text, f"a macro this test does not expand: {text}"
    return text


@pytest.fixture
async def demo_filled(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """The demo's team, agents and four integrations, synced from the demo sandboxes."""
    monkeypatch.setenv("AZURE_DEVOPS_CACHE_DIR", str(tmp_path / "ado-cache"))
    servers = []
    try:
        configs = {}
        for source, cls in demo.SANDBOXES.items():
            server = cls()
            server.start(0)
            servers.append(server)
            server.seed_demo()
            configs[source] = server.demo_config()
        _, ids = await demo.seed(pool, configs)
        for integration_id in ids:
            result = await sync.run_integration(
                pool, integration_id, Settings(), environ={}, options=sync.RunOptions(force=True)
            )
            assert result.outcome == "succeeded", result.summary()
        yield
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def dashboard_login(db_url: str, pg_url: str) -> AsyncIterator[str]:
    name = f"c9t_grafana_{uuid.uuid4().hex[:10]}"
    owner = await asyncpg.connect(db_url)
    try:
        await owner.execute(ROLES_SQL)
        await owner.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'pw' IN ROLE c9_dashboard")
    finally:
        await owner.close()
    yield url_as(db_url, name, "pw")
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
        )
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
    finally:
        await admin.close()


async def test_every_sql_query_answers_rows_as_the_dashboard_role_on_demo_data(
    demo_filled: None, dashboard_login: str
) -> None:
    conn = await asyncpg.connect(dashboard_login)
    try:
        now = datetime.now(UTC)
        [variable] = dashboard()["templating"]["list"]
        options = await conn.fetch(variable["query"])
        assert [r["__text"] for r in options] == ["Demo Team"]
        teams = [r["__value"] for r in options]
        answered = {}
        for title, target in queries("grafana-postgresql-datasource"):
            rows = await conn.fetch(grafana_sql(target["rawSql"], teams, now))
            # A row of NULLs (an aggregate over nothing) is no answer either.
            answered[title] = sum(any(v is not None for v in r.values()) for r in rows)
            if rows and target["format"] == "time_series":
                # Grafana's shape for a long time series: a time, a series name, a value.
                assert list(rows[0].keys()) == ["time", "metric", "value"], title
        assert all(answered.values()), f"panels with no row on demo data: {answered}"
        assert len(answered) >= 8
        # The role Grafana uses cannot write, whatever an editor types into a panel.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM work_items")
    finally:
        await conn.close()

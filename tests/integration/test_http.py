"""worker.http: /healthz, /readyz, /metrics."""

from __future__ import annotations

import httpx

from worker import http, telemetry


async def test_endpoints_answer() -> None:
    reasons: list[str | None] = [None]

    async def ready() -> str | None:
        return reasons[0]

    server = await http.serve("127.0.0.1", 0, ready)
    port = server.sockets[0].getsockname()[1]
    telemetry.RUNS.labels(source="github", outcome="succeeded").inc()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            reasons[0] = "database: ConnectionRefusedError"
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503 and "ConnectionRefusedError" in not_ready.text
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert 'c9_sync_runs_total{outcome="succeeded",source="github"}' in metrics.text
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/healthz")).status_code == 405
    finally:
        server.close()
        await server.wait_closed()

"""Batching seen through the HTTP API: concurrent requests share device calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.compose import create_app
from app.core.runtime import ModelRuntime
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _post_concurrently(
    settings: Settings, bodies: list[object]
) -> tuple[list[httpx.Response], ModelRuntime]:
    runtime = ModelRuntime(settings)
    app = create_app(settings, runtime)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # Warm-up runs on the backend directly, so every call counted here is a request's.
            responses = await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))
    return list(responses), runtime


async def test_concurrent_requests_share_device_calls(artifacts: Path) -> None:
    bodies = [{**EXAMPLE_RECORD, "median_income": 1 + i % 12} for i in range(32)]
    settings = Settings(artifacts=artifacts, device="cpu", max_delay_ms=50)
    responses, runtime = await _post_concurrently(settings, bodies)
    assert [r.status_code for r in responses] == [200] * 32
    assert runtime.batcher is not None
    stats = runtime.batcher.stats
    assert stats.rows == 32
    assert stats.device_calls < 32 // 4  # on average, at least 4 requests per call
    # Each client got its own answer: the same record alone gives the same value (to the
    # float32 rounding of a matmul at another batch size: one unit in the last place is 3
    # cents at $300k; another record's answer would be thousands of dollars away).
    alone, _ = await _post_concurrently(settings, [bodies[5]])
    value = alone[0].json()["house_value"]
    assert responses[5].json()["house_value"] == pytest.approx(value, rel=1e-6)


async def test_batching_off_gives_every_request_its_own_call(artifacts: Path) -> None:
    bodies = [{**EXAMPLE_RECORD, "median_income": 1 + i} for i in range(8)]
    settings = Settings(artifacts=artifacts, device="cpu", max_batch_size=1)
    responses, runtime = await _post_concurrently(settings, bodies)
    assert [r.status_code for r in responses] == [200] * 8
    assert runtime.batcher is not None
    assert runtime.batcher.stats.device_calls == 8


async def test_a_large_request_is_split_and_answered_in_order(artifacts: Path) -> None:
    records = [{**EXAMPLE_RECORD, "median_income": 1 + (i % 13) / 2} for i in range(150)]
    settings = Settings(artifacts=artifacts, device="cpu", max_instances=200)
    (batch,), runtime = await _post_concurrently(settings, [{"instances": records}])
    singles, _ = await _post_concurrently(settings, records[:13])
    values = batch.json()["predictions"]
    assert len(values) == 150
    assert values[:13] == pytest.approx([s.json()["house_value"] for s in singles], rel=1e-6)
    assert values[13:26] == values[:13]  # the pattern repeats every 13 records
    assert runtime.batcher is not None
    assert runtime.batcher.stats.device_calls >= 3  # 150 rows in calls of at most 64

"""grpc.health.v1 ``Watch``: each change of status, also one made while the watcher was not
reading; on an unknown service SERVICE_UNKNOWN, then the stream stays open whatever the
server's status does, until the server stops (as the protocol asks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from grpc_health.v1 import health_pb2

from app.core.runtime import Status
from app.grpc.calls import Throttled
from app.grpc.health import HealthService


class Runtime:
    """The runtime's status and its changes, switched by the test."""

    def __init__(self) -> None:
        self.status = Status.READY
        self._changed = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.status is Status.READY

    def become(self, status: Status) -> None:
        self.status = status
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def status_change(self) -> None:
        await self._changed.wait()


async def rest(stream: AsyncIterator[bytes]) -> list[int]:
    return [health_pb2.HealthCheckResponse.FromString(m).status async for m in stream]


def test_an_unknown_service_hears_nothing_more_until_the_server_stops() -> None:
    async def watch() -> tuple[int, list[int]]:
        runtime = Runtime()
        service = HealthService(runtime, Throttled())  # type: ignore[arg-type]
        request = health_pb2.HealthCheckRequest(service="nope").SerializeToString()
        stream = service.watch(Any, request)  # type: ignore[arg-type]
        first = health_pb2.HealthCheckResponse.FromString(await anext(stream)).status
        after = asyncio.ensure_future(rest(stream))
        for status in (Status.FAILING, Status.READY):
            runtime.become(status)
            await asyncio.sleep(0)  # one loop pass: the watcher sees each change on its own
        assert not after.done()  # still open after two changes
        runtime.become(Status.STOPPING)
        return first, await asyncio.wait_for(after, 30)

    first, more = asyncio.run(watch())
    assert first == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    assert more == []  # the stream ended at STOPPING, and said nothing before


def test_a_known_service_hears_each_change() -> None:
    async def watch() -> list[int]:
        runtime = Runtime()
        service = HealthService(runtime, Throttled())  # type: ignore[arg-type]
        request = health_pb2.HealthCheckRequest(service="").SerializeToString()
        stream = service.watch(Any, request)  # type: ignore[arg-type]
        seen = [health_pb2.HealthCheckResponse.FromString(await anext(stream)).status]
        runtime.become(Status.FAILING)
        seen.append(health_pb2.HealthCheckResponse.FromString(await anext(stream)).status)
        runtime.become(Status.STOPPING)
        return seen + await asyncio.wait_for(rest(stream), 30)

    SERVING = health_pb2.HealthCheckResponse.SERVING
    NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
    assert asyncio.run(watch()) == [SERVING, NOT_SERVING]  # FAILING, then STOPPING: no change

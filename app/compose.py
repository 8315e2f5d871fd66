"""The composition root: every object of the service, built once, here and nowhere else.

One runtime (the model, its device thread, its batcher, its metrics), one inference path on it
(``app.core.inference``), one set of keys and one request recorder, shared by both doors: the
HTTP application (``app.http.app``) and, when ``HOUSING_GRPC_PORT`` is not 0, the gRPC server
(``app.grpc.server``). ``app.process.server`` runs what this builds; the tests build the HTTP
application alone with ``create_app``.

The lifespan (run by uvicorn, on the HTTP app) starts the runtime -- load, warm-up, readiness
-- and the artifact watch (``HOUSING_MODEL_POLL_S``), and stops both.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from app.core.inference import InferencePath
from app.core.keys import Keys
from app.core.reload import ArtifactWatch
from app.core.runtime import ModelRuntime
from app.errors import StartupError
from app.grpc.calls import Throttled
from app.grpc.health import HealthService
from app.grpc.server import GrpcDoor, InferenceCalls
from app.grpc.service import InferenceService
from app.http.app import Lifespan, build_http_app
from app.http.guard import Guard
from app.observe.access import RequestRecorder
from app.settings import Settings

logger = logging.getLogger("housing.app")


@dataclass(frozen=True)
class Service:
    """The objects of one server process."""

    settings: Settings
    runtime: ModelRuntime
    plane: InferencePath
    http: FastAPI
    grpc: GrpcDoor | None


def compose(
    settings: Settings,
    runtime: ModelRuntime | None = None,
    *,
    grpc_host: str | None = None,
    shared_port: bool = False,
) -> Service:
    """The service for ``settings``, on ``runtime`` (a test seam; default: a new one). gRPC
    listens on ``grpc_host`` (default ``HOUSING_HOST``) when ``HOUSING_GRPC_PORT`` is set,
    sharing its port with other workers (``SO_REUSEPORT``) when ``shared_port``."""
    runtime = runtime or ModelRuntime(settings)
    plane = InferencePath(runtime)
    keys = Keys.from_settings(settings)  # key files read once, for both doors
    guard = Guard.around(keys, settings.max_body_bytes)
    recorder = RequestRecorder(runtime.metrics, settings.access_log)
    http = build_http_app(settings, runtime, plane, guard, recorder, _lifespan(settings, runtime))
    door = None
    if settings.grpc_port:
        throttled = Throttled()  # one warning line a minute at most, for both services
        calls = InferenceCalls(InferenceService(plane, keys, throttled), recorder)
        health = HealthService(runtime, throttled)
        door = GrpcDoor(settings, calls, health, grpc_host or settings.host, shared_port)
    return Service(settings, runtime, plane, http, door)


def create_app(settings: Settings, runtime: ModelRuntime | None = None) -> FastAPI:
    """The HTTP application alone (no gRPC server), for tests and ASGI hosts."""
    return compose(settings.model_copy(update={"grpc_port": 0}), runtime).http


def _lifespan(settings: Settings, runtime: ModelRuntime) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        try:
            await runtime.start()
        except StartupError as exc:
            # One clean line an operator can act on; uvicorn then exits non-zero.
            logger.error("cannot start: %s", exc)
            await runtime.close()
            raise
        watch = None
        if settings.model_poll_s:
            watch = ArtifactWatch(runtime, settings.model_poll_s)
            watch.start()
        try:
            yield {"runtime": runtime}
        finally:
            if watch is not None:
                await watch.stop()
            await runtime.close()

    return lifespan

"""The gRPC server: ``grpc.aio`` in the HTTP server's event loop, on ``HOUSING_GRPC_PORT``.

It serves ``GRPCInferenceService`` (``app.rpc.service``) and ``grpc.health.v1.Health``
(``app.rpc.health``) on the runtime the HTTP routes use: one model, one batcher, one set of
metrics, two front doors. ``app.server`` starts it before the model loads (until the model is
ready its calls answer UNAVAILABLE and its health NOT_SERVING) and stops it when HTTP stops
accepting: from then on new calls are refused (UNAVAILABLE), calls in flight finish within the
grace period, and the batcher closes only after them.

Messages over ``HOUSING_MAX_BODY_BYTES`` are refused by gRPC itself (RESOURCE_EXHAUSTED); the
services decode the others themselves (``app.rpc.calls``): bytes that are not a message are
INVALID_ARGUMENT, with one warning line a minute at most for both services together. With
several worker processes (``HOUSING_WORKERS``), each binds the port with ``SO_REUSEPORT`` and
the kernel spreads connections between them; with one, the port is bound exclusively, so a port
already in use stops startup rather than sharing it with a stranger.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from app.api.guard import Guard
from app.errors import StartupError
from app.observe.access import RequestRecorder
from app.rpc.calls import Throttled
from app.rpc.health import HealthService
from app.rpc.service import InferenceService
from app.runtime import ModelRuntime

logger = logging.getLogger("housing.grpc")


class GrpcDoor:
    def __init__(self, runtime: ModelRuntime, host: str, shared_port: bool) -> None:
        self.runtime = runtime
        self.host = host
        self.shared_port = shared_port
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; StartupError (with a fix) when the port cannot be bound."""
        settings = self.runtime.settings
        limit = settings.max_body_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.so_reuseport", 1 if self.shared_port else 0),
            ]
        )
        guard = Guard.from_settings(settings)
        recorder = RequestRecorder(self.runtime.metrics, settings.access_log)
        throttled = Throttled()  # one warning line a minute at most, for both services
        server.add_generic_rpc_handlers(
            (
                InferenceService(self.runtime, guard, recorder, throttled).handler(),
                HealthService(self.runtime, throttled).handler(),
            )
        )
        address = f"{self.host}:{settings.grpc_port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise StartupError(
                f"cannot listen for gRPC on {address} ({exc}). Hint: set HOUSING_GRPC_PORT to "
                "a free port, or to 0 to turn gRPC off."
            ) from None
        await server.start()
        self._server = server
        logger.info("gRPC listening on %s:%d", self.host, self.port)

    def begin_stop(self, grace: float) -> None:
        """Refuse new calls from now on; calls in flight have ``grace`` seconds to finish."""
        if self._server is not None and self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(
                self._server.stop(grace), name="grpc-stop"
            )

    async def stopped(self) -> None:
        """Return when the calls in flight are done (or cancelled at the grace period's end)."""
        if self._stopping is not None:
            await asyncio.shield(self._stopping)

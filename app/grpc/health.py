"""``grpc.health.v1.Health``: the standard gRPC health service, for Kubernetes' ``grpc`` probes
and load balancers.

``Check`` answers SERVING when the server is ready for inference (``ModelRuntime.ready``, the
same as ``/health/ready`` and ``ServerReady``), NOT_SERVING otherwise: while the model loads,
while device calls keep failing, and from SIGTERM on. The services it knows are ``""`` (the
server), ``inference.GRPCInferenceService`` and the model's name, ``housing``; for any other
``Check`` is
NOT_FOUND, as the protocol asks, with the name's first ``ECHO_CHARS`` (64) characters in the
details: the details' length never grows with the name's. ``Watch`` sends the status, then
every change of it, and ends once the server is stopping; for an unknown service it sends
SERVICE_UNKNOWN and keeps the stream open, as the protocol asks (a service may become known
later; here none does), until the server stops. Bytes that are not a
``HealthCheckRequest`` are INVALID_ARGUMENT, decoded here as ``app.grpc.calls`` says (no
traceback, one throttled warning line).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from app.core.runtime import ModelRuntime, Status
from app.errors import RequestRefused
from app.grpc.calls import Throttled, decode
from app.grpc.service import SERVICE
from app.identity import MODEL_NAME

HEALTH_SERVICE = "grpc.health.v1.Health"
SERVICES = frozenset({"", SERVICE, MODEL_NAME})
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
ECHO_CHARS = 64


def shown(name: str) -> str:
    """A service name for the details: whole when short, else its start and its length."""
    if len(name) <= ECHO_CHARS:
        return repr(name)
    return f"{name[:ECHO_CHARS]!r}... ({len(name)} characters)"


class HealthService:
    def __init__(self, runtime: ModelRuntime, throttled: Throttled | None = None) -> None:
        self.runtime = runtime
        self.throttled = throttled or Throttled()  # the undecodable messages' warning

    async def _request(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return decode(raw, health_pb2.HealthCheckRequest, self.throttled)
        except RequestRefused as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # unreachable: abort raises

    def handler(self) -> grpc.GenericRpcHandler:
        request = None  # raw bytes: decoded by the methods (see the module)
        answer = health_pb2.HealthCheckResponse.SerializeToString
        return grpc.method_handlers_generic_handler(
            HEALTH_SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.check, request_deserializer=request, response_serializer=answer
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self.watch, request_deserializer=request, response_serializer=answer
                ),
            },
        )

    def _status(self) -> Any:
        return SERVING if self.runtime.ready else NOT_SERVING

    async def check(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request = await self._request(raw, context)
        if request.service not in SERVICES:
            known = ", ".join(repr(s) for s in sorted(SERVICES))
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown service {shown(request.service)}. Hint: ask for one of {known}.",
            )
        return health_pb2.HealthCheckResponse(status=self._status())

    async def watch(
        self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        request = await self._request(raw, context)
        if request.service not in SERVICES:
            # The spec keeps the stream open: the service may become known later (none does
            # here), so nothing more is said until the server stops.
            yield health_pb2.HealthCheckResponse(status=SERVICE_UNKNOWN)
            while self.runtime.status is not Status.STOPPING:
                await self.runtime.status_change()
            return
        while True:
            yield health_pb2.HealthCheckResponse(status=self._status())
            if self.runtime.status is Status.STOPPING:
                return  # the last word: the server is going away
            await self.runtime.status_change()

"""``grpc.health.v1.Health``: the standard gRPC health service, for Kubernetes' ``grpc`` probes
and load balancers.

``Check`` answers SERVING when the server is ready for inference (``ModelRuntime.ready``, the
same as ``/health/ready`` and ``ServerReady``), NOT_SERVING otherwise: while the model loads,
while device calls keep failing, and from SIGTERM on. The services it knows are ``""`` (the
server), ``inference.GRPCInferenceService`` and the model's name, ``housing``; for any other
``Check`` is NOT_FOUND, as the protocol asks, with the name's first ``app.errors.ECHO_CHARS``
(64) characters in the details: the details' length never grows with the name's. ``Watch``
sends the status, then each change of it (one made while an answer was on its way too),
and ends once the server is stopping; for an
unknown service it sends SERVICE_UNKNOWN and keeps the stream open, as the protocol asks (a
service may become known later; here none does), until the server stops. Bytes that are not a
``HealthCheckRequest`` are INVALID_ARGUMENT, decoded here as ``app.grpc.calls`` says (no
traceback, one throttled warning line). Health calls are not counted in the request metrics,
as HTTP's probes are not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc_health.v1 import health_pb2

from app.core.runtime import ModelRuntime, Status
from app.errors import RequestRefused, shown
from app.grpc.calls import Throttled, decode
from app.grpc.service import SERVICE
from app.grpc.wire import Call, Method, RpcError
from app.grpc.wire import Status as Code
from app.identity import MODEL_NAME

HEALTH_SERVICE = "grpc.health.v1.Health"
SERVICES = frozenset({"", SERVICE, MODEL_NAME})
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def _answer(status: int) -> bytes:
    return health_pb2.HealthCheckResponse(status=status).SerializeToString()


class HealthService:
    def __init__(self, runtime: ModelRuntime, throttled: Throttled) -> None:
        self.runtime = runtime
        self.throttled = throttled  # the undecodable messages' warning

    def methods(self) -> dict[str, Method]:
        return {
            f"/{HEALTH_SERVICE}/Check": Method(unary=self.check),
            f"/{HEALTH_SERVICE}/Watch": Method(stream=self.watch),
        }

    def _service(self, raw: bytes) -> str:
        try:
            return decode(raw, health_pb2.HealthCheckRequest, self.throttled).service
        except RequestRefused as exc:
            raise RpcError(Code.INVALID_ARGUMENT, str(exc)) from None

    def _status(self) -> int:
        return SERVING if self.runtime.ready else NOT_SERVING

    async def check(self, call: Call, raw: bytes) -> bytes:
        service = self._service(raw)
        if service not in SERVICES:
            known = ", ".join(repr(s) for s in sorted(SERVICES))
            raise RpcError(
                Code.NOT_FOUND, f"unknown service {shown(service)}. Hint: ask for one of {known}."
            )
        return _answer(self._status())

    async def watch(self, call: Call, raw: bytes) -> AsyncIterator[bytes]:
        service = self._service(raw)
        if service not in SERVICES:
            # The spec keeps the stream open: the service may become known later (none does
            # here), so nothing more is said until the server stops.
            yield _answer(SERVICE_UNKNOWN)
            while self.runtime.status is not Status.STOPPING:
                await self.runtime.status_change()
            return
        sent = None
        while True:
            status = self._status()
            if status != sent:  # also a change made while the last answer was on its way
                sent = status
                yield _answer(status)
                continue
            if self.runtime.status is Status.STOPPING:
                return  # the last word was said: the server is going away
            await self.runtime.status_change()

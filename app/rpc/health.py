"""``grpc.health.v1.Health``: the standard gRPC health service, for Kubernetes' ``grpc`` probes
and load balancers.

``Check`` answers SERVING when the server is ready for inference (``ModelRuntime.ready``, the
same as ``/health/ready`` and ``ServerReady``), NOT_SERVING otherwise: while the model loads,
while device calls keep failing, and from SIGTERM on. The services it knows are ``""`` (the
server), ``inference.GRPCInferenceService`` and the model's name, ``housing``; any other is
NOT_FOUND, as the protocol asks. ``Watch`` sends the status, then every change of it, and ends
once the server is stopping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from app.api.models import MODEL_NAME
from app.rpc.service import SERVICE
from app.runtime import ModelRuntime, Status

HEALTH_SERVICE = "grpc.health.v1.Health"
SERVICES = frozenset({"", SERVICE, MODEL_NAME})
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService:
    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime

    def handler(self) -> grpc.GenericRpcHandler:
        request = health_pb2.HealthCheckRequest.FromString
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

    async def check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request.service not in SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status())

    async def watch(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        if request.service not in SERVICES:
            yield health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            )
            return
        while True:
            yield health_pb2.HealthCheckResponse(status=self._status())
            if self.runtime.status is Status.STOPPING:
                return  # the last word: the server is going away
            await self.runtime.status_change()

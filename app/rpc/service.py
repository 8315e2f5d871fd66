"""``inference.GRPCInferenceService``: the Open Inference Protocol's calls over gRPC.

Every call goes through the same parts as ``POST /v2/models/housing/infer``: the API key
(``authorization: Bearer <key>`` or ``x-api-key`` metadata), the tensors' checks and the
feature rules (``app.api.oip.InferEndpoint.decode_request``), the batcher and the model in
service, the ranges and the outputs asked for. Failures are the call's status, with the
reason in its details, never a crash:

=====================  ===================================================================
INVALID_ARGUMENT       bytes that are not the method's message (``app.rpc.calls``: no
                       traceback, one throttled warning line), or a tensor, parameter or row
                       the protocol or the feature rules refuse
UNAUTHENTICATED        a missing or wrong API key
NOT_FOUND              a model other than ``housing``, or a version other than the served one
RESOURCE_EXHAUSTED     a message over ``HOUSING_MAX_BODY_BYTES`` (refused by gRPC itself)
UNAVAILABLE            the queue is full, or the server is starting or stopping: retry later
DEADLINE_EXCEEDED      the client's deadline, or ``HOUSING_REQUEST_TIMEOUT_S``, passed first
INTERNAL               the device failed (the details carry the error id of the log line)
=====================  ===================================================================

UNAVAILABLE rather than RESOURCE_EXHAUSTED for a full queue: it is the code gRPC clients and
retry policies treat as transient, as HTTP's 503 is. A client's deadline is honoured by
cancellation: gRPC cancels the call when it passes, and its rows still queued are dropped
unrun. Each answer's trailing metadata has ``x-request-id`` (the caller's, if it sent a plain
one) and ``x-model-version``. Calls are counted in the same metrics as HTTP, with the method's
path as ``route`` and the status code's name as ``status`` -- however they end: refused,
answered, or cancelled (CANCELLED: the client went away, HTTP's 499; DEADLINE_EXCEEDED: its
deadline passed, HTTP's 504), also while their message is still arriving, since the service
reads it itself; the readiness calls are not counted, as the HTTP probes are not. The API key
is checked on the call's metadata before its message is received.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import orjson
from google.protobuf.message import Message

from app.api.endpoint import dollars
from app.api.guard import Guard, Headers
from app.api.models import MODEL_NAME
from app.api.oip import SERVER_NAME, InferEndpoint, server_version
from app.errors import RequestRefused, refusal_reason
from app.observe.access import RequestRecorder
from app.observe.logs import request_id_from
from app.observe.tracing import RequestTrace
from app.protocols import oip
from app.rpc import open_inference_grpc_pb2 as pb
from app.rpc import tensors
from app.rpc.calls import Throttled, ended, read_message
from app.runtime import ModelRuntime
from app.served import Served

logger = logging.getLogger("housing.grpc")

SERVICE = "inference.GRPCInferenceService"
INFER = f"/{SERVICE}/ModelInfer"
JSON = "application/json"
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Handler = Callable[[Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]
# What grpc.aio calls for a client-streaming method: the call's raw messages, and its context.
Reader = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]


def metadata_headers(context: grpc.aio.ServicerContext[Any, Any]) -> Headers:
    """The call's text metadata as HTTP-style headers (lower-case bytes keys)."""
    return {
        key.encode("latin-1"): value.encode("latin-1")
        for key, value in context.invocation_metadata() or ()
        if isinstance(value, str)
    }


class InferenceService:
    """The calls of ``GRPCInferenceService`` on ``runtime``, with the REST route's checks."""

    def __init__(
        self,
        runtime: ModelRuntime,
        guard: Guard,
        recorder: RequestRecorder,
        throttled: Throttled | None = None,
    ) -> None:
        self.runtime = runtime
        self.guard = guard
        self.recorder = recorder
        self.endpoint = InferEndpoint(runtime, guard, recorder)
        self.throttled = throttled or Throttled()  # the undecodable messages' warning

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(reader: Reader, answer: type[Message]) -> grpc.RpcMethodHandler:
            # Client-streaming and no deserializer: the service reads the message (app.rpc.calls).
            return grpc.stream_unary_rpc_method_handler(
                reader, request_deserializer=None, response_serializer=answer.SerializeToString
            )

        read = self._reading
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ServerLive": unary(
                    read(self.server_live, pb.ServerLiveRequest, False), pb.ServerLiveResponse
                ),
                "ServerReady": unary(
                    read(self.server_ready, pb.ServerReadyRequest, False), pb.ServerReadyResponse
                ),
                "ModelReady": unary(
                    read(self.model_ready, pb.ModelReadyRequest, False), pb.ModelReadyResponse
                ),
                "ServerMetadata": unary(
                    read(self.server_metadata, pb.ServerMetadataRequest, True),
                    pb.ServerMetadataResponse,
                ),
                "ModelMetadata": unary(
                    read(self.model_metadata, pb.ModelMetadataRequest, True),
                    pb.ModelMetadataResponse,
                ),
                # Reads its own message (after the key), measured, traced, with its request id.
                "ModelInfer": unary(self.model_infer, pb.ModelInferResponse),
            },
        )

    def _reading(self, fn: Handler[Req, Resp], given: type[Req], measured: bool) -> Reader:
        """``fn`` on the call's message, decoded; when ``measured``, counted in the request
        metrics under its method's path, however it ends."""
        method = f"/{SERVICE}/{given.DESCRIPTOR.name.removesuffix('Request')}"

        async def call(requests: Any, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                try:
                    request = await read_message(context, given, self.throttled)
                except RequestRefused as exc:
                    await context.abort(CODES[exc.status], str(exc))
                    raise  # unreachable: abort raises
                return await fn(request, context)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:  # the client went away, or its deadline passed
                code = ended(context)
                raise
            finally:
                if measured:
                    given_id = metadata_headers(context).get(b"x-request-id")
                    request_id = request_id_from(
                        None if given_id is None else given_id.decode("latin-1")
                    )
                    peer = context.peer() if self.recorder.access_log else ""
                    self.recorder.finish_rpc(method, code.name, started, request_id, peer)

        return call

    # Health and metadata.

    async def server_live(self, request: pb.ServerLiveRequest, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.runtime.ready)

    async def model_ready(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        await self._find(request.name, request.version, context)
        return pb.ModelReadyResponse(ready=self.runtime.ready)

    async def server_metadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=server_version())

    async def model_metadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        await self._find(request.name, request.version, context)
        model = self.runtime.model
        if model is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model is not loaded yet")
        assert model is not None
        compiled = model.manifest.compiled
        target = compiled.target if compiled is not None else "cpu"
        answer = pb.ModelMetadataResponse(
            name=MODEL_NAME,
            versions=[model.version],
            platform="neuronx_torchscript" if target == "neuron" else "pytorch_libtorch",
        )
        for entry in oip.input_metadata():
            answer.inputs.add(**entry)
        for entry in oip.output_metadata(model.intervals.table is not None):
            answer.outputs.add(**entry)
        return answer

    async def _find(self, name: str, version: str, context: Any) -> None:
        try:
            self.check_model(name, version)
        except RequestRefused as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))

    def check_model(self, name: str, version: str) -> None:
        """RequestRefused (404) for a model or version this server does not serve."""
        if name != MODEL_NAME:
            raise RequestRefused(404, f"unknown model {name!r}: this server serves {MODEL_NAME!r}")
        model = self.runtime.model
        if version and model is not None and version != model.version:
            raise RequestRefused(
                404,
                f"model {MODEL_NAME!r} has no version {version!r}; version {model.version} is "
                "served (leave model_version empty for the one in service)",
            )

    # Inference.

    async def model_infer(
        self, requests: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        started = time.perf_counter()
        headers = metadata_headers(context)
        given = headers.get(b"x-request-id")
        request_id = request_id_from(None if given is None else given.decode("latin-1"))
        tracing = self.runtime.tracing
        trace = None if tracing is None else tracing.request_rpc(INFER, headers)
        code = grpc.StatusCode.OK
        model: Served | None = None
        try:
            self.guard.check_key(headers)  # before a byte of the message is received
            request = await read_message(context, pb.ModelInferRequest, self.throttled)
            answer = await self._infer(request, trace, request_id)
            model = answer[1]
            return answer[0]
        except asyncio.CancelledError:  # gRPC cancelled the call: deadline passed, client gone
            code = ended(context)
            raise
        except grpc.aio.AbortError:  # read_message answered a call without a message
            code = context.code() or grpc.StatusCode.UNKNOWN
            self.runtime.metrics.observe_refusal("invalid")
            raise
        except Exception as exc:  # noqa: BLE001 - every failure gets a clean status
            reply = self.endpoint.refuse(exc, request_id)
            code = CODES.get(reply.status, grpc.StatusCode.INTERNAL)
            self.runtime.metrics.observe_refusal(refusal_reason(exc, reply.status))
            body = orjson.loads(reply.body)
            details = str(body["error"])
            if "error_id" in body:
                details += f" (error_id {body['error_id']})"
            context.set_trailing_metadata((("x-request-id", request_id),))
            await context.abort(code, details)
            raise  # unreachable: abort raises
        finally:
            peer = context.peer() if self.recorder.access_log else ""
            self.recorder.finish_rpc(INFER, code.name, started, request_id, peer)
            if trace is not None:
                version = None if model is None else model.version
                trace.end_rpc(code.value[0], code.name, request_id, version)
            if model is not None:
                context.set_trailing_metadata(
                    (("x-request-id", request_id), ("x-model-version", model.version))
                )

    async def _infer(
        self,
        request: pb.ModelInferRequest,
        trace: RequestTrace | None,
        request_id: str,
    ) -> tuple[pb.ModelInferResponse, Served]:
        runtime = self.runtime
        self.check_model(request.model_name, request.model_version)
        model = runtime.serving()
        batcher = runtime.accepting_batcher()
        with batcher.arrivals:
            envelope, tail = tensors.envelope(request)
            decoded = self.endpoint.decode_request(model, envelope, tail)
        plan = decoded.context
        endpoint = self.endpoint
        ticket = endpoint.submit(batcher, model, decoded, trace)
        values = dollars(await ticket.result())  # gRPC cancels this task to abandon it
        ranges, flags = endpoint.finish(model, decoded, plan.coverage, ticket, values, trace)
        capture = runtime.capture
        if capture is not None and capture.sampled():
            records = orjson.dumps({"instances": oip.records_from(envelope, tail)})
            answer = oip.response(
                envelope, MODEL_NAME, model.version, plan.outputs, values, ranges, flags
            )
            capture.record(INFER, request_id, model.version, (JSON, records), (JSON, answer))
        answer_pb = tensors.response(
            request, MODEL_NAME, model.version, plan.outputs, values, ranges, flags
        )
        return answer_pb, model

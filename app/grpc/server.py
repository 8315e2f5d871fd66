"""The gRPC server: ``grpc.aio`` in the HTTP server's event loop, on ``HOUSING_GRPC_PORT``.

It serves ``GRPCInferenceService`` (``app.grpc.service``) and ``grpc.health.v1.Health``
(``app.grpc.health``) on the runtime the HTTP routes use: one model, one batcher, one set of
metrics, two front doors. ``app.process.server`` starts it before the model loads (until the
model is
ready its calls answer UNAVAILABLE and its health NOT_SERVING) and stops it when HTTP stops
accepting: from then on new calls are refused (UNAVAILABLE), calls in flight finish within the
grace period, and the batcher closes only after them.

Messages over ``HOUSING_MAX_BODY_BYTES`` are refused by gRPC itself (RESOURCE_EXHAUSTED); the
services decode the others themselves (``app.grpc.calls``): bytes that are not a message are
INVALID_ARGUMENT, with one warning line a minute at most for both services together. With
several worker processes (``HOUSING_WORKERS``), each binds the port with ``SO_REUSEPORT`` and
the kernel spreads connections between them; with one, the port is bound exclusively, so a port
already in use stops startup rather than sharing it with a stranger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from app.codecs.oip_infer import invalid_text
from app.core.keys import Headers
from app.errors import Refusal, StartupError, classify, refusal_text
from app.grpc.calls import Throttled, ended, read_raw
from app.grpc.health import HealthService
from app.grpc.refusals import CODES
from app.grpc.service import INFER, SERVICE, InferenceService
from app.observe.access import RequestRecorder
from app.observe.logs import request_id_from
from app.settings import Settings

logger = logging.getLogger("housing.grpc")
# What grpc.aio calls for a client-streaming method: the call's raw messages, and its context.
Reader = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]
Context = grpc.aio.ServicerContext[Any, Any]


def metadata_headers(context: Context) -> Headers:
    """The call's text metadata as HTTP-style headers (lower-case bytes keys)."""
    return {
        key.encode("latin-1"): value.encode("latin-1")
        for key, value in context.invocation_metadata() or ()
        if isinstance(value, str)
    }


class InferenceCalls:
    """``InferenceService``'s methods as grpc.aio handlers: each reads its own message
    (``app.grpc.calls``), maps refusals once (``app.grpc.refusals``), and is counted in the
    request metrics under its method's path however it ends (the readiness calls are not, as
    HTTP's probes are not). ``ModelInfer`` checks the key before it receives its message, is
    traced, and answers with ``x-request-id`` and ``x-model-version`` in its trailing
    metadata."""

    def __init__(
        self, service: InferenceService, recorder: RequestRecorder, throttled: Throttled
    ) -> None:
        self.service = service
        self.runtime = service.runtime
        self.recorder = recorder
        self.throttled = throttled
        self.max_errors = self.runtime.settings.max_error_details

    def handler(self) -> grpc.GenericRpcHandler:
        service = self.service
        methods: dict[str, tuple[Callable[[bytes], Message], bool]] = {
            "ServerLive": (service.server_live, False),
            "ServerReady": (service.server_ready, False),
            "ModelReady": (service.model_ready, False),
            "ServerMetadata": (service.server_metadata, True),
            "ModelMetadata": (service.model_metadata, True),
        }
        handlers = {
            name: self._unary(self._simple(name, fn, measured))
            for name, (fn, measured) in methods.items()
        }
        handlers["ModelInfer"] = self._unary(self.model_infer)
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    @staticmethod
    def _unary(reader: Reader) -> grpc.RpcMethodHandler:
        # Client-streaming and no deserializer: the handler reads the message (app.grpc.calls).
        return grpc.stream_unary_rpc_method_handler(reader, request_deserializer=None)

    async def _refuse(self, context: Context, exc: Exception, request_id: str) -> None:
        kind = classify(exc)
        if kind is Refusal.INVALID:
            details = invalid_text(exc, self.max_errors)
        else:
            details = refusal_text(exc, kind)
        if kind is Refusal.ERROR:
            logger.error(
                "error %s on %s", request_id, INFER, exc_info=exc, extra={"request_id": request_id}
            )
            details += f" (error_id {request_id})"
        self.runtime.metrics.observe_refusal(kind.value)
        context.set_trailing_metadata((("x-request-id", request_id),))
        await context.abort(CODES[kind], details)

    def _simple(self, name: str, fn: Callable[[bytes], Message], measured: bool) -> Reader:
        method = f"/{SERVICE}/{name}"

        async def call(requests: Any, context: Context) -> bytes:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            request_id = ""
            try:
                raw = await read_raw(context)
                try:
                    return fn(raw).SerializeToString()
                except Exception as exc:  # noqa: BLE001 - every failure gets a clean status
                    request_id = _request_id(context)
                    await self._refuse(context, exc, request_id)
                    raise  # unreachable: abort raises
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:  # the client went away, or its deadline passed
                code = ended(context)
                raise
            finally:
                if measured:
                    peer = context.peer() if self.recorder.access_log else ""
                    rid = request_id or _request_id(context)
                    self.recorder.finish_rpc(method, code.name, started, rid, peer)

        return call

    async def model_infer(self, requests: Any, context: Context) -> bytes:
        started = time.perf_counter()
        headers = metadata_headers(context)
        given = headers.get(b"x-request-id")
        request_id = request_id_from(None if given is None else given.decode("latin-1"))
        tracing = self.runtime.tracing
        trace = None if tracing is None else tracing.request_rpc(INFER, headers)
        code = grpc.StatusCode.OK
        version: str | None = None
        try:
            try:
                self.service.check_key(headers)  # before a byte of the message is received
                raw = await read_raw(context)
                answer, model = await self.service.infer(raw, request_id, trace)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - every failure gets a clean status
                await self._refuse(context, exc, request_id)
                raise  # unreachable: abort raises
            version = model.version
            context.set_trailing_metadata(
                (("x-request-id", request_id), ("x-model-version", version))
            )
            return answer.SerializeToString()
        except asyncio.CancelledError:  # gRPC cancelled the call: deadline passed, client gone
            code = ended(context)
            raise
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            peer = context.peer() if self.recorder.access_log else ""
            self.recorder.finish_rpc(INFER, code.name, started, request_id, peer)
            if trace is not None:
                trace.end_rpc(code.value[0], code.name, request_id, version)


def _request_id(context: Context) -> str:
    given = metadata_headers(context).get(b"x-request-id")
    return request_id_from(None if given is None else given.decode("latin-1"))


class GrpcDoor:
    def __init__(
        self,
        settings: Settings,
        calls: InferenceCalls,
        health: HealthService,
        host: str,
        shared_port: bool,
    ) -> None:
        self.settings = settings
        self.calls = calls
        self.health = health
        self.host = host
        self.shared_port = shared_port
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; StartupError (with a fix) when the port cannot be bound."""
        settings = self.settings
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.so_reuseport", 1 if self.shared_port else 0),
            ]
        )
        server.add_generic_rpc_handlers((self.calls.handler(), self.health.handler()))
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

"""The gRPC door: our own gRPC server (``app.grpc.transport``, HTTP/2 cleartext on asyncio) in
the HTTP server's event loop, on ``HOUSING_GRPC_PORT``.

It serves ``GRPCInferenceService`` (``app.grpc.service``) and ``grpc.health.v1.Health``
(``app.grpc.health``) on the objects the composition root built (``app.compose``): one model,
one inference path, one set of metrics, two front doors. ``app.process.server`` starts it
before the model loads (until the model is ready and HTTP accepts, its calls answer
UNAVAILABLE and its health NOT_SERVING) and stops it when HTTP stops accepting: from then on
new calls are refused (GOAWAY, then REFUSED_STREAM), calls in flight finish within the grace
period, and the batcher closes only after them.

``InferenceCalls`` adapts the service to the transport, the only place that does: the API key
is checked on the call's metadata before its message is received (``Method.admit``); every
refusal is mapped once (``app.grpc.refusals``); each call of ``ModelInfer``,
``ServerMetadata`` and ``ModelMetadata`` is counted in the request metrics under its method's
path with its status's name, however it ends -- answered, refused, or cancelled (CANCELLED: the
client went away, HTTP's 499; DEADLINE_EXCEEDED: its deadline passed, HTTP's 504) -- and the
readiness calls are not, as HTTP's probes are not. ``ModelInfer`` is traced, and answers with
``x-request-id`` (the caller's, if it sent a plain one) and ``x-model-version`` in its trailing
metadata. The transport's own bounds (``app.grpc.transport``): messages over
``HOUSING_MAX_BODY_BYTES`` are RESOURCE_EXHAUSTED before they are read, connections past
``HOUSING_MAX_CONNECTIONS`` are closed at once and a connection must send its first call's
headers within ``HOUSING_HEADER_TIMEOUT_S`` (both counted in
``housing_rejected_requests_total``). With several worker processes (``HOUSING_WORKERS``),
each binds the port with ``SO_REUSEPORT`` and the kernel spreads connections between them;
with one, the port is bound exclusively, so a port already in use stops startup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from app.errors import Refusal, StartupError
from app.grpc.health import HealthService
from app.grpc.refusals import rpc_error
from app.grpc.service import INFER, SERVICE, InferenceService
from app.grpc.transport import Call, GrpcServer, Method, RpcError, Status
from app.observe.access import RequestRecorder
from app.observe.logs import request_id_of
from app.settings import Settings

logger = logging.getLogger("housing.grpc")
Unary = Callable[[Call, bytes], Awaitable[bytes]]
# The transport's own refusals, by the metrics' reason (app.errors.Refusal's values); a call
# cancelled or past its deadline is counted in the request metrics only, as over HTTP.
_TRANSPORT_REFUSALS = {
    Status.RESOURCE_EXHAUSTED: Refusal.TOO_LARGE,
    Status.INVALID_ARGUMENT: Refusal.INVALID,
    Status.UNIMPLEMENTED: Refusal.INVALID,
}


class InferenceCalls:
    """``InferenceService``'s methods as the transport's (see the module)."""

    def __init__(self, service: InferenceService, recorder: RequestRecorder) -> None:
        self.service = service
        self.runtime = service.runtime
        self.recorder = recorder
        self.max_errors = self.runtime.settings.max_error_details

    def methods(self) -> dict[str, Method]:
        service = self.service
        simple: dict[str, tuple[Callable[[bytes], Message], bool]] = {
            "ServerLive": (service.server_live, False),
            "ServerReady": (service.server_ready, False),
            "ModelReady": (service.model_ready, False),
            "ServerMetadata": (service.server_metadata, True),
            "ModelMetadata": (service.model_metadata, True),
        }
        out = {}
        for name, (fn, measured) in simple.items():
            path = f"/{SERVICE}/{name}"
            unfinished = self._unfinished(path) if measured else None
            out[path] = Method(unary=self._simple(path, fn, measured), unfinished=unfinished)
        out[INFER] = Method(
            admit=self.admit_infer, unary=self.model_infer, unfinished=self._unfinished(INFER)
        )
        return out

    def _unfinished(self, method: str) -> Callable[[Call, Status], None]:
        """Counts a call that ended before its handler ran (see ``Method.unfinished``)."""

        def told(call: Call, status: Status) -> None:
            kind = _TRANSPORT_REFUSALS.get(status)
            if kind is not None:
                self.runtime.metrics.observe_refusal(kind.value)
            self._finish(method, status, request_id_of(call.metadata), call)

        return told

    def _fail(self, exc: Exception, where: str, rid: str) -> RpcError:
        error, kind = rpc_error(exc, where, rid, self.max_errors)
        self.runtime.metrics.observe_refusal(kind.value)
        return error

    def _finish(self, method: str, status: Status, rid: str, call: Call) -> None:
        """Counts the call, from when its headers were read (``Call.opened``)."""
        peer = call.peer if self.recorder.access_log else ""
        self.recorder.finish_rpc(method, status.name, call.opened, rid, peer)

    def _simple(self, method: str, fn: Callable[[bytes], Message], measured: bool) -> Unary:
        async def unary(call: Call, raw: bytes) -> bytes:
            rid = request_id_of(call.metadata)
            status = Status.OK
            try:
                return fn(raw).SerializeToString()
            except asyncio.CancelledError:
                status = call.ended or Status.CANCELLED
                raise
            except Exception as exc:  # noqa: BLE001 - every failure gets a clean status
                # Counted as a call, not as a refused prediction (as HTTP's metadata routes).
                error = rpc_error(exc, method, rid, self.max_errors)[0]
                status = error.status
                raise error from None
            finally:
                if measured:
                    self._finish(method, status, rid, call)

        return unary

    def admit_infer(self, call: Call) -> None:
        """The API key, before a byte of the message is received."""
        try:
            self.service.check_key(call.metadata)
        except Exception as exc:  # noqa: BLE001 - a refusal, counted as any other call
            rid = request_id_of(call.metadata)
            error = self._fail(exc, INFER, rid)
            self._finish(INFER, error.status, rid, call)
            raise error from None

    async def model_infer(self, call: Call, raw: bytes) -> bytes:
        metadata = call.metadata
        rid = request_id_of(metadata)
        tracing = self.runtime.tracing
        trace = None if tracing is None else tracing.request_rpc(INFER, metadata)
        status = Status.OK
        version: str | None = None
        try:
            answer, model = await self.service.infer(raw, rid, trace)
            version = model.version
            call.trailers += (("x-request-id", rid), ("x-model-version", version))
            return answer
        except asyncio.CancelledError:  # the client went away, or its deadline passed
            status = call.ended or Status.CANCELLED
            raise
        except Exception as exc:  # noqa: BLE001 - every failure gets a clean status
            error = self._fail(exc, INFER, rid)
            status = error.status
            raise error from None
        finally:
            self._finish(INFER, status, rid, call)
            if trace is not None:
                trace.end_rpc(int(status), status.name, rid, version)


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
        self._server: GrpcServer | None = None
        self._stopping = False

    async def start(self) -> None:
        """Bind and serve; StartupError (with a fix) when the port cannot be bound."""
        settings = self.settings
        server = GrpcServer(
            {**self.calls.methods(), **self.health.methods()},
            max_message_bytes=settings.max_body_bytes,
            max_connections=settings.max_connections,
            header_timeout_s=settings.header_timeout_s,
            on_refused=self.calls.runtime.metrics.observe_refusal,
        )
        address = f"{self.host}:{settings.grpc_port}"
        try:
            self.port = await server.start(self.host, settings.grpc_port, self.shared_port)
        except OSError as exc:
            raise StartupError(
                f"cannot listen for gRPC on {address} ({exc.strerror or exc}). Hint: set "
                "HOUSING_GRPC_PORT to a free port, or to 0 to turn gRPC off."
            ) from None
        self._server = server
        logger.info("gRPC listening on %s:%d", self.host, self.port)

    def begin_stop(self, grace: float) -> None:
        """Refuse new calls from now on; calls in flight have ``grace`` seconds to finish."""
        if self._server is not None and not self._stopping:
            self._stopping = True
            self._server.begin_stop(grace)

    async def stopped(self) -> None:
        """Return when the calls in flight are done (or cancelled at the grace period's end)."""
        if self._server is not None and self._stopping:
            await self._server.stopped()

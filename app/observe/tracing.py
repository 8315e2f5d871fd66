"""OpenTelemetry tracing: configured only by the standard ``OTEL_*`` variables, off unless set.

On when ``OTEL_TRACES_EXPORTER`` names exporters (``otlp``, ``console``; comma-separated) or,
with it unset, when an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). ``OTEL_TRACES_EXPORTER=none`` or
``OTEL_SDK_DISABLED=true`` keeps it off; an exporter it does not know stops startup. Everything
else is the SDK's own reading of the standard variables: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (service name ``housing-inference`` unless they give one),
``OTEL_TRACES_SAMPLER``/``_ARG`` (default ``parentbased_always_on``), ``OTEL_EXPORTER_OTLP_*``
(endpoint, headers, timeout; protocol ``http/protobuf`` by default, or ``grpc``) and
``OTEL_BSP_*`` (the batch span processor, which exports on its own thread).

The spans, for prediction requests only (probes, metrics, metadata and docs are not traced):

* one SERVER span per request, ``POST /predict`` or ``inference.GRPCInferenceService/
  ModelInfer``, the child of the caller's W3C ``traceparent``/``tracestate`` (HTTP headers or
  gRPC metadata), with the route or method, the status, the rows, the model version and the
  request id; a 5xx (or a gRPC server error) marks it failed. An HTTP span carries the
  semantic conventions' HTTP server attributes from the request's ASGI scope:
  ``url.scheme``, ``url.path``, ``server.address`` and ``server.port`` (the listening socket's),
  ``client.address`` and ``network.protocol.version``;
* its child ``queue``: from the rows' submission to the start of the device call that ran them
  (the first, for a request split in parts), linked to that call's span: which batch it joined;
* one ``device call`` span per batch that holds a sampled request, with its rows, the padded
  batch size the device ran, the requests in it, the device and the model version, linked to
  the span of every sampled request in it. It is the child of the first of them, so the
  sampler, which follows the parent, keeps it whenever it keeps a request it served.

While a request is traced its context is the current one, so every JSON log line written for
it carries ``trace_id`` and ``span_id`` (a filter on the root handlers, added when tracing
is on). Off, none of this runs: the endpoints test one attribute for None.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from app.errors import StartupError
from app.identity import SERVER_NAME

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, Tracer
    from starlette.types import Scope

    from app.core.batching import Ticket

logger = logging.getLogger("housing.tracing")

SERVICE_NAME = SERVER_NAME
# gRPC codes a server span counts as failed (OpenTelemetry's semantic conventions).
RPC_SERVER_ERRORS = frozenset({2, 4, 12, 13, 14, 15})


def http_attributes(method: str, route: str, scope: Scope | None) -> dict[str, Any]:
    """The semantic conventions' HTTP server attributes of a request to ``route``; those that
    come from the connection (``url.scheme``, the addresses) from its ASGI ``scope``, when
    there is one (``url.scheme`` is then always set: ``http`` when the server gives none)."""
    attributes: dict[str, Any] = {"http.request.method": method, "http.route": route}
    if scope is None:
        attributes["url.path"] = route
        return attributes
    attributes["url.path"] = scope.get("path", route)
    attributes["url.scheme"] = scope.get("scheme") or "http"
    server = scope.get("server")
    if server:
        host, port = server
        attributes["server.address"] = host
        if port is not None:
            attributes["server.port"] = port
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    version = scope.get("http_version")
    if version:
        attributes["network.protocol.version"] = version
    return attributes


def configured(environ: Mapping[str, str]) -> list[str]:
    """The exporters the environment asks for; empty: tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return ["otlp"] if any(environ.get(e) for e in endpoints) else []
    chosen = [n.strip().lower() for n in names.split(",") if n.strip()]
    return [] if "none" in chosen else chosen


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise StartupError(
            f"OTEL_TRACES_EXPORTER={name!r} is not one this server has. Hint: use otlp, "
            "console or none."
        )
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol != "http/protobuf":
        raise StartupError(
            f"OTLP protocol {protocol!r} is not supported. Hint: set "
            "OTEL_EXPORTER_OTLP_PROTOCOL to http/protobuf (port 4318) or grpc (port 4317)."
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


class _TraceIds(logging.Filter):
    """Puts the current span's ids on every log record written while a request is traced."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        return True


class HeadSampling(NamedTuple):
    """The root sampling decision of ``OTEL_TRACES_SAMPLER``/``_ARG``, made here: the share of
    requests without a parent to trace, and whether a ``traceparent`` decides instead."""

    rate: float
    follows_parent: bool

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> HeadSampling | None:
        """None for a sampler this does not know (the SDK then decides every request)."""
        name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
        root = name.removeprefix("parentbased_")
        if root in ("always_on", "always_off"):
            return cls(1.0 if root == "always_on" else 0.0, root != name)
        if root != "traceidratio":
            return None
        try:  # as the SDK reads it: a bad or out-of-range ratio means 1.0
            rate = float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            rate = 1.0
        return cls(rate if 0 <= rate <= 1 else 1.0, root != name)

    def skips(self, has_parent: bool) -> bool:
        """True when a request is not to be traced: no span, no work at all."""
        if has_parent and self.follows_parent:
            return False  # the parent's sampled flag decides, in the SDK's ParentBased
        return self.rate < 1.0 and (self.rate == 0.0 or random.random() >= self.rate)


class Tracing:
    """The tracer of a server process, from the environment (``from_environment``).

    A request that the head sampling skips (``HeadSampling``) gets no span at all: the SDK's
    own decision for an unsampled span costs a noticeable share of a single-record request
    (docs/performance.md), for nothing. The provider's sampler then records whatever
    the head sampling lets through (``ParentBased(ALWAYS_ON)``, or ``ALWAYS_ON``).
    """

    def __init__(
        self, provider: TracerProvider, exporters: list[str], head: HeadSampling | None = None
    ) -> None:
        from opentelemetry import context as context_api
        from opentelemetry import trace
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.exporters = exporters
        self.tracer: Tracer = provider.get_tracer(SERVER_NAME)
        self._propagator = TraceContextTextMapPropagator()
        self._context = context_api
        self._trace = trace
        self._filter = _TraceIds()
        self._head = head
        # Looked up once: these are on every traced request's path.
        self._server, self._link, self._status = SpanKind.SERVER, Link, Status
        self._error = StatusCode.ERROR

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Tracing | None:
        """Tracing as the ``OTEL_*`` variables ask, or None when they leave it off.
        ``environ`` (default: the process's) decides whether it is on, the exporters and the
        sampling; the SDK's exporters and span processors read the rest (endpoint, headers,
        ``OTEL_BSP_*``) from the process environment themselves."""
        environ = os.environ if environ is None else environ
        names = configured(environ)
        if not names:
            return None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler

        given = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""
        )
        resource = Resource.create({} if given else {"service.name": SERVICE_NAME})
        head = HeadSampling.from_environment(environ)
        sampler: Sampler | None = None  # None: the SDK's, from OTEL_TRACES_SAMPLER
        if head is not None:
            sampler = ParentBased(ALWAYS_ON) if head.follows_parent else ALWAYS_ON
        provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
        for name in dict.fromkeys(names):
            provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
        return cls(provider, names, head)

    def start(self) -> None:
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._filter)
        logger.info(
            "tracing on: %s exporter(s), service %s",
            ", ".join(self.exporters),
            self.provider.resource.attributes.get("service.name"),
        )

    def close(self) -> None:
        """Export what is left, then stop (the batch processor's thread with it)."""
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._filter)
        self.provider.shutdown()

    def _parent(self, headers: Mapping[bytes, bytes]) -> Context | None:
        parent = headers.get(b"traceparent")
        if parent is None:
            return None
        carrier = {"traceparent": parent.decode("latin-1")}
        state = headers.get(b"tracestate")
        if state is not None:
            carrier["tracestate"] = state.decode("latin-1")
        return self._propagator.extract(carrier)

    def request_http(
        self,
        method: str,
        route: str,
        headers: Mapping[bytes, bytes],
        scope: Scope | None = None,
    ) -> RequestTrace | None:
        """The span of an HTTP prediction request, made current until ``end_http``; None
        when the request is not traced. ``scope``: the request's ASGI scope, for the
        connection's attributes."""
        if self._skipped(headers):
            return None
        attributes = http_attributes(method, route, scope)
        return self._request(f"{method} {route}", attributes, headers)

    def request_rpc(self, method: str, metadata: Mapping[bytes, bytes]) -> RequestTrace | None:
        """The span of a gRPC call (``method``: its path), made current until ``end_rpc``;
        None when the call is not traced."""
        if self._skipped(metadata):
            return None
        service, _, name = method.strip("/").partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        return self._request(method.strip("/"), attributes, metadata)

    def _skipped(self, headers: Mapping[bytes, bytes]) -> bool:
        """Decided before any SDK call or attribute is built (the common case at a low rate)."""
        head = self._head
        return head is not None and head.skips(b"traceparent" in headers)

    def _request(
        self, name: str, attributes: dict[str, Any], headers: Mapping[bytes, bytes]
    ) -> RequestTrace | None:
        span = self.tracer.start_span(
            name, self._parent(headers), kind=self._server, attributes=attributes
        )
        if not span.is_recording():  # the SDK's sampler said no (an unsampled parent)
            return None
        token = self._context.attach(self._trace.set_span_in_context(span))
        return RequestTrace(self, span, token)

    def device_call(
        self,
        tickets: Iterable[Ticket],
        rows: int,
        padded: int,
        started_ns: int,
        ended_ns: int,
        device: str,
        version: str,
        error: BaseException | None,
    ) -> None:
        """The span of one device call, linked to the sampled requests it served; each of
        their tickets learns it (``Ticket.batch``) for its ``queue`` span."""
        requests = 0
        traced: list[SpanContext] = []
        for ticket in tickets:
            requests += 1
            if ticket.trace is not None:
                traced.append(cast("SpanContext", ticket.trace))  # set by RequestTrace
        if not traced:
            return
        parent = self._trace.set_span_in_context(self._trace.NonRecordingSpan(traced[0]))
        span = self.tracer.start_span(
            "device call",
            parent,
            links=[self._link(c) for c in traced],
            start_time=started_ns,
            attributes={
                "housing.batch.rows": rows,
                "housing.batch.padded_rows": padded,
                "housing.batch.requests": requests,
                "housing.device": device,
                "housing.model.version": version,
            },
        )
        if error is not None:
            span.set_status(self._status(self._error, f"{type(error).__name__}: {error}"))
        span.end(ended_ns)
        made = (span.get_span_context(), started_ns)
        for ticket in tickets:
            if ticket.trace is not None and ticket.batch is None:
                ticket.batch = made


class RequestTrace:
    """One sampled request's span, current until it ends (see ``Tracing``)."""

    __slots__ = ("_submitted_ns", "_token", "rows", "span", "tracing")

    def __init__(self, tracing: Tracing, span: Span, token: object) -> None:
        self.tracing = tracing
        self.span = span
        self._token = token
        self._submitted_ns = 0
        self.rows = 0

    def submitted(self, ticket: Ticket, rows: int) -> None:
        """The request's ``rows`` are queued: its device calls will link to this span."""
        self._submitted_ns = time.time_ns()
        self.rows = rows
        ticket.trace = self.span.get_span_context()

    def ran(self, ticket: Ticket) -> None:
        """The request's rows have run: its ``queue`` span, linked to its first device call."""
        if ticket.batch is None:
            return
        batch, started_ns = ticket.batch
        tracing = self.tracing
        queue = tracing.tracer.start_span(
            "queue",
            tracing._trace.set_span_in_context(self.span),
            links=[tracing._link(cast("SpanContext", batch))],  # set by device_call
            start_time=self._submitted_ns,
        )
        queue.end(max(started_ns, self._submitted_ns))

    def end_http(self, status: int, request_id: str, version: str | None) -> None:
        span = self.span
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self.tracing._status(self.tracing._error))
        self._end(request_id, version)

    def end_rpc(self, code: int, name: str, request_id: str, version: str | None) -> None:
        span = self.span
        span.set_attribute("rpc.grpc.status_code", code)
        if code in RPC_SERVER_ERRORS:
            span.set_status(self.tracing._status(self.tracing._error, name))
        self._end(request_id, version)

    def _end(self, request_id: str, version: str | None) -> None:
        span = self.span
        span.set_attribute("housing.request_id", request_id)
        span.set_attribute("housing.rows", self.rows)
        if version is not None:
            span.set_attribute("housing.model.version", version)
        span.end()
        self.tracing._context.detach(self._token)

"""Which OTEL_* settings turn tracing on, the refusals of the ones it cannot honour, and the
attributes of an HTTP request's span."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.errors import StartupError
from app.observe.tracing import SERVICE_NAME, Tracing, configured

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "x"}, []),
        (ENDPOINT, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, []),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_tracing_is_off_unless_the_environment_asks(
    environ: dict[str, str], exporters: list[str]
) -> None:
    assert configured(environ) == exporters
    tracing = Tracing.from_environment(environ)
    assert (tracing is None) == (not exporters)
    if tracing is not None:
        tracing.close()


def test_the_service_name_is_ours_unless_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracing = Tracing.from_environment({"OTEL_TRACES_EXPORTER": "console"})
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == SERVICE_NAME
    tracing.close()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "prices-eu")  # the SDK reads it from os.environ
    tracing = Tracing.from_environment(
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "prices-eu"}
    )
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == "prices-eu"
    tracing.close()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "'zipkin' is not one this server has"),
        (
            {**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "set OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_an_exporter_it_cannot_run_stops_startup_with_the_fix(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(StartupError, match=message):
        Tracing.from_environment(environ)


SAMPLED_PARENT = {b"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
UNSAMPLED_PARENT = {b"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}


def _traced(sampler: str, arg: str | None, headers: dict[bytes, bytes], n: int = 400) -> int:
    """How many of ``n`` requests get a recording span under this sampler."""
    environ = {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": sampler}
    if arg is not None:
        environ["OTEL_TRACES_SAMPLER_ARG"] = arg
    tracing = Tracing.from_environment(environ)
    assert tracing is not None
    count = 0
    for _ in range(n):
        trace = tracing.request_http("POST", "/predict", headers)
        if trace is not None and trace.span.is_recording():
            count += 1
        if trace is not None:
            trace.end_http(200, "r", None)
    tracing.close()
    return count


@pytest.mark.parametrize(
    ("sampler", "arg", "headers", "low", "high"),
    [
        ("always_off", None, {}, 0, 0),
        ("always_on", None, {}, 400, 400),
        ("parentbased_always_on", None, UNSAMPLED_PARENT, 0, 0),
        ("parentbased_always_off", None, SAMPLED_PARENT, 400, 400),
        ("parentbased_always_off", None, {}, 0, 0),
        ("traceidratio", "0.25", {}, 60, 140),
        ("traceidratio", "0", SAMPLED_PARENT, 0, 0),  # not parent-based: the ratio decides
        ("parentbased_traceidratio", "0", SAMPLED_PARENT, 400, 400),
        ("parentbased_traceidratio", "0.01", {}, 0, 16),
        ("parentbased_traceidratio", "nonsense", {}, 400, 400),  # the SDK's reading: 1.0
    ],
)
def test_requests_are_sampled_as_the_standard_samplers_say(
    sampler: str, arg: str | None, headers: dict[bytes, bytes], low: int, high: int
) -> None:
    assert low <= _traced(sampler, arg, headers) <= high


def _recorded(scope: dict[str, Any] | None) -> Any:
    """The one span a traced HTTP request leaves, given its ``scope``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, ["memory"])
    trace = tracing.request_http("POST", "/v2/models/housing/infer", {}, scope)
    assert trace is not None
    trace.end_http(200, "r-1", "v1")
    (span,) = exporter.get_finished_spans()
    provider.shutdown()
    return span


ASGI_SCOPE = {
    "type": "http",
    "scheme": "https",
    "http_version": "1.1",
    "path": "/v2/models/housing/versions/v1/infer",
    "server": ("10.0.0.5", 8080),
    "client": ("192.0.2.7", 50123),
}


def test_an_http_span_carries_the_http_server_attributes_of_its_scope() -> None:
    span = _recorded(ASGI_SCOPE)
    assert span.name == "POST /v2/models/housing/infer"
    assert dict(span.attributes) == {
        "http.request.method": "POST",
        "http.route": "/v2/models/housing/infer",
        "url.path": "/v2/models/housing/versions/v1/infer",
        "url.scheme": "https",
        "server.address": "10.0.0.5",
        "server.port": 8080,
        "client.address": "192.0.2.7",
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
        "housing.request_id": "r-1",
        "housing.rows": 0,
        "housing.model.version": "v1",
    }


def test_url_scheme_is_always_set_and_absent_addresses_are_left_out() -> None:
    bare = {"type": "http", "path": "/predict", "server": None, "client": None}
    attributes = dict(_recorded(bare).attributes)
    assert attributes["url.scheme"] == "http"
    assert not {"server.address", "server.port", "client.address"} & set(attributes)
    # A Unix socket's server has no port.
    unix = {**bare, "scheme": "http", "server": ("/run/housing.sock", None)}
    attributes = dict(_recorded(unix).attributes)
    assert attributes["server.address"] == "/run/housing.sock"
    assert "server.port" not in attributes

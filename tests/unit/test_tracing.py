"""Which OTEL_* settings turn tracing on, and the refusals of the ones it cannot honour."""

from __future__ import annotations

import pytest

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

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

"""Settings from HOUSING_* variables, and the combinations they refuse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

import app.process.cli as app_main
from app.settings import Settings, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("HOUSING_")]:
        monkeypatch.delenv(name)
    s = Settings()
    assert (s.device, s.host, s.port, s.max_instances) == ("auto", "0.0.0.0", 8080, 1024)
    assert (s.max_batch_size, s.max_delay_ms, s.queue_rows, s.torch_threads) == (None, 2.0, 4096, 1)
    assert s.device_thread is None
    assert s.access_log is False


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOUSING_DEVICE", "xla")
    monkeypatch.setenv("HOUSING_MAX_BATCH_SIZE", "1")
    monkeypatch.setenv("HOUSING_MAX_DELAY_MS", "0.5")
    s = Settings()
    assert (s.device, s.max_batch_size, s.max_delay_ms) == ("xla", 1, 0.5)


def test_a_queue_smaller_than_the_largest_request_is_refused() -> None:
    with pytest.raises(
        ValidationError, match="HOUSING_QUEUE_ROWS=100 is below HOUSING_MAX_INSTANCES"
    ):
        Settings(queue_rows=100, max_instances=1024)


def test_an_artifacts_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "manifest.json"
    f.write_text("{}")
    with pytest.raises(ValidationError, match="is a file; it must be the folder"):
        Settings(artifacts=f)


def test_an_unknown_device_is_refused() -> None:
    with pytest.raises(ValidationError, match="'auto', 'neuron', 'xla' or 'cpu'"):
        Settings(device="gpu")  # type: ignore[arg-type]


def test_grpc_shares_no_port_with_http_and_0_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOUSING_GRPC_PORT", raising=False)
    assert Settings().grpc_port == 8081
    assert Settings(grpc_port=0, port=0).grpc_port == 0  # both "any" / "off": no clash
    with pytest.raises(ValidationError, match="HOUSING_GRPC_PORT=9000 is HOUSING_PORT too"):
        Settings(grpc_port=9000, port=9000)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 6 << 20),  # the setting's own default (6 MiB)
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"}, 20 << 20),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20", "HOUSING_MAX_BODY_BYTES": "5000"}, 5000),
    ],
)
def test_batch_transforms_payload_limit_applies_unless_the_setting_is_given(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: int
) -> None:
    clean(monkeypatch, environ)
    assert Settings().max_body_bytes == expected


def clean(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith(("HOUSING_", "SAGEMAKER_")):
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("environ", "port", "grpc_port"),
    [
        ({}, 8080, 8081),
        ({"SAGEMAKER_BIND_TO_PORT": "9000"}, 9000, 8081),
        # SageMaker binds HTTP to gRPC's default: gRPC is off rather than clash at startup.
        ({"SAGEMAKER_BIND_TO_PORT": "8081"}, 8081, 0),
        # ... unless it gives a range of ports the container may use.
        (
            {"SAGEMAKER_BIND_TO_PORT": "8081", "SAGEMAKER_SAFE_PORT_RANGE": "20000-20999"},
            8081,
            20000,
        ),
        ({"SAGEMAKER_BIND_TO_PORT": "8081", "HOUSING_GRPC_PORT": "7000"}, 8081, 7000),
        ({"SAGEMAKER_BIND_TO_PORT": "8081", "HOUSING_PORT": "8090"}, 8090, 8081),
    ],
)
def test_sagemakers_ports_apply_unless_the_settings_are_given(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], port: int, grpc_port: int
) -> None:
    clean(monkeypatch, environ)
    settings = Settings()
    assert (settings.port, settings.grpc_port) == (port, grpc_port)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "six"),
        ("SAGEMAKER_BIND_TO_PORT", "80a"),
        ("SAGEMAKER_SAFE_PORT_RANGE", "20999-20000"),
        ("SAGEMAKER_SAFE_PORT_RANGE", "-1"),
        ("SAGEMAKER_BIND_TO_PORT", "\u00b2"),  # a digit to str.isdigit, not a number
        ("SAGEMAKER_BIND_TO_PORT", "70000"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "100000000000"),
    ],
)
def test_a_sagemaker_variable_that_is_not_a_number_stops_serve_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    clean(monkeypatch, {name: value})
    monkeypatch.setattr(app_main, "main", lambda settings: 0)
    assert app_main.serve() == 2
    assert capsys.readouterr().err.startswith(f"error: {name}=")


def test_a_rule_across_settings_reads_as_one_clean_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean(monkeypatch, {"HOUSING_PORT": "9000", "HOUSING_GRPC_PORT": "9000"})
    assert load_settings() is None
    assert capsys.readouterr().err == (
        "error: HOUSING_GRPC_PORT=9000 is HOUSING_PORT too: give gRPC another port, or 0 to "
        "turn it off\n"
    )


def test_serve_reads_the_model_from_opt_ml_model_without_touching_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean(monkeypatch, {})
    monkeypatch.setattr(app_main, "SAGEMAKER_MODEL_DIR", str(tmp_path))
    seen: list[Settings] = []
    monkeypatch.setattr(app_main, "main", lambda settings: seen.append(settings) or 0)
    before = dict(os.environ)
    assert app_main.serve() == 0
    assert seen[0].artifacts == tmp_path and dict(os.environ) == before

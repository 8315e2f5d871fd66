"""Settings from HOUSING_* variables, and the combinations they refuse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

import app.process.cli as app_main
from app.settings import Settings


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
        ({}, None),  # the setting's own default (6 MiB)
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"}, str(20 << 20)),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20", "HOUSING_MAX_BODY_BYTES": "5000"}, "5000"),
    ],
)
def test_serve_takes_batch_transforms_payload_limit_unless_the_setting_is_given(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: str | None
) -> None:
    monkeypatch.setattr(os, "environ", dict(environ))  # serve() writes to it
    seen: list[str | None] = []
    monkeypatch.setattr(app_main, "main", lambda: seen.append(os.getenv("HOUSING_MAX_BODY_BYTES")))
    app_main.serve()
    assert seen == [expected]


def test_serve_refuses_a_payload_limit_that_is_not_a_number(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "environ", {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "six"})
    monkeypatch.setattr(app_main, "main", lambda: 0)
    assert app_main.serve() == 2
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB" in capsys.readouterr().err

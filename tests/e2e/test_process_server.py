"""The service as users run it: ``python -m app`` in its own process, over real HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pandas as pd
import pytest

from modelspec.manifest import ARTIFACT_FILE, Manifest
from tests.support.oracle import eager_dollars
from tests.support.records import records
from tests.support.server import serve
from training.data import split_frame


def test_serves_predictions_over_http_and_stops_cleanly(
    artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    _, val = split_frame(housing_frame)
    rows = val.head(50)
    with serve(artifacts, HOUSING_DEVICE="cpu") as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            ready = client.get("/health/ready").json()
            assert ready["device"] == "cpu"
            assert ready["model_version"] == Manifest.load(artifacts).model_version
            one = client.post("/predict", json=records(rows.head(1))[0])
            many = client.post("/predict", json={"instances": records(rows)})
        expected = eager_dollars(artifacts, rows)
        assert one.json()["house_value"] == pytest.approx(expected[0], rel=1e-5)
        assert many.json()["predictions"] == pytest.approx(list(expected), rel=1e-5)
        assert server.terminate() == 0
    assert "Finished server process" in server.output


def test_auto_device_is_logged(artifacts: Path) -> None:
    with serve(artifacts, HOUSING_DEVICE="auto") as server:
        server.wait_ready()
        assert server.terminate() == 0
    assert "device cpu (HOUSING_DEVICE=auto)" in server.output


def test_a_corrupted_artifact_stops_startup_with_a_clear_message(
    artifacts: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(artifacts, folder)
    with (folder / ARTIFACT_FILE).open("r+b") as fh:
        fh.truncate(1000)
    with serve(folder, HOUSING_DEVICE="cpu") as server:
        code = server.wait_exit()
    assert code != 0
    assert "cannot start" in server.output
    assert "the file is corrupted" in server.output
    assert "Hint: copy model_neuron.pt and manifest.json together" in server.output
    assert "Traceback" not in server.output
    assert server.port is None  # it never listened


def test_an_empty_artifacts_folder_says_to_train_and_compile(tmp_path: Path) -> None:
    with serve(tmp_path, HOUSING_DEVICE="cpu") as server:
        assert server.wait_exit() != 0
    assert "Hint: train and compile first" in server.output


def test_an_invalid_setting_is_named(artifacts: Path) -> None:
    with serve(artifacts, HOUSING_DEVICE="gpu") as server:
        assert server.wait_exit() == 2
    assert "HOUSING_DEVICE: Input should be 'auto', 'neuron', 'xla' or 'cpu'" in server.output

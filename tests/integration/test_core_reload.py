"""Reloading the model through ``POST /v2/repository/models/housing/load``: the new model
serves once its checks pass, every answer names the model that made it, and a bad artifact
leaves the current model serving."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.compose import create_app
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD
from modelspec.manifest import MANIFEST_FILE
from reliability.rollout import install, version
from tests.support.bodies import tensors
from tests.support.oracle import eager_dollars as eager
from tests.support.records import records
from tests.support.server import sample

LOAD = "/v2/repository/models/housing/load"


@pytest.fixture
def folder(tmp_path: Path, artifacts: Path) -> Path:
    install(artifacts, tmp_path)
    return tmp_path


ADMIN = {"Authorization": "Bearer 4dmin"}


@pytest.fixture
def served(folder: Path) -> Iterator[TestClient]:
    settings = Settings(artifacts=folder, device="cpu", admin_key="4dmin")
    with TestClient(create_app(settings), headers=ADMIN) as client:
        yield client


def metric(client: TestClient, name: str, **labels: str) -> float:
    return sample(client.get("/metrics").text, name, **labels)


def test_a_reload_swaps_in_the_new_model_and_every_answer_names_its_model(
    served: TestClient,
    folder: Path,
    artifacts: Path,
    other_artifacts: Path,
    housing_frame: pd.DataFrame,
) -> None:
    rows = housing_frame.head(20)
    old, new = version(artifacts), version(other_artifacts)
    assert old != new
    before = served.post("/predict", json={"instances": records(rows)})
    assert before.headers["x-model-version"] == old
    np.testing.assert_allclose(before.json()["predictions"], eager(artifacts, rows), rtol=1e-5)

    install(other_artifacts, folder)
    answer = served.post(LOAD)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["version"], body["previous_version"], body["changed"]) == (new, old, True)
    assert answer.headers["x-model-version"] == new

    after = served.post("/predict", json={"instances": records(rows)})
    assert after.headers["x-model-version"] == new
    np.testing.assert_allclose(after.json()["predictions"], eager(other_artifacts, rows), rtol=1e-5)
    oip = served.post("/v2/models/housing/infer", json={"inputs": tensors(records(rows))})
    assert oip.json()["model_version"] == new == oip.headers["x-model-version"]
    assert served.get("/v1/models/housing").json()["version"] == new
    assert served.get("/health/ready").headers["x-model-version"] == new
    assert metric(served, "housing_model_reloads_total", result="ok") == 1
    assert metric(served, "housing_model_info", version=new) == 1
    assert metric(served, "housing_model_info", version=old) == 0

    again = served.post(LOAD).json()  # the same artifact: nothing to swap
    assert (again["version"], again["changed"]) == (new, False)
    assert metric(served, "housing_model_reloads_total", result="unchanged") == 1


def test_a_tampered_artifact_is_refused_and_the_current_model_serves_on(
    served: TestClient, folder: Path, artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    with (folder / "model_neuron.pt").open("ab") as artifact:
        artifact.write(b"tampered")
    refused = served.post(LOAD)
    assert refused.status_code == 400
    assert "sha256" in refused.json()["error"]
    assert "copy model_neuron.pt and manifest.json together" in refused.json()["error"]
    answer = served.post("/predict", json=records(housing_frame.head(1))[0])
    assert answer.status_code == 200
    assert answer.headers["x-model-version"] == version(artifacts)
    assert served.get("/health/ready").status_code == 200
    assert metric(served, "housing_model_reloads_total", result="refused") == 1


def test_a_model_with_another_feature_hash_is_refused(served: TestClient, folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["feature_hash"] = "0" * 64
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    refused = served.post(LOAD)
    assert refused.status_code == 400
    assert "feature" in refused.json()["error"]
    assert served.get("/health/ready").status_code == 200


def test_the_load_route_is_closed_unless_the_operator_opens_it(folder: Path) -> None:
    with TestClient(create_app(Settings(artifacts=folder, device="cpu"))) as client:
        closed = client.post(LOAD)
        assert closed.status_code == 403
        assert "HOUSING_ADMIN_KEY" in closed.json()["error"]
    opened = Settings(artifacts=folder, device="cpu", control_open=True)
    with TestClient(create_app(opened)) as client:
        assert client.post(LOAD).status_code == 200


def test_the_load_route_needs_the_admin_key_and_the_prediction_key_is_not_it(
    folder: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "admin-key"
    secret.write_text("4dmin\n")  # as a Kubernetes secret mounts it
    settings = Settings(artifacts=folder, device="cpu", api_key="s3cret", admin_key_file=secret)
    with TestClient(create_app(settings)) as client:
        assert client.post(LOAD).status_code == 401
        assert client.post(LOAD, headers={"Authorization": "Bearer s3cret"}).status_code == 401
        assert client.post(LOAD, headers={"X-API-Key": "s3cret"}).status_code == 401
        keyed = client.post(LOAD, headers={"X-Admin-Key": "4dmin"})
        assert keyed.status_code == 200 and keyed.json()["changed"] is False
        assert client.post(LOAD, headers=ADMIN).status_code == 200
        record = {"instances": [dict(EXAMPLE_RECORD)]}
        assert client.post("/predict", json=record, headers=ADMIN).status_code == 401
        assert client.post("/predict", json=record, headers={"X-API-Key": "s3cret"}).is_success


def test_a_refused_reload_names_no_path_of_the_host(served: TestClient, folder: Path) -> None:
    (folder / "model_neuron.pt").unlink()
    refused = served.post(LOAD)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert "$HOUSING_ARTIFACTS/model_neuron.pt" in error, error
    assert str(folder) not in error and "/tmp" not in error


def test_with_polling_on_a_new_manifest_is_reloaded_by_itself(
    folder: Path, other_artifacts: Path
) -> None:
    new = version(other_artifacts)
    settings = Settings(artifacts=folder, device="cpu", model_poll_s=0.05)
    with TestClient(create_app(settings)) as client:
        install(other_artifacts, folder)
        deadline = time.monotonic() + 60
        while client.get("/v1/models/housing").json()["version"] != new:
            assert time.monotonic() < deadline, "the new model was never loaded"
            time.sleep(0.02)  # polling the server, as a load balancer would
        assert metric(client, "housing_model_reloads_total", result="ok") == 1
        assert client.get("/health/ready").headers["x-model-version"] == new

"""Data capture through the app: every route's predictions, as they came and went, with the
request id and model version of each; nothing when it is off; a prediction too large for
the queue (HOUSING_CAPTURE_QUEUE_BYTES) dropped and counted."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
from fastapi.testclient import TestClient

from app.compose import create_app
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD
from reliability.rollout import version
from tests.support.bodies import csv_body, tensors
from tests.support.records import records


def test_every_prediction_is_captured_as_it_came_and_went(
    tmp_path: Path, artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    rows = records(housing_frame.head(3))
    folder = tmp_path / "capture"
    settings = Settings(artifacts=artifacts, device="cpu", capture_dir=folder, capture_percent=100)
    sent = [
        ("/predict", {"json": rows[0]}),
        ("/invocations", {"content": csv_body(rows), "headers": {"content-type": "text/csv"}}),
        ("/v2/models/housing/infer", {"json": {"inputs": tensors(rows)}}),
    ]
    with TestClient(create_app(settings)) as client:
        answers = [client.post(route, **kw) for route, kw in sent]
        assert client.post("/predict", json={"latitude": 95}).status_code == 422  # not captured
        metrics = client.get("/metrics").text
    assert all(a.status_code == 200 for a in answers)
    assert "housing_captured_total 3.0" in metrics
    lines = [line for f in sorted(folder.rglob("*.jsonl")) for line in f.read_bytes().splitlines()]
    captured = {r["eventMetadata"]["eventId"]: r for r in map(orjson.loads, lines)}
    assert len(captured) == 3
    for (route, _), answer in zip(sent, answers, strict=True):
        record = captured[answer.headers["x-request-id"]]
        meta = record["eventMetadata"]
        assert (meta["route"], meta["modelVersion"]) == (route, version(artifacts))
        given, said = (
            record["captureData"]["endpointInput"],
            record["captureData"]["endpointOutput"],
        )
        assert said["data"] == answer.text and said["encoding"] in {"JSON", "CSV"}
        assert given["mode"] == "INPUT" and said["mode"] == "OUTPUT"
    csv = captured[answers[1].headers["x-request-id"]]["captureData"]["endpointInput"]
    assert (csv["encoding"], csv["data"]) == ("CSV", csv_body(rows).decode())


def test_without_a_percentage_nothing_is_captured(tmp_path: Path, artifacts: Path) -> None:
    folder = tmp_path / "capture"
    settings = Settings(artifacts=artifacts, device="cpu", capture_dir=folder)
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict", json=EXAMPLE_RECORD).status_code == 200
        assert "housing_captured_total 0.0" in client.get("/metrics").text
    assert not folder.exists()


def test_a_prediction_too_large_for_the_capture_queue_is_dropped_and_counted(
    tmp_path: Path, artifacts: Path
) -> None:
    folder = tmp_path / "capture"
    settings = Settings(
        artifacts=artifacts,
        device="cpu",
        capture_dir=folder,
        capture_percent=100,
        capture_queue_bytes=1024 * 1024,
    )
    large = orjson.dumps(EXAMPLE_RECORD) + b" " * (1024 * 1024)  # valid JSON, 1 MiB of spaces
    with TestClient(create_app(settings)) as client:
        kept = client.post("/predict", json=EXAMPLE_RECORD)
        dropped = client.post(
            "/predict", content=large, headers={"content-type": "application/json"}
        )
        assert (kept.status_code, dropped.status_code) == (200, 200)
        metrics = client.get("/metrics").text
    assert "housing_capture_dropped_total 1.0" in metrics
    lines = [line for f in sorted(folder.rglob("*.jsonl")) for line in f.read_bytes().splitlines()]
    assert [orjson.loads(line)["eventMetadata"]["eventId"] for line in lines] == [
        kept.headers["x-request-id"]
    ]

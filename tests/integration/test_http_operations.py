"""Limits, API key, request ids, metrics and the model summary, through the real app."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.compose import create_app
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD
from modelspec.manifest import Manifest

KEY = "s3cret-key"
PREDICTION_ROUTES = ("/predict", "/invocations")


@pytest.fixture
def keyed(artifacts: Path) -> Iterator[TestClient]:
    app = create_app(Settings(artifacts=artifacts, device="cpu", api_key=KEY))  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.parametrize("route", PREDICTION_ROUTES)
def test_prediction_routes_need_the_key(keyed: TestClient, route: str) -> None:
    missing = keyed.post(route, json=EXAMPLE_RECORD)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "HOUSING_API_KEY" in missing.json()["detail"]
    assert KEY not in missing.text
    assert keyed.post(route, json=EXAMPLE_RECORD, headers={"x-api-key": "wrong"}).status_code == 401
    bearer = {"authorization": f"Bearer {KEY}"}
    assert keyed.post(route, json=EXAMPLE_RECORD, headers=bearer).status_code == 200
    assert keyed.post(route, json=EXAMPLE_RECORD, headers={"x-api-key": KEY}).status_code == 200


def test_the_oip_infer_route_needs_the_key_and_says_so_in_its_format(keyed: TestClient) -> None:
    refused = keyed.post("/v2/models/housing/infer", json={"inputs": []})
    assert refused.status_code == 401
    assert "error" in refused.json()


def test_probes_and_metadata_stay_open_with_a_key(keyed: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/ping", "/v2/health/ready", "/metrics",
                 "/v2/models/housing", "/v1/models/housing"):  # fmt: skip
        assert keyed.get(path).status_code == 200, path


def test_the_key_is_never_logged(artifacts: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(artifacts=artifacts, device="cpu", api_key=KEY, access_log=True)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG), TestClient(create_app(settings)) as c:
        c.post("/predict", json=EXAMPLE_RECORD, headers={"authorization": f"Bearer {KEY}"})
        c.post("/predict", json=EXAMPLE_RECORD, headers={"x-api-key": KEY + "x"})
    assert "POST /predict 200" in caplog.text and "POST /predict 401" in caplog.text
    assert KEY not in caplog.text


def test_a_body_over_the_limit_is_413_before_it_is_read(artifacts: Path) -> None:
    settings = Settings(artifacts=artifacts, device="cpu", max_body_bytes=4096)
    with TestClient(create_app(settings)) as c:
        big = b'{"instances": [' + b" " * 5000 + b"]}"
        response = c.post("/predict", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert "HOUSING_MAX_BODY_BYTES=4096" in response.json()["detail"]
        assert c.post("/predict", json=EXAMPLE_RECORD).status_code == 200

        def chunks() -> Iterator[bytes]:  # chunked: no content-length to refuse on
            yield b'{"instances": ['
            for _ in range(10):
                yield b" " * 1000
            yield b"]}"

        chunked = c.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413


@pytest.mark.parametrize("route", [*PREDICTION_ROUTES, "/v2/models/housing/infer"])
def test_a_wrong_content_type_is_415(client: TestClient, route: str) -> None:
    response = client.post(route, content=b"a=1", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "text/plain" in response.text and "Hint" in response.text


def test_malformed_json_is_422_with_a_reason(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["type"] == "json_invalid"


def test_get_on_a_prediction_route_is_405(client: TestClient) -> None:
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_request_ids_are_taken_or_made_and_returned(client: TestClient) -> None:
    mine = client.post("/predict", json=EXAMPLE_RECORD, headers={"x-request-id": "abc-123"})
    assert mine.headers["x-request-id"] == "abc-123"
    made = client.post("/predict", json=EXAMPLE_RECORD)
    assert len(made.headers["x-request-id"]) == 32
    assert (
        made.headers["x-request-id"]
        != client.post("/predict", json=EXAMPLE_RECORD).headers["x-request-id"]
    )
    # An id that could forge log lines or headers is replaced, not echoed.
    forged = client.get("/health/live", headers={"x-request-id": "a b\tc" + "x" * 200})
    assert len(forged.headers["x-request-id"]) == 32
    assert (
        client.get("/v1/models/housing", headers={"x-request-id": "q-1"}).headers["x-request-id"]
        == "q-1"
    )


def test_access_log_lines_carry_the_request_id(
    artifacts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(artifacts=artifacts, device="cpu", access_log=True)
    with (
        caplog.at_level(logging.INFO, logger="housing.access"),
        TestClient(create_app(settings)) as c,
    ):
        c.post("/predict", json=EXAMPLE_RECORD, headers={"x-request-id": "trace-7"})
        c.get("/health/ready", headers={"x-request-id": "probe-1"})
    lines = {r.request_id: r for r in caplog.records if r.name == "housing.access"}  # type: ignore[attr-defined]
    assert lines["trace-7"].status == 200  # type: ignore[attr-defined]
    assert lines["trace-7"].route == "/predict"  # type: ignore[attr-defined]
    assert lines["trace-7"].duration_ms > 0  # type: ignore[attr-defined]
    assert lines["probe-1"].path == "/health/ready"  # type: ignore[attr-defined]


def test_metrics_count_requests_batches_and_refusals(client: TestClient, artifacts: Path) -> None:
    before = samples(client)
    for _ in range(3):
        assert client.post("/predict", json=EXAMPLE_RECORD).status_code == 200
    assert client.post("/predict", json={"instances": [EXAMPLE_RECORD] * 5}).status_code == 200
    assert client.post("/predict", json={"latitude": 1}).status_code == 422
    for _ in range(4):
        client.get("/health/ready")
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("housing_requests_total", route="/predict", status="200") == 4
    assert delta("housing_requests_total", route="/predict", status="422") == 1
    assert delta("housing_request_duration_seconds_count", route="/predict", status="200") == 4
    assert delta("housing_rejected_requests_total", reason="invalid") == 1
    assert delta("housing_batch_rows_count") == 4  # one device call per request here
    assert delta("housing_batch_rows_sum") == 8
    assert delta("housing_queue_duration_seconds_count") == 4
    assert delta("housing_device_duration_seconds_count") == 4
    assert ("housing_queue_rows", frozenset()) in after
    # Probes and scrapes are not requests worth counting.
    assert not any(
        k[0] == "housing_requests_total" and ("route", "/health/ready") in k[1] for k in after
    )
    assert not any(
        k[0] == "housing_requests_total" and ("route", "/metrics") in k[1] for k in after
    )
    manifest = Manifest.load(artifacts)
    assert manifest.compiled is not None
    info = {
        "version": manifest.model_version,
        "sha256": manifest.compiled.sha256,
        "device": "cpu",
        "target": "cpu",
        "feature_hash": manifest.feature_hash,
    }
    assert value(after, "housing_model_info", **info) == 1


def test_the_model_summary(client: TestClient, artifacts: Path) -> None:
    manifest = Manifest.load(artifacts)
    body = client.get("/v1/models/housing").json()
    assert manifest.compiled is not None
    assert body["name"] == "housing"
    assert body["version"] == manifest.model_version
    assert body["artifact"]["sha256"] == manifest.compiled.sha256
    assert body["artifact"]["batch_sizes"] == manifest.compiled.batch_sizes
    assert body["device"] == "cpu"
    assert body["features"]["hash"] == manifest.feature_hash
    assert body["training"]["metrics"]["val_rmse"] == manifest.training.metrics.val_rmse
    assert body["batching"]["max_batch_size"] == max(manifest.compiled.batch_sizes)


def test_the_landing_answer_points_to_the_docs_the_probes_and_the_model(
    client: TestClient, artifacts: Path
) -> None:
    body = client.get("/").json()
    assert body["status"] == "ready"
    assert (body["model_version"], body["device"]) == (
        Manifest.load(artifacts).model_version,
        "cpu",
    )
    links = [body["docs"], body["openapi"], body["model"], *body["health"].values()]
    assert links == [
        "/docs",
        "/openapi.json",
        "/v1/models/housing",
        "/health/live",
        "/health/ready",
    ]
    for link in links:
        assert client.get(link).status_code == 200, link
    assert body["predict"] == "/predict"


def test_an_unusual_record_is_answered_with_warnings_and_counted(client: TestClient) -> None:
    before = samples(client)
    usual = client.post("/predict", json=EXAMPLE_RECORD)
    assert usual.status_code == 200 and "warnings" not in usual.json()
    rich = {**EXAMPLE_RECORD, "median_income": 14.99, "housing_median_age": 52.0}
    odd = client.post("/predict", json={"instances": [EXAMPLE_RECORD, rich]})
    assert odd.status_code == 200
    body = odd.json()
    assert len(body["predictions"]) == 2  # a warning never blocks a prediction
    flagged = {(w["row"], w["field"], w["code"]) for w in body["warnings"]}
    assert (1, "median_income", "out_of_range") in flagged
    assert all(w["row"] == 1 for w in body["warnings"])
    after = samples(client)
    name = "housing_input_warnings_total"
    labels = {"field": "median_income", "code": "out_of_range"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_docs_routes_are_counted_under_their_own_route(client: TestClient) -> None:
    before = samples(client)
    for path in ("/openapi.json", "/docs", "/redoc", "/docs-assets/swagger-ui.css"):
        assert client.get(path).status_code == 200, path
    assert client.get("/docs-assets/nothing.js").status_code == 404
    assert client.post("/openapi.json").status_code == 405
    assert client.get("/nothing").status_code == 404
    after = samples(client)

    def delta(route: str, status: str = "200") -> float:
        name = "housing_requests_total"
        return value(after, name, route=route, status=status) - value(
            before, name, route=route, status=status
        )

    assert {r: delta(r) for r in ("/openapi.json", "/docs", "/redoc", "/docs-assets")} == {
        "/openapi.json": 1,
        "/docs": 1,
        "/redoc": 1,
        "/docs-assets": 1,
    }
    assert delta("/docs-assets", "404") == 1  # a missing file is the mount's own 404
    assert delta("/openapi.json", "405") == 1
    assert delta("unmatched", "200") == 0
    assert delta("unmatched", "404") == 1  # only a path no route has

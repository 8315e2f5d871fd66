"""The Amazon SageMaker container contract: ``GET /ping`` and ``POST /invocations``.

``/invocations`` takes the same JSON as ``/predict`` or ``text/csv`` rows
(``app.protocols.tabular``). The answer's format follows ``Accept`` (``text/csv``: one value
per line; ``application/json``), else the request's own format. SageMaker's other rules (port
8080, ``serve``, ``/opt/ml/model``) live in ``app.__main__.serve``.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.types import Receive

from app.api.endpoint import JSON, Answer, Guard, PredictionEndpoint, media_type
from app.api.health import readiness
from app.api.predict import decode_records, predict_dollars
from app.deps import RuntimeDep
from app.observe.access import Observer
from app.protocols.tabular import parse_csv
from app.runtime import ModelRuntime
from app.schemas import request_adapter
from modelspec.features import encode_records

CSV = "text/csv"

router = APIRouter(tags=["sagemaker"])


@router.get(
    "/ping",
    summary="SageMaker health check: 200 once the model can predict",
    responses={503: {"description": "Not ready: loading, or shutting down"}},
)
async def ping(runtime: RuntimeDep) -> JSONResponse:
    return readiness(runtime)


class InvocationsEndpoint(PredictionEndpoint):
    """``POST /invocations``."""

    route = "/invocations"
    media_types = frozenset({JSON, CSV, ""})

    def __init__(self, runtime: ModelRuntime, guard: Guard, observer: Observer) -> None:
        super().__init__(runtime, guard, observer)
        self.max_instances = runtime.settings.max_instances
        self.adapter = request_adapter(self.max_instances)

    async def answer(self, body: bytes, headers: dict[bytes, bytes], receive: Receive) -> Answer:
        runtime = self.runtime
        batcher = runtime.accepting_batcher()
        kind = media_type(headers.get(b"content-type")) or JSON
        batcher.arrive()
        try:
            if kind == CSV:
                encoded = encode_records(parse_csv(body, self.adapter), runtime.bedrooms_median)
                single = False
            else:
                encoded, single = decode_records(
                    body, self.adapter, self.max_instances, runtime.bedrooms_median
                )
        finally:
            batcher.arrived()
        values = await predict_dollars(runtime, encoded, receive)
        accept = headers.get(b"accept", b"").decode("latin-1")
        wants = CSV if CSV in accept else JSON if JSON in accept else kind
        if wants == CSV:
            return Answer("".join(f"{v}\n" for v in values).encode(), CSV)
        payload = {"house_value": values[0]} if single else {"predictions": values}
        return Answer(orjson.dumps(payload))

"""``POST /predict``: house values in dollars for one record or a batch of records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app.deps import RuntimeDep
from app.errors import NotReadyError
from app.schemas import HouseValue, Predictions, request_adapter
from modelspec.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS, encode

router = APIRouter(tags=["predict"])


def encode_houses(houses: Sequence[BaseModel], bedrooms_median: float) -> np.ndarray:
    """Validated request records -> the artifact's encoded float32 input."""
    nan = math.nan
    numeric = [
        [nan if (v := getattr(h, c)) is None else v for c in NUMERIC_COLUMNS] for h in houses
    ]
    ocean = [getattr(h, CATEGORICAL_COLUMN) for h in houses]
    return encode(np.asarray(numeric, dtype=np.float64), ocean, bedrooms_median)


def _dollars(value: float) -> float:
    return round(value, 2)


@router.post(
    "/predict",
    summary="Predict house values",
    response_model=None,
    responses={
        200: {
            "description": "One value for one record, a list in order for instances",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/HouseValue"},
                            {"$ref": "#/components/schemas/Predictions"},
                        ]
                    }
                }
            },
        },
        422: {"description": "Invalid body: each error names the field and the reason"},
        503: {"description": "The model is not loaded (starting or shutting down)"},
    },
)
async def predict_house_values(request: Request, runtime: RuntimeDep) -> Response:
    """Median house value in US dollars for each census block group in the body."""
    if not runtime.ready:
        raise NotReadyError("the model is not ready")
    parsed: Any = request_adapter(runtime.settings.max_instances).validate_json(
        await request.body()
    )
    single = not hasattr(parsed, "instances")
    houses = [parsed] if single else parsed.instances
    values = await runtime.predict(encode_houses(houses, runtime.bedrooms_median))
    if not np.isfinite(values).all():
        raise RuntimeError("the model produced a non-finite value")
    payload: dict[str, Any] = (
        {"house_value": _dollars(float(values[0]))}
        if single
        else {"predictions": [_dollars(v) for v in values.tolist()]}
    )
    return Response(orjson.dumps(payload), media_type="application/json")


# Registered in the OpenAPI components by app.main (the route answers raw bytes for speed).
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (HouseValue, Predictions)

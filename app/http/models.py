"""``GET /v1/models/housing``: what is being served, for people and dashboards."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.http.bodies import ErrorMessage, ModelInfo
from app.http.deps import RuntimeDep
from app.identity import MODEL_NAME
from modelspec.features import RAW_COLUMNS

# A Hugging Face data set id (owner/name), shown as it is; anything else is a file.
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def data_source(data: str) -> str:
    """The training data as anyone may see it: a hub id, or a file's name without its folder
    (a path says how the training host is laid out)."""
    if _HUB_ID.fullmatch(data) and not PurePath(data).suffix:
        return data
    return PurePath(data).name


router = APIRouter(tags=["models"])


@router.get(
    f"/v1/models/{MODEL_NAME}",
    summary="The served model: version, artifact hash, device, batch sizes, training metrics",
    response_model=ModelInfo,
    responses={503: {"model": ErrorMessage, "description": "The model is not loaded yet"}},
)
async def read_model(runtime: RuntimeDep) -> JSONResponse:
    manifest = runtime.manifest
    if manifest is None or manifest.compiled is None:
        return JSONResponse({"detail": "the model is not loaded yet"}, status_code=503)
    compiled, training = manifest.compiled, manifest.training
    body: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": manifest.model_version,
        "status": runtime.status.value,
        "device": runtime.device,
        "artifact": {
            "file": compiled.artifact,
            "sha256": compiled.sha256,
            "target": compiled.target,
            "batch_sizes": compiled.batch_sizes,
            "dynamic_batch": compiled.dynamic_batch,
            "compiler_args": compiled.compiler_args,
            "compiled_at": compiled.compiled_at,
            "torch_version": compiled.torch_version,
            "max_abs_diff_dollars": compiled.max_abs_diff,
        },
        "features": {"hash": manifest.feature_hash, "inputs": list(RAW_COLUMNS)},
        "training": {
            "data": data_source(training.data),
            "rows_train": training.rows_train,
            "rows_val": training.rows_val,
            "epochs": training.epochs,
            "created_at": training.created_at,
            "metrics": training.metrics.model_dump(),
        },
        "batching": {
            "max_batch_size": runtime.batcher.max_batch_size if runtime.batcher else None,
            "max_delay_ms": runtime.settings.max_delay_ms,
            "queue_rows": runtime.settings.queue_rows,
        },
        "intervals": {
            "coverages": runtime.intervals.coverages,
            "default_coverage": runtime.settings.interval_coverage,
            "method": None if manifest.intervals is None else manifest.intervals.method,
        },
    }
    return JSONResponse(body)

"""Probes for load balancers and orchestrators: liveness never depends on the model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.core.runtime import Status
from app.http.bodies import Readiness
from app.http.deps import RuntimeDep

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="Liveness: the process answers")
async def read_liveness() -> dict[str, str]:
    """200 whenever the process can answer HTTP, loaded or not."""
    return {"status": "alive"}


@router.get(
    "/ready",
    summary="Readiness: the model is loaded, warmed up and answering",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "Not ready: loading, failing device calls (status `failing`), "
            "or shutting down",
        }
    },
)
async def read_readiness(runtime: RuntimeDep) -> JSONResponse:
    """200 only once the model is loaded on its device and has passed warm-up; 503 otherwise.
    Also serves SageMaker's ``/ping``."""
    manifest = runtime.manifest
    body: dict[str, Any] = {
        "status": runtime.status.value,
        "device": runtime.device,
        "model_version": manifest.model_version if manifest else None,
    }
    if runtime.status is Status.FAILING:
        body["consecutive_failures"] = runtime.consecutive_failures
    if manifest is not None and manifest.compiled is not None:
        body["target"] = manifest.compiled.target
        body["batch_sizes"] = manifest.compiled.batch_sizes
    return JSONResponse(body, status_code=200 if runtime.ready else 503)

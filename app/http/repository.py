"""The Open Inference Protocol's model repository extension, as Triton and MLServer serve it:
``POST /v2/repository/models/housing/load`` reloads the model from the artifacts folder.

The new model is loaded and checked while the current one serves (``ModelRuntime.reload``),
then swapped in between two device calls. The answer says what happened: 200 with the version
now serving and the one before; 400 when the new artifact fails a check, 409 while another
reload runs, 503 before startup has finished -- each ``{"error": "..."}`` with the reason, and
the current model serving on. It is the control plane: it needs ``HOUSING_ADMIN_KEY`` (401
without it; the prediction routes' key is not it), and without one it is closed (403) unless
``HOUSING_CONTROL_OPEN`` opens it.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.core.runtime import ReloadRefused
from app.errors import RequestRefused
from app.http.bodies import OipErrorBody, Reloaded
from app.http.deps import RuntimeDep
from app.http.guard import Guard
from app.http.refusals import HEADERS, STATUS
from app.identity import MODEL_NAME

LOAD_PATH = f"/v2/repository/models/{MODEL_NAME}/load"


def repository_router(guard: Guard) -> APIRouter:
    router = APIRouter(tags=["open inference protocol"])

    @router.post(
        LOAD_PATH,
        summary="Reload the model from the artifacts folder, without dropping a request",
        response_model=Reloaded,
        responses={
            400: {"model": OipErrorBody, "description": "The new artifact failed a check"},
            401: {
                "model": OipErrorBody,
                "description": "HOUSING_ADMIN_KEY is set: no or wrong key",
            },
            403: {
                "model": OipErrorBody,
                "description": "Closed: no HOUSING_ADMIN_KEY, and HOUSING_CONTROL_OPEN is off",
            },
            409: {"model": OipErrorBody, "description": "Another reload is running"},
            503: {"model": OipErrorBody, "description": "Startup has not finished"},
        },
    )
    async def load(request: Request, runtime: RuntimeDep) -> JSONResponse:
        try:
            guard.check_admin(dict(request.scope["headers"]))
        except RequestRefused as exc:
            return JSONResponse({"error": str(exc)}, STATUS[exc.kind], HEADERS.get(exc.kind))
        started = time.perf_counter()
        try:
            previous, current = await runtime.reload()
        except ReloadRefused as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse(
            {
                "name": MODEL_NAME,
                "version": current.version,
                "previous_version": previous.version,
                "changed": current is not previous,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )

    return router

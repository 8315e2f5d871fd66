"""``create_app(settings)``: the application factory. No module-level app, no import-time work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import api_router, oip, predict, sagemaker
from app.api.docs import mount_docs
from app.api.endpoint import PredictionEndpoint
from app.api.guard import Guard
from app.api.oip import InferEndpoint
from app.api.predict import PredictEndpoint
from app.api.repository import repository_router
from app.api.sagemaker import InvocationsEndpoint
from app.errors import StartupError, install_error_handlers
from app.observe.access import RequestRecorder, RequestRecorderMiddleware
from app.reload import ArtifactWatch
from app.runtime import ModelRuntime
from app.schemas import request_type
from app.settings import Settings

logger = logging.getLogger("housing.app")


class HousingApp(FastAPI):
    """FastAPI for the probes and docs, with hot paths dispatched before its middleware.

    ``hot_paths`` maps an exact path to a bare ASGI endpoint; everything else goes through
    FastAPI as usual.
    """

    def __init__(self, hot_paths: dict[str, ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot_paths = hot_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.hot_paths.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, runtime: ModelRuntime | None = None) -> FastAPI:
    """Build the service around ``runtime`` (default: a new one for ``settings``)."""
    runtime = runtime or ModelRuntime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        try:
            await runtime.start()
        except StartupError as exc:
            # One clean line an operator can act on; uvicorn then exits non-zero.
            logger.error("cannot start: %s", exc)
            await runtime.close()
            raise
        watch = None
        if settings.model_poll_s:
            watch = ArtifactWatch(runtime, settings.model_poll_s)
            watch.start()
        try:
            yield {"runtime": runtime}
        finally:
            if watch is not None:
                await watch.stop()
            await runtime.close()

    guard = Guard.from_settings(settings)
    recorder = RequestRecorder(runtime.metrics, settings.access_log)
    endpoints: list[PredictionEndpoint[Any]] = [
        PredictEndpoint(runtime, guard, recorder),
        InvocationsEndpoint(runtime, guard, recorder),
        InferEndpoint(runtime, guard, recorder),
    ]
    app = HousingApp(
        hot_paths={e.route: e for e in endpoints},
        title="housing-inference",
        version="0.1.0",
        summary="California house prices from census block-group features, on Inferentia2",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their UI from a CDN: app.api.docs serves local ones
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(repository_router(guard))
    app.include_router(prediction_docs(settings.max_instances))
    mount_docs(app)
    app.add_middleware(
        RequestRecorderMiddleware,
        recorder=recorder,
        model_version=lambda: None if runtime.model is None else runtime.model.version,
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


REQUEST_ID = "X-Request-ID"


def prediction_docs(max_instances: int) -> APIRouter:
    """Documentation-only FastAPI routes of the bare prediction endpoints
    (``app.api.documentation``): their OpenAPI, from the types that parse their bodies."""
    router = APIRouter()
    body = request_type(max_instances)
    predict.document(router, body)
    sagemaker.document(router, body)
    oip.document(router)
    return router


def _build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the request id every route takes and answers with, and without
    FastAPI's default 422 (``HTTPValidationError``), which no route here answers: the
    prediction routes document their own 422 or 400, and the others take no parameters."""
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    fastapi_422 = {"$ref": "#/components/schemas/HTTPValidationError"}
    for item in schema["paths"].values():
        for operation in item.values():
            answer = operation["responses"].get("422", {})
            if answer.get("content", {}).get("application/json", {}).get("schema") == fastapi_422:
                del operation["responses"]["422"]
            _document_request_id(operation)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def _document_request_id(operation: dict[str, Any]) -> None:
    """Every route takes any ``X-Request-ID`` and answers with one: the caller's if it is a
    plain token (``app.observe.logs``), else a new one. Documented, so the fuzzer both sends
    odd ids and checks that no answer ever carries an unsafe one."""
    operation.setdefault("parameters", []).append(
        {
            "name": REQUEST_ID,
            "in": "header",
            "required": False,
            "description": "Your id for this request (echoed if it is 1-128 of A-Z a-z 0-9 "
            "._:-, else replaced by a new one); it is on the log lines and a 500's error_id",
            "schema": {"type": "string"},
        }
    )
    header = {
        "description": "The request's id: the caller's, or a new one",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    }
    for answer in operation["responses"].values():
        answer.setdefault("headers", {})[REQUEST_ID] = header

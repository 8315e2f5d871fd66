"""The HTTP door's application, on the objects the composition root (``app.compose``) built.

No module-level app, no import-time work."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from app.codecs.schemas import request_type
from app.core.inference import InferencePath
from app.core.runtime import ModelRuntime
from app.http import health, metrics, models, oip, predict, sagemaker
from app.http.endpoint import PredictionEndpoint
from app.http.guard import Guard
from app.http.oip import InferEndpoint, VersionedInfer
from app.http.pages import mount_docs
from app.http.predict import PredictEndpoint
from app.http.refusals import install_error_handlers
from app.http.repository import repository_router
from app.http.sagemaker import InvocationsEndpoint
from app.identity import SERVER_NAME, SUMMARY, server_version
from app.observe.access import RequestRecorder, RequestRecorderMiddleware
from app.settings import Settings


class HousingApp(FastAPI):
    """FastAPI for the probes and docs, with the prediction routes dispatched before FastAPI's
    routing (their cost is the hot path's).

    ``hot_paths`` maps an exact path to a bare ASGI endpoint; ``hot_match`` gives the bare
    endpoint of a path of some other shape, or None (the versioned ``infer``: a prefix test,
    run only for paths not in ``hot_paths``, so the exact paths cost one dict lookup as
    before); everything else goes through FastAPI as usual. Middleware a user adds
    (``app.add_middleware``: CORS, auth, headers) applies to the prediction routes too: their
    requests go through the same user middleware, in the same order, before their endpoint
    (``_hot_stack``). The service's own access recording is not repeated there: the endpoints
    record themselves.
    """

    def __init__(
        self,
        hot_paths: dict[str, ASGIApp],
        hot_match: Callable[[str], ASGIApp | None] = lambda _: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hot_paths = hot_paths
        self.hot_match = hot_match
        self._hot_stack: ASGIApp | None = None
        self._hot_built = False

    def _build_hot_stack(self) -> ASGIApp | None:
        """The user's middleware around ``_dispatch_hot``; None without any (the endpoint is
        called directly)."""
        stack: ASGIApp = self._dispatch_hot
        wrapped = False
        for middleware in reversed(self.user_middleware):
            cls, args, kwargs = middleware
            if cls is not RequestRecorderMiddleware:
                stack = cls(stack, *args, **kwargs)
                wrapped = True
        return stack if wrapped else None

    async def _dispatch_hot(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        endpoint = self.hot_paths.get(path) or self.hot_match(path)
        if endpoint is None:  # a user middleware rewrote the path: FastAPI routes it
            await super().__call__(scope, receive, send)
            return
        await endpoint(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            endpoint = self.hot_paths.get(path) or self.hot_match(path)
            if endpoint is not None:
                if not self._hot_built:  # once, at the first request: middleware is in
                    self._hot_stack, self._hot_built = self._build_hot_stack(), True
                stack = self._hot_stack
                await (endpoint if stack is None else stack)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]


def build_http_app(
    settings: Settings,
    runtime: ModelRuntime,
    plane: InferencePath,
    guard: Guard,
    recorder: RequestRecorder,
    lifespan: Lifespan,
) -> FastAPI:
    """The HTTP door on the objects of the composition root (``app.compose``)."""
    infer = InferEndpoint(plane, guard, recorder)
    endpoints: list[PredictionEndpoint[Any]] = [
        PredictEndpoint(plane, guard, recorder),
        InvocationsEndpoint(plane, guard, recorder),
        infer,
    ]
    versioned = VersionedInfer(infer)
    app = HousingApp(
        hot_paths={e.route: e for e in endpoints},
        hot_match=lambda path: None if versioned.version(path) is None else versioned,
        title=SERVER_NAME,
        version=server_version(),
        summary=SUMMARY,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their UI from a CDN: app.http.pages serves local ones
        redoc_url=None,
    )
    install_error_handlers(app)
    for module in (health, sagemaker, oip, models, metrics):
        app.include_router(module.router)
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
    (``app.http.openapi``): their OpenAPI, from the types that parse their bodies."""
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

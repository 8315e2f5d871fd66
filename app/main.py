"""``create_app(settings)``: the application factory. No module-level app, no import-time work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from app.api import api_router
from app.api.predict import RESPONSE_MODELS
from app.errors import StartupError, install_error_handlers
from app.runtime import ModelRuntime
from app.schemas import request_adapter
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD

logger = logging.getLogger("housing.app")

REF_TEMPLATE = "#/components/schemas/{model}"


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
            runtime.close()
            raise
        try:
            yield {"runtime": runtime}
        finally:
            runtime.close()

    app = FastAPI(
        title="housing-inference",
        version="0.1.0",
        summary="California house prices from census block-group features, on Inferentia2",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(api_router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _build_openapi(app, settings.max_instances)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _build_openapi(app: FastAPI, max_instances: int) -> dict[str, Any]:
    """FastAPI's schema plus the request body of /predict, which the route parses itself."""
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = request_adapter(max_instances).json_schema(ref_template=REF_TEMPLATE)
    components.update(body.pop("$defs", {}))
    for model in RESPONSE_MODELS:
        components[model.__name__] = TypeAdapter(model).json_schema(ref_template=REF_TEMPLATE)
    schema["paths"]["/predict"]["post"]["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": body,
                "examples": {
                    "one record": {"value": EXAMPLE_RECORD},
                    "instances": {
                        "value": {
                            "instances": [
                                EXAMPLE_RECORD,
                                {**EXAMPLE_RECORD, "total_bedrooms": None},
                            ]
                        }
                    },
                },
            }
        },
    }
    return schema

"""The front door: ``GET /``, and the interactive docs served from this installation.

FastAPI's default ``/docs`` and ``/redoc`` load their JavaScript and CSS from a CDN, so they
render a blank page where inf2 instances usually run: in private subnets without internet.
Here the pages load Swagger UI's and ReDoc's files from ``/docs-assets``, which serves the
copies the ``fastapi-offline`` package ships (chosen because it ships both UIs and keeps
them current; only its files are used, not its FastAPI subclass). No page refers to another
host: ReDoc's Google Fonts are off, and so is Swagger UI's online validator badge.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from app.http.deps import RuntimeDep
from app.identity import SERVER_NAME

ASSETS = "/docs-assets"
OPENAPI = "/openapi.json"
TITLE = SERVER_NAME

router = APIRouter(tags=["about"])


def mount_docs(app: FastAPI) -> None:
    """Serve the UI files and the two pages (the app is built with FastAPI's own docs off)."""
    folder = Path(str(resources.files("fastapi_offline") / "static"))
    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")
    app.include_router(router)


@router.get("/docs", include_in_schema=False)
async def read_swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI,
        title=f"{TITLE} - Swagger UI",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", include_in_schema=False)
async def read_redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url=OPENAPI,
        title=f"{TITLE} - ReDoc",
        redoc_js_url=f"{ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS}/favicon.png",
        with_google_fonts=False,
    )


class Health(BaseModel):
    live: str = "/health/live"
    ready: str = "/health/ready"


class Landing(BaseModel):
    """Where to start: the docs, the probes, the model and its state."""

    service: str = TITLE
    docs: str = Field("/docs", description="Swagger UI (ReDoc at /redoc), served locally")
    openapi: str = OPENAPI
    predict: str = Field("/predict", description="POST one record or {'instances': [...]}")
    health: Health = Health()
    model: str = Field("/v1/models/housing", description="The served model in detail")
    status: str = Field(description="`starting`, `ready`, `failing` or `stopping`")
    model_version: str | None = Field(description="null until the model is loaded")
    device: str | None = Field(description="`neuron`, `xla` or `cpu`; null until loaded")


@router.get(
    "/", summary="Where to start: docs, health probes and the model", response_model=Landing
)
async def read_landing(runtime: RuntimeDep) -> Landing:
    manifest = runtime.manifest
    return Landing(
        status=runtime.status.value,
        model_version=manifest.model_version if manifest else None,
        device=runtime.device,
    )

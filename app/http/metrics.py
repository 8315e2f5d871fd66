"""``GET /metrics``: Prometheus text format (see ``app.observe.metrics`` for the series)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.http.deps import RuntimeDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def read_metrics(runtime: RuntimeDep) -> Response:
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)

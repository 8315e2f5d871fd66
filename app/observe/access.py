"""Per-request bookkeeping: request id, metrics, access log -- for every route.

The bare prediction endpoints call ``RequestRecorder.finish`` themselves (no wrapper around their
``send``: the hot path stays lean); FastAPI's routes go through ``RequestRecorderMiddleware``.
A request's ``route`` label is the path of the route that answered it (``route_label``), and
``unmatched`` only when no route has its path: the labels stay as few as the routes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observe.logs import REQUEST_ID_HEADER, request_id_from
from app.observe.metrics import UNMEASURED_PATHS, Metrics

access_logger = logging.getLogger("housing.access")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestRecorder:
    def __init__(self, metrics: Metrics, access_log: bool) -> None:
        self.metrics = metrics
        self.access_log = access_log

    def finish(
        self, scope: Scope, route: str, status: int, started: float, request_id: str
    ) -> None:
        """Count the answer and, if the access log is on, write its line."""
        seconds = time.perf_counter() - started
        if route not in UNMEASURED_PATHS:
            self.metrics.observe_request(route, status, seconds)
        if self.access_log:
            client = scope.get("client")
            access_logger.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                },
            )

    def finish_rpc(
        self, method: str, code: str, started: float, request_id: str, peer: str
    ) -> None:
        """``finish`` for a gRPC call: ``method`` is its path, ``code`` its status's name."""
        seconds = time.perf_counter() - started
        self.metrics.observe_request(method, code, seconds)
        if self.access_log:
            access_logger.info(
                "gRPC %s %s",
                method,
                code,
                extra={
                    "request_id": request_id,
                    "method": "gRPC",
                    "path": method,
                    "route": method,
                    "status": code,
                    "duration_ms": round(seconds * 1000, 3),
                    "client": peer,
                },
            )


UNMATCHED = "unmatched"


def route_label(scope: Scope, path: str, root_path: str) -> str:
    """The path of the route that answered a request, from its ``scope`` after the app ran;
    ``path`` and ``root_path`` are the scope's before it ran (a mount changes them).

    FastAPI puts its own routes in the scope (``scope["route"]``), but not the plain Starlette
    routes and mounts it also serves: ``/openapi.json`` and the docs' static files
    (``/docs-assets``). Those are found again in the router's routes; a route that matches the
    path but not the method (a 405) counts too. Only a path no route has is ``unmatched``.
    """
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", UNMATCHED))
    router = scope.get("router")
    if router is None:
        return UNMATCHED
    asked = {**scope, "path": path, "root_path": root_path}
    for candidate in router.routes:
        match, _ = candidate.matches(asked)
        if match is not Match.NONE:
            return str(getattr(candidate, "path", UNMATCHED))
    return UNMATCHED


class RequestRecorderMiddleware:
    """Request id in and out, the model's version out (``X-Model-Version``, from
    ``model_version``: None before a model is loaded), metrics and the access log for
    FastAPI's routes."""

    def __init__(
        self,
        app: ASGIApp,
        recorder: RequestRecorder,
        model_version: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.app = app
        self.recorder = recorder
        self.model_version = model_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(header(scope, REQUEST_ID_HEADER.encode()))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # if the app dies before answering, that is what the client sees

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                version = self.model_version()
                if version is not None:
                    headers.append((b"x-model-version", version.encode()))
                message = {**message, "headers": headers}
            await send(message)

        path, root_path = scope["path"], scope.get("root_path", "")
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = route_label(scope, path, root_path)
            self.recorder.finish(scope, route, status, started, request_id)

"""Middleware a user adds to the app applies to every route, the prediction routes included
(they skip FastAPI's routing for speed, not the user's middleware)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.middleware.cors import CORSMiddleware
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.compose import create_app
from app.settings import Settings
from modelspec.features import EXAMPLE_RECORD


class Stamp:
    """Adds ``x-stamp`` to every answer, and refuses (401) requests without ``x-pass``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (b"x-pass", b"yes") not in scope["headers"]:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"no pass"})
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-stamp", b"1")]
            await send(message)

        await self.app(scope, receive, stamped)


ROUTES = [
    ("/predict", EXAMPLE_RECORD),
    ("/invocations", {"instances": [EXAMPLE_RECORD]}),
    ("/ping", None),
]


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_a_users_middleware_sees_every_route(artifacts: Path, path: str, body: object) -> None:
    app = create_app(Settings(artifacts=artifacts, device="cpu"))
    app.add_middleware(Stamp)
    with TestClient(app) as client:
        send = client.get if body is None else client.post
        kwargs = {} if body is None else {"json": body}
        refused = send(path, **kwargs)  # type: ignore[operator]
        passed = send(path, headers={"x-pass": "yes"}, **kwargs)  # type: ignore[operator]
    assert refused.status_code == 401 and refused.text == "no pass"
    assert passed.status_code == 200 and passed.headers["x-stamp"] == "1"


def test_cors_preflight_and_headers_on_predict(artifacts: Path) -> None:
    app = create_app(Settings(artifacts=artifacts, device="cpu"))
    app.add_middleware(CORSMiddleware, allow_origins=["https://app.example"], allow_methods=["*"])
    origin = {"origin": "https://app.example"}
    with TestClient(app) as client:
        preflight = client.options(
            "/predict", headers={**origin, "access-control-request-method": "POST"}
        )
        answer = client.post("/predict", json=EXAMPLE_RECORD, headers=origin)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://app.example"

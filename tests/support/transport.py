"""A transport that records what is written to it, and a small ASGI app, for driving uvicorn's
real protocol code without a socket."""

from __future__ import annotations

import asyncio
from typing import Any


class Recorder(asyncio.Transport):
    """The socket's side: what was written, in order, one entry per write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def body_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``{"ok":1}``; on /stream, a first part now and the rest a loop pass later."""
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-type", b"application/json")]
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        return
    headers.append((b"content-length", b"8"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"ok":1}'})

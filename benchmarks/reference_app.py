"""The ceiling for any Python server on this stack: a bare ASGI app on uvicorn.

It reads the body, parses the JSON (orjson) and returns a constant -- no framework, no
validation, no model. ``make bench`` measures the service against it in the same run.

    HOUSING_PORT=8081 python -m benchmarks.reference_app
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import uvicorn

_ANSWER = orjson.dumps({"house_value": 123456.78})
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_ANSWER))]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    orjson.loads(body or b"{}")
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})


def main() -> None:
    # The same variables as the service, so the benchmark starts both alike.
    host = os.environ.get("HOUSING_HOST", "127.0.0.1")
    port = int(os.environ.get("HOUSING_PORT", "8081"))
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()

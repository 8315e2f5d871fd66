"""The ceiling for any Python server on this stack: a bare ASGI app on uvicorn.

It reads the body, parses the JSON (orjson) and returns a constant -- no framework, no
validation, no model. ``make bench`` measures the service against it in the same run.

    python -m benchmarks.reference_app --port 8081
"""

from __future__ import annotations

import argparse
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
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()

"""``POST /predict``: house values in dollars for one record or a batch of records.

This is the hot path, so it is a bare ASGI endpoint rather than a FastAPI route: routing,
dependency injection and Request/Response objects cost several times what parsing, validating
and running the model do (see the README's benchmark). It reads the body, checks it (the fast
accept-only check of ``app.fastparse``, else the pydantic validator, which explains errors),
queues the rows for the batcher, and writes the answer with orjson. Its OpenAPI entry is
written from the same schemas by ``openapi_path``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import orjson
from starlette.types import Message, Receive, Scope, Send

from app.batching import Ticket
from app.errors import ClientDisconnected, NotReadyError, error_answer
from app.fastparse import accept
from app.runtime import ModelRuntime
from app.schemas import request_adapter
from modelspec.features import EXAMPLE_RECORD, encode, encode_records

_JSON = (b"content-type", b"application/json")


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # the common case: the whole body in one message
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


# Bodies from this size (about 8 records) take the fast check first. Its numpy work has a
# fixed cost that outweighs pydantic's ~2.4 us per record on small bodies (measured: with the
# check on every body, single-record req/s at c=64 fell by about a quarter).
FAST_CHECK_BYTES = 2048

# A request still waiting after this long starts watching for its client's disconnect. Not
# from the start: a watcher is a task per request, which costs more than the whole answer of
# a request that is served within a batch or two (measured: -30% req/s and a 100 ms p99).
WATCH_AFTER_S = 0.02


async def result_unless_disconnected(ticket: Ticket, receive: Receive) -> np.ndarray:
    """The ticket's result; if the client disconnects first, its rows are dropped unrun.

    Once the body is read, the next ASGI ``receive()`` only returns when the client goes away.
    """
    loop = asyncio.get_running_loop()
    watch: asyncio.Future[Message] | None = None

    def on_message(task: asyncio.Future[Message]) -> None:
        ok = not task.cancelled() and task.exception() is None
        if ok and task.result()["type"] == "http.disconnect":
            ticket.abandon(ClientDisconnected())

    def start_watching() -> None:
        nonlocal watch
        watch = asyncio.ensure_future(receive())
        watch.add_done_callback(on_message)

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
    try:
        return await ticket.result()
    finally:
        timer.cancel()
        if watch is not None:
            watch.cancel()


async def send_json(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [_JSON, (b"content-length", b"%d" % len(body))]
    if headers:
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _dollars(values: np.ndarray) -> list[float]:
    # Python's round for a few values (np.round has a fixed cost of several us), numpy's for many.
    if values.shape[0] <= 8:
        dollars = [round(v, 2) for v in values.tolist()]
    else:
        dollars = np.round(values, 2).tolist()
    if not all(map(math.isfinite, dollars)):
        raise RuntimeError("the model produced a non-finite value")
    return dollars


class PredictEndpoint:
    """The ASGI app behind ``POST /predict``."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.max_instances = runtime.settings.max_instances
        self.adapter = request_adapter(self.max_instances)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            body = b'{"detail":"Method Not Allowed"}'
            await send_json(send, 405, body, {"Allow": "POST"})
            return
        try:
            payload = await self._predict(receive)
        except ClientDisconnected:
            return  # nobody is left to answer
        except Exception as exc:  # noqa: BLE001 - every failure gets a clean answer
            status, answer, headers = error_answer(exc, "POST /predict")
            await send_json(send, status, orjson.dumps(answer), headers)
            return
        await send_json(send, 200, orjson.dumps(payload), {})

    async def _predict(self, receive: Receive) -> dict[str, Any]:
        runtime = self.runtime
        batcher = runtime.batcher
        if not runtime.ready or batcher is None:
            raise NotReadyError("the model is not ready")
        batcher.arrive()
        try:
            body = await read_body(receive)
            fast = accept(body, self.max_instances) if len(body) >= FAST_CHECK_BYTES else None
            if fast is not None:
                single = fast.single
                encoded = encode(fast.numeric, fast.ocean, runtime.bedrooms_median)
            else:  # pydantic decides, and explains what is wrong
                parsed = self.adapter.validate_json(body)
                single = "instances" not in parsed
                records = (parsed,) if single else parsed["instances"]
                encoded = encode_records(records, runtime.bedrooms_median)
            ticket = runtime.submit(encoded)
        finally:
            batcher.arrived()
        values = _dollars(await result_unless_disconnected(ticket, receive))
        return {"house_value": values[0]} if single else {"predictions": values}


def openapi_path(body_schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI path item of ``POST /predict``."""
    second = {**EXAMPLE_RECORD, "total_bedrooms": None, "median_income": 3.5}
    return {
        "post": {
            "tags": ["predict"],
            "summary": "Predict house values",
            "description": "Median house value in US dollars for each census block group in "
            'the body: one record, or `{"instances": [...]}` answered in order.',
            "operationId": "predict_house_values",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": body_schema,
                        "examples": {
                            "one record": {"value": EXAMPLE_RECORD},
                            "instances": {"value": {"instances": [EXAMPLE_RECORD, second]}},
                        },
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "One value for one record, a list in order for instances",
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/HouseValue"},
                                    {"$ref": "#/components/schemas/Predictions"},
                                ]
                            }
                        }
                    },
                },
                "422": {"description": "Invalid body: each error names the field and reason"},
                "503": {"description": "Not ready (starting, stopping) or overloaded: retry"},
                "504": {"description": "The deadline (HOUSING_REQUEST_TIMEOUT_S) passed"},
            },
        }
    }

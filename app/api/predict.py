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
from starlette.types import Message, Receive

from app.api.endpoint import Answer, Guard, PredictionEndpoint
from app.batching import Ticket
from app.errors import ClientDisconnected
from app.fastparse import accept
from app.observe.access import Observer
from app.runtime import ModelRuntime
from app.schemas import RequestAdapter, request_adapter
from modelspec.features import EXAMPLE_RECORD, encode, encode_records

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


def dollars(values: np.ndarray) -> list[float]:
    # Python's round for a few values (np.round has a fixed cost of several us), numpy's for many.
    if values.shape[0] <= 8:
        dollars = [round(v, 2) for v in values.tolist()]
    else:
        dollars = np.round(values, 2).tolist()
    if not all(map(math.isfinite, dollars)):
        raise RuntimeError("the model produced a non-finite value")
    return dollars


def decode_records(
    body: bytes, adapter: RequestAdapter, max_instances: int, median: float
) -> tuple[np.ndarray, bool]:
    """A ``/predict`` JSON body -> (encoded rows, whether it was a single record).

    Large bodies take the fast accept-only check first; pydantic decides (and explains) the rest.
    """
    fast = accept(body, max_instances) if len(body) >= FAST_CHECK_BYTES else None
    if fast is not None:
        return encode(fast.numeric, fast.ocean, median), fast.single
    parsed = adapter.validate_json(body)
    single = "instances" not in parsed
    records = (parsed,) if single else parsed["instances"]
    return encode_records(records, median), single


async def predict_dollars(
    runtime: ModelRuntime, encoded: np.ndarray, receive: Receive
) -> list[float]:
    """Queue encoded rows for the device and wait for their values in dollars, in order."""
    ticket = runtime.submit(encoded)
    return dollars(await result_unless_disconnected(ticket, receive))


class PredictEndpoint(PredictionEndpoint):
    """``POST /predict``."""

    route = "/predict"

    def __init__(self, runtime: ModelRuntime, guard: Guard, observer: Observer) -> None:
        super().__init__(runtime, guard, observer)
        self.max_instances = runtime.settings.max_instances
        self.adapter = request_adapter(self.max_instances)

    async def answer(self, body: bytes, headers: dict[bytes, bytes], receive: Receive) -> Answer:
        runtime = self.runtime
        batcher = runtime.accepting_batcher()
        batcher.arrive()
        try:
            encoded, single = decode_records(
                body, self.adapter, self.max_instances, runtime.bedrooms_median
            )
        finally:
            batcher.arrived()
        values = await predict_dollars(runtime, encoded, receive)
        payload = {"house_value": values[0]} if single else {"predictions": values}
        return Answer(orjson.dumps(payload))


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

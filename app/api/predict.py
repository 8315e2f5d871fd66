"""``POST /predict``: house values in dollars for one record or a batch of records.

This is the hot path, so it is a bare ASGI endpoint rather than a FastAPI route: routing,
dependency injection and Request/Response objects cost several times what parsing, validating
and running the model do (see the README's benchmark). It reads the body, checks it (the fast
accept-only check of ``app.fastparse``, else the pydantic validator, which explains errors),
queues the rows for the batcher, and writes the answer with orjson. Its OpenAPI entry is
written from the same schemas by ``openapi_path``.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from app.api.endpoint import Answer, Decoded, Guard, PredictionEndpoint
from app.fastparse import accept
from app.flags import Flag
from app.observe.access import Observer
from app.runtime import ModelRuntime
from app.schemas import (
    ErrorMessage,
    HouseValue,
    InternalError,
    Predictions,
    ValidationErrors,
    request_adapter,
)
from modelspec.features import EXAMPLE_RECORD, encode, encode_records

# Bodies from this size (about 8 records) take the fast check first. Its numpy work has a
# fixed cost that outweighs pydantic's ~2.4 us per record on small bodies (measured: with the
# check on every body, single-record req/s at c=64 fell by about a quarter).
FAST_CHECK_BYTES = 2048


class PredictEndpoint(PredictionEndpoint):
    """``POST /predict``: one record, or ``{"instances": [...]}``."""

    route = "/predict"

    def __init__(self, runtime: ModelRuntime, guard: Guard, observer: Observer) -> None:
        super().__init__(runtime, guard, observer)
        self.max_instances = runtime.settings.max_instances
        self.adapter = request_adapter(self.max_instances)

    def decode(self, body: bytes, headers: dict[bytes, bytes]) -> Decoded:
        """Large bodies take the fast accept-only check first; pydantic decides (and explains)
        the rest. The context is whether the body was a single record."""
        median = self.runtime.bedrooms_median
        fast = accept(body, self.max_instances) if len(body) >= FAST_CHECK_BYTES else None
        if fast is not None:
            return Decoded(encode(fast.numeric, fast.ocean, median), fast.single)
        parsed = self.adapter.validate_json(body)
        single = "instances" not in parsed
        records = (parsed,) if single else parsed["instances"]
        return Decoded(encode_records(records, median), single)

    def reply(
        self, values: list[float], decoded: Decoded, headers: dict[bytes, bytes], flags: list[Flag]
    ) -> Answer:
        body: dict[str, Any] = (
            {"house_value": values[0]} if decoded.context else {"predictions": values}
        )
        if flags:
            body["warnings"] = flags
        return Answer(orjson.dumps(body))


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to ``model``'s schema (``app.main`` puts it in the components)."""
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": "string"}}


def refusals(error: dict[str, Any], internal: dict[str, Any]) -> dict[str, Any]:
    """The answers every prediction route shares besides its own 200 and invalid-body answer:
    ``app.api.endpoint``'s checks (401, 405, 413, 415), the batcher (503, 504) and a bug (500),
    each with ``error`` (``internal`` for the 500) as the schema of its body."""

    def answer(description: str, **headers: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"description": description, "content": json_body(error)}
        if headers:
            doc["headers"] = {name: _header(text) for name, text in headers.items()}
        return doc

    return {
        "401": answer(
            "HOUSING_API_KEY is set and the request has no or the wrong key",
            **{"WWW-Authenticate": "Bearer"},
        ),
        "405": answer("Another method than POST", Allow="POST"),
        "413": answer("The body is larger than HOUSING_MAX_BODY_BYTES (the connection closes)"),
        "415": answer("A Content-Type this route does not take"),
        "500": {
            "description": "A bug or a device fault; error_id is in the log with the trace",
            "content": json_body(internal),
        },
        "503": answer(
            "Not ready (starting, stopping) or overloaded: retry", **{"Retry-After": "Seconds"}
        ),
        "504": answer("The deadline (HOUSING_REQUEST_TIMEOUT_S) passed"),
    }


def invalid_body() -> dict[str, Any]:
    return {
        "422": {
            "description": "Invalid body: each error names the field and the reason",
            "content": json_body(ref(ValidationErrors)),
        }
    }


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
                    "content": json_body({"oneOf": [ref(HouseValue), ref(Predictions)]}),
                },
                **invalid_body(),
                **refusals(ref(ErrorMessage), ref(InternalError)),
            },
        }
    }

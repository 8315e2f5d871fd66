"""OpenAPI of the bare prediction endpoints, declared through FastAPI itself.

``/predict``, ``/invocations`` and OIP infer are answered by bare ASGI endpoints before
FastAPI's routing (``app.http.app.HousingApp``), so FastAPI never sees them. Each also gets a
FastAPI route with the same path and method, the pydantic types that parse its body, and
its answers as ``response_model`` and ``responses``: FastAPI writes their OpenAPI like any
route's, and ``/docs`` shows them. Those routes are never dispatched; their handler raises
``DocumentationOnly``, which a test checks never happens.
"""

from __future__ import annotations

import inspect
from typing import Any, NoReturn

from fastapi import APIRouter
from pydantic import BaseModel


class DocumentationOnly(RuntimeError):
    """A documentation route was dispatched: the hot path for its path is missing."""


def documented_post(
    router: APIRouter,
    route: str,
    operation_id: str,
    parameters: dict[str, Any],
    **documentation: Any,
) -> None:
    """Add ``POST route`` to ``router`` for the schema only. ``parameters`` maps each
    parameter's name to its annotation (``Annotated[type, Body(...)]``, ``Header(...)``) or to
    ``(annotation, default)``; ``documentation`` is APIRouter.post's (summary, responses...)."""

    async def endpoint(**_: Any) -> NoReturn:
        raise DocumentationOnly(f"POST {route} is answered by its bare endpoint, not FastAPI")

    endpoint.__name__ = operation_id
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=spec[0] if isinstance(spec, tuple) else spec,
                default=spec[1] if isinstance(spec, tuple) else inspect.Parameter.empty,
            )
            for name, spec in parameters.items()
        ]
    )
    router.post(route, operation_id=operation_id, **documentation)(endpoint)


def _answer(model: type[BaseModel], description: str, **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": model, "description": description}
    if headers:
        answer["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answer


def refusals(error: type[BaseModel], internal: type[BaseModel]) -> dict[int | str, Any]:
    """The answers every prediction route shares besides its own 200 and invalid-body answer:
    ``app.http.endpoint``'s checks (401, 405, 413, 415), the batcher (503, 504) and a bug (500),
    with ``error`` (``internal`` for the 500) as the body."""
    return {
        401: _answer(
            error,
            "HOUSING_API_KEY is set and the request has no or the wrong key",
            **{"WWW-Authenticate": "Bearer"},
        ),
        405: _answer(error, "Another method than POST", Allow="POST"),
        413: _answer(
            error, "The body is larger than HOUSING_MAX_BODY_BYTES (the connection closes)"
        ),
        415: _answer(error, "A Content-Type this route does not take"),
        500: _answer(internal, "A bug or a device fault; error_id is in the log with the trace"),
        503: _answer(
            error,
            "Not ready (starting, stopping) or overloaded: retry",
            **{"Retry-After": "Seconds"},
        ),
        504: _answer(error, "The deadline (HOUSING_REQUEST_TIMEOUT_S) passed"),
    }

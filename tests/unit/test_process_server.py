"""What app/process/server.py relies on in uvicorn's private internals, checked on the
installed one."""

from __future__ import annotations

import inspect
import signal

import uvicorn


async def _app(scope: object, receive: object, send: object) -> None:
    """An ASGI app that is never called: the server is only constructed."""


def test_uvicorn_still_captures_exit_signals_in_the_private_list_the_drain_delay_uses() -> None:
    server = uvicorn.Server(uvicorn.Config(_app))
    assert server._captured_signals == [], (
        "uvicorn.Server has no _captured_signals list any more: HousingServer.handle_exit "
        "(app/process/server.py) appends to it during HOUSING_DRAIN_DELAY_S. Adapt it, then the "
        "pin "
        "in pyproject.toml."
    )
    server.handle_exit(signal.SIGTERM, None)
    # uvicorn's own handling: the signal is kept (to re-raise after shutdown) and exit is due.
    assert server._captured_signals == [signal.SIGTERM]
    assert server.should_exit


def test_uvicorn_still_waits_for_requests_in_flight_in_the_private_method_grpc_extends() -> None:
    server = uvicorn.Server(uvicorn.Config(_app))
    wait = getattr(server, "_wait_tasks_to_complete", None)
    assert wait is not None and inspect.iscoroutinefunction(wait), (
        "uvicorn.Server has no _wait_tasks_to_complete any more: HousingServer "
        "(app/process/server.py) "
        "extends it so that gRPC calls in flight finish before the lifespan closes the "
        "batcher. Adapt it, then the pin in pyproject.toml."
    )
    source = inspect.getsource(uvicorn.Server.shutdown)
    assert "self._wait_tasks_to_complete()" in source and "timeout_graceful_shutdown" in source

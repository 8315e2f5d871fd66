"""Serve the model over HTTP with uvicorn.

    HOUSING_ARTIFACTS=artifacts HOUSING_DEVICE=auto python -m app

One process serves one device: on Inferentia that is one NeuronCore group, so scale out with
more processes each given its own ``NEURON_RT_VISIBLE_CORES``, never ``--workers`` sharing one.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import uvicorn
from pydantic import ValidationError

from app.errors import StartupError
from app.main import create_app
from app.settings import Settings


class _HideStartupTraceback(logging.Filter):
    """Drop the lifespan traceback of a StartupError: its message was already logged cleanly
    by the app, with the hint that fixes it, and a stack trace only buries that line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not (isinstance(msg, str) and msg.startswith("Traceback")):
            return True
        return f"{StartupError.__module__}.{StartupError.__name__}:" not in msg


def _already_drained(signum: int, frame: FrameType | None) -> None:
    """The server has shut down gracefully by the time uvicorn re-raises the signal."""


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "HOUSING_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"error: {name}: {err['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
    )
    logging.getLogger("uvicorn.error").addFilter(_HideStartupTraceback())
    server = uvicorn.Server(config)
    # uvicorn drains on SIGTERM/SIGINT, then restores the handlers it found and raises the
    # signal again. With these no-op handlers a drained shutdown exits 0 instead of dying by
    # the signal (143), so a non-zero exit always means something went wrong.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _already_drained)
    server.run()
    # uvicorn returns without raising when the lifespan startup fails: make that an exit code.
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())

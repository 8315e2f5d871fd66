"""One server process: uvicorn around the app, with the shutdown an orchestrator expects.

SIGHUP reloads the model from the artifacts folder without dropping a request
(``ModelRuntime.reload``). On SIGTERM (or SIGINT):

1. readiness turns 503 at once (``runtime.begin_stopping``), so probes take the instance out;
2. for ``HOUSING_DRAIN_DELAY_S`` the server still accepts and answers (a load balancer that
   polls every few seconds needs that long to notice; 0 skips this step);
3. uvicorn stops accepting, lets requests in flight finish, and cancels what is left when the
   grace period is over; the lifespan then stops the batcher and the device thread;
4. a watchdog ends the process if all that overruns ``HOUSING_GRACEFUL_TIMEOUT_S`` (exit 1):
   the orchestrator's SIGKILL comes soon after, and a clean exit code is worth having.

HTTP connections have a deadline for their headers (``HOUSING_HEADER_TIMEOUT_S``) and a bound
(``HOUSING_MAX_CONNECTIONS``): ``app.http.connections``.

gRPC (``HOUSING_GRPC_PORT``, ``app.grpc``) follows the same steps in the same loop: it is bound
before the model loads (a port it cannot bind fails startup at once) and answers NOT_SERVING
until the model is ready, its readiness is the same flag as HTTP's, it stops accepting when
HTTP does, and the batcher closes only after its calls in flight are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from types import FrameType

import uvicorn

from app.compose import compose
from app.core.runtime import ModelRuntime, ReloadRefused
from app.errors import StartupError
from app.grpc.server import GrpcDoor
from app.http.connections import fd_shortfall, guarded_protocol
from app.observe.logs import log_config
from app.process.workers import WORKER_READY_FD_ENV, WORKER_RELOADED, WORKER_SERVING
from app.settings import Settings

logger = logging.getLogger("housing.server")

# Time kept for the lifespan shutdown (batcher, device thread) after connections are done.
_SHUTDOWN_RESERVE_S = 1.0


class _HideStartupTraceback(logging.Filter):
    """Drop the lifespan traceback of a StartupError: its message was already logged cleanly
    by the app, with the hint that fixes it, and a stack trace only buries that line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not (isinstance(msg, str) and msg.startswith("Traceback")):
            return True
        return f"{StartupError.__module__}.{StartupError.__name__}:" not in msg


class HousingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        runtime: ModelRuntime,
        settings: Settings,
        grpc: GrpcDoor | None = None,
    ) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.settings = settings
        self.grpc = grpc
        self.startup_failed = False
        self.stop_requested_at: float | None = None
        self._stop_at: float | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        self._supervisor_fd: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            self.runtime.begin_stopping()
            grace = self.settings.graceful_timeout_s
            logger.info(
                "signal %d: readiness is now 503; stopping within %.1fs",
                sig,
                grace,
                extra={"drain_delay_s": self.settings.drain_delay_s},
            )
            watchdog = threading.Timer(grace, self._overran)
            watchdog.daemon = True
            watchdog.start()
            if self.settings.drain_delay_s > 0:
                self._stop_at = self.stop_requested_at + self.settings.drain_delay_s
                # What uvicorn's handle_exit does first (it re-raises these signals after the
                # shutdown), without its should_exit: the server keeps accepting until _stop_at.
                # A private attribute: uvicorn is pinned, and
                # tests/unit/test_process_server.py checks it.
                self._captured_signals.append(sig)
                return
        super().handle_exit(sig, frame)  # a second signal skips the rest of the drain delay

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.grpc is not None:
            # Bound first: a taken port fails at once, not after the model loads, and by the
            # time HTTP's readiness says 200, gRPC answers too (NOT_SERVING until then).
            try:
                await self.grpc.start()
            except StartupError as exc:
                logger.error("cannot start: %s", exc)
                self.startup_failed = self.should_exit = True
                return
        # Ready once HTTP accepts too: uvicorn binds its socket after the lifespan loaded the
        # model, and gRPC's health must not say SERVING before then.
        self.runtime.hold_readiness()
        try:
            await super().startup(sockets=sockets)
        except SystemExit:  # uvicorn's way out of a failed lifespan startup
            if self.grpc is not None:
                self.grpc.begin_stop(0)
                await self.grpc.stopped()
            raise
        if self.started and not self.should_exit:
            self.runtime.open_doors()
        # SIGHUP reloads the model (``ModelRuntime.reload``, which logs the outcome).
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hangup)
        ready_fd = os.environ.get(WORKER_READY_FD_ENV)
        if ready_fd is not None:  # a supervisor's worker: tell it startup completed
            with contextlib.suppress(OSError, ValueError):
                if self.started and not self.startup_failed:
                    os.write(int(ready_fd), WORKER_SERVING)
                    self._supervisor_fd = int(ready_fd)  # kept: it hears of reloads too
                else:
                    os.close(int(ready_fd))  # a failed startup: EOF tells the supervisor

    def _hangup(self) -> None:
        logger.info("SIGHUP: reloading the model from %s", self.settings.artifacts)
        task = asyncio.get_running_loop().create_task(self._reload(), name="reload")
        self._reloads.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        with contextlib.suppress(ReloadRefused):  # logged by the runtime, with the reason
            await self.runtime.reload()
        if self._supervisor_fd is not None:  # done, either way: the next worker may start
            with contextlib.suppress(OSError):
                os.write(self._supervisor_fd, WORKER_RELOADED)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.grpc is not None:  # gRPC stops accepting when HTTP does
            self.grpc.begin_stop(float(self.config.timeout_graceful_shutdown or 1))
        await super().shutdown(sockets=sockets)

    async def _wait_tasks_to_complete(self) -> None:
        """uvicorn's wait for the HTTP requests in flight (a private method: uvicorn is pinned,
        and tests/unit/test_process_server.py checks it), then for the gRPC calls': the lifespan
        that comes next closes the batcher they wait on."""
        await super()._wait_tasks_to_complete()
        if self.grpc is not None:
            await self.grpc.stopped()

    async def on_tick(self, counter: int) -> bool:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self.should_exit = True
        return await super().on_tick(counter)

    def _overran(self) -> None:
        logger.error(
            "shutdown overran HOUSING_GRACEFUL_TIMEOUT_S=%.1fs; exiting now",
            self.settings.graceful_timeout_s,
        )
        logging.shutdown()
        os._exit(1)


def _already_drained(signum: int, frame: FrameType | None) -> None:
    """The server has shut down gracefully by the time uvicorn re-raises the signal."""


def build_server(
    settings: Settings, bound: tuple[str, int] | None = None, runtime: ModelRuntime | None = None
) -> HousingServer:
    host, port = bound or (settings.host, settings.port)
    # Workers share the gRPC port (SO_REUSEPORT) as they share HTTP's socket.
    service = compose(settings, runtime, grpc_host=host, shared_port=bound is not None)
    connections_grace = settings.graceful_timeout_s - settings.drain_delay_s - _SHUTDOWN_RESERVE_S
    config = uvicorn.Config(
        service.http,
        host=host,
        port=port,
        log_config=log_config(settings.log_level, settings.log_format),
        log_level=settings.log_level,
        access_log=False,  # the app writes its own access lines, with the request id
        lifespan="on",
        timeout_graceful_shutdown=max(int(connections_grace), 1),
        server_header=False,
        # One write per response (app/http/onewrite.py), HOUSING_HEADER_TIMEOUT_S and
        # HOUSING_MAX_CONNECTIONS (app/http/connections.py): the same in a supervisor's workers.
        http=guarded_protocol(settings, service.runtime.metrics),
    )
    shortfall = fd_shortfall(settings.max_connections)
    if shortfall is not None:
        logger.warning(shortfall)
    return HousingServer(config, service.runtime, settings, service.grpc)


def run_server(
    settings: Settings, fd: int | None = None, runtime: ModelRuntime | None = None
) -> int:
    """Serve until a signal; 0 after a clean drain, 1 if startup failed. ``runtime`` is a test
    seam (``tests/fakes/faulty_device.py``); by default one is built from ``settings``."""
    sockets = None
    bound = None
    if fd is not None:  # the supervisor's listening socket (app.process.workers)
        sock = socket.socket(fileno=fd)
        sockets, bound = [sock], sock.getsockname()[:2]
    server = build_server(settings, bound, runtime)
    logging.getLogger("uvicorn.error").addFilter(_HideStartupTraceback())
    # uvicorn drains on SIGTERM/SIGINT, then restores the handlers it found and raises the
    # signal again. With these no-op handlers a drained shutdown exits 0 instead of dying by
    # the signal (143), so a non-zero exit always means something went wrong.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _already_drained)
    # Until startup installs the reload handler, a SIGHUP must not end the process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    server.run(sockets=sockets)
    # uvicorn returns without raising when the lifespan startup fails: make that an exit code.
    return 0 if server.started and not server.startup_failed else 1

"""One server process per NeuronCore, under a small supervisor.

A NeuronCore belongs to one process, and the Neuron runtime is not fork-safe, so workers are
new processes (``python -m app``, not forks) that each get their own
``NEURON_RT_VISIBLE_CORES`` in their environment before anything loads, and load the model
themselves. The supervisor binds the port once and hands the socket to every worker (the kernel
spreads connections between them), forwards SIGTERM, restarts a worker that dies while serving,
and stops everything if workers keep failing at startup (a bad artifact fails them all alike).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from app.observe.logs import log_config
from app.observe.metrics import MULTIPROC_ENV
from app.settings import Settings
from modelspec.neuron import neuron_devices

logger = logging.getLogger("housing.workers")

WORKER_FD_ENV = "HOUSING_WORKER_FD"  # internal: set by the supervisor for its workers
# Internal: a pipe the worker writes one byte to once it serves (``app.process.server``).
WORKER_READY_FD_ENV = "HOUSING_WORKER_READY_FD"
WORKER_SERVING, WORKER_RELOADED = b"1", b"r"  # what a worker writes on that pipe
VISIBLE_CORES_ENV = "NEURON_RT_VISIBLE_CORES"
# Inferentia2: each chip (one /dev/neuronN) has two NeuronCore-v2.
CORES_PER_DEVICE = 2


@dataclass(frozen=True)
class WorkerPlan:
    count: int
    # NEURON_RT_VISIBLE_CORES of each worker; empty when not serving on NeuronCores.
    visible_cores: tuple[str, ...] = ()


def parse_cores(value: str) -> list[int]:
    """``"0-3"``, ``"1,4"``, ``"2"`` -> core numbers (the Neuron runtime's syntax)."""
    cores: list[int] = []
    for part in value.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"{VISIBLE_CORES_ENV}={value!r} is not like 0-3 or 0,2")
        cores.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    return cores


def format_cores(cores: Sequence[int]) -> str:
    """The shortest runtime syntax for a group: ``2-3`` when contiguous, else ``1,4``."""
    if list(cores) == list(range(cores[0], cores[-1] + 1)) and len(cores) > 1:
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


def visible_cores(env: Mapping[str, str], devices: Sequence[str]) -> list[int]:
    """The NeuronCores this process may use: as the scheduler set them, else every core of
    every Neuron device on the machine."""
    given = env.get(VISIBLE_CORES_ENV)
    if given:
        return parse_cores(given)
    return list(range(len(devices) * CORES_PER_DEVICE))


def assign_cores(cores: Sequence[int], workers: int) -> tuple[str, ...]:
    """Split ``cores`` into ``workers`` groups, in order, as evenly as possible."""
    if workers > len(cores):
        raise ValueError(
            f"HOUSING_WORKERS={workers} but only {len(cores)} NeuronCore(s) are visible: a core "
            "cannot be shared between processes. Hint: lower HOUSING_WORKERS, or leave it unset "
            "for one worker per core."
        )
    base, extra = divmod(len(cores), workers)
    groups, start = [], 0
    for i in range(workers):
        size = base + (1 if i < extra else 0)
        groups.append(format_cores(cores[start : start + size]))
        start += size
    return tuple(groups)


def plan_workers(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    devices: Sequence[str] | None = None,
) -> WorkerPlan:
    """How many workers, and which cores each gets. ``devices`` is a seam for tests: the
    Neuron device files (default: this machine's ``/dev/neuron*``)."""
    env = os.environ if env is None else env
    devices = neuron_devices() if devices is None else devices
    on_neuron = settings.device == "neuron" or (settings.device == "auto" and bool(devices))
    if not on_neuron:
        return WorkerPlan(settings.workers or 1)
    cores = visible_cores(env, devices)
    if not cores:
        return WorkerPlan(settings.workers or 1)  # the backend explains the missing device
    count = settings.workers or len(cores)
    return WorkerPlan(count, assign_cores(cores, count))


class _Worker:
    """One worker process, and the pipe on which it reports to the supervisor: one byte when
    its startup completed (``serving``: a worker that dies before that failed to start -- a
    bad artifact fails every worker alike, so the supervisor stops -- one that dies after it
    crashed, and is restarted), and one when a reload that ``SIGHUP`` asked for is done."""

    def __init__(self, index: int, env: dict[str, str], fd: int) -> None:
        self.index, self.env, self.fd = index, env, fd
        self.proc: subprocess.Popen[bytes] | None = None
        self.serving = False
        self._pipe: int | None = None

    def start(self) -> None:
        self.serving = False
        self._close()
        read_end, write_end = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app"],
                env={**self.env, WORKER_READY_FD_ENV: str(write_end)},
                pass_fds=(self.fd, write_end),
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - the supervisor has no threads
            )
        finally:
            os.close(write_end)  # the worker holds the only write end: EOF when it dies
        os.set_blocking(read_end, False)
        self._pipe = read_end
        cores = self.env.get(VISIBLE_CORES_ENV, "-")
        logger.info("worker %d started (pid %d, cores %s)", self.index, self.proc.pid, cores)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _read(self) -> bytes | None:
        """The worker's next byte; b"" once it has gone; None if nothing has come (never
        blocks)."""
        if self._pipe is None:
            return b""
        try:
            byte = os.read(self._pipe, 1)
        except BlockingIOError:
            return None
        if not byte:
            self._close()
        return byte

    def _close(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None

    def check_serving(self) -> bool:
        """Read the worker's ready byte if it has come (never blocks)."""
        if not self.serving and self._read() == WORKER_SERVING:
            self.serving = True
            logger.info("worker %d serving", self.index)
        return self.serving

    def reload_done(self) -> bool:
        """Whether the worker has finished the reload a SIGHUP asked for (or has gone)."""
        byte = self._read()
        return byte == WORKER_RELOADED or byte == b"" or not self.running


class _Relay:
    """``SIGHUP`` to the workers one at a time: each reloads its model while the others serve
    (and the memory of two models is needed in one worker at a time), then the next one."""

    def __init__(self) -> None:
        self.waiting: list[_Worker] = []
        self.current: _Worker | None = None

    def begin(self, workers: list[_Worker]) -> None:
        self.waiting += [w for w in workers if w.running and w not in self.waiting]
        logger.info("SIGHUP: reloading %d worker(s), one at a time", len(self.waiting))

    def step(self) -> None:
        if self.current is not None:
            if not self.current.reload_done():
                return
            logger.info("worker %d: reload done", self.current.index)
            self.current = None
        while self.waiting and self.current is None:
            w = self.waiting.pop(0)
            if w.running:
                assert w.proc is not None
                w.proc.send_signal(signal.SIGHUP)
                self.current = w

    @property
    def busy(self) -> bool:
        return self.current is not None or bool(self.waiting)


def supervise(settings: Settings, plan: WorkerPlan) -> int:
    """Run ``plan.count`` workers on one socket until SIGTERM; 0 if they all drained cleanly."""
    import logging.config

    logging.config.dictConfig(log_config(settings.log_level, settings.log_format))
    sock = socket.create_server((settings.host, settings.port), backlog=2048)
    sock.set_inheritable(True)
    host, port = sock.getsockname()[:2]
    metrics_dir = tempfile.mkdtemp(prefix="housing-metrics-")
    base_env = {
        **os.environ,
        WORKER_FD_ENV: str(sock.fileno()),
        MULTIPROC_ENV: metrics_dir,
        "HOUSING_WORKERS": str(plan.count),  # each worker knows how many serve with it
        # The folder this process settled on (``serve`` may have chosen /opt/ml/model).
        "HOUSING_ARTIFACTS": str(settings.artifacts),
    }
    workers = []
    for i in range(plan.count):
        env = {**base_env, "HOUSING_WORKER_INDEX": str(i)}
        if plan.visible_cores:
            env[VISIBLE_CORES_ENV] = plan.visible_cores[i]
        workers.append(_Worker(i, env, sock.fileno()))

    stop = threading.Event()
    hangup = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        hangup.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    relay = _Relay()
    for w in workers:
        w.start()
    logger.info("supervisor listening on http://%s:%d with %d workers", host, port, plan.count)
    failed = False
    while not stop.is_set():
        if hangup.is_set():
            hangup.clear()
            relay.begin(workers)
        relay.step()
        for w in workers:
            assert w.proc is not None
            code = w.proc.poll()
            if code is None:
                w.check_serving()
                continue
            _forget_metrics(w.proc.pid, metrics_dir)
            if not w.check_serving():
                logger.error("worker %d failed to start (exit %d); stopping", w.index, code)
                failed = True
                stop.set()
                break
            logger.warning("worker %d exited (%d); starting it again", w.index, code)
            w.start()
        stop.wait(0.05 if relay.busy else 0.5)  # also wakes at once on SIGTERM
    code = _stop_all(workers, settings.graceful_timeout_s)
    sock.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return 1 if failed else code


def _stop_all(workers: list[_Worker], grace: float) -> int:
    running = [w.proc for w in workers if w.proc is not None and w.proc.poll() is None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace + 2
    worst = 0
    for w in workers:
        assert w.proc is not None
        try:
            code = w.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            code = w.proc.wait()
        worst = worst or (0 if code == 0 else 1)
    return worst


def _die_with_parent() -> None:
    """In the new worker, before exec: SIGTERM it if the supervisor dies (even by SIGKILL), so
    no orphan keeps its NeuronCores."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _forget_metrics(pid: int, metrics_dir: str) -> None:
    """Drop a dead worker's live gauges from the shared metrics (prometheus-client's rule).

    The folder is passed: only the workers have it in their environment, so prometheus-client
    cannot find it in the supervisor's."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)

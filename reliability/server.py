"""A real ``python -m app`` process on a free port, for end-to-end tests and reliability scripts.

The server is started on port 0 and its real port is read from uvicorn's startup line, so
there is no race for a port. Waiting is done on events and by polling readiness, never by
sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parent.parent

_RUNNING = re.compile(r"(?:Uvicorn running on|supervisor listening on) http://[\d.]+:(\d+)")


def free_port() -> int:
    """A port nothing listens on now, for a server that cannot take port 0 (gRPC's, which
    workers share). Another process could take it before the server binds; the server then
    fails to start, saying so, rather than sharing it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, env: dict[str, str], module: str = "app") -> None:
        self.module = module
        self.env = {
            **os.environ,
            "HOUSING_HOST": "127.0.0.1",
            "HOUSING_PORT": "0",
            # gRPC's default port is fixed (8081): off unless a test gives it one (free_port).
            "HOUSING_GRPC_PORT": "0",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.lines: list[str] = []
        self.port: int | None = None
        self._started = threading.Event()  # the port line appeared, or the process ended
        self._new_line = threading.Condition()
        self._ended = False
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: cleanup reaches any workers too
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
            match = _RUNNING.search(line)
            if match:
                self.port = int(match.group(1))
                self._started.set()
        with self._new_line:
            self._ended = True  # the output is complete: waiters stop waiting for more
            self._new_line.notify_all()
        self._started.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        """``host:port`` of its gRPC server (the ``HOUSING_GRPC_PORT`` it was given)."""
        return f"127.0.0.1:{self.env['HOUSING_GRPC_PORT']}"

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until /health/ready answers 200, or fail with the server's output.

        A probe that times out or is refused means "not yet": with a supervisor the port is
        bound before any worker accepts, so a probe can wait in the backlog while workers
        load. A server that exits fails at once."""
        assert self.proc is not None
        if not self._started.wait(timeout) or self.port is None:
            raise AssertionError(f"server did not start:\n{self.output}")
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self._reader.join(5)  # the whole output, for the message
                    raise AssertionError(
                        f"server exited with code {self.proc.returncode}:\n{self.output}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health/ready").status_code == 200:
                        return
                time.sleep(0.05)  # the poll interval, so probes leave the CPU to the startup
        raise AssertionError(f"server never became ready:\n{self.output}")

    def wait_for_output(self, text: str, count: int = 1, timeout: float = 60) -> None:
        """Block until ``text`` has appeared in ``count`` lines of the server's output; fail
        when the timeout passes or the output ends (the process exited) before that."""

        def seen() -> bool:
            return sum(text in line for line in self.lines) >= count

        with self._new_line:
            self._new_line.wait_for(lambda: seen() or self._ended, timeout)
            done = seen()
        if not done:
            raise AssertionError(f"{text!r} never appeared {count} times:\n{self.output}")

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._started.wait(5)  # the reader has seen the end of the output
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def serve(artifacts: Path, module: str = "app", **env: str) -> ServerProcess:
    """``python -m app`` (or a test seam's ``module``) serving ``artifacts``, not started yet."""
    return ServerProcess({"HOUSING_ARTIFACTS": str(artifacts), **env}, module)


def verdict(checks: dict[str, bool]) -> bool:
    """Print each named check as ok or FAIL; true when all passed."""
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return all(checks.values())


def run_on_cpu_server(artifacts: Path, script: Callable[[str, int], bool]) -> int:
    """A reliability script's main: ``script(url, pid)`` against a new cpu server on
    ``artifacts``, which must then drain on SIGTERM; 0 when both passed."""
    with serve(artifacts, HOUSING_DEVICE="cpu") as server:
        server.wait_ready()
        assert server.proc is not None
        ok = script(server.url, server.proc.pid)
        code = server.terminate()
        print(f"server exit code after SIGTERM: {code}")
    print("PASS" if ok and code == 0 else "FAIL")
    return 0 if ok and code == 0 else 1

"""An OTLP/HTTP endpoint that takes every export and discards it, for the traced servers of
``make bench``: the service pays for its spans and their export, not for a collector.

    python -m benchmarks.otlp_sink PORT
"""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from benchmarks.load import free_port


class _Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - readiness, for the parent
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class OtlpSink:
    """The sink in its own process on ``core`` (wrk's: the servers' core stays theirs)."""

    def __init__(self, core: str) -> None:
        self.port = free_port()
        argv = ["taskset", "-c", core, sys.executable, "-m", "benchmarks.otlp_sink"]
        self.proc = subprocess.Popen([*argv, str(self.port)])
        for _ in range(200):
            try:
                httpx.get(self.endpoint, timeout=0.5)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None:
                    raise RuntimeError("the OTLP sink did not start") from None
        raise RuntimeError("the OTLP sink never answered")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Discard).serve_forever()

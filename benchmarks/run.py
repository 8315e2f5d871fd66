"""Load benchmark: the service against a bare-ASGI reference, in one run, on this machine.

    make bench                      # everything (about 5 minutes)
    python -m benchmarks.run --quick --devices cpu

Each server runs pinned to core 0 (``taskset -c 0``); wrk drives it from core 1 with
``post.lua``. Prints one table: req/s, p50 and p99 at concurrency 1 and 64, for single-record
and 100-record requests, batching on and off, cpu and xla devices (the xla server runs from
``.venv-xla``), and the reference. Then the issue's targets, checked against this run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelspec.features import EXAMPLE_RECORD

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "post.lua"
SERVER_CORE, LOAD_CORE = "0", "1"


@dataclass(frozen=True)
class Result:
    server: str
    body: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    rows_per_request: int

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server process pinned to SERVER_CORE, waited for by polling, stopped by SIGTERM."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], probe: str) -> None:
        self.name, self.port = name, free_port()
        self.probe = probe
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *argv],
            env={**os.environ, **env, "HOUSING_PORT": str(self.port), "HOUSING_HOST": "127.0.0.1"},
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + self.probe, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling a process we do not control; not a test
        self.log.seek(0)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log.read().decode()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk not found: installing it from Debian (apt-get install wrk)", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        wrk = shutil.which("wrk")
    assert wrk is not None
    return wrk


def run_wrk(
    wrk: str,
    url: str,
    body_file: Path,
    concurrency: int,
    seconds: int,
    core: str | None = LOAD_CORE,
) -> dict[str, int]:
    """One wrk run against ``url``/predict; pinned to ``core`` unless it is None."""
    pin = ["taskset", "-c", core] if core is not None else []
    out = subprocess.run(
        [
            *pin,
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url + "/predict",
        ],
        env={**os.environ, "BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(
    wrk: str,
    name: str,
    url: str,
    bodies: dict[str, tuple[Path, int]],
    seconds: int,
    concurrencies: tuple[int, ...],
    core: str | None = LOAD_CORE,
) -> list[Result]:
    results = []
    for body_name, (path, rows) in bodies.items():
        run_wrk(wrk, url, path, 8, 1, core)  # warm the connections and caches
        for c in concurrencies:
            r = run_wrk(wrk, url, path, c, seconds, core)
            seconds_run = r["duration_us"] / 1e6
            results.append(
                Result(
                    name,
                    body_name,
                    c,
                    r["requests"] / seconds_run,
                    r["p50_us"] / 1000,
                    r["p99_us"] / 1000,
                    r["errors"] + r["non2xx"],
                    rows,
                )
            )
    return results


def write_bodies(folder: Path) -> dict[str, tuple[Path, int]]:
    one = folder / "one.json"
    one.write_bytes(json.dumps(EXAMPLE_RECORD).encode())
    many = folder / "hundred.json"
    records = [
        {
            **EXAMPLE_RECORD,
            "median_income": 1 + (i % 14),
            "total_bedrooms": None if i % 10 == 0 else 129.0,
        }
        for i in range(100)
    ]
    many.write_bytes(json.dumps({"instances": records}).encode())
    return {"1 record": (one, 1), "100 records": (many, 100)}


def print_table(results: list[Result]) -> None:
    head = (
        f"{'server':<28} {'body':<12} {'conc':>4} {'req/s':>9} {'rows/s':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.server:<28} {r.body:<12} {r.concurrency:>4} {r.requests_per_s:>9,.0f} "
            f"{r.rows_per_s:>10,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>6}"
        )


def check_targets(results: list[Result]) -> None:
    def get(server: str, body: str, c: int) -> Result | None:
        return next(
            (r for r in results if (r.server, r.body, r.concurrency) == (server, body, c)), None
        )

    ref64, ref1 = (
        get("reference (bare ASGI)", "1 record", 64),
        get("reference (bare ASGI)", "1 record", 1),
    )
    cpu64, cpu1 = get("cpu batching on", "1 record", 64), get("cpu batching on", "1 record", 1)
    xla_on, xla_off = (
        get("xla batching on", "1 record", 64),
        get("xla batching off", "1 record", 64),
    )
    rows = get("cpu batching on", "100 records", 64)
    print("\ntargets (this run):")
    checks = []
    if ref64 and cpu64:
        ratio = cpu64.requests_per_s / ref64.requests_per_s
        checks.append((f"cpu c64 1-record req/s = {ratio:.2f}x reference (>= 0.45)", ratio >= 0.45))
        checks.append((f"cpu c64 1-record p99 = {cpu64.p99_ms:.2f} ms (<= 10)", cpu64.p99_ms <= 10))
    if ref1 and cpu1:
        ratio = cpu1.p50_ms / ref1.p50_ms
        checks.append((f"cpu c1 p50 = {ratio:.2f}x reference p50 (<= 2)", ratio <= 2))
    if xla_on and xla_off:
        ratio = xla_on.requests_per_s / xla_off.requests_per_s
        checks.append((f"xla c64 batching on = {ratio:.1f}x off (>= 4)", ratio >= 4))
    if rows:
        checks.append(
            (
                f"cpu 100-record rows/s = {rows.rows_per_s:,.0f} (>= 200,000)",
                rows.rows_per_s >= 200_000,
            )
        )
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="per measurement")
    parser.add_argument("--devices", default="cpu,xla", help="cpu, xla or both")
    parser.add_argument("--quick", action="store_true", help="3 s per measurement")
    parser.add_argument(
        "--artifacts", type=Path, default=Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
    )
    args = parser.parse_args()
    seconds = 3 if args.quick else args.seconds
    wrk = ensure_wrk()
    artifacts = args.artifacts.resolve()
    bodies = write_bodies(Path(tempfile.mkdtemp()))
    python = {"cpu": sys.executable, "xla": str(ROOT / ".venv-xla" / "bin" / "python")}
    plans: list[tuple[str, list[str], dict[str, str]]] = [
        ("reference (bare ASGI)", [sys.executable, "-m", "benchmarks.reference_app"], {}),
    ]
    for device in args.devices.split(","):
        if not Path(python[device]).exists():
            print(
                f"skipping {device}: {python[device]} missing (make test-xla creates it)",
                file=sys.stderr,
            )
            continue
        for batching, size in (("on", ""), ("off", "1")):
            env = {
                "HOUSING_ARTIFACTS": str(artifacts),
                "HOUSING_DEVICE": device,
                "HOUSING_LOG_LEVEL": "warning",
                "PJRT_DEVICE": "CPU",
            }
            if size:
                env["HOUSING_MAX_BATCH_SIZE"] = size
            plans.append((f"{device} batching {batching}", [python[device], "-m", "app"], env))
    results: list[Result] = []
    for name, argv, env in plans:
        server = Server(name, argv, env, probe="/" if "reference" in name else "/health/ready")
        try:
            server.wait_ready()
            results += measure(wrk, server.name, server.url, bodies, seconds, (1, 64))
        finally:
            server.stop()
        print(f"measured {name}", file=sys.stderr)
    print()
    print_table(results)
    check_targets(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One command that proves an inf2 instance: ``make neuron-check``.

    make neuron-check                                  # on an inf2, DLAMI or Neuron DLC
    python -m neuron_check [--artifacts DIR] [--out neuron-check] [--calls 2000]

In order; the first failure of the default path stops the run with one line that says why
(exit 1):

1. devices: ``/dev/neuron*``, NeuronCores (``neuron-ls`` when present), torch-neuronx;
2. a model: ``--artifacts`` / ``HOUSING_ARTIFACTS`` if it holds ``model.pt``, else
   ``python -m training`` (``HOUSING_DATA``);
3. ``compile --target neuron`` with the default placement (features on the host); a refused
   operator is named;
4. ``--features device`` too -- reported (a refused operator by name), never a failure;
5. every batch bucket loaded on one NeuronCore as a worker loads it: parity with the eager
   model, p50/p99 of the device call, the host preamble and the whole call;
6. the server (``python -m app``, one worker per NeuronCore) driven by wrk at concurrency 1
   and 64, with 1-record and 100-record bodies.

Prints one table and writes ``<out>/neuron-check.json``; the compiled artifacts stay in
``<out>/artifacts`` (serve them with ``HOUSING_ARTIFACTS=<out>/artifacts``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.process.workers import VISIBLE_CORES_ENV, visible_cores
from benchmarks.load import Started, ensure_wrk, measure
from benchmarks.run import write_bodies
from modelspec.buckets import default_buckets, parse_buckets
from modelspec.manifest import CHECKPOINT_FILE, EXAMPLE_FILE, MANIFEST_FILE, VALIDATION_FILE
from neuron_check.probe import probe
from neuron_check.report import machine_lines, render
from neuron_check.steps import compile_neuron, in_child, time_buckets
from reliability.server import ServerProcess

REPORT_FILE = "neuron-check.json"
MODEL_FILES = (CHECKPOINT_FILE, MANIFEST_FILE, VALIDATION_FILE, EXAMPLE_FILE)


class CheckFailed(Exception):
    """The default path failed; the message is the one line the user reads."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m neuron_check", description=__doc__.split("\n")[0])
    given = os.environ.get("HOUSING_ARTIFACTS")
    p.add_argument(
        "--artifacts",
        type=Path,
        default=Path(given) if given else None,
        help="a folder with model.pt (default HOUSING_ARTIFACTS; none: train one)",
    )
    p.add_argument("--out", type=Path, default=Path("neuron-check"), help="work and report folder")
    p.add_argument("--batch-sizes", type=parse_buckets, default=None, help="e.g. 1,2,4,8")
    p.add_argument("--calls", type=int, default=2000, help="timed device calls per bucket")
    p.add_argument("--load-seconds", type=int, default=10, help="wrk seconds per load point")
    p.add_argument("--ready-timeout", type=float, default=600, help="seconds for the server")
    return p.parse_args(argv)


def step(n: int, text: str) -> None:
    print(f"\n[{n}/6] {text}", flush=True)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no message)"


def model_folder(args: argparse.Namespace) -> Path:
    """A folder with model.pt: the one given, or a new training run's."""
    given: Path | None = args.artifacts
    if given is not None and (given / CHECKPOINT_FILE).is_file():
        print(f"using {given / CHECKPOINT_FILE}")
        return given
    trained = args.out / "model"
    print(f"no model.pt given: training into {trained} (HOUSING_DATA, else the hub data set)")
    proc = subprocess.run(
        [sys.executable, "-m", "training", "--artifacts", str(trained), "--no-progress"],
        check=False,
    )
    if proc.returncode != 0:
        raise CheckFailed(f"training failed (exit {proc.returncode}); its error is printed above")
    return trained


def copy_model(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    return folder


def check_compile(outcome: dict[str, Any]) -> None:
    if outcome["ok"]:
        return
    if outcome["failure"] == "refused":
        raise CheckFailed(first_line(outcome["error"]))
    if outcome["failure"] == "parity":
        raise CheckFailed(f"parity: {first_line(outcome['error'])}")
    raise CheckFailed(f"compile failed: {first_line(outcome['error'])}")


def serve_and_load(folder: Path, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Start the server on the compiled artifact, one worker per core, and drive it with wrk."""
    out: Path = args.out
    env = {
        "HOUSING_ARTIFACTS": str(folder.resolve()),
        "HOUSING_DEVICE": "neuron",
        "HOUSING_WORKERS": str(workers),
        # 64 connections x 100 rows: room for every row, so a 503 means a real problem.
        "HOUSING_QUEUE_ROWS": "8192",
        "HOUSING_LOG_FORMAT": "text",
    }
    started = time.monotonic()
    with ServerProcess(env) as server:
        try:
            server.wait_ready(timeout=args.ready_timeout)
            if workers > 1:
                server.wait_for_output(" serving", count=workers, timeout=args.ready_timeout)
        except AssertionError:
            (out / "server.log").write_text(server.output)
            reason = _startup_failure(server.output)
            raise CheckFailed(
                f"the server did not start: {reason} (log: {out / 'server.log'})"
            ) from None
        ready = time.monotonic() - started
        print(f"ready in {ready:.1f} s with {workers} worker(s); driving it with wrk")
        try:
            wrk = ensure_wrk()
        except (OSError, subprocess.CalledProcessError) as exc:
            raise CheckFailed(f"the load step needs wrk ({exc}): apt-get install wrk") from exc
        bodies = write_bodies(Path(tempfile.mkdtemp(prefix="neuron-check-")))
        target = Started("service", server.url)
        results = [
            measure(wrk, target, body, concurrency, args.load_seconds, core=None)
            for body in bodies.values()
            for concurrency in (1, 64)
        ]
        code = server.terminate()
        (out / "server.log").write_text(server.output)
    if code != 0:
        raise CheckFailed(f"the server exited {code} after SIGTERM (log: {out / 'server.log'})")
    return {
        "workers": workers,
        "ready_seconds": round(ready, 2),
        "load_seconds": args.load_seconds,
        "load": [
            {**vars(r), "rows_per_s": r.rows_per_s, "cpu_us_per_request": None} for r in results
        ],
    }


def _startup_failure(output: str) -> str:
    """Why the server did not start: the supervisor's verdict on a worker and the worker's own
    reason when both are there, else the last error, else the last line."""

    def message(line: str) -> str:  # "<date> <time> LEVEL logger: message" -> message
        return line.split(": ", 1)[1] if re.match(r"\d{4}-\d\d-\d\d ", line) else line

    lines = [message(line.strip()) for line in output.splitlines() if line.strip()]
    verdict = [line for line in lines if "failed to start" in line]
    reason = [line for line in lines if line.startswith("cannot start:")]
    if verdict and reason:
        return f"{verdict[0]}: {reason[0]}"
    errors = [line for line in lines if re.search(r"error|cannot start", line, re.IGNORECASE)]
    return (verdict or reason or errors or lines or ["no output"])[-1]


def run(args: argparse.Namespace, report: dict[str, Any]) -> None:
    out: Path = args.out
    step(1, "devices")
    machine = probe()
    report["machine"] = machine.to_dict()
    print("\n".join(machine_lines(report["machine"])))
    if machine.problems:
        raise CheckFailed(machine.problems[0])

    step(2, "model")
    source = model_folder(args)
    host_dir = copy_model(source, out / "artifacts")
    device_dir = copy_model(source, out / "artifacts-device")
    sizes = tuple(report["settings"]["batch_sizes"])

    step(3, f"compile --target neuron (features on the host), batch sizes {list(sizes)}")
    report["compile"] = {"host": in_child(compile_neuron, str(host_dir), "host", sizes)}
    check_compile(report["compile"]["host"])

    step(4, "compile --target neuron --features device (reported, never fails the run)")
    device = in_child(compile_neuron, str(device_dir), "device", sizes)
    report["compile"]["device"] = device
    print("ok" if device["ok"] else f"not compiled (the default is unaffected): {device['error']}")

    cores = visible_cores(os.environ, machine.devices)
    step(5, f"every bucket on NeuronCore {cores[0]}: parity and {args.calls:,} timed calls each")
    timing = in_child(time_buckets, str(host_dir), args.calls, str(cores[0]))
    report["timing"] = timing
    if "buckets" not in timing:
        raise CheckFailed(timing["error"])
    if not timing["ok"]:
        worst = max(timing["buckets"], key=lambda b: b["parity_usd"])
        raise CheckFailed(
            f"parity: on the NeuronCore, batch {worst['batch_size']} answers up to "
            f"${worst['parity_usd']:.4f} off the eager model (tolerance ${timing['tolerance']:g})"
        )

    step(6, f"the server, one worker per NeuronCore ({VISIBLE_CORES_ENV} per worker)")
    report["server"] = serve_and_load(host_dir, len(cores), args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": "running",
        "settings": {
            "batch_sizes": list(args.batch_sizes or default_buckets()),
            "calls": args.calls,
            "load_seconds": args.load_seconds,
        },
    }
    try:
        run(args, report)
        report["result"] = "pass"
    except CheckFailed as exc:
        report.update(result="fail", failure=str(exc))
    (args.out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + render(report))
    print(f"report: {args.out / REPORT_FILE}")
    return 0 if report["result"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())

"""The check's device work, each step in a child process of its own.

The Neuron runtime reserves a process's NeuronCores until that process exits, so whatever
loads a compiled model here -- compile's parity check, the timing loop -- runs in a spawned
child that exits before the server starts and asks for every core. Each step returns plain
data (it crosses a process boundary) and never raises for an expected failure.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from app.backends.neuron import NeuronBackend
from app.process.workers import VISIBLE_CORES_ENV
from benchmarks.placement import first_rows, time_calls
from compile.errors import CompileError, CompilerRefused, ParityError
from compile.operators import undocumented
from compile.targets import compile_artifacts, load_eager, parity_by_bucket
from modelspec.intervals import LOG_SCALE_TOLERANCE
from modelspec.manifest import ARTIFACT_FILE, VALIDATION_FILE, FeaturesOn, Manifest

T = TypeVar("T")


def in_child(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a new (spawned, not forked) process, which has exited on return."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def compile_neuron(folder: str, features_on: FeaturesOn, sizes: tuple[int, ...]) -> dict[str, Any]:
    """``python -m compile --target neuron --features <features_on>`` on ``folder``."""
    started = time.perf_counter()
    outcome: dict[str, Any] = {"features_on": features_on, "ok": False, "refused": None}
    try:
        manifest = compile_artifacts(Path(folder), "neuron", sizes, features_on=features_on)
    except CompilerRefused as exc:
        return {**outcome, "failure": "refused", "refused": exc.operator, "error": str(exc)}
    except ParityError as exc:
        return {**outcome, "failure": "parity", "error": str(exc)}
    except CompileError as exc:
        return {**outcome, "failure": "compile", "error": str(exc)}
    compiled = manifest.compiled
    assert compiled is not None
    return {
        **outcome,
        "ok": True,
        "seconds": round(time.perf_counter() - started, 2),
        "operators": compiled.device_operators,
        "undocumented": undocumented(compiled.device_operators),
        "max_abs_diff": compiled.max_abs_diff,
    }


def time_buckets(folder: str, calls: int, core: str) -> dict[str, Any]:
    """Load the artifact as a worker does (on NeuronCore ``core``), check every bucket against
    the eager model, and time each bucket's device call, preamble and whole call."""
    os.environ.setdefault(VISIBLE_CORES_ENV, core)  # before the runtime loads
    torch.set_num_threads(1)  # the server's default
    path = Path(folder)
    manifest = Manifest.load(path)
    compiled = manifest.compiled
    assert compiled is not None
    try:
        backend = NeuronBackend(path / ARTIFACT_FILE, compiled)
    except Exception as exc:  # noqa: BLE001 - reported, whatever the runtime raised
        return {"ok": False, "error": f"loading on NeuronCore {core}: {type(exc).__name__}: {exc}"}
    model, _ = load_eager(path)
    rows = torch.load(path / VALIDATION_FILE, map_location="cpu", weights_only=True)
    sizes = tuple(compiled.batch_sizes)

    def served(x: Tensor) -> Tensor:
        return torch.from_numpy(backend.predict(x.numpy()))

    parity, log_scale_parity = parity_by_bucket(served, model, rows, sizes)
    preamble, body = backend.preamble, backend.body
    assert preamble is not None and body is not None  # this check compiled the artifact
    buckets = []
    for size in sizes:
        x = first_rows(rows, size)
        with torch.no_grad():
            features = preamble(x)
        device_p50, device_p99 = time_calls(body, features, calls)
        preamble_p50 = time_calls(preamble, x, calls)[0]
        whole_p50 = time_calls(served, x, calls)[0]  # as the server calls it: pad, run, copy
        buckets.append(
            {
                "batch_size": size,
                "parity_usd": parity[size],
                "device_p50_us": round(device_p50, 1),
                "device_p99_us": round(device_p99, 1),
                "preamble_p50_us": round(preamble_p50, 1),
                "call_p50_us": round(whole_p50, 1),
            }
        )
    worst = max(parity.values())
    scales_ok = log_scale_parity <= LOG_SCALE_TOLERANCE
    return {
        "ok": bool(np.isfinite(worst) and worst <= compiled.tolerance and scales_ok),
        "tolerance": compiled.tolerance,
        "log_scale_parity": log_scale_parity,
        "core": core,
        "calls": calls,
        "buckets": buckets,
    }

"""gRPC as the tests call it: tritonclient's tensors for data-set rows, and a real server with
its gRPC port open (optionally with device calls held at a gate)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import tritonclient.grpc as triton

from modelspec.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS
from tests.support.server import ServerProcess, free_port, serve

INFER = "/inference.GRPCInferenceService/ModelInfer"
KEY = "grpc-s3cret"


def inputs_of(frame: pd.DataFrame, column: bool = False) -> list[triton.InferInput]:
    """Binary FP32/BYTES tensors, tritonclient's default; ``column``: shape ``[N, 1]``."""
    shape = [len(frame), 1] if column else [len(frame)]
    out = []
    for name in NUMERIC_COLUMNS:
        tensor = triton.InferInput(name, shape, "FP32")
        tensor.set_data_from_numpy(frame[name].to_numpy(np.float32).reshape(shape))  # NaN: missing
        out.append(tensor)
    ocean = triton.InferInput(CATEGORICAL_COLUMN, shape, "BYTES")
    ocean.set_data_from_numpy(frame[CATEGORICAL_COLUMN].to_numpy(object).reshape(shape))
    return [*out, ocean]


def gated_device(tmp_path: Path, **env: str) -> tuple[Path, dict[str, str]]:
    """A FIFO that holds every device call of ``tests.fakes.faulty_device`` until a byte is
    written to it, and the server's environment for it (``env`` added): device calls on their
    own thread, so the loop stays free while one is held, and a request deadline far away,
    so only the clients' deadlines pass, on a slow machine too."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    held = {
        "FAULTY_DEVICE_GATE": str(gate),
        "HOUSING_DEVICE_THREAD": "true",
        "HOUSING_REQUEST_TIMEOUT_S": "120",
    }
    return gate, {**held, **env}


def grpc_server(artifacts: Path, module: str = "app", **env: str) -> ServerProcess:
    """``serve`` on the cpu device with gRPC on a free port (not started yet)."""
    return serve(artifacts, module, HOUSING_DEVICE="cpu", HOUSING_GRPC_PORT=str(free_port()), **env)

"""KServe's own clients against a running server, in a process of their own:
``python -m tests.support.kserve_calls HTTP_URL GRPC_TARGET < rows.json`` prints what they saw as
JSON (``tests/e2e/test_app_conformance.py`` checks it).

A process of its own because ``kserve`` cannot be imported beside ``tritonclient.grpc``: both
register the Open Inference Protocol's messages (``inference.ServerLiveRequest``...) in
protobuf's default pool from differently named files, and the second import fails ("duplicate
symbol"). Users of either client meet the same, so the test runs them apart as they would.
Nothing here imports the service's own modules either (its gRPC module registers them too).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
import httpx
import kserve
import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

MODEL = "housing"
OUTPUTS = ("house_value", "house_value_low", "house_value_high")
CATEGORICAL = "ocean_proximity"


def request(rows: list[dict[str, Any]], binary: bool, model: str = MODEL) -> kserve.InferRequest:
    """One FP32 tensor per number (NaN for a missing value) and a BYTES one for the category."""
    inputs = []
    for name in rows[0]:
        if name == CATEGORICAL:
            kind, values = "BYTES", np.array([r[name] for r in rows], dtype=object)
        else:
            kind = "FP32"
            values = np.array([np.nan if r[name] is None else r[name] for r in rows], np.float32)
        tensor = kserve.InferInput(name, [len(rows)], kind)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return kserve.InferRequest(model_name=model, infer_inputs=inputs, request_id="kserve-1")


def outputs(result: kserve.InferResponse) -> dict[str, Any]:
    found = {o.name: o.as_numpy().tolist() for o in result.outputs}
    return {"outputs": found, "id": result.id, "model_version": result.model_version}


async def rest(url: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    config = kserve.RESTConfig(protocol="v2", timeout=30)
    async with kserve.InferenceRESTClient(config) as client:
        seen: dict[str, Any] = {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "model ready": await client.is_model_ready(url, MODEL),
            "other model ready": await client.is_model_ready(url, "nope"),
        }
        for mode in ("json", "binary"):
            result = await client.infer(url, request(rows, mode == "binary"), MODEL)
            seen[mode] = outputs(result)
        try:
            await client.infer(url, request(rows, False, "nope"), "nope")
        except httpx.HTTPStatusError as exc:
            seen["unknown"] = [exc.response.status_code, str(exc)]
    return seen


async def rpc(target: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    async with kserve.InferenceGRPCClient(target, timeout=30) as client:
        seen: dict[str, Any] = {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model ready": await client.is_model_ready(MODEL),
            "infer": outputs(await client.infer(request(rows, True))),
        }
        # The client has no metadata call of its own: the stub it ships is what users call.
        stub = GRPCInferenceServiceStub(client._channel)
        metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=30)
        seen["metadata"] = {
            "name": metadata.name,
            "versions": list(metadata.versions),
            "inputs": [[i.name, i.datatype] for i in metadata.inputs],
            "outputs": [o.name for o in metadata.outputs],
        }
        try:
            await client.is_model_ready("nope")
        except grpc.aio.AioRpcError as exc:
            seen["unknown"] = [exc.code().name, exc.details()]
    return seen


def main() -> None:
    url, target = sys.argv[1], sys.argv[2]
    rows = json.load(sys.stdin)
    seen = {"rest": asyncio.run(rest(url, rows)), "grpc": asyncio.run(rpc(target, rows))}
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main()

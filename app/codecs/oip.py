"""Open Inference Protocol (KServe v2) tensors <-> records of raw features.

Inputs: one tensor per raw feature, named as in ``/predict``, each of shape ``[N]`` or
``[N, 1]``: the eight numbers as FP32/FP64/INT32/INT64 (other integer and float types too),
``ocean_proximity`` as BYTES. ``total_bedrooms`` may be left out (all rows imputed), or carry
NaN (binary, or JSON's ``NaN`` literal: ``loads``) or null (JSON) for a missing value. Raw
features rather than one encoded ``[N, 13]`` tensor: clients need no one-hot code of their own,
and every row is checked by the same bounds as ``/predict``.

Tensor data comes as JSON (``data``, flattened row-major) or, as ``tritonclient`` sends by
default, in the binary tensor extension: the JSON header is the first
``Inference-Header-Content-Length`` bytes, followed by each binary input in order
(``parameters.binary_data_size`` bytes; little-endian; BYTES as 4-byte length + bytes).
Outputs (FP64, ``[N]``: dollars to the cent, which FP32 cannot hold above $131,072; always
JSON, which every client reads): ``house_value``, and with a model that has calibrated
intervals ``house_value_low`` and ``house_value_high``, each with ``parameters.coverage``.
When a row is flagged (``app.core.flags``), the answer's ``parameters`` say so: ``warning_count``
and ``warnings``, a bounded text of the first few (``flag_summary``). A request may name the
outputs it wants (``outputs``), and the coverage of the range (``parameters.coverage``):
``app.http.oip`` decides both.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import orjson

from app.core.flags import Flag
from app.core.intervals import Ranges
from app.core.served import Served
from app.errors import Refusal, RequestRefused, shown
from app.identity import EXTENSIONS, MODEL_NAME, SERVER_NAME, server_version
from modelspec.features import CATEGORICAL_COLUMN, IMPUTED_COLUMN, NUMERIC_COLUMNS, RAW_COLUMNS

OUTPUT = "house_value"
LOW, HIGH = "house_value_low", "house_value_high"
OUTPUTS = (OUTPUT, LOW, HIGH)
NUMERIC_TYPES = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}


class OipError(RequestRefused):
    """A request this protocol refuses (INVALID: HTTP 400 with ``{"error": message}``)."""

    def __init__(self, message: str) -> None:
        super().__init__(Refusal.INVALID, message)


def input_metadata() -> list[dict[str, Any]]:
    return [{"name": name, "datatype": "FP32", "shape": [-1]} for name in NUMERIC_COLUMNS] + [
        {"name": CATEGORICAL_COLUMN, "datatype": "BYTES", "shape": [-1]}
    ]


def output_metadata(ranges: bool) -> list[dict[str, Any]]:
    """The outputs: the price, and its range when the model has one."""
    return [
        {"name": name, "datatype": "FP64", "shape": [-1]}
        for name in (OUTPUTS if ranges else (OUTPUT,))
    ]


def server_metadata() -> dict[str, Any]:
    """The protocol's server metadata (both doors'): name, version and extensions."""
    return {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}


def model_metadata(model: Served) -> dict[str, Any]:
    """The protocol's model metadata (both doors'): ``model``'s version, platform, inputs, and
    outputs (with a price range when the model has intervals)."""
    compiled = model.manifest.compiled
    target = compiled.target if compiled is not None else "cpu"
    return {
        "name": MODEL_NAME,
        "versions": [model.version],
        "platform": "neuronx_torchscript" if target == "neuron" else "pytorch_libtorch",
        "inputs": input_metadata(),
        "outputs": output_metadata(model.intervals.table is not None),
    }


def check_name(name: str) -> None:
    """RequestRefused (NOT_FOUND) for a model this server does not serve."""
    if name != MODEL_NAME:
        raise RequestRefused(Refusal.NOT_FOUND, unknown_model(name))


def check_version(version: str, model: Served | None) -> None:
    """RequestRefused (NOT_FOUND) for a version other than ``model``'s (the one a request runs
    on); an empty version, or no model loaded yet, asks nothing of it."""
    if version and model is not None and version != model.version:
        raise RequestRefused(Refusal.NOT_FOUND, unknown_version(version, model.version))


def unknown_model(name: str) -> str:
    """The refusal of a model this server does not serve (both doors say it: 404, NOT_FOUND)."""
    return f"unknown model {shown(name)}: this server serves {MODEL_NAME!r}"


def unknown_version(version: str, served: str) -> str:
    """The refusal of a version other than the ``served`` one (404, NOT_FOUND)."""
    return (
        f"model {MODEL_NAME!r} has no version {shown(version)}; version {served} is served "
        "(leave model_version empty for the one in service)"
    )


# The non-standard literals Triton's JSON reader takes (``loads``).
_LITERALS = (b"NaN", b"Infinity")


def loads(part: bytes) -> Any:
    """The request's JSON, as Triton reads it: standard JSON, and the literals ``NaN``,
    ``Infinity`` and ``-Infinity`` as numbers.

    Triton accepts them (its parser's NaN-and-Inf mode), and clients write them: Python's
    ``json.dumps``, and so ``tritonclient.http`` in JSON mode, sends a NaN FP32 value, which is
    how that client says "missing", as a bare ``NaN``. orjson, several times faster, refuses
    them, so a body it refuses is read again by Python's ``json`` module only when it holds one
    of those words, under the same bounds: the body is already at most
    ``HOUSING_MAX_BODY_BYTES``, nesting too deep for the parser (RecursionError) is refused, and
    so is anything orjson could not have read (bytes that are not UTF-8, a lone surrogate).
    Every other refusal keeps orjson's message. What the numbers mean is decided afterwards,
    as for binary tensors: NaN in ``total_bedrooms`` is a missing value (imputed); NaN in any
    other feature, and an infinity in any, is refused by the validator, naming row and input.
    """
    try:
        return orjson.loads(part)
    except orjson.JSONDecodeError as exc:
        if not any(word in part for word in _LITERALS):
            raise OipError(f"the body is not valid JSON: {exc}") from None
        try:
            value = json.loads(part.decode("utf-8"))
            orjson.dumps(value)  # a lone surrogate (a "\\ud800" escape) cannot be answered
        except (ValueError, RecursionError, orjson.JSONEncodeError):
            raise OipError(f"the body is not valid JSON: {exc}") from None
        return value


def split_body(body: bytes, header_length: bytes | None) -> tuple[dict[str, Any], bytes]:
    """The JSON request (``loads``) and the binary tail (empty without the binary
    extension)."""
    if header_length is None:
        json_part, tail = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise OipError("Inference-Header-Content-Length does not fit the body")
        json_part, tail = body[: int(header_length)], body[int(header_length) :]
    request = loads(json_part)
    if type(request) is not dict or type(request.get("inputs")) is not list:
        raise OipError('expected a JSON object with an "inputs" list')
    return request, tail


def _rows(shape: Any, name: str) -> int:
    ok = type(shape) is list and all(type(d) is int and d >= 0 for d in shape)
    if not ok or not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise OipError(f"input {shown(name)}: shape must be [N] or [N, 1], got {shown(shape)}")
    return int(shape[0])


def _binary_strings(raw: bytes, name: str) -> list[str]:
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise OipError(f"input {shown(name)}: truncated BYTES element")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise OipError(f"input {shown(name)}: truncated BYTES element")
        out.append(raw[pos : pos + size].decode("utf-8", errors="replace"))
        pos += size
    return out


def _values(tensor: dict[str, Any], tail: bytes, offset: int) -> tuple[list[Any], int]:
    """A tensor's flattened values and the new offset into the binary tail."""
    name, datatype = tensor["name"], tensor.get("datatype")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(tail):
            raise OipError(f"input {shown(name)}: binary_data_size runs past the body")
        raw = tail[offset : offset + size]
        if datatype == "BYTES":
            return list(_binary_strings(raw, name)), offset + size
        dtype = NUMERIC_TYPES[str(datatype)]
        if size % np.dtype(dtype).itemsize:
            raise OipError(f"input {shown(name)}: {size} bytes is not a whole number of {datatype}")
        return np.frombuffer(raw, dtype=dtype).astype(np.float64).tolist(), offset + size
    data = tensor.get("data")
    if type(data) is not list:
        raise OipError(f"input {shown(name)}: needs a 'data' list or binary data")
    flat = _flatten(data)
    if datatype == "BYTES":
        if not all(type(v) is str for v in flat):
            raise OipError(f"input {shown(name)}: BYTES data must be strings")
        return flat, offset
    for v in flat:
        # NaN and infinities are numbers here (``loads``); the validator judges them by row.
        if v is not None and type(v) not in (int, float):
            raise OipError(f"input {shown(name)}: {datatype} data must be numbers")
    return flat, offset


def _flatten(data: list[Any]) -> list[Any]:
    if all(type(v) is not list for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flatten(v) if type(v) is list else [v])
    return out


def records_from(request: dict[str, Any], tail: bytes) -> list[dict[str, Any]]:
    """Raw records from the request's tensors; the caller validates them like ``/predict``."""
    tensors: dict[str, dict[str, Any]] = {}
    for t in request["inputs"]:
        if type(t) is not dict or type(t.get("name")) is not str:
            raise OipError("each input needs a name, shape, datatype and data")
        if t["name"] not in RAW_COLUMNS:
            raise OipError(f"unknown input {shown(t['name'])}; expected {', '.join(RAW_COLUMNS)}")
        if t["name"] in tensors:
            raise OipError(f"input {shown(t['name'])} given twice")
        expected = "BYTES" if t["name"] == CATEGORICAL_COLUMN else "a numeric type"
        kind = t.get("datatype")
        if (kind == "BYTES") != (t["name"] == CATEGORICAL_COLUMN) or (
            kind != "BYTES" and kind not in NUMERIC_TYPES
        ):
            raise OipError(f"input {shown(t['name'])}: datatype {shown(kind)}, expected {expected}")
        tensors[t["name"]] = t
    missing = [c for c in RAW_COLUMNS if c not in tensors and c != IMPUTED_COLUMN]
    if missing:
        raise OipError(f"missing input(s): {', '.join(missing)}")
    rows: int | None = None
    columns: dict[str, list[Any]] = {}
    offset = 0
    for t in request["inputs"]:  # binary data comes in the order of the inputs
        name = t["name"]
        n = _rows(t.get("shape"), name)
        if rows is not None and n != rows:
            raise OipError(f"input {shown(name)} has {n} rows, the others {rows}")
        rows = n
        values, offset = _values(t, tail, offset)
        if len(values) != n:
            raise OipError(f"input {shown(name)}: shape says {n} values, data has {len(values)}")
        columns[name] = values
    if not rows:
        raise OipError("no rows: inputs need at least one element")
    if IMPUTED_COLUMN in columns:  # NaN or null: missing
        columns[IMPUTED_COLUMN] = [
            None if v is None or v != v else v for v in columns[IMPUTED_COLUMN]
        ]
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def output_columns(values: list[float], ranges: Ranges | None) -> dict[str, list[float]]:
    """Each output's values: the prices, and their range's bounds when there are ranges."""
    columns: dict[str, list[float]] = {OUTPUT: values}
    if ranges is not None:
        lows, highs = zip(*ranges.bounds, strict=True)
        columns[LOW], columns[HIGH] = list(lows), list(highs)
    return columns


def response(
    request: dict[str, Any],
    version: str,
    names: tuple[str, ...],
    values: list[float],
    ranges: Ranges | None,
    flags: list[Flag],
) -> bytes:
    """The answer with the outputs ``names``, in that order; the range's need ``ranges``;
    ``flags`` are summed up in the answer's ``parameters``."""
    columns = output_columns(values, ranges)
    parameters: dict[str, float] = {}
    if ranges is not None:
        parameters["coverage"] = ranges.coverage
    outputs = []
    for name in names:
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": "FP64",
            "shape": [len(values)],
            "data": columns[name],
        }
        if name != OUTPUT:
            tensor["parameters"] = parameters
        outputs.append(tensor)
    out: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": version, "outputs": outputs}
    if "id" in request:
        out["id"] = request["id"]
    if flags:
        out["parameters"] = {"warning_count": len(flags), "warnings": flag_summary(flags)}
    return orjson.dumps(out)


# Flags named in a summary; the count says how many there are in all.
SUMMARY_FLAGS = 5


def flag_summary(flags: list[Flag]) -> str:
    """``row 0 total_rooms out_of_range; row 3 house_value below_floor; and 2 more``: the first
    ``SUMMARY_FLAGS`` flags on one bounded line, for answers with no place for a list (OIP's
    parameters, a CSV answer's header)."""
    text = "; ".join(f"row {f['row']} {f['field']} {f['code']}" for f in flags[:SUMMARY_FLAGS])
    more = len(flags) - SUMMARY_FLAGS
    return f"{text}; and {more} more" if more > 0 else text

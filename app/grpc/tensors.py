"""gRPC messages <-> the REST route's Open Inference Protocol tensors.

A ``ModelInferRequest`` becomes the JSON envelope and binary tail that ``app.codecs.oip``
reads from an HTTP body, so both protocols share one parser, one set of checks and one set of
messages. Typed ``contents`` become ``data`` (the field of the tensor's datatype: FP32 in
``fp32_contents``, INT8/16/32 in ``int_contents`` ...; a NaN is a missing value, as in binary
HTTP), and ``raw_input_contents`` become the binary tail, one entry per input, in order. A
request that mixes the two, or whose raw entries do not match its inputs, is refused.

Outputs are FP64 ``[N]`` (dollars to the cent, which FP32 cannot hold) in
``raw_output_contents``, as Triton answers (the smallest answer, and what ``tritonclient``'s
``as_numpy`` reads first); the range's outputs carry ``parameters.coverage`` as a
``double_param``; flagged rows put ``warning_count`` and ``warnings`` in the answer's
parameters.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, NamedTuple

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from app.codecs.oip import OUTPUT, OipError, flag_summary, output_columns
from app.core.flags import Flag
from app.core.intervals import Ranges
from app.errors import shown
from app.grpc import open_inference_grpc_pb2 as pb
from app.identity import MODEL_NAME
from modelspec.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS

Parameters = Mapping[str, pb.InferParameter]
_LENGTH = struct.Struct("<I")
# The typed field of each datatype (the protocol's InferTensorContents).
CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "BYTES": "bytes_contents",
}


def parameter(value: pb.InferParameter) -> bool | int | float | str | None:
    """A parameter's value, whichever of the protocol's types it was sent as."""
    kind = value.WhichOneof("parameter_choice")
    return None if kind is None else getattr(value, kind)


def parameters(given: Parameters) -> dict[str, Any]:
    return {name: parameter(value) for name, value in given.items()}


def envelope(request: pb.ModelInferRequest) -> tuple[dict[str, Any], bytes]:
    """The JSON envelope and binary tail of ``request`` (``oip.records_from`` reads them)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise OipError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: "
            "send one per input, in the order of inputs"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        given = parameters(tensor.parameters)
        if raw:
            if tensor.HasField("contents"):
                raise OipError(
                    f"input {shown(tensor.name)}: contents and raw_input_contents together; "
                    "send one or the other"
                )
            given["binary_data_size"] = len(raw[i])
        else:
            entry["data"] = _contents(tensor)
        entry["parameters"] = given
        inputs.append(entry)
    out = head(request)
    out["inputs"] = inputs
    return out, b"".join(raw)


def head(request: pb.ModelInferRequest) -> dict[str, Any]:
    """The envelope without its inputs: the request's id, parameters and outputs."""
    out: dict[str, Any] = {"inputs": []}
    if request.id:
        out["id"] = request.id
    if request.parameters:
        out["parameters"] = parameters(request.parameters)
    if request.outputs:
        out["outputs"] = [
            {"name": o.name, "parameters": parameters(o.parameters)} for o in request.outputs
        ]
    return out


_RAW_NUMBERS: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
_COLUMN = {name: i for i, name in enumerate(NUMERIC_COLUMNS)}
# Rows up to which a request's columns are read as Python lists rather than an array.
FEW = 8
# The most bytes of input descriptions (names, types, shapes) a kept layout may hold: nine
# plain ones take a few hundred; more means fields the layout does not need.
LAYOUT_BYTES = 2048


class Layout:
    """Where a request's columns are: each numeric column's input position and type, the
    category's position, and the rows."""

    __slots__ = ("dtype", "numeric", "ocean", "rows")

    def __init__(self, numeric: list[int], ocean: int, dtype: np.dtype[Any], rows: int) -> None:
        self.numeric, self.ocean, self.dtype, self.rows = numeric, ocean, dtype, rows


class ColumnReader:
    """The common case of a ``ModelInferRequest`` read straight from its bytes into columns:
    no parameters and no outputs asked, every input once in ``raw_input_contents``, all FP32
    or all FP64 numbers and a BYTES category, shape ``[N]`` or ``[N, 1]`` with 1 <= N <=
    ``most``, no tensor parameters. ``read`` gives a ``Columns``, or None for anything else
    (the whole message is then parsed, and ``envelope`` reads it, checks it and explains).

    The bytes are parsed as ``Lite``, the protocol's message with its nested messages left as
    bytes (protobuf's wire format cannot tell them apart), so protobuf's C code does the whole
    parse. A client sends the same inputs (names, types, shapes) call after call: the layouts
    of the last ``KEPT`` kinds of inputs (``LAYOUT_BYTES`` of descriptions at most) are kept
    by their bytes, and a request with the same input bytes is read with a dict lookup. Up to
    ``FEW`` rows come as Python lists, more as an array."""

    KEPT = 8

    def __init__(self, most: int) -> None:
        self.most = most
        self._lite = lite_request_class()
        self._kept: dict[tuple[bytes, ...], Layout] = {}

    def read(self, raw: bytes) -> Columns | None:
        try:
            lite: Any = self._lite.FromString(raw)  # generated at run time: fields untyped
        except DecodeError:
            return None
        if lite.parameters or lite.outputs:
            return None
        inputs = tuple(lite.inputs)
        if sum(map(len, inputs)) > LAYOUT_BYTES:  # odd extras: not kept, the slow path reads it
            return None
        layout = self._kept.get(inputs)
        if layout is None:
            layout = _layout(inputs, self.most)
            if layout is None:
                return None
            if len(self._kept) >= self.KEPT:
                self._kept.clear()
            self._kept[inputs] = layout
        raw_contents = lite.raw_input_contents
        if len(raw_contents) != len(inputs):
            return None
        n, dtype = layout.rows, layout.dtype
        parts = [raw_contents[at] for at in layout.numeric]
        if any(len(part) != n * dtype.itemsize for part in parts):
            return None
        ocean = _words(raw_contents[layout.ocean], n)
        if ocean is None:
            return None
        joined = b"".join(parts)
        numeric: np.ndarray | list[list[float]]
        if n <= FEW:  # plain Python: numpy's fixed cost would be most of the work
            values = struct.unpack(f"<{len(_COLUMN) * n}{dtype.char}", joined)
            numeric = [list(values[row::n]) for row in range(n)]
        else:
            block = np.frombuffer(joined, dtype).reshape(len(_COLUMN), n)
            numeric = block.T.astype(np.float64)
        return Columns(lite.model_name, lite.model_version, lite.id, numeric, ocean)


class Columns(NamedTuple):
    """A request read by ``ColumnReader``: its model, version and id, its rows (``(n, 8)`` in
    ``NUMERIC_COLUMNS`` order, NaN: missing) and its categories."""

    model: str
    version: str
    id: str
    numeric: np.ndarray | list[list[float]]
    ocean: list[str]


@cache
def lite_request_class() -> type[Message]:
    """``ModelInferRequest`` with its nested messages as bytes, in a pool of its own (built at
    first use, not at import)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="housing_lite_infer.proto", package="housing.lite", syntax="proto3"
    )
    message = file.message_type.add(name="ModelInferRequestLite")
    kinds = descriptor_pb2.FieldDescriptorProto
    for number, name in enumerate(("model_name", "model_version", "id"), start=1):
        message.field.add(name=name, number=number, type=kinds.TYPE_STRING)
    for number, name in ((4, "parameters"), (5, "inputs"), (6, "outputs")):
        message.field.add(
            name=name, number=number, type=kinds.TYPE_BYTES, label=kinds.LABEL_REPEATED
        )
    message.field.add(
        name="raw_input_contents", number=7, type=kinds.TYPE_BYTES, label=kinds.LABEL_REPEATED
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    found = pool.FindMessageTypeByName("housing.lite.ModelInferRequestLite")
    return message_factory.GetMessageClass(found)


def _layout(inputs: tuple[bytes, ...], most: int) -> Layout | None:
    """The layout of a request's inputs (each one's bytes), if they are the common case (see
    ColumnReader)."""
    if len(inputs) != len(_COLUMN) + 1:
        return None
    try:
        tensors = [pb.ModelInferRequest.InferInputTensor.FromString(i) for i in inputs]
    except DecodeError:
        return None
    shape = list(tensors[0].shape)
    n = shape[0] if shape and (len(shape) == 1 or shape[1:] == [1]) else 0
    if not 1 <= n <= most:
        return None
    numeric = [-1] * len(_COLUMN)
    ocean = -1
    kinds = set()
    for at, tensor in enumerate(tensors):
        if list(tensor.shape) != shape or tensor.parameters or tensor.HasField("contents"):
            return None
        if tensor.name == CATEGORICAL_COLUMN and tensor.datatype == "BYTES" and ocean < 0:
            ocean = at
            continue
        index, dtype = _COLUMN.get(tensor.name), _RAW_NUMBERS.get(tensor.datatype)
        if index is None or dtype is None or numeric[index] >= 0:
            return None
        numeric[index] = at
        kinds.add(dtype)
    if ocean < 0 or len(kinds) != 1:
        return None
    return Layout(numeric, ocean, kinds.pop(), n)


def _words(data: bytes, n: int) -> list[str] | None:
    """``n`` length-prefixed UTF-8 strings filling ``data`` exactly, else None."""
    out = []
    at = 0
    for _ in range(n):
        if at + 4 > len(data):
            return None
        (size,) = _LENGTH.unpack_from(data, at)
        at += 4
        if at + size > len(data):
            return None
        try:
            out.append(data[at : at + size].decode())
        except UnicodeDecodeError:
            return None
        at += size
    return out if at == len(data) else None


def _contents(tensor: pb.ModelInferRequest.InferInputTensor) -> list[Any]:
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        return []  # oip.records_from refuses the datatype by name
    values: Iterable[Any] = getattr(tensor.contents, field)
    if field == "bytes_contents":
        return [v.decode("utf-8", errors="replace") for v in values]
    return list(values)  # NaN stays NaN: oip.records_from reads it as binary data's


# Serialized answers without their id and contents, by (version, outputs, rows,
# coverage): a client's answers differ in those only. Bounded: emptied when full.
_HEADS: dict[tuple[str, tuple[str, ...], int, float | None], bytes] = {}
HEADS_KEPT = 64


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field (tag, varint length, bytes)."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def response(
    answer_id: str,
    version: str,
    names: tuple[str, ...],
    values: list[float],
    ranges: Ranges | None,
    flags: list[Flag],
) -> bytes:
    """The serialized answer (its ``id``: the request's) with the outputs ``names``, in that
    order; the range's need ``ranges``; ``flags`` are summed up in the answer's parameters
    (``warning_count``, ``warnings``). Built from a kept serialized head (``_HEADS``) and the
    call's own fields: protobuf reads concatenated fields as one message."""
    columns = output_columns(values, ranges)
    coverage = None if ranges is None else ranges.coverage
    n = len(values)
    key = (version, names, n, coverage)
    head = _HEADS.get(key)
    if head is None:
        out = pb.ModelInferResponse(model_name=MODEL_NAME, model_version=version)
        for name in names:
            tensor = out.outputs.add(name=name, datatype="FP64", shape=[n])
            if name != OUTPUT and coverage is not None:
                tensor.parameters["coverage"].double_param = coverage
        head = out.SerializeToString()
        if len(_HEADS) >= HEADS_KEPT:
            _HEADS.clear()
        _HEADS[key] = head
    parts = [head]
    if answer_id:
        parts.append(_field(3, answer_id.encode()))
    pack = f"<{n}d"
    parts += [_field(6, struct.pack(pack, *columns[name])) for name in names]
    if flags:
        notes = pb.ModelInferResponse()
        notes.parameters["warning_count"].int64_param = len(flags)
        notes.parameters["warnings"].string_param = flag_summary(flags)
        parts.append(notes.SerializeToString())
    return b"".join(parts)

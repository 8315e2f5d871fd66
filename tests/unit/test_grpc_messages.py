"""The gRPC messages: the committed module matches the .proto, coexists with another copy of
the protocol, and converts to the REST route's tensors and back."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2

from app.codecs.oip import OipError, records_from
from app.core.flags import Flag
from app.core.intervals import Ranges
from app.grpc import open_inference_grpc_pb2 as pb
from app.grpc import tensors
from modelspec.features import CATEGORICAL_COLUMN, EXAMPLE_RECORD, NUMERIC_COLUMNS

RPC = Path(__file__).resolve().parents[2] / "app" / "grpc"


def test_the_committed_module_is_the_proto_compiled(tmp_path: Path) -> None:
    out = tmp_path / "set.pb"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{RPC}", f"--descriptor_set_out={out}"]
        + [str(RPC / "open_inference_grpc.proto")],
        check=True,
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _drop_json_names(fresh.message_type)  # protoc adds them to a set, not to generated code
    committed = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert committed == fresh, "app/grpc/open_inference_grpc.proto changed: run `make proto`"


def _drop_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _drop_json_names(message.nested_type)


def test_it_imports_beside_tritonclients_copy_of_the_same_protocol() -> None:
    code = (
        "import tritonclient.grpc.service_pb2 as theirs\n"
        "import app.grpc.open_inference_grpc_pb2 as ours\n"
        "m = ours.ModelInferRequest(model_name='housing')\n"
        "assert theirs.ModelInferRequest.FromString(m.SerializeToString()).model_name == 'housing'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=RPC.parents[1])


ROWS = [
    {**EXAMPLE_RECORD, "total_bedrooms": None, "ocean_proximity": "INLAND"},
    {**EXAMPLE_RECORD, "median_income": 8.0, "ocean_proximity": "NEAR BAY"},
]


def _request(raw: bool) -> pb.ModelInferRequest:
    """Two rows of every raw feature: ``[2, 1]`` FP32 (a NaN: missing) and ``[2]`` BYTES."""
    request = pb.ModelInferRequest(model_name="housing", id="r-1")
    request.parameters["coverage"].double_param = 0.8
    request.outputs.add(name="house_value")
    for name in NUMERIC_COLUMNS:
        column = [math.nan if r[name] is None else r[name] for r in ROWS]
        tensor = request.inputs.add(name=name, datatype="FP32", shape=[2, 1])
        if raw:
            request.raw_input_contents.append(np.asarray(column, "<f4").tobytes())
        else:
            tensor.contents.fp32_contents.extend(column)
    ocean = request.inputs.add(name=CATEGORICAL_COLUMN, datatype="BYTES", shape=[2])
    words = [str(r[CATEGORICAL_COLUMN]).encode() for r in ROWS]
    if raw:
        request.raw_input_contents.append(b"".join(len(w).to_bytes(4, "little") + w for w in words))
    else:
        ocean.contents.bytes_contents.extend(words)
    return request


@pytest.mark.parametrize("raw", [False, True], ids=["typed contents", "raw contents"])
def test_a_request_becomes_the_rest_routes_envelope(raw: bool) -> None:
    envelope, tail = tensors.envelope(_request(raw))
    assert envelope["id"] == "r-1"
    assert envelope["parameters"] == {"coverage": 0.8}
    assert envelope["outputs"] == [{"name": "house_value", "parameters": {}}]
    assert bool(tail) is raw
    # The same records as the HTTP route reads, to float32's precision.
    got = records_from(envelope, tail)
    for row, want in zip(got, ROWS, strict=True):
        assert row[CATEGORICAL_COLUMN] == want[CATEGORICAL_COLUMN]
        for name in NUMERIC_COLUMNS:
            expected = want[name]
            assert row[name] == (None if expected is None else pytest.approx(expected, rel=1e-6))


def test_mixed_or_miscounted_raw_contents_are_refused_with_the_fix() -> None:
    request = _request(raw=True)
    request.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(OipError, match="contents and raw_input_contents together"):
        tensors.envelope(request)
    request = _request(raw=True)
    del request.raw_input_contents[-1]
    with pytest.raises(OipError, match="8 entries for 9 inputs: send one per input"):
        tensors.envelope(request)


def test_a_parameter_is_read_whatever_type_it_was_sent_as() -> None:
    given = pb.ModelInferRequest()
    given.parameters["a"].bool_param = True
    given.parameters["b"].int64_param = -3
    given.parameters["c"].string_param = "x"
    given.parameters["d"].double_param = 0.9
    given.parameters["e"].uint64_param = 7
    given.parameters["f"].CopyFrom(pb.InferParameter())
    assert tensors.parameters(given.parameters) == {
        "a": True, "b": -3, "c": "x", "d": 0.9, "e": 7, "f": None
    }  # fmt: skip


def test_the_answer_is_raw_fp64_in_the_order_asked_with_the_coverage() -> None:
    request = pb.ModelInferRequest(id="r-2")
    ranges = Ranges(0.8, [(90.0, 110.0), (190.0, 230.0)])
    names = ("house_value_high", "house_value")
    cents = [429055.57, 200.5]  # FP32 would answer 429055.5625 for the first
    answer = pb.ModelInferResponse.FromString(
        tensors.response(request.id, "v1", names, cents, ranges, [])
    )
    assert (answer.model_name, answer.model_version, answer.id) == ("housing", "v1", "r-2")
    assert [o.name for o in answer.outputs] == list(names)
    assert [list(o.shape) for o in answer.outputs] == [[2], [2]]
    assert answer.outputs[0].parameters["coverage"].double_param == 0.8
    assert "coverage" not in answer.outputs[1].parameters
    assert [o.datatype for o in answer.outputs] == ["FP64", "FP64"]
    decoded = [np.frombuffer(raw, "<f8").tolist() for raw in answer.raw_output_contents]
    assert decoded == [[110.0, 230.0], cents]
    assert not answer.parameters


def test_flagged_rows_are_summed_up_in_the_answers_parameters() -> None:
    flags: list[Flag] = [
        {"row": r, "field": "house_value", "code": "below_floor", "message": "m"} for r in range(7)
    ]
    answer = pb.ModelInferResponse.FromString(
        tensors.response("", "v1", ("house_value",), [1.0] * 7, None, flags)
    )
    assert answer.parameters["warning_count"].int64_param == 7
    summary = answer.parameters["warnings"].string_param
    assert summary.startswith("row 0 house_value below_floor; row 1") and summary.endswith(
        "and 2 more"
    )


def _raw_request(records: list[dict[str, object]], numbers: str = "FP32") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="housing")
    n = len(records)
    for name in reversed(NUMERIC_COLUMNS):  # any order of inputs is read by name
        request.inputs.add(name=name, datatype=numbers, shape=[n])
        values = [math.nan if r.get(name) is None else r[name] for r in records]
        dtype = "<f4" if numbers == "FP32" else "<f8"
        request.raw_input_contents.append(np.asarray(values, dtype).tobytes())
    request.inputs.add(name=CATEGORICAL_COLUMN, datatype="BYTES", shape=[n])
    words = [str(r[CATEGORICAL_COLUMN]).encode() for r in records]
    request.raw_input_contents.append(b"".join(len(w).to_bytes(4, "little") + w for w in words))
    return request


@pytest.mark.parametrize("numbers", ["FP32", "FP64"])
def test_raw_tensors_read_into_columns_equal_the_envelopes_records(numbers: str) -> None:
    records = [
        EXAMPLE_RECORD,
        {**EXAMPLE_RECORD, "total_bedrooms": None, CATEGORICAL_COLUMN: "NEAR BAY"},
        {**EXAMPLE_RECORD, "median_income": 12.5, "latitude": 37.25},
    ]
    request = _raw_request(records, numbers)
    read = tensors.ColumnReader(1024).read(request.SerializeToString())
    assert read is not None
    numeric, ocean = np.asarray(read.numeric), read.ocean
    envelope, tail = tensors.envelope(request)
    expected = records_from(envelope, tail)
    assert ocean == [r[CATEGORICAL_COLUMN] for r in expected]
    for row, record in zip(numeric.tolist(), expected, strict=True):
        for name, value in zip(NUMERIC_COLUMNS, row, strict=True):
            given = record.get(name)
            assert math.isnan(value) if given is None else value == given, name


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r: r.inputs[0].shape.__setitem__(0, 2),  # shapes disagree
        lambda r: r.raw_input_contents.__setitem__(0, b"\x00" * 3),  # not whole numbers
        lambda r: r.raw_input_contents.__setitem__(8, b"\xff\xff\xff\xff"),  # a cut word
        lambda r: r.raw_input_contents.__setitem__(8, b"\x02\x00\x00\x00\xff\xfe"),  # no UTF-8
        lambda r: setattr(r.inputs[0], "datatype", "INT32"),  # not the common case
        lambda r: r.inputs[0].parameters["x"].CopyFrom(pb.InferParameter(bool_param=True)),
        lambda r: setattr(r.inputs[0], "name", r.inputs[1].name),  # an input twice
    ],
)
def test_anything_but_the_common_case_is_left_to_the_envelope(spoil: object) -> None:
    request = _raw_request([EXAMPLE_RECORD])
    spoil(request)  # type: ignore[operator]
    assert tensors.ColumnReader(1024).read(request.SerializeToString()) is None


def test_more_rows_than_allowed_are_left_to_the_envelope() -> None:
    assert (
        tensors.ColumnReader(2).read(_raw_request([EXAMPLE_RECORD] * 3).SerializeToString()) is None
    )


def test_a_kept_layout_still_checks_each_calls_contents() -> None:
    reader = tensors.ColumnReader(1024)
    first = reader.read(_raw_request([EXAMPLE_RECORD]).SerializeToString())
    other = {**EXAMPLE_RECORD, "median_income": 3.25}
    second = reader.read(_raw_request([other]).SerializeToString())  # the kept layout
    assert first is not None and second is not None
    assert np.asarray(second.numeric)[0, NUMERIC_COLUMNS.index("median_income")] == 3.25
    cut = _raw_request([EXAMPLE_RECORD])
    cut.raw_input_contents[0] = b"\x00" * 3
    assert reader.read(cut.SerializeToString()) is None
    word = _raw_request([EXAMPLE_RECORD])
    word.raw_input_contents[8] = b"\xff\xff\xff\xff"
    assert reader.read(word.SerializeToString()) is None


def test_answers_built_from_kept_heads_equal_the_whole_message() -> None:
    ranges = Ranges(0.9, [(90.0, 110.0)])
    names = ("house_value", "house_value_low", "house_value_high")
    for request_id in ("a", "", "b"):  # the second and third reuse the first's head
        built = tensors.response(request_id, "v9", names, [100.0], ranges, [])
        expected = pb.ModelInferResponse(model_name="housing", model_version="v9", id=request_id)
        for name, value in zip(names, (100.0, 90.0, 110.0), strict=True):
            tensor = expected.outputs.add(name=name, datatype="FP64", shape=[1])
            if name != "house_value":
                tensor.parameters["coverage"].double_param = 0.9
            expected.raw_output_contents.append(np.asarray([value], "<f8").tobytes())
        assert pb.ModelInferResponse.FromString(built) == expected


@pytest.mark.parametrize(
    "ask",
    [
        lambda r: r.parameters["coverage"].CopyFrom(pb.InferParameter(double_param=0.8)),
        lambda r: r.outputs.add(name="house_value"),
    ],
)
def test_a_request_that_asks_for_more_is_left_to_the_envelope(ask: object) -> None:
    request = _raw_request([EXAMPLE_RECORD])
    ask(request)  # type: ignore[operator]
    assert tensors.ColumnReader(1024).read(request.SerializeToString()) is None


def test_bytes_that_are_no_message_are_left_to_the_envelope() -> None:
    assert tensors.ColumnReader(1024).read(b"\xff\xff garbage") is None


def test_the_reader_takes_the_model_version_and_id_from_the_bytes() -> None:
    request = _raw_request([EXAMPLE_RECORD])
    request.model_version, request.id = "v3", "call-7"
    read = tensors.ColumnReader(1024).read(request.SerializeToString())
    assert read is not None and (read.model, read.version, read.id) == ("housing", "v3", "call-7")


def test_inputs_with_odd_extra_bytes_are_not_kept() -> None:
    request = _raw_request([EXAMPLE_RECORD])
    # A valid input carrying an unknown field (number 99, 5,000 bytes): read, but not kept.
    request.inputs[0].MergeFromString(b"\x9a\x06\x88\x27" + b"x" * 5000)  # tag, varint 5000
    assert len(request.inputs[0].SerializeToString()) > tensors.LAYOUT_BYTES
    reader = tensors.ColumnReader(1024)
    assert reader.read(request.SerializeToString()) is None
    assert reader._kept == {}

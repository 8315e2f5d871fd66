"""An Open Inference Protocol ``infer`` request, from either door, into rows and a plan.

The request is its JSON envelope (HTTP's body, or the envelope ``app.grpc.tensors`` builds from
a gRPC message) and its binary tail (the binary tensor extension's bytes). Decoding checks the
envelope's types (``check_envelope``: each would otherwise trip the tensor reader), reads the
tensors into records (``app.codecs.oip``), validates them as ``/predict``'s records are and
encodes them; the plan says which outputs the answer has, in which order, and the coverage of
its range. Every refusal is an ``OipError`` (INVALID) naming the part of the request at fault,
or the validator's errors, row by row.

Outputs: those the request's ``outputs`` names, in its order, else ``house_value`` and, when
the answer has ranges, ``house_value_low`` and ``house_value_high``. The range's coverage is
the request's ``parameters.coverage`` (0: no range), else ``HOUSING_INTERVAL_COVERAGE``;
asking for a range output that the answer cannot have (coverage 0, or a model without
intervals) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.codecs import oip
from app.codecs.fastparse import valid_categories, valid_lists, valid_rows
from app.codecs.schemas import request_adapter
from app.core.inference import Decoded
from app.core.intervals import Coverage, Intervals, listed
from app.core.served import Served
from app.errors import InvalidInput, invalid_details, shown, summary
from modelspec.features import encode, encode_records, encode_rows


def check_envelope(request: dict[str, Any]) -> None:
    """Refuse (400) the wrong types that ``oip.records_from`` would trip over with a 500, and
    an ``id`` that is not a string (it is echoed, and the protocol's answer has a string id).
    Each of these would otherwise end in a 500: ``"outputs": 5``, ``"parameters": 5``, a list
    as ``datatype``, ``data``, ``shape`` or ``id`` nested a thousand deep (RecursionError in
    flattening, in a message's repr, in the answer's JSON); ``make fuzz`` sends them all."""
    if "id" in request and type(request["id"]) is not str:
        raise oip.OipError('"id" must be a string')
    parameters = request.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise oip.OipError('"parameters" must be an object')
    outputs = request.get("outputs")
    if outputs is not None and type(outputs) is not list:
        raise oip.OipError('"outputs" must be a list')
    seen = set()
    for out in outputs or []:
        if type(out) is not dict or out.get("name") not in oip.OUTPUTS:
            raise oip.OipError(f"each output is one of {', '.join(oip.OUTPUTS)}, by name")
        if out["name"] in seen:
            raise oip.OipError(f"output {shown(out['name'])} asked twice")
        seen.add(out["name"])
        if out.get("parameters") is not None and type(out["parameters"]) is not dict:
            raise oip.OipError(f"output {shown(out['name'])}: parameters must be an object")
    for tensor in request["inputs"]:
        # An input without a string name: records_from says so.
        if type(tensor) is dict and type(tensor.get("name")) is str:
            _check_tensor(tensor["name"], tensor)


def _check_tensor(name: str, tensor: dict[str, Any]) -> None:
    # Never the value itself in a message: the repr of a deeply nested one is a RecursionError.
    parameters = tensor.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise oip.OipError(f"input {shown(name)}: parameters must be an object")
    if "datatype" in tensor and type(tensor["datatype"]) is not str:
        raise oip.OipError(f"input {shown(name)}: datatype must be a string")
    shape = tensor.get("shape")
    if type(shape) is not list or not all(type(d) is int for d in shape):
        raise oip.OipError(f"input {shown(name)}: shape must be a list of integers, [N] or [N, 1]")
    data = tensor.get("data")
    # Shapes are [N] or [N, 1]: values, or one-value lists; deeper is never right.
    if type(data) is list and any(
        type(v) is list and any(type(w) is list for w in v) for v in data
    ):
        raise oip.OipError(f"input {shown(name)}: data is nested deeper than [N, 1]")


@dataclass(slots=True)
class Inference:
    """A checked request, the outputs to answer (in order) and the coverage of their range."""

    request: dict[str, Any]
    outputs: tuple[str, ...]
    coverage: Coverage | None


class InferRequests:
    """Decodes ``infer`` requests of at most ``max_instances`` rows."""

    def __init__(self, max_instances: int) -> None:
        self.adapter = request_adapter(max_instances)

    def decode(self, model: Served, request: dict[str, Any], tail: bytes) -> Decoded[Inference]:
        """A request's JSON envelope and binary tail (HTTP's body, or a gRPC message's:
        ``app.grpc.tensors``) into encoded rows and the plan of its answer."""
        check_envelope(request)
        records = oip.records_from(request, tail)
        self.adapter.validate_python({"instances": records})
        encoded = encode_records(records, model.bedrooms_median, validated=True)
        return Decoded(encoded, self.plan(model.intervals, request))

    def decode_columns(
        self,
        model: Served,
        numeric: np.ndarray | list[list[float]],
        ocean: list[str],
        answer_id: str,
    ) -> Decoded[Inference] | None:
        """A request that asks nothing of its answer (no parameters, no outputs), its tensors
        already read into columns (``numeric``: ``(n, 8)`` in ``NUMERIC_COLUMNS`` order, as an
        array or, for a few rows, Python lists; NaN: missing; ``ocean``: the categories), when
        every row is certainly valid (``app.codecs.fastparse``); None: let ``decode`` check
        them and explain. The answer is the model's default one."""
        if not valid_categories(ocean):
            return None
        if isinstance(numeric, list):
            if not valid_lists(numeric):
                return None
            encoded = encode_rows(numeric, ocean, model.bedrooms_median)
        else:
            if not valid_rows(numeric):
                return None
            encoded = encode(numeric, ocean, model.bedrooms_median)
        head: dict[str, Any] = {"inputs": [], "id": answer_id} if answer_id else {"inputs": []}
        return Decoded(encoded, self.plan(model.intervals, head))

    @staticmethod
    def plan(intervals: Intervals, request: dict[str, Any]) -> Inference:
        """The outputs and coverage of an answer to ``request`` (its envelope checked), by the
        model's ``intervals``."""
        coverage = intervals.default
        parameters = request.get("parameters") or {}
        if "coverage" in parameters:
            value = parameters["coverage"]
            number = type(value) in (int, float) and abs(value) <= 1
            coverage = intervals.at(float(value) if number else -1.0, "parameters.coverage")
        asked = tuple(out["name"] for out in request.get("outputs") or ())
        if not asked:
            names = (oip.OUTPUT,) if coverage is None else oip.OUTPUTS
            return Inference(request, names, coverage)
        if oip.LOW not in asked and oip.HIGH not in asked:
            return Inference(request, asked, None)  # no range to compute
        if coverage is None:
            if intervals.table is None:
                raise oip.OipError(
                    f"{oip.LOW} and {oip.HIGH} need calibrated intervals, and this model has "
                    "none (it was trained before them): retrain with `python -m training` and "
                    "recompile"
                )
            why = (
                "parameters.coverage is 0"
                if "coverage" in parameters
                else "the server's default coverage (HOUSING_INTERVAL_COVERAGE) is 0"
            )
            raise oip.OipError(
                f"{oip.LOW} and {oip.HIGH} are a price range, and {why}: ask with "
                f"parameters.coverage, one of {listed(intervals.coverages)}"
            )
        return Inference(request, asked, coverage)


def invalid_text(exc: Exception, most: int) -> str:
    """The protocol's text for an INVALID refusal (HTTP's ``{"error"}``, gRPC's details): the
    protocol's own message, or the first ``most`` validation errors by row and input."""
    if isinstance(exc, ValidationError | InvalidInput):
        details, total = invalid_details(exc, most)
        # instances.3.latitude -> row 3 of input latitude
        rows = [{**d, "field": d["field"].replace("instances.", "row ")} for d in details]
        checked = exc.checked if isinstance(exc, InvalidInput) else None
        return summary(rows, total, checked)
    return str(exc)

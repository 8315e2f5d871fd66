"""``inference.GRPCInferenceService``: the Open Inference Protocol's calls over gRPC.

Each method takes the call's message as bytes and returns the answer message, or raises a
domain refusal (``app.errors``) that the transport maps once (``app.grpc.refusals``):

=====================  ===================================================================
INVALID_ARGUMENT       bytes that are not the method's message (``app.grpc.calls``: no
                       traceback, one throttled warning line), or a tensor, parameter or row
                       the protocol or the feature rules refuse
UNAUTHENTICATED        a missing or wrong API key (checked on the metadata, before the
                       message is received: ``check_key``)
NOT_FOUND              a model other than ``housing``, or a version other than the served one
RESOURCE_EXHAUSTED     a message over ``HOUSING_MAX_BODY_BYTES`` (refused before it is read)
UNAVAILABLE            the queue is full, or the server is starting or stopping: retry later
DEADLINE_EXCEEDED      the client's deadline, or ``HOUSING_REQUEST_TIMEOUT_S``, passed first
INTERNAL               the device failed (the details carry the error id of the log line)
=====================  ===================================================================

``ModelInfer`` runs on the same inference path as HTTP's ``/v2/models/housing/infer``
(``app.core.inference``): the same codec (``app.codecs.oip_infer``), batcher, model in
service, ranges and outputs. Its rows share device calls with every other request's, whatever
door they came through.
"""

from __future__ import annotations

import orjson
from google.protobuf.json_format import ParseDict

from app.codecs import oip
from app.codecs.oip_infer import Inference, InferRequests
from app.core.inference import Decoded, InferencePath
from app.core.keys import Headers, Keys
from app.core.served import Served
from app.errors import NotReadyError
from app.grpc import open_inference_grpc_pb2 as pb
from app.grpc import tensors
from app.grpc.calls import Throttled, decode
from app.observe.tracing import RequestTrace

SERVICE = "inference.GRPCInferenceService"
INFER = f"/{SERVICE}/ModelInfer"
JSON = "application/json"


class InferenceService:
    """The calls of ``GRPCInferenceService`` on ``plane``, with the REST route's checks."""

    def __init__(self, plane: InferencePath, keys: Keys, throttled: Throttled) -> None:
        self.plane = plane
        self.runtime = plane.runtime
        self.keys = keys
        self.max_instances = self.runtime.settings.max_instances
        self.requests = InferRequests(self.max_instances)
        self.columns = tensors.ColumnReader(self.max_instances)
        self.throttled = throttled  # the undecodable messages' warning

    def check_key(self, metadata: Headers) -> None:
        self.keys.check_key(metadata)

    # Health and metadata.

    def server_live(self, raw: bytes) -> pb.ServerLiveResponse:
        decode(raw, pb.ServerLiveRequest, self.throttled)
        return pb.ServerLiveResponse(live=True)

    def server_ready(self, raw: bytes) -> pb.ServerReadyResponse:
        decode(raw, pb.ServerReadyRequest, self.throttled)
        return pb.ServerReadyResponse(ready=self.runtime.ready)

    def model_ready(self, raw: bytes) -> pb.ModelReadyResponse:
        request = decode(raw, pb.ModelReadyRequest, self.throttled)
        oip.check_name(request.name)
        oip.check_version(request.version, self.runtime.model)
        return pb.ModelReadyResponse(ready=self.runtime.ready)

    def server_metadata(self, raw: bytes) -> pb.ServerMetadataResponse:
        decode(raw, pb.ServerMetadataRequest, self.throttled)
        return pb.ServerMetadataResponse(**oip.server_metadata())

    def model_metadata(self, raw: bytes) -> pb.ModelMetadataResponse:
        request = decode(raw, pb.ModelMetadataRequest, self.throttled)
        oip.check_name(request.name)
        model = self.runtime.model  # read once: its version and metadata agree
        if model is None:
            raise NotReadyError("the model is not loaded yet")
        oip.check_version(request.version, model)
        answer = pb.ModelMetadataResponse()
        ParseDict(oip.model_metadata(model), answer)
        return answer

    # Inference.

    def _decode(self, raw: bytes) -> tuple[Decoded[Inference], Served, str]:
        """The request's rows and plan, the model they are for, and the answer's id. The
        common case is read straight into columns (``tensors.ColumnReader``); any other
        request is parsed whole and read as the HTTP route's envelope."""
        plane = self.plane
        columns = self.columns.read(raw)
        if columns is not None:
            oip.check_name(columns.model)
            model = plane.serving()
            oip.check_version(columns.version, model)
            decoded = self.requests.decode_columns(
                model, columns.numeric, columns.ocean, columns.id
            )
            if decoded is not None:
                return decoded, model, columns.id
        request = decode(raw, pb.ModelInferRequest, self.throttled)
        oip.check_name(request.model_name)
        model = plane.serving()
        oip.check_version(request.model_version, model)
        envelope, tail = tensors.envelope(request)
        return self.requests.decode(model, envelope, tail), model, request.id

    async def infer(
        self, raw: bytes, request_id: str, trace: RequestTrace | None
    ) -> tuple[bytes, Served]:
        """The serialized answer to a ``ModelInferRequest``'s bytes, and the model that gave
        it."""
        plane = self.plane
        with plane.arriving():
            decoded, model, answer_id = self._decode(raw)
        plan = decoded.context
        done = await plane.predict(model, decoded.encoded, plan.coverage, None, trace)
        capture = self.runtime.capture
        if capture is not None and capture.sampled():
            envelope, tail = tensors.envelope(decode(raw, pb.ModelInferRequest, self.throttled))
            records = orjson.dumps({"instances": oip.records_from(envelope, tail)})
            answer = oip.response(
                envelope,
                model.version,
                plan.outputs,
                done.values,
                done.ranges,
                done.flags,
            )
            capture.record(INFER, request_id, model.version, (JSON, records), (JSON, answer))
        answer = tensors.response(
            answer_id, model.version, plan.outputs, done.values, done.ranges, done.flags
        )
        return answer, model

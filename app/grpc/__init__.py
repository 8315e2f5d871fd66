"""The gRPC door: the Open Inference Protocol over gRPC, and grpc.health.v1, on the same model.

``open_inference_grpc.proto`` is the published service definition (package ``inference``,
``GRPCInferenceService``); ``make proto`` compiles it into ``open_inference_grpc_pb2`` with
grpcio-tools, in a descriptor pool of its own so that a process may also import another copy of
the same protocol (``tritonclient.grpc`` registers the same names). ``transport`` is our own
gRPC server over HTTP/2 (layers: ``http2``, ``h2send``, ``h2conn``, ``dispatch``, ``answers``,
``wire``); ``server`` runs it in the HTTP server's event loop and adapts the services to it;
``service`` answers the inference calls on the data plane (``app.core.inference``),
``tensors`` reads messages into rows and writes answers, ``health`` is the standard health
service, ``refusals`` maps domain refusals to statuses once.
"""

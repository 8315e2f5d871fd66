"""The Open Inference Protocol over gRPC: a second front door on the same model.

``open_inference_grpc.proto`` is the published service definition (package ``inference``,
``GRPCInferenceService``); ``make proto`` compiles it into ``open_inference_grpc_pb2`` with
grpcio-tools, in a descriptor pool of its own so that a process may also import another copy of
the same protocol (``tritonclient.grpc`` registers the same names). ``tensors`` converts its
messages to and from the REST route's tensors, ``service`` answers its calls through the same
validation and batcher as HTTP, ``health`` is the standard ``grpc.health.v1`` service, and
``door`` runs both on ``grpc.aio`` in the event loop of the HTTP server.
"""

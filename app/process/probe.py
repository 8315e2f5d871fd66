"""``python -m app.probe``: the container health check, for both front doors.

The ports are the server's, from the same settings (``app.settings``: ``HOUSING_PORT``,
``HOUSING_GRPC_PORT``, and SageMaker's ``SAGEMAKER_BIND_TO_PORT`` and
``SAGEMAKER_SAFE_PORT_RANGE`` when set). Exit 0 when ``/ping`` on the HTTP port answers 200
and, unless gRPC is off, the standard gRPC health check answers SERVING; 1 otherwise, with the
reason on stderr (also for settings the server itself would refuse). Both mean "the model is
loaded, warmed up and answering, and this process is not stopping"; a door that does not answer
fails the check.
"""

from __future__ import annotations

import sys
import urllib.request

from app.settings import load_settings


def main() -> int:
    settings = load_settings()
    if settings is None:
        return 1
    port, grpc_port = settings.port, settings.grpc_port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
            if answer.status != 200:
                raise OSError(f"status {answer.status}")
    except OSError as exc:  # URLError and HTTPError (a 503) are OSErrors
        print(f"HTTP :{port}/ping: {exc}", file=sys.stderr)
        return 1
    if not grpc_port:
        return 0
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
            status = check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
    except grpc.RpcError as exc:
        print(f"gRPC :{grpc_port} health: {exc.code().name}", file=sys.stderr)
        return 1
    if status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        print(f"gRPC :{grpc_port} health: {name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

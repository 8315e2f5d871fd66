"""Serve the model over HTTP.

    HOUSING_ARTIFACTS=artifacts HOUSING_DEVICE=auto python -m app

One process serves one device. With ``HOUSING_WORKERS`` > 1 (the default on an instance with
several NeuronCores) this process becomes a supervisor: it binds the port once and starts one
server process per NeuronCore, each with its own ``NEURON_RT_VISIBLE_CORES`` (``app.workers``).
"""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from app.settings import Settings
from app.workers import WORKER_FD_ENV, plan_workers, supervise


def load_settings() -> Settings | None:
    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "HOUSING_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"error: {name}: {err['msg']}", file=sys.stderr)
        return None


def main() -> int:
    settings = load_settings()
    if settings is None:
        return 2
    fd = os.environ.get(WORKER_FD_ENV)
    if fd is not None:  # a worker started by the supervisor below
        from app.server import run_server

        return run_server(settings, fd=int(fd))
    try:
        plan = plan_workers(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if plan.count == 1:
        from app.server import run_server

        if plan.visible_cores:
            os.environ["NEURON_RT_VISIBLE_CORES"] = plan.visible_cores[0]
        return run_server(settings)
    return supervise(settings, plan)


def serve() -> int:
    """``serve``: the Amazon SageMaker container contract (port 8080, /opt/ml/model)."""
    if "HOUSING_ARTIFACTS" not in os.environ and os.path.isdir("/opt/ml/model"):
        os.environ["HOUSING_ARTIFACTS"] = "/opt/ml/model"
    if "HOUSING_PORT" not in os.environ:
        os.environ["HOUSING_PORT"] = os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")
    return main()


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["serve"] else main())

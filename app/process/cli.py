"""The command line of ``python -m app`` and of ``serve``: serve the model over HTTP and gRPC.

    HOUSING_ARTIFACTS=artifacts HOUSING_DEVICE=auto python -m app
    python -m app serve          # the Amazon SageMaker contract (port 8080, /opt/ml/model)
    python -m app --help         # usage and every HOUSING_* setting

One process serves one device. With ``HOUSING_WORKERS`` > 1 (the default on an instance with
several NeuronCores) this process becomes a supervisor: it binds the port once and starts one
server process per NeuronCore, each with its own ``NEURON_RT_VISIBLE_CORES``
(``app.process.workers``).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from app.process.settings_page import default_text, env_name
from app.process.workers import VISIBLE_CORES_ENV, WORKER_FD_ENV, plan_workers, supervise
from app.settings import Settings, load_settings

SAGEMAKER_MODEL_DIR = "/opt/ml/model"


def settings_help() -> str:
    """Every setting: its variable, default and meaning, read from ``Settings`` itself."""
    lines = ["settings (environment variables; an invalid value stops the service at once):"]
    for name, field in Settings.model_fields.items():
        lines.append(f"  {env_name(name)} (default: {default_text(field)})")
        lines += textwrap.wrap(
            field.description or "", 92, initial_indent=" " * 6, subsequent_indent=" " * 6
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Serve the house-price model over HTTP (configured by environment "
        "variables, listed below).",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve"],
        help="serve: the Amazon SageMaker container contract (port 8080 or "
        "SAGEMAKER_BIND_TO_PORT, model files from /opt/ml/model when HOUSING_ARTIFACTS is unset)",
    )
    return parser.parse_args(argv)


def main(settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    if settings is None:
        return 2
    fd = os.environ.get(WORKER_FD_ENV)
    if fd is not None:  # a worker started by the supervisor below
        from app.process.server import run_server

        return run_server(settings, fd=int(fd))
    try:
        plan = plan_workers(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if plan.count == 1:
        from app.process.server import run_server

        if plan.visible_cores:
            # The Neuron runtime's own variable, read when it starts: not a setting.
            os.environ[VISIBLE_CORES_ENV] = plan.visible_cores[0]
        return run_server(settings)
    return supervise(settings, plan)


def serve() -> int:
    """``serve``: the Amazon SageMaker container contract: the model files from /opt/ml/model
    unless ``HOUSING_ARTIFACTS`` is set; the port and body limit SageMaker passes apply to any
    run (``app.settings.SageMakerSource``)."""
    given: dict[str, object] = {}
    if "HOUSING_ARTIFACTS" not in os.environ and os.path.isdir(SAGEMAKER_MODEL_DIR):
        given["artifacts"] = SAGEMAKER_MODEL_DIR
    settings = load_settings(**given)
    return 2 if settings is None else main(settings)


def command_line(argv: list[str]) -> int:
    """``python -m app [serve]``: --help and unknown arguments exit in the parser (0 and 2)."""
    args = parse_args(argv)
    return serve() if args.command == "serve" else main()

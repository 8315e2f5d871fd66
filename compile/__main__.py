"""Compile ``model.pt`` into ``model_neuron.pt`` (TorchScript) and record it in the manifest.

    python -m compile                    # neuron where torch-neuronx imports, else cpu
    python -m compile --target neuron    # on an inf2 instance (Neuron SDK installed)
    python -m compile --target neuron --features device   # the whole graph on the NeuronCore

By default only the network body (Linear, ReLU) is compiled for the NeuronCore; the derived
features run on the host as CPU TorchScript inside the same artifact (modelspec/placement.py).

Reads and writes ``--artifacts`` or ``HOUSING_ARTIFACTS`` (default ``artifacts/``). Batch sizes
to compile: ``--batch-sizes`` or ``HOUSING_BATCH_BUCKETS`` (default 1,2,4,8,16,32,64).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from compile.errors import CompileError
from compile.neuron import default_target
from compile.targets import DEFAULT_TOLERANCE, compile_artifacts
from modelspec.buckets import default_buckets, parse_buckets
from modelspec.manifest import ArtifactError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m compile", description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=["cpu", "neuron"], default=None)
    p.add_argument(
        "--features",
        choices=["host", "device"],
        default="host",
        help="where the derived features run on neuron: host (default: the NeuronCore gets "
        "Linear and ReLU only) or device (the whole graph; needs sin, frac, log1p, ...)",
    )
    p.add_argument(
        "--artifacts", type=Path, default=Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
    )
    p.add_argument("--batch-sizes", type=parse_buckets, default=None, help="e.g. 1,2,4,8")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="dollars")
    p.add_argument("--compiler-args", default=None, help="neuronx-cc arguments, one string")
    p.add_argument("--workdir", type=Path, default=None, help="neuronx-cc work directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = args.target or default_target()
    try:
        manifest = compile_artifacts(
            args.artifacts,
            target,
            args.batch_sizes or default_buckets(),
            tolerance=args.tolerance,
            compiler_args=shlex.split(args.compiler_args) if args.compiler_args else None,
            workdir=args.workdir,
            features_on=args.features,
        )
    except (CompileError, ArtifactError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    c = manifest.compiled
    assert c is not None
    print(
        f"wrote {args.artifacts / c.artifact} (target {c.target}, features on the "
        f"{c.features_on}, batch sizes {c.batch_sizes}, sha256 {c.sha256[:12]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

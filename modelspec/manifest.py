"""``manifest.json``: what training and compile record, and what serving verifies.

Training writes everything but ``compiled`` (the interval calibration included); compile adds
``compiled``. The server refuses a manifest whose ``feature_hash`` differs from this code's,
whose artifact is missing, or whose artifact's sha256 does not match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelspec.drift import DriftProfile
from modelspec.features import feature_hash
from modelspec.intervals import IntervalCalibration

MANIFEST_FILE = "manifest.json"
CHECKPOINT_FILE = "model.pt"
EXAMPLE_FILE = "example_input.pt"
VALIDATION_FILE = "validation_sample.pt"
ARTIFACT_FILE = "model_neuron.pt"

Target = Literal["cpu", "neuron"]
# Where the derived features run (``modelspec.placement``): in a CPU preamble before the device
# call, or inside the device graph.
FeaturesOn = Literal["host", "device"]


class ArtifactError(Exception):
    """A problem with the artifacts folder, carrying the fix for the user."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(f"{problem}\nHint: {hint}")
        self.problem = problem
        self.hint = hint


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Preprocessing(_Strict):
    total_bedrooms_median: float
    feature_mean: list[float]
    feature_std: list[float]
    target_mean: float
    target_std: float
    # Each numeric input's 0.5th and 99.5th percentile over the training split: serving warns
    # about values outside (empty in manifests written before warnings existed).
    input_ranges: dict[str, tuple[float, float]] = {}


class QualityMetrics(_Strict):
    """Dollars (R²: share of the variance explained) of the kept epoch. ``train_rmse`` is on
    the rows trained on, ``holdout_rmse`` on the early-stopping slice of the training split,
    ``val_*`` on the blog's 20% validation split."""

    train_rmse: float
    val_rmse: float
    val_mae: float
    val_r2: float
    holdout_rmse: float


class TrainingInfo(_Strict):
    data: str
    rows_train: int
    rows_val: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    seconds: float
    torch_version: str
    created_at: str
    metrics: QualityMetrics
    # Early stopping (absent in manifests written before it): rows held out of the training
    # split to choose the epoch, epochs run, the epoch kept, and the patience.
    rows_holdout: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    patience: int | None = None


class CompiledInfo(_Strict):
    artifact: str
    sha256: str
    target: Target
    input_shapes: list[list[int]]
    batch_sizes: list[int] = Field(min_length=1)
    # True when one graph accepts any batch size (TorchScript on the CPU); False when only
    # the traced ``batch_sizes`` run (Neuron), so the server must pad to one of them.
    dynamic_batch: bool
    max_abs_diff: float
    tolerance: float
    torch_version: str
    compiler_args: list[str] = []
    # ``host``: the artifact runs a CPU preamble (derived features, normalisation) and then the
    # device graph; ``device``: everything in the device graph (manifests from before the split).
    features_on: FeaturesOn = "device"
    # The aten operators of the graph handed to the device compiler (``compile/operators.py``).
    device_operators: list[str] = []
    compiled_at: str
    # A few validation rows and the compiled graph's answers for them: the server's warm-up
    # replays them on its device and refuses to turn ready if the answers differ.
    reference_inputs: list[list[float]]
    reference_outputs: list[float]
    # With a scale head (``modelspec.intervals``): the graph's log-scales for the same rows,
    # and the largest |compiled - eager| of the log-scales (empty and 0 without one).
    reference_log_scales: list[float] = []
    max_log_scale_diff: float = 0.0


class Manifest(_Strict):
    schema_version: Literal[1] = 1
    feature_hash: str
    feature_spec: dict[str, Any]
    network: dict[str, Any]
    preprocessing: Preprocessing
    training: TrainingInfo
    compiled: CompiledInfo | None = None
    # Conformal quantiles of the scale head's normalised residuals (``modelspec.intervals``);
    # absent in manifests written before prediction intervals.
    intervals: IntervalCalibration | None = None
    # The training distribution drift is measured against (``modelspec.drift``); absent in
    # manifests written before it.
    drift: DriftProfile | None = None

    @property
    def model_version(self) -> str:
        """Short id of the compiled artifact (its sha256 prefix), or of the training run."""
        if self.compiled is not None:
            return self.compiled.sha256[:12]
        return self.training.created_at

    def save(self, folder: Path) -> Path:
        path = folder / MANIFEST_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        tmp.replace(path)  # atomic: a reader never sees half a manifest
        return path

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_FILE
        if not path.is_file():
            raise ArtifactError(
                f"no {MANIFEST_FILE} in {folder.resolve()}",
                "train and compile first (`python -m training && python -m compile`), "
                "or point HOUSING_ARTIFACTS at the folder that holds them.",
            )
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ArtifactError(
                f"{path} is not a valid manifest: {where}: {first['msg']}",
                "the file is damaged or from another version; re-run `python -m training` and "
                "`python -m compile` to write a fresh one.",
            ) from None

    def check_feature_hash(self, source: Path | str = MANIFEST_FILE) -> None:
        """Refuse a manifest (read from ``source``) built with another feature definition."""
        expected = feature_hash()
        if self.feature_hash != expected:
            raise ArtifactError(
                f"{source} was built with feature spec {self.feature_hash[:12]}, this code "
                f"defines {expected[:12]} (modelspec/features.py changed since training)",
                "retrain and recompile with this version (`python -m training && python -m "
                "compile`), or deploy the code version that built these artifacts.",
            )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

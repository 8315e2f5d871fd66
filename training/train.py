"""The training loop: encode, fit normalisation on the training split, train, write artifacts."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from modelspec.features import (
    IMPUTED_COLUMN,
    NUMERIC_COLUMNS,
    RAW_COLUMNS,
    TARGET_COLUMN,
    encode_records,
    feature_hash,
    spec_dict,
)
from modelspec.manifest import (
    CHECKPOINT_FILE,
    EXAMPLE_FILE,
    VALIDATION_FILE,
    Manifest,
    Metrics,
    Preprocessing,
    TrainingInfo,
)
from modelspec.network import HousingNet, NetConfig
from training.data import split_frame

# Rows of the validation split kept beside the checkpoint, so compile can check its output
# against the eager model without the data set.
VALIDATION_SAMPLE_ROWS = 1024


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 42
    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.2


@dataclass(frozen=True)
class TrainResult:
    model: HousingNet
    manifest: Manifest


def encode_frame(frame: pd.DataFrame, bedrooms_median: float) -> np.ndarray:
    records: list[dict[str, Any]] = frame[list(RAW_COLUMNS)].to_dict(orient="records")  # type: ignore[assignment]
    return encode_records(records, bedrooms_median)


# The share of training values a warning treats as unusual: half a percent on each side.
RANGE_PERCENTILES = (0.5, 99.5)


def input_ranges(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Each numeric input's ``RANGE_PERCENTILES`` over ``frame`` (missing values skipped)."""
    out = {}
    for column in NUMERIC_COLUMNS:
        low, high = np.nanpercentile(frame[column].to_numpy(dtype=np.float64), RANGE_PERCENTILES)
        out[column] = (float(low), float(high))
    return out


def rmse(pred: Tensor, target: Tensor) -> float:
    return math.sqrt(float(torch.mean((pred.double() - target.double()) ** 2)))


@torch.no_grad()
def predict_dollars(model: HousingNet, x: Tensor, chunk: int = 4096) -> Tensor:
    model.eval()
    return torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])


def train(
    frame: pd.DataFrame, config: TrainConfig, data_name: str, out_dir: Path, progress: bool = True
) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    train_df, val_df = split_frame(frame)
    bedrooms_median = float(train_df[IMPUTED_COLUMN].median())
    x_train = torch.from_numpy(encode_frame(train_df, bedrooms_median))
    x_val = torch.from_numpy(encode_frame(val_df, bedrooms_median))
    y_train = torch.tensor(train_df[TARGET_COLUMN].to_numpy(), dtype=torch.float32)
    y_val = torch.tensor(val_df[TARGET_COLUMN].to_numpy(), dtype=torch.float32)

    model = HousingNet(NetConfig(hidden=config.hidden, dropout=config.dropout))
    with torch.no_grad():  # normalisation fitted on the training split only
        feats = model.derive(x_train)
        model.set_normalization(
            feats.mean(0), feats.std(0), float(y_train.mean()), float(y_train.std())
        )
    y_scaled = (y_train - model.target_mean) / model.target_std

    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    shuffle = torch.Generator().manual_seed(config.seed)
    bar = tqdm(range(1, config.epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=shuffle)
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = torch.nn.functional.mse_loss(model.scaled(x_train[idx]), y_scaled[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        train_rmse = rmse(predict_dollars(model, x_train), y_train)
        val_rmse = rmse(predict_dollars(model, x_val), y_val)
        bar.set_postfix(train_rmse=f"${train_rmse:,.0f}", val_rmse=f"${val_rmse:,.0f}")
        tqdm.write(
            f"epoch {epoch:3d}/{config.epochs}  train RMSE ${train_rmse:>9,.0f}  "
            f"val RMSE ${val_rmse:>9,.0f}"
        )

    val_pred = predict_dollars(model, x_val)
    metrics = Metrics(
        train_rmse=rmse(predict_dollars(model, x_train), y_train),
        val_rmse=rmse(val_pred, y_val),
        val_mae=float(torch.mean(torch.abs(val_pred.double() - y_val.double()))),
    )
    manifest = Manifest(
        feature_hash=feature_hash(),
        feature_spec=spec_dict(),
        network=model.config.to_dict(),
        preprocessing=Preprocessing(
            total_bedrooms_median=bedrooms_median,
            feature_mean=model.feature_mean.tolist(),
            feature_std=model.feature_std.tolist(),
            target_mean=float(model.target_mean),
            target_std=float(model.target_std),
            input_ranges=input_ranges(train_df),
        ),
        training=TrainingInfo(
            data=data_name,
            rows_train=len(train_df),
            rows_val=len(val_df),
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            seed=config.seed,
            seconds=round(time.perf_counter() - started, 2),
            torch_version=torch.__version__,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            metrics=metrics,
        ),
    )
    write_artifacts(out_dir, model.eval(), manifest, x_val)
    return TrainResult(model=model, manifest=manifest)


def write_artifacts(out_dir: Path, model: HousingNet, manifest: Manifest, x_val: Tensor) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.checkpoint(), out_dir / CHECKPOINT_FILE)
    torch.save(x_val[:1].clone(), out_dir / EXAMPLE_FILE)
    torch.save(x_val[:VALIDATION_SAMPLE_ROWS].clone(), out_dir / VALIDATION_FILE)
    # A manifest from an earlier compile would describe an artifact of the old model: drop it.
    (out_dir / "model_neuron.pt").unlink(missing_ok=True)
    manifest.save(out_dir)

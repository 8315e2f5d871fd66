"""Train the house-price MLP and write ``model.pt`` and ``manifest.json``.

    python -m training

Data: ``--data`` or ``HOUSING_DATA`` (a Hugging Face hub id such as
``leostelon/california-housing``, or a local CSV, compressed CSV or Parquet file; default the
copy embedded in the project, ``training/dataset/housing.csv.gz``). Output: ``--artifacts`` or
``HOUSING_ARTIFACTS`` (default ``artifacts/``). Lines: text and a progress bar on a terminal,
JSON lines otherwise (``--log-format``, ``training/console.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from training.console import FORMATS, Console
from training.data import DataError, data_label, data_source, load_frame
from training.report import REPORT_MD
from training.train import TrainConfig, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        default=data_source(),
        help="hub id, or CSV/Parquet path (default: HOUSING_DATA, else the embedded copy)",
    )
    p.add_argument(
        "--artifacts", type=Path, default=Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
    )
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.learning_rate)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--hidden",
        default=",".join(map(str, defaults.hidden)),
        help="hidden layer widths, comma separated (width and depth of the MLP)",
    )
    p.add_argument("--dropout", type=float, default=defaults.dropout)
    p.add_argument(
        "--holdout",
        type=float,
        default=defaults.holdout,
        help="share of the training split held out to pick the epoch (early stopping)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many epochs without a better holdout RMSE (0: never)",
    )
    p.add_argument("--threads", type=int, default=defaults.threads, help="torch threads")
    p.add_argument("--no-report", action="store_true", help="no baselines, report.md/json or plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None,
        help="text (and a progress bar on a terminal) or json lines; default HOUSING_LOG_FORMAT, "
        "else auto: text on a terminal, json otherwise",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        console = Console(args.log_format, progress=not args.no_progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            weight_decay=args.weight_decay,
            seed=args.seed,
            hidden=tuple(int(h) for h in args.hidden.split(",")),
            dropout=args.dropout,
            holdout=args.holdout,
            patience=args.patience,
            threads=args.threads,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        frame = load_frame(args.data)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console.line(f"loaded {len(frame):,} rows from {args.data}", rows=len(frame), data=args.data)
    result = train(
        frame,
        config,
        data_label(args.data),
        args.artifacts,
        report=not args.no_report,
        console=console,
    )
    m = result.manifest.training
    console.line(
        f"validation RMSE ${m.metrics.val_rmse:,.0f} (MAE ${m.metrics.val_mae:,.0f}, "
        f"R² {m.metrics.val_r2:.3f}) with epoch {result.best_epoch} of {len(result.history)} "
        f"in {m.seconds:.1f}s; wrote {args.artifacts}/",
        val_rmse=round(m.metrics.val_rmse, 2),
        val_mae=round(m.metrics.val_mae, 2),
        val_r2=round(m.metrics.val_r2, 4),
        best_epoch=result.best_epoch,
        epochs_run=len(result.history),
        seconds=round(m.seconds, 1),
        artifacts=str(args.artifacts),
    )
    if result.report is not None:
        for model in result.report["models"].values():
            v = model["val"]
            console.line(
                f"  {model['name']:<42} RMSE ${v['rmse']:>9,.0f}  MAE ${v['mae']:>9,.0f}",
                model=model["name"],
                val_rmse=round(v["rmse"], 2),
                val_mae=round(v["mae"], 2),
            )
        console.line(
            f"report: {args.artifacts / REPORT_MD}", report=str(args.artifacts / REPORT_MD)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

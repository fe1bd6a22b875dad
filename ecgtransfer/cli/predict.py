"""``ecgtransfer predict RUN_DIR RECORD...``: per-beat / per-window class probabilities as CSV."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("predict", help="class probabilities for WFDB records with a trained run",
                              description="Process WFDB records like the run's training store (same leads, filter, "
                                          "rate, window) and predict every beat (R peaks from .atr, or a simple "
                                          "detector without one) or window. Writes CSV to --out or stdout.")
    p.add_argument("run_dir", help="run directory of `ecgtransfer train`")
    p.add_argument("records", nargs="+", help="record paths without extension (data/mitdb/1.0.0/100)")
    p.add_argument("--out", help="CSV file (default: stdout)")
    p.add_argument("--checkpoint", default="best", help="best | last | PATH (default best)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default: the run's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ecgtransfer.training.prediction import predict

    table = predict(args.run_dir, args.records, checkpoint=args.checkpoint, device=args.device,
                    batch_size=args.batch_size, out=args.out)
    if args.out is None:
        table.to_csv(sys.stdout, index=False, float_format="%.6g")
    return 0

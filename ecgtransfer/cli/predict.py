"""``ecgtransfer predict RUN_DIR INPUT...``: per-beat / per-window class probabilities as CSV, and a beat report."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    from ecgtransfer.signals.readers import FORMATS
    from ecgtransfer.training.prediction import R_PEAK_SOURCES

    p = subparsers.add_parser("predict", help="class probabilities for ECG recordings with a trained run",
                              description="Process recordings (WFDB records, EDF/EDF+, CSV or .npy files) like the "
                                          "run's training store (same leads, filter, rate, window) and predict every "
                                          "beat (R peaks from a validated detector, or the .atr on request) or "
                                          "window. Long records are streamed in chunks. Writes CSV to --out or "
                                          "stdout, and a beat report with --report.")
    p.add_argument("run_dir", help="run directory of `ecgtransfer train`")
    p.add_argument("records", nargs="+", metavar="INPUT",
                   help=f"recordings: {', '.join(FORMATS)} (a WFDB record path without extension, "
                        "data/mitdb/1.0.0/100; holter.edf; export.csv with a header row naming the leads; "
                        "signal.npy [n] or [n, leads])")
    p.add_argument("--out", help="CSV file (default: stdout); an existing file is replaced only with --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--fs", type=float, default=None,
                   help="sampling rate in Hz of CSV/.npy inputs (WFDB and EDF state their own; a --fs that "
                        "contradicts them is refused)")
    p.add_argument("--lead", default=None,
                   help="the input's lead(s) to use for the model's, by name, comma-separated (.npy columns are "
                        "0, 1, ...; default: the model's lead names, or a file's only lead)")
    p.add_argument("--units", default=None, help="unit of CSV/.npy values: mV (default), uV or V; overrides EDF's")
    p.add_argument("--r-peaks", choices=R_PEAK_SOURCES, default=R_PEAK_SOURCES[0],
                   help="beats from the R-peak detector (default) or from the WFDB record's .atr annotation")
    p.add_argument("--report", metavar="DIR", default=None,
                   help="write a beat report here: report.md, report.html, summary.json, figures/strips.png")
    p.add_argument("--checkpoint", default="best", help="best | last | PATH (default best)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default: the run's)")
    p.add_argument("--batch-size", type=int, default=64)
    from ecgtransfer.training.decision import DECISION_USES

    p.add_argument("--decision", choices=DECISION_USES, default=DECISION_USES[0],
                   help="the class column by the run's decision rule (stored, default; argmax for runs without "
                        "one) or by the plain arg-max; the probability columns are the same either way")
    p.set_defaults(func=run)


def _check_outputs(args: argparse.Namespace) -> None:
    """The output rule of :mod:`ecgtransfer._outdir` for --out and --report, before anything is read or written:
    predict owns no run, store or bench folder, and replaces neither an input nor a user's file."""
    from ecgtransfer._outdir import check_output_dir, check_output_file
    from ecgtransfer.cli._outputs import every_layout
    from ecgtransfer.training.beat_report import REPORT_LAYOUT

    inputs = {"RUN_DIR": args.run_dir, **{f"INPUT {i}": r for i, r in enumerate(args.records, 1)}}
    if args.checkpoint not in ("best", "last"):
        inputs["--checkpoint"] = args.checkpoint
    if args.out is not None:
        check_output_file(args.out, inputs=inputs, option="--out", overwrite=args.overwrite, layouts=every_layout())
    if args.report is not None:
        check_output_dir(args.report, kind=REPORT_LAYOUT, inputs=inputs, option="--report", owned=(),
                         layouts=every_layout())


def run(args: argparse.Namespace) -> int:
    from ecgtransfer._validate import positive_int
    from ecgtransfer.errors import ConfigError
    from ecgtransfer.training.prediction import predict

    positive_int(args.batch_size, "--batch-size")  # before anything is read or written
    for i, record in enumerate(args.records, 1):
        if not record.strip():
            raise ConfigError(f"INPUT {i} is an empty path; expected a recording (a WFDB record, .edf, .csv or .npy)")
    _check_outputs(args)
    table = predict(args.run_dir, args.records, checkpoint=args.checkpoint, device=args.device,
                    batch_size=args.batch_size, out=args.out, fs=args.fs, lead=args.lead, units=args.units,
                     r_peaks=args.r_peaks, report=args.report, progress=args.progress, decision=args.decision)
    if args.out is None:
        table.to_csv(sys.stdout, index=False, float_format="%.6g")
    return 0

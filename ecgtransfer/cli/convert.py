"""``ecgtransfer convert DB --data DIR --out STORE --task beats|rhythm [...]``: records -> segment store."""
from __future__ import annotations

import argparse
import logging
import os

from ecgtransfer.conversion import TASKS
from ecgtransfer.physionet.ptbxl import LEVELS, RATES

log = logging.getLogger(__name__)


def _duration(text: str) -> str:
    """Keep the text: :func:`ecgtransfer.conversion.to_samples` reads '0.25', '0.25s', '250ms', '90samples'."""
    from ecgtransfer.conversion import to_samples
    from ecgtransfer.errors import ConfigError

    try:
        to_samples(text, 1000.0)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_convert_options(p: argparse.ArgumentParser) -> None:
    """Add the conversion options shared by ``ecgtransfer convert`` and ``data_scripts/convert_physionet.py``.

    Everything except what names the database and the output (``DB``, ``--out``, ``--task``, ``--version``):
    ``--data``, ``--records``, ``--lead``, ``--fs``, the beat, rhythm and signal-processing groups, ``--jobs``
    and ``--overwrite``. :func:`convert_kwargs` turns the parsed values into :func:`ecgtransfer.convert`
    keyword arguments.
    """
    p.add_argument("--data", default=os.environ.get("ECGTRANSFER_DATA", "data"),
                   help="folder holding <db>/<version>/ as `ecgtransfer download` writes it (env ECGTRANSFER_DATA)")
    p.add_argument("--records", nargs="+", default=None, metavar="R", help="records to convert (default: all present)")
    p.add_argument("--lead", nargs="+", default=None, metavar="NAME",
                   help="lead name(s) or 'all' (default: mitdb MLII, challenge-2017 ECG, ludb i); a name may list "
                   "alternatives, the first a record has: mitdb's two leads are MLII 'V1|V2|V4|V5'")
    p.add_argument("--fs", type=float, default=None, help="resample to this rate in Hz (default: source rate)")
    g = p.add_argument_group("beats (mitdb)")
    g.add_argument("--before", type=_duration, default="0.25s",
                   help="window before the R peak, at most 2 s: seconds ('0.25', '0.25s', '250ms') or samples "
                   "('90samples')")
    g.add_argument("--after", type=_duration, default="0.45s", help="window after the R peak (same units)")
    g.add_argument("--rr-context", action=argparse.BooleanOptionalAction, default=True,
                   help="store previous/next/local/5-minute average RR intervals and their ratio to the record's mean RR "
                   "(extra 'rr'; "
                   "default on, --no-rr-context to leave it out)")
    g.add_argument("--include-paced", action="store_true", help="keep the paced records 102 104 107 217")
    g = p.add_argument_group("rhythm (challenge-2017, ludb)")
    g.add_argument("--window", type=float, default=10.0, help="window length in seconds")
    g.add_argument("--stride", type=float, default=None, help="window step in seconds (default: the window length)")
    g.add_argument("--whole-record", action="store_true",
                   help="one segment per record: its first WINDOW seconds, zero-padded when shorter")
    g.add_argument("--reference", choices=["original", "v3"], default="original",
                   help="challenge-2017 labels: REFERENCE.csv or REFERENCE-v3.csv")
    g.add_argument("--rhythm-classes", choices=["fine", "coarse"], default="fine",
                   help="ludb classes: SR SB ST SA AF AFL, or sinus/atrial")
    g = p.add_argument_group("multilabel (ptb-xl)")
    g.add_argument("--level", choices=LEVELS, default=None,
                   help="label level of the multi-hot targets (default: superdiagnostic); every level is stored "
                   "for info")
    g.add_argument("--rate", type=int, choices=RATES, default=None,
                   help="read the 100 Hz (default) or 500 Hz records")
    g = p.add_argument_group("signal processing")
    g.add_argument("--filter", choices=["bandpass", "highpass", "median", "none"], default="bandpass",
                   help="zero-phase Butterworth band-pass, high-pass (baseline only), median baseline removal, or none")
    g.add_argument("--band", type=float, nargs=2, default=[0.5, 40.0], metavar=("LOW", "HIGH"), help="cut-offs in Hz")
    g.add_argument("--filter-order", type=int, default=2, help="Butterworth order per pass")
    g.add_argument("--normalize", choices=["none", "zscore", "minmax"], default="none",
                   help="per-segment normalisation")
    g.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="segment dtype")
    p.add_argument("--jobs", "-j", type=int, default=None, help="worker processes (default: min(4, CPUs))")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store with other parameters")


def convert_kwargs(args: argparse.Namespace) -> dict:
    """:func:`ecgtransfer.convert` keyword arguments from the options of :func:`add_convert_options`
    (plus ``quiet``: no progress bar)."""
    from ecgtransfer._validate import finite_number, positive_int

    if args.fs is not None:
        finite_number(args.fs, "--fs")
    finite_number(args.window, "--window")
    if args.stride is not None:
        finite_number(args.stride, "--stride")
    for value in args.band:
        finite_number(value, "--band", positive=False, minimum=0.0)
    positive_int(args.filter_order, "--filter-order")
    if args.jobs is not None:
        positive_int(args.jobs, "--jobs")
    lead = args.lead
    if lead is not None and len(lead) == 1:
        lead = lead[0]
    return dict(data=args.data, records=args.records, lead=lead, fs=args.fs, before=args.before, after=args.after,
                rr_context=args.rr_context, include_paced=args.include_paced, window=args.window,
                stride=args.stride, whole_record=args.whole_record, reference=args.reference,
                rhythm_classes=args.rhythm_classes, filter=args.filter, band=tuple(args.band),
                filter_order=args.filter_order, normalize=args.normalize, dtype=args.dtype, jobs=args.jobs,
                overwrite=args.overwrite, level=args.level, rate=args.rate,
                progress=bool(getattr(args, "progress", not getattr(args, "quiet", False))))  # cli.show_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="cut downloaded records into a labelled segment store",
        description="Read DATA/<db>/<version>/ with wfdb, filter, resample, segment and label the records and "
        "write a segment store (memory-mapped [N, C, L] segments + labels + record/patient ids + manifest).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("database", metavar="DB", help="database: mitdb (beats), challenge-2017 or ludb (rhythm)")
    p.add_argument("--out", required=True, help="store directory to create")
    p.add_argument("--task", choices=TASKS, default=None,
                   help="beats (annotated R peaks, AAMI classes) | rhythm (windows) | rhythm-beats (beats around "
                   "detected R peaks, labelled with the record's rhythm); default: the database's own")
    p.add_argument("--version", default=None, help="database version (default: newest known)")
    add_convert_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ecgtransfer._outdir import check_not_inside_output
    from ecgtransfer.cli._outputs import every_layout
    from ecgtransfer.conversion import convert

    kwargs = convert_kwargs(args)  # the numbers validated first
    check_not_inside_output(args.out, inputs={"--data": args.data},  # not inside a run, another store or a bench folder
                            layouts=every_layout())
    store = convert(args.database, out=args.out, task=args.task, version=args.version, **kwargs)
    info = store.info()
    counts = " ".join(f"{k}={v}" for k, v in info.classes.items())
    log.info("%s: %d segments %s at %g Hz, classes %s", store.path, info.n_segments, list(info.shape[1:]), info.fs,
             counts)
    return 0

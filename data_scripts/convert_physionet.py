#!/usr/bin/env python3
"""Convert several downloaded PhysioNet databases into segment stores in one go (thin over ``ecgtransfer.convert``).

    python data_scripts/convert_physionet.py mitdb ludb challenge-2017 --data data --out stores
    python data_scripts/convert_physionet.py mitdb:beats ludb@1.0.1:rhythm --data ../shared/data/physionet \\
        --out stores --fs 250 --rr-context

Each positional argument is ``DB[@VERSION][:TASK]`` (no task: the database's default). The store of each
goes to ``OUT/<db>-<task>``. Options apply to every database where they mean something (``--rr-context``
and ``--before/--after`` to beat tasks, ``--window``/``--whole-record`` to rhythm tasks). A store that is
already complete with the same parameters is skipped. Exit code 0 when all succeeded, 2 when any failed
(each failure is one line; the others still run unless ``--fail-fast``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from ecgtransfer.errors import EcgTransferError

log = logging.getLogger("convert_physionet")


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``DB[@VERSION][:TASK]`` -> (database, version or None, task or None)."""
    head, _, task = spec.partition(":")
    name, _, version = head.partition("@")
    return name, (version or None), (task or None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("databases", nargs="+", metavar="DB[@V][:TASK]", help="databases (and optional task)")
    parser.add_argument("--data", default="data", help="folder holding <db>/<version>/ (default: data)")
    parser.add_argument("--out", default="stores", help="folder for the stores (default: stores)")
    parser.add_argument("--fs", type=float, default=None, help="resample every store to this rate (Hz)")
    parser.add_argument("--filter", default="bandpass", choices=["bandpass", "highpass", "median", "none"])
    parser.add_argument("--band", type=float, nargs=2, default=[0.5, 40.0], metavar=("LOW", "HIGH"))
    parser.add_argument("--normalize", default="none", choices=["none", "zscore", "minmax"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--before", default="0.25s", help="beats: window before the R peak (0.25s, 90samples)")
    parser.add_argument("--after", default="0.45s", help="beats: window after the R peak")
    parser.add_argument("--rr-context", action="store_true", help="beats: store RR-interval context")
    parser.add_argument("--window", type=float, default=10.0, help="rhythm: window length in seconds")
    parser.add_argument("--stride", type=float, default=None, help="rhythm: window step in seconds")
    parser.add_argument("--whole-record", action="store_true", help="rhythm: one padded/cropped window per record")
    parser.add_argument("--lead", nargs="+", default=None, help="lead name(s) or 'all' (default: per database)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes per database")
    parser.add_argument("--overwrite", action="store_true", help="replace stores made with other parameters")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first database that fails")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only warnings and errors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")

    from ecgtransfer import convert
    from ecgtransfer.physionet.catalog import get_database

    lead = args.lead[0] if args.lead is not None and len(args.lead) == 1 else args.lead
    failed = 0
    for spec in args.databases:
        name, version, task = parse_spec(spec)
        try:
            task = task or get_database(name).default_task
            out = Path(args.out) / f"{name}-{task}"
            store = convert(name, data=args.data, out=out, task=task, version=version, lead=lead, fs=args.fs,
                            before=args.before, after=args.after, rr_context=args.rr_context, window=args.window,
                            stride=args.stride, whole_record=args.whole_record, filter=args.filter,
                            band=tuple(args.band), normalize=args.normalize, dtype=args.dtype, jobs=args.jobs,
                            overwrite=args.overwrite, progress=not args.quiet)
            info = store.info()
            log.info("%s: %d segments %s, classes %s", out, info.n_segments, list(info.shape[1:]), info.classes)
        except EcgTransferError as exc:
            failed += 1
            print(f"convert_physionet: error: {spec}: {exc}", file=sys.stderr)
            if args.fail_fast:
                break
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

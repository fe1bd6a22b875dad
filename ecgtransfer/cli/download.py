"""``ecgtransfer download DB``: verified, resumable PhysioNet download (see :mod:`ecgtransfer.physionet.download`)."""
from __future__ import annotations

import argparse
import logging

from ecgtransfer.physionet.catalog import DATABASES
from ecgtransfer.physionet.ptbxl import DOWNLOAD_RATES

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``download`` verb."""
    p = subparsers.add_parser(
        "download",
        help="download PhysioNet records, verified against SHA256SUMS.txt (resumable)",
        description="Download records of a PhysioNet database into OUT/<db>/<version>/, laid out as on "
        "PhysioNet. Every file is checked against the database's SHA256SUMS.txt and appears under its final "
        "name only once verified; interrupted downloads resume; re-running fetches only missing or bad files.",
    )
    p.add_argument("database", metavar="DB", help=f"PhysioNet database ({', '.join(sorted(DATABASES))})")
    p.add_argument("--version", dest="db_version", metavar="V", default=None,
                   help="database version (default: the newest known to the catalog)")
    p.add_argument("--records", nargs="+", metavar="R", default=None,
                   help="records as named in RECORDS (default: all); e.g. 101 106, or data/1 for ludb; ptb-xl: "
                   "ecg_id (1 2 3) or paths (records100/00000/00001_lr)")
    p.add_argument("--rate", choices=DOWNLOAD_RATES, default=None,
                   help="ptb-xl only: records at 100 Hz (default), 500 Hz or both (its index is ptbxl_database.csv)")
    p.add_argument("--out", default="data", metavar="DIR", help="target folder (default: data)")
    p.add_argument("--mirror", default=None, metavar="URL|DIR",
                   help="http(s) URL or local directory laid out like https://physionet.org/files/ "
                   "(default: $ECGTRANSFER_PHYSIONET_MIRROR, else physionet.org)")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel transfers (default: 4)")
    p.add_argument("--retries", type=int, default=5, metavar="N",
                   help="retries per file for transient errors and checksum mismatches (default: 5)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network timeout in seconds (default: 30)")
    p.add_argument("--strict", action="store_true",
                   help="refuse files that SHA256SUMS.txt does not list instead of fetching them unverified")
    p.add_argument("--refresh-index", action="store_true",
                   help="fetch SHA256SUMS.txt from the mirror again even when a local copy exists (a file that "
                   "disagrees with the local copy triggers this by itself)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the download; the library logs the summary line."""
    import contextlib

    from tqdm.contrib.logging import logging_redirect_tqdm

    from ecgtransfer._validate import finite_number, positive_int
    from ecgtransfer.physionet.download import download

    finite_number(args.timeout, "--timeout")
    positive_int(args.jobs, "--jobs")
    if args.retries < 0:
        from ecgtransfer.errors import ConfigError

        raise ConfigError(f"--retries must be a non-negative integer, got {args.retries}")
    progress = bool(getattr(args, "progress", not getattr(args, "quiet", False)))  # ecgtransfer.cli.show_progress
    with logging_redirect_tqdm() if progress else contextlib.nullcontext():
        download(args.database, version=args.db_version, records=args.records, out=args.out, mirror=args.mirror,
                 jobs=args.jobs, retries=args.retries, timeout=args.timeout, strict=args.strict,
                 refresh_index=args.refresh_index, progress=progress, rate=args.rate)
    return 0

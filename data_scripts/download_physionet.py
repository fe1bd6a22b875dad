#!/usr/bin/env python3
"""Download several PhysioNet databases in one go, verified and resumable (thin over ``ecgtransfer.download``).

    python data_scripts/download_physionet.py mitdb ludb challenge-2017 --out data
    python data_scripts/download_physionet.py mitdb:101,106 ludb@1.0.1:data/1,data/2 --mirror ../shared/data/physionet

Each positional argument is ``DB[@VERSION][:REC,REC,...]`` (no records: every record of the database).
Databases are downloaded one after another; each one's files in parallel (``--jobs``). Exit code 0 when all
succeeded, 2 when any failed (each failure is one line; the others still run unless ``--fail-fast``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ecgtransfer.errors import EcgTransferError

log = logging.getLogger("download_physionet")


def parse_spec(spec: str) -> tuple[str, str | None, list[str] | None]:
    """``DB[@VERSION][:REC,REC,...]`` -> (database, version or None, records or None)."""
    head, sep, recs = spec.partition(":")
    name, _, version = head.partition("@")
    records = [r for r in recs.split(",") if r] if sep else None
    return name, (version or None), (records or None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("databases", nargs="+", metavar="DB[@V][:R,R]", help="databases (and optional records)")
    parser.add_argument("--out", default="data", help="target folder (default: data)")
    parser.add_argument("--mirror", default=None,
                        help="http(s) URL or local directory (default: $ECGTRANSFER_PHYSIONET_MIRROR or physionet.org)")
    parser.add_argument("--jobs", type=int, default=4, help="parallel transfers per database (default: 4)")
    parser.add_argument("--retries", type=int, default=5, help="retries per file (default: 5)")
    parser.add_argument("--strict", action="store_true", help="refuse files SHA256SUMS.txt does not list")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first database that fails")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only warnings and errors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")

    from ecgtransfer import download

    failed = 0
    for spec in args.databases:
        name, version, records = parse_spec(spec)
        try:
            download(name, version=version, records=records, out=args.out, mirror=args.mirror, jobs=args.jobs,
                     retries=args.retries, strict=args.strict, progress=not args.quiet)
        except EcgTransferError as exc:
            failed += 1
            print(f"download_physionet: error: {spec}: {exc}", file=sys.stderr)
            if args.fail_fast:
                break
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

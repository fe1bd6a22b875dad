"""``ecgtransfer combine STORE STORE ... --out OUT``: stores of several databases -> one segment store."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "combine", help="combine stores of different databases into one store",
        description="Combine segment stores of different databases (the same task, rate, segment shape, classes, "
        "extras and window) into one store whose record and patient ids are qualified by database "
        "('mitdb:100', 'svdb:800'). Running again with the same stores does nothing.")
    p.add_argument("stores", nargs="+", metavar="STORE", help="segment stores, one per database, in order")
    p.add_argument("--out", required=True, help="store directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace a store at --out combined from other stores")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ecgtransfer.combine import combine_stores

    store = combine_stores(args.stores, args.out, overwrite=args.overwrite)
    counts = " ".join(f"{db}={d['segments']}" for db, d in store.info().databases.items())
    log.info("%s: %d segments %s (%s)", store.path, len(store), list(store.shape[1:]), counts)
    return 0

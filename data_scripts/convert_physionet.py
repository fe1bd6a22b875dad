#!/usr/bin/env python3
"""Convert several downloaded PhysioNet databases into segment stores in one go (thin over ``ecgtransfer.convert``).

    python data_scripts/convert_physionet.py mitdb ludb challenge-2017 --data data --out stores
    python data_scripts/convert_physionet.py mitdb:beats ludb@1.0.1:rhythm --data ../shared/data/physionet \\
        --out stores --fs 250 --rr-context

Each positional argument is ``DB[@VERSION][:TASK]`` (no task: the database's default). The store of each
goes to ``OUT/<db>-<task>``. Every conversion option of ``ecgtransfer convert`` is accepted (the same
definitions: ``ecgtransfer.cli.convert.add_convert_options``) and applies to every database where it
means something (``--rr-context`` and ``--before/--after`` to beat tasks, ``--window``/``--whole-record``
to rhythm tasks, ``--reference`` to challenge-2017, ``--records`` to each database listed). A store that
is already complete with the same parameters is skipped. Exit code 0 when all succeeded, 2 when any failed
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
    from ecgtransfer.cli.convert import add_convert_options, convert_kwargs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("databases", nargs="+", metavar="DB[@V][:TASK]", help="databases (and optional task)")
    parser.add_argument("--out", default="stores", help="folder for the stores (default: stores)")
    add_convert_options(parser)
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first database that fails")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only warnings and errors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")

    from ecgtransfer import convert
    from ecgtransfer.physionet.catalog import get_database

    kwargs = convert_kwargs(args)
    failed = 0
    for spec in args.databases:
        name, version, task = parse_spec(spec)
        try:
            task = task or get_database(name).default_task
            out = Path(args.out) / f"{name}-{task}"
            own = {k: v for k, v in kwargs.items() if task == "multilabel" or k not in ("level", "rate")}
            store = convert(name, out=out, task=task, version=version, **own)
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

"""The ``ecgtransfer`` command line. ``python -m ecgtransfer`` is the same program.

Each verb lives in its own module of this package (``download.py``, ``convert.py``, ...) exposing
``register(subparsers) -> None``; the parser it adds sets ``func`` to a callable ``(args) -> int``.
Verbs are discovered here, so adding one never touches this file.

Every failure that ecgtransfer raises on purpose (:class:`~ecgtransfer.errors.EcgTransferError`)
is printed as one line ``ecgtransfer: error: ...`` with exit code 2. Progress bars are shown only when stderr is a
terminal (:func:`show_progress`; ``--progress`` / ``--no-progress`` decide otherwise): every verb reads
``args.progress``, so a log file of a batch job gets no bar updates. An :class:`OSError` that escapes
(a full disk, a permission problem) is printed the same way, ``ecgtransfer: error: <reason>: <file>``,
with its traceback only under ``-vv``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Sequence, TextIO

from ecgtransfer import __version__
from ecgtransfer.errors import EcgTransferError

VERB_ORDER = ["download", "convert", "combine", "info", "images", "train", "evaluate", "predict", "bench", "weights"]


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every verb module found in this package."""
    parser = argparse.ArgumentParser(
        prog="ecgtransfer",
        description="Transfer learning on ECG signals: PhysioNet data, ECG images, ImageNet ResNet50.",
    )
    parser.add_argument("--version", action="version", version=f"ecgtransfer {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars on stderr (default: only when stderr is a terminal and without -q)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (VERB_ORDER.index(n) if n in VERB_ORDER else len(VERB_ORDER), n))
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def show_progress(progress: bool | None, quiet: bool, stream: TextIO | None = None) -> bool:
    """Whether the verbs show progress bars: ``--progress`` / ``--no-progress`` when given, else only when
    ``stream`` (stderr) is a terminal and ``--quiet`` is off. The one place that decides it."""
    if progress is not None:
        return progress
    stream = sys.stderr if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        tty = False
    return bool(tty) and not quiet


def _configure_logging(verbose: int, quiet: bool, progress: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not progress:
        import os

        os.environ.setdefault("TQDM_DISABLE", "1")  # for tqdm imported later (the verbs pass args.progress)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    args.progress = show_progress(args.progress, args.quiet)
    _configure_logging(args.verbose, args.quiet, args.progress)
    try:
        return int(args.func(args) or 0)
    except EcgTransferError as exc:
        print(f"ecgtransfer: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # last resort: the library wraps the ones it expects
        if args.verbose >= 2:
            import traceback

            traceback.print_exc(file=sys.stderr)
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = exc.filename if exc.filename is not None else None
        print(f"ecgtransfer: error: {reason}: {where}" if where is not None else f"ecgtransfer: error: {reason}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ecgtransfer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

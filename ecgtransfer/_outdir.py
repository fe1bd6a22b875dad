"""Which folder a verb may write into: the one rule every verb that writes a folder applies.

:func:`check_output_dir` runs before anything is written (convert, images, train, bench; and
:class:`~ecgtransfer.store.StoreWriter`). It refuses, with one line naming the path:

* the current folder, or a folder holding it (``--out .``): replacing or filling it mixes outputs with the
  user's files, and a rename of the working directory fails half-way;
* an output folder equal to or inside one of the inputs (``--data``, the store), or an input inside the
  output folder: writing there could replace or delete the very files being read;
* a path that exists but is not a folder;
* a non-empty folder that is not an output of the same kind (:data:`KINDS`): an ecgtransfer store (a
  ``manifest.json`` of format ``ecgtransfer-store`` and nothing but store files), an image folder (only
  the files ``ecgtransfer images`` writes), a training run (one of :data:`RUN_MARKERS`), a bench folder
  (``results.json``, ``cells/`` or ``runs/``), a beat report of ``predict --report`` or an ``evaluate --out``
  folder.

An empty folder, or a folder of the same kind, passes; what the verb then does with it (resume, reuse,
replace with ``--overwrite``, refuse) is the verb's decision.

The verbs that write into a folder of another kind's neighbourhood (``evaluate --out``, ``predict --report``)
also pass ``owned``: then a folder inside a store, run, bench or image folder that the command does not own is
refused too (:func:`enclosing_output`). :func:`check_output_file` is the same rule for a single output file
(``predict --out``): it may not be an input (nor a file of an input WFDB record), may not lie inside an input
folder or an ecgtransfer output folder the command does not own, may not be a folder, and an existing file is
replaced only with ``--overwrite``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ecgtransfer._formats import RESULTS_FORMAT, STORE_FORMAT
from ecgtransfer._validate import file_kind
from ecgtransfer.errors import ConfigError

#: files of a segment store (``extra_<name>.npy`` besides), see :mod:`ecgtransfer.store`
STORE_FILES = frozenset({"manifest.json", "segments.npy", "labels.npy", "record_ids.npy", "patient_ids.npy",
                         "positions.npy"})
#: what ``ecgtransfer images`` writes into its folder (:mod:`ecgtransfer.imaging.export`)
IMAGE_FILES = frozenset({"images.json", "images.npy", ".images.npy.partial", ".progress.json", "index.csv", "png"})
#: every file a training run owns (see :mod:`ecgtransfer.training.engine`); a folder holding any of them is a run
RUN_FILES = frozenset({"config.json", "run.json", "store_manifest.json", "split.npz", "metrics.jsonl", "metrics.csv",
                       "best.pt", "last.pt", "test_metrics.json", "confusion_test.png", "report.md"})
#: the run files that no other program writes: a folder holding one is a run whatever else it holds
RUN_MARKERS = frozenset({"run.json", "store_manifest.json", "split.npz", "metrics.jsonl", "best.pt", "last.pt"})
#: what ``predict --report`` writes into its folder (:func:`ecgtransfer.training.beat_report.write_beat_report`)
REPORT_FILES = frozenset({"report.md", "report.html", "summary.json", "figures"})
_EVAL = re.compile(r"^eval_[A-Za-z0-9]+(\.json|_confusion\.png)$")  # what ``evaluate`` writes
_TMP = re.compile(r"^\..+\.tmp$")  # a temporary file of ecgtransfer._atomic left by a crash
_EXTRA = re.compile(r"^extra_[^/]+\.npy$")


def _is_store(entries: list[str], folder: Path) -> bool:
    if "manifest.json" not in entries:
        return False
    if any(e not in STORE_FILES and not _EXTRA.match(e) for e in entries):
        return False
    manifest = _json_dict(folder / "manifest.json")
    return manifest is not None and manifest.get("format") == STORE_FORMAT


def _is_images(entries: list[str], folder: Path) -> bool:
    return all(e in IMAGE_FILES or _TMP.match(e) for e in entries)


def _is_run(entries: list[str], folder: Path) -> bool:
    return any(e in RUN_MARKERS for e in entries)


def _json_dict(path: Path) -> dict | None:
    """The JSON object in ``path``, or None for anything else: a missing file, one that is not a regular file
    (never opened: a FIFO would block), unreadable, not JSON, or nested deeper than the parser goes."""
    try:
        if file_kind(path)[1] is not None:
            return None
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _is_report(entries: list[str], folder: Path) -> bool:
    """A beat report of ``predict --report``: only its files, and a ``summary.json`` of its shape."""
    if any(e not in REPORT_FILES and not _TMP.match(e) for e in entries) or "summary.json" not in entries:
        return False
    summary = _json_dict(folder / "summary.json")
    return summary is not None and {"classes", "total", "records"} <= set(summary)


def _is_eval(entries: list[str], folder: Path) -> bool:
    """A folder of ``evaluate --out``: only ``eval_<split>.json`` (metrics with their split) and their PNGs."""
    if any(not _EVAL.match(e) and not _TMP.match(e) for e in entries):
        return False
    for e in entries:
        if e.endswith(".json") and not _TMP.match(e):
            obj = _json_dict(folder / e)
            if obj is None or "split" not in obj or "paths" not in obj:
                return False
    return True


def _is_bench(entries: list[str], folder: Path) -> bool:
    return "results.json" in entries or (folder / "cells").is_dir() or (folder / "runs").is_dir()


#: kind -> (what it is called in messages, whether a non-empty folder is an output of that kind)
KINDS: dict[str, tuple[str, Callable[[list[str], Path], bool]]] = {
    "store": ("an ecgtransfer segment store", _is_store),
    "images": ("an ecgtransfer image folder", _is_images),
    "run": ("an ecgtransfer training run", _is_run),
    "bench": ("an ecgtransfer bench folder", _is_bench),
    "report": ("an ecgtransfer beat report", _is_report),
    "eval": ("an ecgtransfer evaluation folder", _is_eval),
}


#: kind -> names that an output of that kind may hold (named last in a refusal, after the foreign ones)
_OWN_NAMES: dict[str, Callable[[str], bool]] = {
    "store": lambda e: e in STORE_FILES or bool(_EXTRA.match(e)),
    "images": lambda e: e in IMAGE_FILES or bool(_TMP.match(e)),
    "report": lambda e: e in REPORT_FILES or bool(_TMP.match(e)),
    "eval": lambda e: bool(_EVAL.match(e) or _TMP.match(e)),
}


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _output_kind(folder: Path) -> str | None:
    """What ecgtransfer output ``folder`` is (a kind of :data:`KINDS` among store, run, bench, images), by the
    files that only that output has; ``None`` for any other folder. Cheap: a few ``stat`` calls."""
    try:
        if not folder.is_dir():
            return None
        # a run's own records, or its config beside a checkpoint (a stray last.pt alone makes no run)
        checkpoint = (folder / "best.pt").exists() or (folder / "last.pt").exists()
        if (folder / "run.json").is_file() or (folder / "store_manifest.json").is_file() or (
                checkpoint and (folder / "config.json").is_file()):
            return "run"
        if (folder / "results.json").is_file() and ((folder / "cells").is_dir() or (folder / "runs").is_dir()):
            results = _json_dict(folder / "results.json")
            if results is not None and results.get("format") == RESULTS_FORMAT:
                return "bench"
        if (folder / "images.json").is_file():
            return "images"
        if (folder / "manifest.json").is_file():
            manifest = _json_dict(folder / "manifest.json")
            if manifest is not None and manifest.get("format") == STORE_FORMAT:
                return "store"
    except OSError:
        return None
    return None


def enclosing_output(path: str | os.PathLike, *, owned: Iterable[str | os.PathLike] = ()) -> tuple[Path, str] | None:
    """The nearest folder above ``path`` that is an ecgtransfer store, run, bench or image folder, as
    ``(folder, kind)``, unless an ``owned`` folder (one the command may write into) comes first; else ``None``."""
    mine = {_real(Path(o)) for o in owned}
    for folder in _real(Path(path)).parents:
        if folder in mine:
            return None
        kind = _output_kind(folder)
        if kind is not None:
            return folder, kind
    return None


def check_not_inside_output(out: str | os.PathLike, *, option: str = "--out",
                            inputs: Mapping[str, str | os.PathLike | None] = {},
                            owned: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an output ``out`` inside an ecgtransfer store, run, bench or image folder (other than ``owned``):
    the command line's verbs (train, convert, images, bench) call it besides :func:`check_output_dir`, whose
    library callers (the bench writing runs into its own folder) may write there. Inside one of ``inputs``, the
    refusal names the input, as :func:`check_output_dir` does."""
    found = enclosing_output(out, owned=owned)
    if found is None:
        return
    for name, given in inputs.items():
        if given is not None and _real(Path(given)) == found[0]:
            raise ConfigError(f"{option} {out} is inside the input {name} {given}; write the output elsewhere, "
                              "outside the input")
    _refuse_enclosing(Path(out), option, owned)


def _refuse_enclosing(out: Path, option: str, owned: Iterable[str | os.PathLike]) -> None:
    found = enclosing_output(out, owned=owned)
    if found is not None:
        folder, kind = found
        raise ConfigError(f"{option} {out} is inside {folder}, {KINDS[kind][0]} that this command does not write; "
                          "nothing was written: write the output elsewhere")


def check_output_file(out: str | os.PathLike, *, inputs: Mapping[str, str | os.PathLike | None] = {},
                      option: str = "--out", overwrite: bool = False, owned: Iterable[str | os.PathLike] = ()
                      ) -> Path:
    """Refuse an output file ``out`` that a verb must not write (see the module doc).

    Args:
        out: the output file (need not exist).
        inputs: what the verb reads, by the option that names it; a folder protects everything inside it, a
            file itself, a WFDB record path (``data/mitdb/1.0.0/100``) its existing ``100.*`` files.
        option: how the output is named in messages.
        overwrite: an existing file may be replaced (``--overwrite``).
        owned: folders the command may write into even when they are ecgtransfer outputs.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: one line naming the path and why it is refused.
    """
    if not str(out).strip():
        raise ConfigError(f"{option} is an empty path; expected a file name")
    out = Path(out)
    real = _real(out)
    exists = os.path.lexists(out)
    for name, given in inputs.items():
        if given is None or not str(given).strip():
            continue
        src = _real(Path(given))
        if real == src:
            raise ConfigError(f"{option} {out} is the input {name} {given}; nothing was written: write the output "
                              "elsewhere")
        if src.is_dir() and _within(real, src):
            raise ConfigError(f"{option} {out} is inside the input {name} {given}; nothing was written: write the "
                              "output elsewhere")
        if exists and real.parent == src.parent and real.name.startswith(src.name + "."):
            raise ConfigError(f"{option} {out} is a file of the input {name} {given}; nothing was written: write the "
                              "output elsewhere")
    if out.is_dir():
        raise ConfigError(f"{option} {out} is a folder; expected a file name")
    _refuse_enclosing(out, option, owned)
    if exists and not overwrite:
        raise ConfigError(f"{option} {out} exists; nothing was written: pass --overwrite to replace it, or choose "
                          "another file")
    return out


def check_output_dir(out: str | os.PathLike, *, kind: str, inputs: Mapping[str, str | os.PathLike | None] = {},
                     option: str = "--out", owned: Iterable[str | os.PathLike] | None = None) -> Path:
    """Refuse an output folder ``out`` that a verb of ``kind`` must not write into (see the module doc).

    Args:
        out: the output folder (need not exist).
        kind: one of :data:`KINDS`.
        inputs: what the verb reads, by the option that names it (``{"--data": data}``); ``None`` values
            are skipped.
        option: how the output is named in messages.
        owned: when given, ``out`` may not lie inside an ecgtransfer store, run, bench or image folder other than
            these (:func:`enclosing_output`).

    Returns:
        ``out`` as a :class:`~pathlib.Path` (unchanged).

    Raises:
        ConfigError: one line naming the path and why it is refused.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {sorted(KINDS)}")
    what, is_kind = KINDS[kind]
    out = Path(out)
    real = _real(out)
    cwd = _real(Path.cwd())
    if _within(cwd, real):
        here = "the current folder" if real == cwd else "a folder holding the current folder"
        raise ConfigError(f"{option} {out} is {here} ({real}); name a new or empty folder for the output")
    for name, given in inputs.items():
        if given is None:
            continue
        src = _real(Path(given))
        if _within(real, src):
            where = "is" if real == src else "is inside"
            raise ConfigError(f"{option} {out} {where} the input {name} {given}; write the output elsewhere, "
                              "outside the input")
        if _within(src, real):
            raise ConfigError(f"the input {name} {given} is inside {option} {out}; write the output elsewhere, "
                              "outside the input")
    if owned is not None:
        _refuse_enclosing(out, option, owned)
    if not os.path.lexists(out):
        return out
    if not out.is_dir():
        raise ConfigError(f"{option} {out} exists and is not a folder; expected a new or empty folder or "
                          f"{what}")
    try:
        entries = sorted(os.listdir(out))
    except OSError as exc:
        raise ConfigError(f"{option} {out} cannot be read ({exc.strerror or exc}); expected a new or empty "
                          "folder") from exc
    if entries and not is_kind(entries, out):
        own = _OWN_NAMES.get(kind)
        foreign = [e for e in entries if own is None or not own(e)] or entries
        shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign)} entries)" if len(foreign) > 5 else "")
        raise ConfigError(f"{option} {out} holds other files ({shown}) and is not {what}; nothing was written: "
                          "choose a new or empty folder")
    return out


__all__ = ["check_output_dir", "check_output_file", "check_not_inside_output", "enclosing_output", "KINDS",
           "STORE_FILES", "IMAGE_FILES", "RUN_FILES", "RUN_MARKERS", "REPORT_FILES"]

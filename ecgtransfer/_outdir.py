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
  the files ``ecgtransfer images`` writes), a training run (``run.json`` or ``store_manifest.json``) or a
  bench folder (``results.json``, ``cells/`` or ``runs/``).

An empty folder, or a folder of the same kind, passes; what the verb then does with it (resume, reuse,
replace with ``--overwrite``, refuse) is the verb's decision.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Mapping

from ecgtransfer.errors import ConfigError

#: files of a segment store (``extra_<name>.npy`` besides), see :mod:`ecgtransfer.store`
STORE_FILES = frozenset({"manifest.json", "segments.npy", "labels.npy", "record_ids.npy", "patient_ids.npy",
                         "positions.npy"})
#: what ``ecgtransfer images`` writes into its folder (:mod:`ecgtransfer.imaging.export`)
IMAGE_FILES = frozenset({"images.json", "images.npy", ".images.npy.partial", ".progress.json", "index.csv", "png"})
_TMP = re.compile(r"^\..+\.tmp$")  # a temporary file of ecgtransfer._atomic left by a crash
_EXTRA = re.compile(r"^extra_[^/]+\.npy$")


def _is_store(entries: list[str], folder: Path) -> bool:
    if "manifest.json" not in entries:
        return False
    if any(e not in STORE_FILES and not _EXTRA.match(e) for e in entries):
        return False
    try:
        manifest = json.loads((folder / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return False
    from ecgtransfer.store import STORE_FORMAT

    return isinstance(manifest, dict) and manifest.get("format") == STORE_FORMAT


def _is_images(entries: list[str], folder: Path) -> bool:
    return all(e in IMAGE_FILES or _TMP.match(e) for e in entries)


def _is_run(entries: list[str], folder: Path) -> bool:
    return "run.json" in entries or "store_manifest.json" in entries


def _is_bench(entries: list[str], folder: Path) -> bool:
    return "results.json" in entries or (folder / "cells").is_dir() or (folder / "runs").is_dir()


#: kind -> (what it is called in messages, whether a non-empty folder is an output of that kind)
KINDS: dict[str, tuple[str, Callable[[list[str], Path], bool]]] = {
    "store": ("an ecgtransfer segment store", _is_store),
    "images": ("an ecgtransfer image folder", _is_images),
    "run": ("an ecgtransfer training run", _is_run),
    "bench": ("an ecgtransfer bench folder", _is_bench),
}


#: kind -> names that an output of that kind may hold (named last in a refusal, after the foreign ones)
_OWN_NAMES: dict[str, Callable[[str], bool]] = {
    "store": lambda e: e in STORE_FILES or bool(_EXTRA.match(e)),
    "images": lambda e: e in IMAGE_FILES or bool(_TMP.match(e)),
}


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_dir(out: str | os.PathLike, *, kind: str, inputs: Mapping[str, str | os.PathLike | None] = {},
                     option: str = "--out") -> Path:
    """Refuse an output folder ``out`` that a verb of ``kind`` must not write into (see the module doc).

    Args:
        out: the output folder (need not exist).
        kind: one of :data:`KINDS`.
        inputs: what the verb reads, by the option that names it (``{"--data": data}``); ``None`` values
            are skipped.
        option: how the output is named in messages.

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


__all__ = ["check_output_dir", "KINDS", "STORE_FILES", "IMAGE_FILES"]

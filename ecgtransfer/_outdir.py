"""Which folder a verb may write into: the one rule every verb that writes a folder applies.

:func:`check_output_dir` runs before anything is written (convert, images, train, bench; and
:class:`~ecgtransfer.store.StoreWriter`). It refuses, with one line naming the path:

* the current folder, or a folder holding it (``--out .``): replacing or filling it mixes outputs with the
  user's files, and a rename of the working directory fails half-way;
* an output folder equal to or inside one of the inputs (``--data``, the store), or an input inside the
  output folder: writing there could replace or delete the very files being read;
* a path that exists but is not a folder;
* a non-empty folder that is not an output of the same kind: what a folder of each kind holds is declared by
  its owner, next to the code that writes it, as a :class:`FolderLayout` (a store in :mod:`ecgtransfer.store`,
  an image folder in :mod:`ecgtransfer.imaging.export`, a training run in :mod:`ecgtransfer.training.run_files`,
  a beat report in :mod:`ecgtransfer.training.beat_report`, an ``evaluate --out`` folder in
  :mod:`ecgtransfer.training.evaluation`, a bench folder in :mod:`ecgtransfer.bench.cells`).

An empty folder, or a folder of the same kind, passes; what the verb then does with it (resume, reuse,
replace with ``--overwrite``, refuse) is the verb's decision.

The verbs that write into a folder of another kind's neighbourhood (``evaluate --out``, ``predict --report``)
also pass ``owned``: then a folder inside a store, run, bench or image folder that the command does not own is
refused too (:func:`enclosing_output`). :func:`check_output_file` is the same rule for a single output file
(``predict --out``): it may not be an input (nor a file of an input WFDB record), may not lie inside an input
folder or an ecgtransfer output folder the command does not own, may not be a folder, and an existing file is
replaced only with ``--overwrite``.

**Who knows which layouts.** This module sits below every writer and imports none of them: the rule is here, the
knowledge of each folder is with its owner. A verb checking its own output passes its own layout
(``check_output_dir(out, kind=STORE_LAYOUT)``). Recognising a folder of *another* kind (:func:`enclosing_output`)
needs every layout; each owner registers its layout here when its module is imported (:func:`register_layout`,
as torchvision's ``register_model``), and those functions read the registry unless the caller passes
``layouts``. A registry alone would depend on what happened to be imported (``train`` never imports the bench),
so the command line, the one layer above every owner, passes the complete list explicitly
(:func:`ecgtransfer.cli._outputs.every_layout` imports each owner); a library caller that checks only its own
folder needs nothing else.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ecgtransfer._validate import file_kind
from ecgtransfer.errors import ConfigError

#: a temporary file of :mod:`ecgtransfer._atomic` left by a crash: any layout that lists it may hold it
ATOMIC_TMP = re.compile(r"^\..+\.tmp$")


@dataclass(frozen=True)
class FolderLayout:
    """What an ecgtransfer output folder of one kind holds, declared once by the module that writes it.

    Attributes:
        kind: the short name (``"store"``, ``"run"``, ...), unique among the registered layouts.
        what: how the folder is called in messages (``"an ecgtransfer segment store"``).
        names: the file names the folder may hold.
        patterns: the name patterns it may hold besides (``extra_<name>.npy``, :data:`ATOMIC_TMP`).
        only_own: a folder of this kind holds nothing but ``names`` and ``patterns`` (a store, an image folder);
            False for a folder that may hold the user's files too (a run, a bench folder): then a refusal lists
            every entry, not only the foreign ones.
        markers: when given, a non-empty folder of this kind holds at least one of them (a run: ``run.json``,
            ``best.pt``, ...).
        check: a further test of a non-empty folder ``(sorted entries, folder) -> bool`` (a store's manifest
            format, a bench's ``cells/``); it reads no more than a small JSON file.
        encloses: whether a folder *is* an output of this kind, seen from a path inside it
            (:func:`enclosing_output`), by the files only this output has (a few ``stat`` calls); None for a
            kind never recognised from inside (a beat report, an evaluation folder).
        precedence: the order :func:`enclosing_output` tries the kinds in, lowest first (a run holding an
            ``images.json`` is a run).
    """

    kind: str
    what: str
    names: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    only_own: bool = True
    markers: frozenset[str] = frozenset()
    check: Callable[[list[str], Path], bool] | None = None
    encloses: Callable[[Path], bool] | None = None
    precedence: int = 100

    def holds(self, name: str) -> bool:
        """Whether ``name`` is a file an output of this kind may hold."""
        return name in self.names or any(p.match(name) for p in self.patterns)

    def accepts(self, entries: list[str], folder: Path) -> bool:
        """Whether the non-empty ``folder`` (its sorted ``entries``) is an output of this kind."""
        if self.only_own and not all(self.holds(e) for e in entries):
            return False
        if self.markers and not any(e in self.markers for e in entries):
            return False
        return self.check is None or self.check(entries, folder)


_REGISTRY: dict[str, FolderLayout] = {}


def register_layout(layout: FolderLayout) -> FolderLayout:
    """Add ``layout`` to the layouts every check can recognise (its owner calls it at import) and return it.
    Registering a kind again replaces it (a reloaded module)."""
    _REGISTRY[layout.kind] = layout
    return layout


def registered_layouts() -> tuple[FolderLayout, ...]:
    """The layouts registered so far (by the owner modules imported so far), in :attr:`FolderLayout.precedence`
    order."""
    return tuple(sorted(_REGISTRY.values(), key=lambda lay: lay.precedence))


def _layout(kind: FolderLayout | str) -> FolderLayout:
    if isinstance(kind, FolderLayout):
        return kind
    if kind not in _REGISTRY:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[kind]


def peek_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None for anything else: a missing file, one that is not a regular file
    (never opened: a FIFO would block), unreadable, not JSON, or nested deeper than the parser goes."""
    try:
        if file_kind(path)[1] is not None:
            return None
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None




def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _output_kind(folder: Path, layouts: Iterable[FolderLayout]) -> FolderLayout | None:
    """Which of ``layouts`` ``folder`` is an output of (:attr:`FolderLayout.encloses`, in precedence order), by
    the files that only that output has; ``None`` for any other folder. Cheap: a few ``stat`` calls."""
    try:
        if not folder.is_dir():
            return None
        for layout in sorted(layouts, key=lambda lay: lay.precedence):
            if layout.encloses is not None and layout.encloses(folder):
                return layout
    except OSError:
        return None
    return None


def _enclosing(path: str | os.PathLike, owned: Iterable[str | os.PathLike],
               layouts: Iterable[FolderLayout] | None) -> tuple[Path, FolderLayout] | None:
    mine = {_real(Path(o)) for o in owned}
    known = registered_layouts() if layouts is None else tuple(layouts)
    for folder in _real(Path(path)).parents:
        if folder in mine:
            return None
        layout = _output_kind(folder, known)
        if layout is not None:
            return folder, layout
    return None


def enclosing_output(path: str | os.PathLike, *, owned: Iterable[str | os.PathLike] = (),
                     layouts: Iterable[FolderLayout] | None = None) -> tuple[Path, str] | None:
    """The nearest folder above ``path`` that is an ecgtransfer store, run, bench or image folder (one of
    ``layouts``, by default the registered ones), as ``(folder, kind)``, unless an ``owned`` folder (one the
    command may write into) comes first; else ``None``."""
    found = _enclosing(path, owned, layouts)
    return None if found is None else (found[0], found[1].kind)


def check_not_inside_output(out: str | os.PathLike, *, option: str = "--out",
                            inputs: Mapping[str, str | os.PathLike | None] = {},
                            owned: Iterable[str | os.PathLike] = (),
                            layouts: Iterable[FolderLayout] | None = None) -> None:
    """Refuse an output ``out`` inside an ecgtransfer store, run, bench or image folder (other than ``owned``):
    the command line's verbs (train, convert, images, bench) call it besides :func:`check_output_dir`, whose
    library callers (the bench writing runs into its own folder) may write there. Inside one of ``inputs``, the
    refusal names the input, as :func:`check_output_dir` does. ``layouts``: the kinds recognised (by default the
    registered ones; the command line passes every one)."""
    layouts = None if layouts is None else tuple(layouts)
    found = enclosing_output(out, owned=owned, layouts=layouts)
    if found is None:
        return
    for name, given in inputs.items():
        if given is not None and _real(Path(given)) == found[0]:
            raise ConfigError(f"{option} {out} is inside the input {name} {given}; write the output elsewhere, "
                              "outside the input")
    _refuse_enclosing(Path(out), option, owned, layouts)


def _refuse_enclosing(out: Path, option: str, owned: Iterable[str | os.PathLike],
                      layouts: Iterable[FolderLayout] | None) -> None:
    found = _enclosing(out, owned, layouts)
    if found is not None:
        folder, layout = found
        raise ConfigError(f"{option} {out} is inside {folder}, {layout.what} that this command does not write; "
                          "nothing was written: write the output elsewhere")


def check_output_file(out: str | os.PathLike, *, inputs: Mapping[str, str | os.PathLike | None] = {},
                      option: str = "--out", overwrite: bool = False, owned: Iterable[str | os.PathLike] = (),
                      layouts: Iterable[FolderLayout] | None = None) -> Path:
    """Refuse an output file ``out`` that a verb must not write (see the module doc).

    Args:
        out: the output file (need not exist).
        inputs: what the verb reads, by the option that names it; a folder protects everything inside it, a
            file itself, a WFDB record path (``data/mitdb/1.0.0/100``) its existing ``100.*`` files.
        option: how the output is named in messages.
        overwrite: an existing file may be replaced (``--overwrite``).
        owned: folders the command may write into even when they are ecgtransfer outputs.
        layouts: the output kinds ``out`` may not lie inside; by default the registered ones
            (:func:`register_layout`).

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
    _refuse_enclosing(out, option, owned, layouts)
    if exists and not overwrite:
        raise ConfigError(f"{option} {out} exists; nothing was written: pass --overwrite to replace it, or choose "
                          "another file")
    return out


def check_output_dir(out: str | os.PathLike, *, kind: FolderLayout | str,
                     inputs: Mapping[str, str | os.PathLike | None] = {}, option: str = "--out",
                     owned: Iterable[str | os.PathLike] | None = None,
                     layouts: Iterable[FolderLayout] | None = None) -> Path:
    """Refuse an output folder ``out`` that a verb of ``kind`` must not write into (see the module doc).

    Args:
        out: the output folder (need not exist).
        kind: the layout of the folder the verb writes, declared by its owner (``STORE_LAYOUT``); a kind's name
            (``"store"``) looks it up among the registered layouts.
        inputs: what the verb reads, by the option that names it (``{"--data": data}``); ``None`` values
            are skipped.
        option: how the output is named in messages.
        owned: when given, ``out`` may not lie inside an ecgtransfer store, run, bench or image folder other than
            these (:func:`enclosing_output`).
        layouts: the output kinds recognised for ``owned``; by default the registered ones.

    Returns:
        ``out`` as a :class:`~pathlib.Path` (unchanged).

    Raises:
        ConfigError: one line naming the path and why it is refused.
    """
    layout = _layout(kind)
    out = Path(out)
    _refuse_cwd_and_inputs(out, option, inputs)
    if owned is not None:
        _refuse_enclosing(out, option, owned, layouts)
    if not os.path.lexists(out):
        return out
    if not out.is_dir():
        raise ConfigError(f"{option} {out} exists and is not a folder; expected a new or empty folder or "
                          f"{layout.what}")
    try:
        entries = sorted(os.listdir(out))
    except OSError as exc:
        raise ConfigError(f"{option} {out} cannot be read ({exc.strerror or exc}); expected a new or empty "
                          "folder") from exc
    if entries and not layout.accepts(entries, out):
        foreign = [e for e in entries if not layout.only_own or not layout.holds(e)] or entries
        shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign)} entries)" if len(foreign) > 5 else "")
        raise ConfigError(f"{option} {out} holds other files ({shown}) and is not {layout.what}; nothing was "
                          "written: choose a new or empty folder")
    return out


def _refuse_cwd_and_inputs(out: Path, option: str, inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """:func:`check_output_dir`'s first refusals: ``out`` is or holds the current folder, or is or holds an input,
    or lies inside one."""
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


__all__ = ["ATOMIC_TMP", "FolderLayout", "check_output_dir", "check_output_file", "check_not_inside_output",
           "enclosing_output", "peek_json", "register_layout", "registered_layouts"]

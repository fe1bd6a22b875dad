"""Shared checks of numbers given on the command line or in a config: one :class:`ConfigError` line naming the
option and what it expects, raised before anything is read, allocated or written.

Also the one test of what a path is before it is opened (:func:`file_kind`: a FIFO would block ``open``).

The owner of three bounds: :data:`MAX_IMAGE_SIZE` (the largest image side of ``train``, ``images`` and ``bench``),
:func:`max_threads` (the most torch CPU threads a run may ask for) and :func:`memory_budget` (the most memory
one computation sized by the user, such as resampling a record, may ask for).
"""
from __future__ import annotations

import math
import os
import stat
from numbers import Integral, Real
from typing import Any

from ecgtransfer.errors import ConfigError

#: the largest image side in pixels (``train --image-size``, ``images --size``, a bench's ``image_size``); a
#: 3 x 1024 x 1024 float32 image is 12 MiB per segment, 100000 would be 120 GB
MAX_IMAGE_SIZE = 1024


#: the largest seed: every generator a run seeds takes it (NumPy's legacy seed and torch's are below 2**32 / 2**64;
#: ``default_rng`` refuses negative ones)
MAX_SEED = 2**32 - 1


def check_seed(value: Any, name: str) -> int:
    """``value`` as a seed in ``[0, MAX_SEED]``, or one :class:`ConfigError` line naming ``name``: a negative or
    huge seed passed validation and then failed every cell of a bench."""
    if not isinstance(value, Integral) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer from 0 to {MAX_SEED}, got {value!r}")
    return int(value)


def max_threads() -> int:
    """The most CPU threads a run may ask for: four per CPU of this machine."""
    return 4 * (os.cpu_count() or 1)


def memory_budget() -> int:
    """The most bytes one computation sized by a user's number may allocate: half of this machine's memory
    (``os.sysconf``; 8 GiB where the system does not say). Asked before allocating, so that a number like
    ``convert --fs 1e9`` is one line instead of the kernel's out-of-memory kill."""
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        total = 0
    return (total if total > 0 else 16 * 2**30) // 2


def human_bytes(n: float) -> str:
    """``n`` bytes as a short text: ``"1.5 GB"`` (powers of 1000, as disk and memory tools print them)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def positive_int(value: Any, name: str, *, maximum: int | None = None, why: str = "") -> int:
    """``value`` as an int if it is a whole number >= 1 (and <= ``maximum``), else one ConfigError line."""
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, Real) and not isinstance(value, bool):
        ok = math.isfinite(float(value)) and float(value).is_integer()
    if not ok or int(value) < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if maximum is not None and int(value) > maximum:
        raise ConfigError(f"{name} must be at most {maximum}{why}, got {value!r}")
    return int(value)


def finite_number(value: Any, name: str, *, positive: bool = True, minimum: float | None = None) -> float:
    """``value`` as a float if it is a finite number (> 0 with ``positive``, >= ``minimum``), else one line."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if positive and not x > 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    if minimum is not None and x < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value!r}")
    return x


def path_given(value: Any, name: str) -> str:
    """A path option that names something: ``""`` (or blanks) is ``Path(".")``, the current folder, which nobody
    means by ``--out ''``; one ConfigError line instead."""
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if text is None or not str(text).strip():
        raise ConfigError(f"{name} is empty ({value!r}); name a folder")
    return str(text)


def image_size(value: Any, name: str) -> int:
    """An image side: an integer in [2, :data:`MAX_IMAGE_SIZE`]."""
    size = positive_int(value, name, maximum=MAX_IMAGE_SIZE, why=" pixels")
    if size < 2:
        raise ConfigError(f"{name} must be an integer >= 2, got {value!r}")
    return size


def thread_count(value: Any, name: str) -> int:
    """A number of CPU threads: an integer in [1, :func:`max_threads`]."""
    return positive_int(value, name, maximum=max_threads(), why=f" (4 x the {os.cpu_count() or 1} CPUs here)")


__all__ = ["MAX_IMAGE_SIZE", "max_threads", "memory_budget", "human_bytes", "positive_int", "finite_number", "path_given",
           "image_size", "thread_count"]


def file_kind(path: str | os.PathLike) -> tuple[os.stat_result, str | None]:
    """``os.stat(path)`` (symbolic links followed) and, unless ``path`` is a regular file, what it is instead: ``"a
    FIFO"``, ``"a folder"``, ``"a socket"``, ``"a device"`` or ``"not a regular file"``; None for a regular file.
    Readers ask before opening (opening a FIFO blocks until a writer appears) and word their own message; the
    ``OSError`` of a missing or unreadable path (``FileNotFoundError`` among them) is theirs to word too."""
    st = os.stat(path)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return st, None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file")
    return st, kind


_SCALARS: dict[type, tuple[str, Any]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, Integral) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, Real) and not isinstance(v, bool)),
}


def check_field_types(obj: Any, what: str) -> None:
    """Raise one :class:`ConfigError` line ``"{what}: {field} must be {a number}, got 'x'"`` for the first field of the
    dataclass ``obj`` whose value is not of its declared type, where that is ``bool``, ``int``, ``float`` (or
    one of them or None) or a tuple of them or of strings (a list in TOML); strings (choices: the owner's "must be one
    of" names the field), tables and nested configs are the owner's to check. Run before the
    owner's own checks, so that a string where a number belongs names the field instead of Python's comparison
    error."""
    import dataclasses
    import types
    import typing

    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints.get(f.name)
        members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        value = getattr(obj, f.name)
        if value is None and type(None) in members:
            continue
        kinds = [m for m in members if m is not type(None)]
        if len(kinds) == 1 and typing.get_origin(kinds[0]) is tuple:  # a list in TOML
            items = {a for a in typing.get_args(kinds[0]) if a is not Ellipsis}
            if items == {str}:  # a list of names (one name alone: its owner decides whether it takes one)
                if not (isinstance(value, str) or (isinstance(value, (list, tuple))
                                                   and all(isinstance(v, str) for v in value))):
                    raise ConfigError(f"{what}: {f.name} must be a list of strings, got {value!r}")
                continue
            if not items or not all(m in _SCALARS for m in items):
                continue
            expected = " or ".join(_SCALARS[m][0].removeprefix("a ").removeprefix("an ") + "s" for m in items)
            if not isinstance(value, (list, tuple)) or not all(any(_SCALARS[m][1](v) for m in items)
                                                               for v in value):
                raise ConfigError(f"{what}: {f.name} must be a list of {expected}, got {value!r}")
            continue
        if not kinds or not all(m in _SCALARS for m in kinds):
            continue
        if any(_SCALARS[m][1](value) for m in kinds):
            continue
        expected = " or ".join(_SCALARS[m][0] for m in kinds)
        raise ConfigError(f"{what}: {f.name} must be {expected}, got {value!r}")

"""The small checks the bench config's dataclasses and its TOML reader share: each raises one
:class:`~ecgtransfer.errors.ConfigError` line, ``"<where>: <what was expected>, found <what was found>"``.

``where`` names the place in the config (``"bench.toml arm 'tuned'"``, ``"bench.toml [source]"``); the checks of
each dataclass (``check`` methods of :class:`~ecgtransfer.bench.arms.ArmConfig` and the classes of
:mod:`ecgtransfer.bench.config`) are made of these.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ecgtransfer.errors import ConfigError


def same_fraction(a: float, b: float) -> bool:
    """Whether two training-data fractions are the same one (equal up to float rounding, 1e-12)."""
    return abs(a - b) <= 1e-12


def config_error(where: str, msg: str) -> ConfigError:
    """``ConfigError("<where>: <msg>")``."""
    return ConfigError(f"{where}: {msg}")


def check_positive_int(where: str, key: str, v: Any, allow_none: bool = False) -> None:
    """``v`` is an integer >= 1 (or None when ``allow_none``)."""
    if v is None and allow_none:
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise config_error(where, f"{key} must be a positive integer, found {v!r}")


def check_setting_values(where: str, key: str, values: Sequence[float]) -> None:
    """The values of a swept setting (``wd_sweep``, ``clip_sweep``): distinct numbers >= 0, each named exactly."""
    if any(not (x >= 0) for x in values) or len(set(values)) != len(values):
        raise config_error(where, f"{key} values must be distinct numbers >= 0, found {list(values)}")
    check_nameable(where, key, values)


def check_nameable(where: str, key: str, values: Sequence[float]) -> None:
    """A sweep point's cell name carries its values with 6 significant digits (``f"{v:g}"``) and the cell trains
    the value read back from it: a value the name cannot hold exactly is refused."""
    inexact = [x for x in values if float(f"{x:g}") != x]
    if inexact:
        raise config_error(where, f"{key} values {inexact} have more than 6 significant digits (cell names hold "
                                  f"{[float(f'{x:g}') for x in inexact]}): round them")


def check_keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    """``table`` holds no key outside ``allowed``."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise config_error(where, f"unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def tuple_of(where: str, key: str, value: Any, kind: type) -> tuple:
    """``value`` (a list, or one value) as a tuple of ``kind`` (an int is accepted as a float)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        value = [value]
    out = []
    for v in value:
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or isinstance(v, bool):
            raise config_error(where, f"{key} must be a list of {kind.__name__}, found {v!r}")
        out.append(v)
    return tuple(out)


__all__ = ["check_keys", "check_nameable", "check_positive_int", "check_setting_values", "config_error", "tuple_of"]

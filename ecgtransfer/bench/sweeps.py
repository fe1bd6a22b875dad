"""The bench's hyper-parameter sweeps: what can be swept, how a sweep point's cell is named, and where a choice sits
on its grid.

An arm's sweep is coordinate-wise: its learning rate(s) times each factor of ``lr_sweep`` first (a tiered arm scales
the whole triple), then, at the chosen factor, each value of the :data:`SWEPT_SETTINGS` in order (weight decay,
then gradient clipping at the chosen weight decay). Every point is one cell trained at the sweep's fraction and
first seed, judged on validation ``selection_f1`` only (:meth:`ecgtransfer.bench.sweep_run.SweepRuns.run_sweeps`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple


class SweptSetting(NamedTuple):
    """A training setting an arm's sweep can tune after its LR factor.

    Attributes:
        field: the ``TrainConfig`` field it sets.
        tag: how a point's cell name carries its value (``<arm>@lr<factor><tag><value>...``).
        key: the ``[bench]`` / arm key listing the values tried (absolute values, >= 0).
        label: its name in the report.
        edges: whether a choice at the grid's end is flagged (not for clipping, whose 0 means "off": no end).
        floor: a lowest choice at this value is no edge (nothing lies below it).
    """

    field: str
    tag: str
    key: str
    label: str
    edges: bool = True
    floor: float | None = None


#: What can be swept after the learning rate, in the order it is swept.
SWEPT_SETTINGS: tuple[SweptSetting, ...] = (
    SweptSetting("weight_decay", "wd", "wd_sweep", "weight decay", floor=0.0),
    SweptSetting("grad_clip", "clip", "clip_sweep", "gradient clipping (max norm, 0 = off)", edges=False),
)
SETTING_KEYS: tuple[str, ...] = tuple(s.key for s in SWEPT_SETTINGS)
_BY_TAG = {s.tag: s for s in SWEPT_SETTINGS}

#: How a sweep cell's arm is named: ``<arm>@lr<factor>`` for a learning-rate point, followed by ``<tag><value>`` for
#: each setting away from the arm's own (e.g. ``scratch@lr3wd0.01clip0``); ``@`` cannot occur in an arm name.
SWEEP_SEP = "@lr"


class SweepPoint(NamedTuple):
    """A cell arm name read back: ``factor`` None for a grid cell (the arm's chosen point); ``settings`` the swept
    ``(TrainConfig field, value)`` pairs, in :data:`SWEPT_SETTINGS` order (empty: the arm's own settings)."""

    arm: str
    factor: float | None
    settings: tuple[tuple[str, float], ...] = ()


def sweep_arm_name(arm: str, factor: float, settings: Mapping[str, float] | None = None) -> str:
    """The cell arm name of ``arm``'s sweep point (e.g. ``scratch@lr0.3``, ``scratch@lr0.3wd0.01``)."""
    settings = settings or {}
    unknown = set(settings) - {s.field for s in SWEPT_SETTINGS}
    if unknown:
        raise ValueError(f"not a swept setting: {sorted(unknown)}")
    return f"{arm}{SWEEP_SEP}{factor:g}" + "".join(f"{s.tag}{float(settings[s.field]):g}" for s in SWEPT_SETTINGS
                                                 if s.field in settings)


def parse_sweep_arm(name: str) -> SweepPoint:
    """``"scratch@lr0.3wd0.01"`` -> ``SweepPoint("scratch", 0.3, (("weight_decay", 0.01),))``; a grid cell's arm
    -> ``(arm, None, ())``."""
    arm, sep, point = name.partition(SWEEP_SEP)
    if not sep:
        return SweepPoint(name, None, ())
    tokens = re.split(f"({'|'.join(_BY_TAG)})", point)
    settings = tuple((_BY_TAG[tag].field, float(value)) for tag, value in zip(tokens[1::2], tokens[2::2]))
    return SweepPoint(arm, float(tokens[0]), settings)


def setting_change(settings: Mapping[str, float]) -> dict[str, float | None]:
    """The ``TrainConfig`` changes of swept ``settings`` (a clipping of 0 is ``grad_clip = None``: off)."""
    return {field: (None if field == "grad_clip" and not value else float(value)) for field, value in settings.items()}


def grid_edge(values: Sequence[float], chosen: float, *, floor: float | None = None) -> str | None:
    """``"lowest"`` or ``"highest"`` when ``chosen`` is an end of a grid of at least 2 ``values`` (the optimum may lie
    beyond it: widen the grid), else None. A lowest value equal to ``floor`` (weight decay 0) is no edge: nothing
    lies below it."""
    vals = sorted(float(v) for v in values)
    if len(vals) < 2:
        return None
    if chosen == vals[-1]:
        return "highest"
    if chosen == vals[0] and not (floor is not None and chosen <= floor):
        return "lowest"
    return None

"""The grid of cells a benchmark runs: arm x encoding x fraction x seed.

A :class:`Cell` is one training run. Its :attr:`Cell.key` names its result file; cells are ordered seed by
seed (then fraction, largest first; then encoding; then arm) so that an interrupted bench already holds
every arm's result for the first seeds: the paired comparison is usable early.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecgtransfer.bench.config import BenchConfig


def fraction_label(fraction: float) -> str:
    """``0.05`` -> ``"5%"``, ``1.0`` -> ``"100%"`` (at most 3 significant digits)."""
    return f"{fraction * 100:.3g}%"


@dataclass(frozen=True, order=True)
class Cell:
    """One training run of the benchmark."""

    arm: str
    encoding: str
    fraction: float
    seed: int

    @property
    def key(self) -> str:
        """File-name-safe unique name, e.g. ``scratch__spectrogram__f0.05__s0``."""
        return f"{self.arm}__{self.encoding}__f{self.fraction:.6g}__s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "encoding": self.encoding, "fraction": self.fraction, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Cell":
        return cls(str(d["arm"]), str(d["encoding"]), float(d["fraction"]), int(d["seed"]))


def cells(config: BenchConfig) -> list[Cell]:
    """Every cell of ``config`` in run order (see the module docstring)."""
    out: list[Cell] = []
    for seed in config.seeds:
        for fraction in sorted(config.fractions, reverse=True):
            for encoding in _all_encodings(config):
                for arm in config.arms:
                    if encoding in config.arm_encodings(arm):
                        out.append(Cell(arm.name, encoding, float(fraction), int(seed)))
    return out


def _all_encodings(config: BenchConfig) -> list[str]:
    seen: list[str] = []
    for enc in list(config.encodings) + [e for a in config.arms for e in config.arm_encodings(a)]:
        if enc not in seen:
            seen.append(enc)
    return seen

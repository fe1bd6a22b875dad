"""Statistics over seeds: mean and Student-t confidence intervals, paired differences, time to target.

With ``n`` seeds and values ``x_1..x_n`` (sample standard deviation ``s``, ddof=1), the two-sided ``level``
confidence interval of the mean is ``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` (Student t with n-1
degrees of freedom). With one seed there is no interval: ``lo``/``hi`` are ``None`` and the report says so.

Paired differences: an arm and the baseline trained with the same seed also saw the same data subsample
(see :mod:`ecgtransfer.bench.fractions`), so the difference is taken seed by seed and its interval computed
over those differences; this removes the between-seed variance the two arms share.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` values with its confidence interval (``lo``/``hi`` None when ``n < 2``)."""

    n: int
    mean: float | None
    sd: float | None
    lo: float | None
    hi: float | None
    level: float = 0.95

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None or self.hi is None else (self.hi - self.lo) / 2

    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or entirely below 0."""
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["half_width"] = self.half_width
        return d

    def fmt(self, digits: int = 3, signed: bool = False) -> str:
        """``0.812 [0.790, 0.834]`` (or ``0.812 (n=1, no CI)``, ``n/a`` when empty)."""
        if self.mean is None:
            return "n/a"
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        if self.lo is None:
            return f"{f.format(self.mean)} (n={self.n}, no CI)"
        return f"{f.format(self.mean)} [{f.format(self.lo)}, {f.format(self.hi)}]"


def mean_ci(values: Iterable[float | None], level: float = 0.95) -> Summary:
    """Mean and Student-t ``level`` CI of ``values`` (None/NaN values are dropped)."""
    x = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return Summary(0, None, None, None, None, level)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, None, None, None, level)
    sd = float(x.std(ddof=1))
    half = float(_st.t.ppf((1.0 + level) / 2.0, n - 1)) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half, level)


def paired_diff(arm: Mapping[int, float | None], baseline: Mapping[int, float | None],
                level: float = 0.95) -> Summary:
    """CI of ``arm[seed] - baseline[seed]`` over the seeds both have (values keyed by seed)."""
    seeds = sorted(s for s in arm if s in baseline and arm[s] is not None and baseline[s] is not None)
    return mean_ci([float(arm[s]) - float(baseline[s]) for s in seeds], level)  # type: ignore[arg-type]


def time_to_target(history: Sequence[Mapping[str, Any]], target: float, key: str = "val_macro_f1",
                   ) -> tuple[int, float] | None:
    """First epoch (1-based, as recorded) and elapsed seconds at which ``history[key] >= target``.

    ``history`` is a list of per-epoch dicts holding ``epoch``, ``elapsed_s`` and ``key``;
    returns None when the target is never reached.
    """
    for row in history:
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and v >= target:
            return int(row["epoch"]), float(row["elapsed_s"])
    return None


def summarise_time_to_target(hits: Sequence[tuple[int, float] | None], level: float = 0.95) -> dict[str, Any]:
    """Over seeds: how many reached the target, and mean/CI of epochs and seconds among those that did."""
    reached = [h for h in hits if h is not None]
    return {
        "reached": len(reached),
        "of": len(hits),
        "epochs": mean_ci([h[0] for h in reached], level).to_dict(),
        "seconds": mean_ci([h[1] for h in reached], level).to_dict(),
    }


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean, sd, min, max and the 95% CI of per-seed values (for per-class tables)."""
    x = [float(v) for v in values if v is not None and not math.isnan(v)]
    s = mean_ci(x)
    return {**s.to_dict(), "min": min(x) if x else None, "max": max(x) if x else None}

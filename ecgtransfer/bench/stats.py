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
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, TypedDict

import numpy as np
from scipy import stats as _st


# the JSON forms of the statistics, as results.json holds them (part of bench.results' schema)
class Interval(TypedDict, total=False):
    """A mean over seeds with its interval (:meth:`Summary.to_dict`; bootstrap intervals add the keys of
    :class:`Bootstrap`; cost spreads add ``min``/``max``). ``lo``/``hi`` are None with fewer than two values."""

    n: int
    mean: Optional[float]
    sd: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    level: float
    half_width: Optional[float]
    min: Optional[float]
    max: Optional[float]


class Bootstrap(Interval, total=False):
    """A bootstrap over test records and seeds (:func:`bootstrap_summary`): the point estimate as
    ``mean``, the percentile interval, and for a paired difference its two-sided ``p``."""

    n_records: int
    replicates: int
    method: str
    p: float


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
    """Over seeds: how many reached the target, and mean/CI of epochs and seconds among those that did (with each
    of those seeds' values: ``epochs_each``, ``seconds_each``)."""
    reached = [h for h in hits if h is not None]
    return {
        "reached": len(reached),
        "of": len(hits),
        "epochs": mean_ci([h[0] for h in reached], level).to_dict(),
        "seconds": mean_ci([h[1] for h in reached], level).to_dict(),
        "epochs_each": [int(h[0]) for h in reached],
        "seconds_each": [float(h[1]) for h in reached],
    }


def steps_to_target(history: Sequence[Mapping[str, Any]], target: float, key: str = "val_macro_f1"
                    ) -> dict[str, Any]:
    """Optimizer steps until the validation ``key`` first reaches ``target`` (``history``: per-epoch rows with
    ``step``, the cumulative steps at that evaluation, and ``key``).

    Returns ``{"reached": bool, "step": int | None, "epoch": int | None, "censored_at": int | None}``: a run that
    never reaches the target is *censored* at its last evaluated step (it is known only that it would need more).
    Steps, unlike seconds, do not depend on the machine or on evaluation time.
    """
    last = None
    for row in history:
        last = int(row.get("step") or 0)
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and v >= target:
            return {"reached": True, "step": last, "epoch": int(row["epoch"]), "censored_at": None}
    return {"reached": False, "step": None, "epoch": None, "censored_at": last}


def summarise_steps_to_target(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Over seeds: ``reached``/``of``/``not_reached``, each seed's steps (None when censored), the median over
    all seeds counting a censored run as "more than any" (None when that median is not reached, i.e. fewer
    than half of the seeds reached the target), and ``text``: e.g. ``"median 120 steps; not reached in 1 of 3
    seeds"``."""
    m = len(runs)
    reached = [int(r["step"]) for r in runs if r.get("reached")]
    vals = sorted([float(x) for x in reached] + [math.inf] * (m - len(reached)))
    median = None
    if m:
        mid = vals[(m - 1) // 2], vals[m // 2]
        median = None if math.isinf(mid[1]) else float(np.mean(mid))
    text = ("no run" if not m else
            (f"median {median:g} steps" if median is not None else "median not reached")
            + ("" if len(reached) == m else f"; not reached in {m - len(reached)} of {m} seeds"))
    return {"reached": len(reached), "of": m, "not_reached": m - len(reached),
            "steps": [r.get("step") for r in runs], "censored_at": [r.get("censored_at") for r in runs],
            "median_steps": median, "text": text}


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean, sd, min, max and the 95% CI of per-seed values (for per-class tables)."""
    x = [float(v) for v in values if v is not None and not math.isnan(v)]
    s = mean_ci(x)
    return {**s.to_dict(), "min": min(x) if x else None, "max": max(x) if x else None}


# -- patients as the unit: a paired bootstrap over test records and seeds -----------------------------------------
#
# Each cell keeps, per test record, its confusion matrix (``[K, K]``, true x predicted). A bootstrap replicate
# draws the test records with replacement (the *same* draw for every arm: paired across arms) and the seeds with
# replacement (the same seed positions for every arm of a contrast: the arms of one seed share their data
# subsample); its statistic is the mean over the drawn seeds of the metric of the pooled confusion matrix of the
# drawn records. The interval is the percentile interval of the replicates. Record variance (which patients are
# in test) and seed variance (initialisation, data order, subsample) are both in it.

#: Default number of bootstrap replicates.
BOOTSTRAP_REPLICATES = 2000


def macro_f1_of_confusion(cm: np.ndarray) -> np.ndarray:
    """Macro-F1 of confusion matrices ``[..., K, K]`` (true x predicted) -> ``[...]``.

    The mean F1 over the classes with support (a true segment) in each matrix: the bench's definition (classes
    absent from the evaluated split are left out; their predictions still count as errors of the true class),
    applied to every resampled split. NaN where no class has support.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    denom = support + predicted  # 2 tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
    has = support > 0
    n = has.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (f1 * has).sum(axis=-1) / np.where(n > 0, n, 1), np.nan)


def class_rate_of_confusion(cm: np.ndarray, cls: int, kind: str) -> np.ndarray:
    """Se (``kind="se"``: tp / true), +P (``"ppv"``: tp / predicted) or F1 (``"f1"``: 2 tp / (true + predicted))
    of class ``cls`` in ``[..., K, K]``; NaN where the denominator is 0 (F1: where the class has no true segment)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = cm[..., cls, cls]
    if kind == "f1":
        true = cm[..., cls, :].sum(axis=-1)
        den = true + cm[..., :, cls].sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(true > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)
    den = cm[..., cls, :].sum(axis=-1) if kind == "se" else cm[..., :, cls].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, tp / np.where(den > 0, den, 1), np.nan)


@dataclass(frozen=True)
class Resamples:
    """The draws of a paired bootstrap: ``records [B, R]`` (record positions) and ``seeds [B, S]`` (seed positions).

    One object is used for every arm of a comparison, which is what makes the bootstrap paired.
    """

    records: np.ndarray
    seeds: np.ndarray

    @property
    def n(self) -> int:
        return int(self.records.shape[0])


def draw_resamples(n_records: int, n_seeds: int, replicates: int = BOOTSTRAP_REPLICATES, *, seed: int = 0
                   ) -> Resamples:
    """Seeded draws of records and seeds with replacement (the same arguments give the same draws).

    With one seed, the seed draws are all 0 (the interval then covers the test records only).
    """
    rng = np.random.default_rng([int(seed), int(n_records), int(n_seeds)])
    recs = rng.integers(0, n_records, size=(replicates, n_records))
    seeds = rng.integers(0, n_seeds, size=(replicates, n_seeds)) if n_seeds > 1 else np.zeros((replicates, 1), int)
    return Resamples(recs.astype(np.int64), seeds.astype(np.int64))


def bootstrap_replicates(cms: np.ndarray, resamples: Resamples, metric=macro_f1_of_confusion) -> np.ndarray:
    """The statistic of every replicate ``[B]``.

    Args:
        cms: per-seed, per-record confusion matrices ``[S, R, K, K]`` (records in one fixed order for every arm).
        resamples: the draws (:func:`draw_resamples` with the same ``R`` and ``S``).
        metric: confusion matrices ``[..., K, K]`` -> values ``[...]`` (default macro-F1).

    Replicate ``b`` is ``mean_j metric(sum_i cms[seeds[b, j], records[b, i]])``.
    """
    cms = np.asarray(cms, dtype=np.float64)
    s, r, k, _ = cms.shape
    if resamples.records.shape[1] != r or resamples.seeds.max(initial=0) >= s:
        raise ValueError(f"resamples of {resamples.records.shape[1]} records / seeds < {resamples.seeds.max() + 1} "
                         f"do not fit confusion matrices of {s} seeds x {r} records")
    weights = np.zeros((resamples.n, r))  # [B, R]: how often each record is drawn in each replicate
    np.add.at(weights, (np.arange(resamples.n)[:, None], resamples.records), 1.0)
    pooled = np.einsum("br,srk->sbk", weights, cms.reshape(s, r, k * k)).reshape(s, -1, k, k)  # [S, B, K, K]
    per_seed = metric(pooled)  # [S, B]
    if s == 1:
        return per_seed[0]
    b = np.arange(resamples.n)[:, None]
    with warnings.catch_warnings():  # a replicate where the metric is undefined for every drawn seed stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_seed.T[b, resamples.seeds], axis=1)


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0": ``2 min(P(d <= 0), P(d >= 0))``, each with the
    ``(count + 1) / (B + 1)`` correction (never 0), capped at 1."""
    d = np.asarray(replicates, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan")
    lo = (np.sum(d <= 0) + 1) / (d.size + 1)
    hi = (np.sum(d >= 0) + 1) / (d.size + 1)
    return float(min(1.0, 2 * min(lo, hi)))


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None]:
    """The ``level`` percentile interval of bootstrap replicates (numpy's linear quantiles); None when empty."""
    d = np.asarray(replicates, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return None, None
    a = (1.0 - level) / 2.0
    return float(np.quantile(d, a)), float(np.quantile(d, 1.0 - a))


def bootstrap_summary(point: float | None, replicates: np.ndarray, *, n_seeds: int, n_records: int,
                      level: float = 0.95, p_value: bool = False) -> Bootstrap:
    """A Summary-like dict: ``mean`` (the point estimate: mean over seeds on the full test split), the bootstrap
    percentile ``lo``/``hi``, ``n`` (seeds), ``n_records``, ``replicates`` (B), ``method`` and, for
    differences, the two-sided ``p``."""
    lo, hi = percentile_interval(replicates, level)
    d: Bootstrap = {"n": int(n_seeds), "mean": point, "sd": float(np.nanstd(replicates, ddof=1))
                         if np.sum(~np.isnan(replicates)) > 1 else None, "lo": lo, "hi": hi, "level": level,
                         "half_width": None if lo is None else (hi - lo) / 2, "n_records": int(n_records),
                         "replicates": int(np.asarray(replicates).size),
                         "method": "paired bootstrap over test records and seeds (percentile)"}
    if p_value:
        d["p"] = bootstrap_p_value(replicates)
    return d


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order.

    Sorted ascending ``p_(1) <= ... <= p_(m)``: ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``
    (Holm 1979; the same as ``statsmodels.stats.multitest.multipletests(p, method="holm")``). NaN stays NaN and
    does not count in ``m``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def record_bootstrap_indices(groups: np.ndarray, replicates: int, *, seed: int = 0) -> list[np.ndarray]:
    """Segment indices of ``replicates`` resamples of the groups (records) of ``groups [n]`` with replacement:
    each resample holds every segment of each drawn record, once per draw."""
    groups = np.asarray(groups).astype(str)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    rng = np.random.default_rng([int(seed), len(uniq)])
    draws = rng.integers(0, len(uniq), size=(replicates, len(uniq)))
    return [np.concatenate([members[g] for g in row]) for row in draws]


#: The chance level of a macro one-vs-rest AUROC.
CHANCE_AUROC = 0.5


def source_credibility(labels: np.ndarray, probs: np.ndarray, records: np.ndarray, *, level: float = 0.95,
                       replicates: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Did a source model learn? Its validation macro-AUROC (one-vs-rest, mean over the classes with positives and
    negatives) with a bootstrap interval over the validation records (``records [n]``).

    Returns ``{"macro_auroc", "lo", "hi", "level", "n_records", "n", "replicates", "learned", "text"}``;
    ``learned`` is False when the interval does not exclude 0.5 (chance) from above: an arm that starts from such
    a model is a handicapped scratch model, and it gets no verdict.
    """
    from ecgtransfer.training.metrics import auroc_ovr

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    return _credibility(lambda ix: np.nanmean(auroc_ovr(labels[ix], probs[ix], k)), len(labels), records,
                        "records", "macro-AUROC", level=level, replicates=replicates, seed=seed)


def multilabel_source_credibility(targets: np.ndarray, probs: np.ndarray, patients: np.ndarray, *,
                                  level: float = 0.95, replicates: int = 1000, seed: int = 0) -> dict[str, Any]:
    """:func:`source_credibility` of a multi-label source model (PTB-XL statements): its validation macro-AUC (the
    mean per-label AUC over the labels with a positive and a negative,
    :func:`ecgtransfer.training.multilabel_metrics.label_auc`) with a bootstrap interval over the validation
    patients (``patients [n]``; every record of a drawn patient), and the same rule: ``learned`` when the interval
    lies above 0.5. The value is under ``macro_auroc`` like the single-label one's."""
    from ecgtransfer.training.multilabel_metrics import label_auc

    y = np.asarray(targets, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)

    def macro(ix: np.ndarray) -> float:
        auc = label_auc(y[ix], p[ix])
        return float(np.nanmean(auc)) if (~np.isnan(auc)).any() else float("nan")

    return _credibility(macro, len(y), patients, "patients", "macro-AUC (multi-label)", level=level,
                        replicates=replicates, seed=seed)


def _credibility(metric: Any, n: int, groups: np.ndarray, unit: str, name: str, *, level: float, replicates: int,
                 seed: int) -> dict[str, Any]:
    """The one rule of "did the source learn?": ``metric(indices)`` on all ``n`` rows and on ``replicates``
    resamples of ``groups`` (:func:`record_bootstrap_indices`); learned when the interval's low end is above
    :data:`CHANCE_AUROC`."""
    with np.errstate(all="ignore"):
        point = float(metric(np.arange(n))) if n else float("nan")
        reps = np.array([metric(ix) for ix in record_bootstrap_indices(groups, replicates, seed=seed)]) if n else \
            np.array([])
    lo, hi = percentile_interval(reps, level)
    learned = lo is not None and lo > CHANCE_AUROC
    n_rec = int(len(np.unique(np.asarray(groups).astype(str))))
    text = (f"validation {name} {point:.3f} [{_fmt(lo)}, {_fmt(hi)}] over {n_rec} {unit}: "
            + ("the interval lies above 0.5, the source model learned" if learned else
               "source did not learn (the interval does not exclude 0.5, chance)"))
    return {"macro_auroc": point, "lo": lo, "hi": hi, "level": level, "n_records": n_rec, "n": int(n),
            "replicates": int(reps.size), "learned": bool(learned), "text": text}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"

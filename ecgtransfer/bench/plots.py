"""The report's figures, rendered with matplotlib (Agg) to PNG bytes."""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def learning_curves_png(curves: Mapping[tuple[str, str, float], Mapping[str, list]], *,
                        fractions: Sequence[float], encoding: str, target: float | None = None,
                        ylabel: str = "validation macro-F1", majority: float | None = None,
                        x: str = "epoch") -> bytes:
    """Validation macro-F1 per epoch (or per optimizer step, ``x="step"``), one panel per fraction, one line per
    arm (mean over seeds, band = min..max); ``majority``: the majority classifier's validation score (a dashed
    line)."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fractions = sorted(fractions)
    fig, axes = plt.subplots(1, len(fractions), figsize=(4.2 * len(fractions), 3.4), sharey=True, squeeze=False)
    arms = sorted({k[0] for k in curves})
    colours = {a: f"C{i}" for i, a in enumerate(arms)}
    for ax, fraction in zip(axes[0], fractions):
        for (arm, enc, frac), c in sorted(curves.items()):
            if enc != encoding or frac != fraction:
                continue
            xs = c.get(x) or c["epoch"]
            ax.plot(xs, c["mean"], marker="o", label=arm, color=colours[arm])
            if len(xs) and any(lo != hi for lo, hi in zip(c["min"], c["max"])):
                ax.fill_between(xs, c["min"], c["max"], color=colours[arm], alpha=0.2)
        if target is not None:
            ax.axhline(target, color="grey", linestyle=":", label=f"target {target:g}")
        if majority is not None:
            ax.axhline(majority, color="black", linestyle="--", linewidth=1, label=f"majority {majority:.3f}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(x if x == "epoch" else "optimizer step (mean over seeds)")
        ax.set_title(f"{fraction * 100:.3g}% of training data", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Learning curves ({encoding}): mean over seeds, band = min..max", fontsize=10)
    return _png(fig)


def data_efficiency_png(summary: Mapping[str, Any], *, encoding: str, metric: str = "macro_f1",
                        ylabel: str = "test macro-F1", majority: float | None = None,
                        band: str = "95% CI over seeds") -> bytes:
    """Mean metric vs fraction of training data (log x), one line per arm, band = the summaries' 95% interval;
    ``majority``: the majority classifier's score on the same split (a dashed line)."""
    plt = _plt()
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for arm, per_enc in summary.items():
        rows = sorted(per_enc.get(encoding, {}).values(), key=lambda e: e["fraction"])
        rows = [e for e in rows if e[metric]["mean"] is not None]
        if not rows:
            continue
        x = [e["fraction"] * 100 for e in rows]
        y = [e[metric]["mean"] for e in rows]
        line, = ax.plot(x, y, marker="o", label=arm)
        if all(e[metric]["lo"] is not None for e in rows):
            ax.fill_between(x, [e[metric]["lo"] for e in rows], [e[metric]["hi"] for e in rows],
                            color=line.get_color(), alpha=0.2)
    if majority is not None:
        ax.axhline(majority, color="black", linestyle="--", linewidth=1, label=f"majority {majority:.3f}")
    ax.set_xscale("log")
    # ticks at the fractions that were run, labelled in plain percent (not 10^0, 2x10^0)
    fractions = sorted({e["fraction"] * 100 for per_enc in summary.values() for e in per_enc.get(encoding, {}).values()})
    if fractions:
        ax.xaxis.set_major_locator(FixedLocator(fractions))
        ax.xaxis.set_major_formatter(FixedFormatter([f"{f:g}%" for f in fractions]))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training data used (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"Data efficiency ({encoding}); bands: {band}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def labelled_patients_png(curve: Mapping[str, Any], *, split: str = "test", band: str = "95% interval"
                          ) -> tuple[bytes, dict[str, Any]]:
    """Macro-F1 and each class F1 of ``curve`` (:func:`ecgtransfer.bench.aggregate.labelled_patients_curve`)
    against the number of labelled target patients, one panel per metric, one line per arm, bands = the bootstrap
    intervals, dashed: the majority classifier.

    Returns ``(PNG bytes, drawn)``: ``drawn`` is what the axes hold, read back from them (``{metric: {arm: {"x",
    "y", "lo", "hi"}, "majority": y}}``), so a test can hold the figure to the table it stands for."""
    plt = _plt()
    metrics = list(curve["metrics"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    colours = {a: f"C{i}" for i, a in enumerate(curve["arms"])}
    drawn: dict[str, Any] = {}
    for ax, m in zip(axes[0], metrics):
        drawn[m] = {}
        for arm, points in curve["arms"].items():
            pts = [p for p in points if p[m]["mean"] is not None]
            if not pts:
                continue
            x = [p["patients"] for p in pts]
            line, = ax.plot(x, [p[m]["mean"] for p in pts], marker="o", label=arm, color=colours[arm])
            lo = [p[m]["lo"] for p in pts]
            hi = [p[m]["hi"] for p in pts]
            if all(v is not None for v in lo + hi):
                ax.fill_between(x, lo, hi, color=colours[arm], alpha=0.15)
            xs, ys = line.get_data()
            drawn[m][arm] = {"x": [float(v) for v in xs], "y": [float(v) for v in ys],
                             "lo": lo if all(v is not None for v in lo) else None,
                             "hi": hi if all(v is not None for v in hi) else None}
        mj = (curve.get("majority") or {}).get(m)
        if mj is not None:
            ref = ax.axhline(mj, color="black", linestyle="--", linewidth=1, label=f"majority {mj:.3f}")
            drawn[m]["majority"] = float(ref.get_ydata()[0])
        ticks = sorted({p["patients"] for pts in curve["arms"].values() for p in pts})
        if ticks:
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel("labelled target patients (training)")
        ax.set_ylabel(f"{split} " + ("macro-F1" if m == "macro_f1" else f"F1 of {m[3:]}"))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Fewer labelled patients ({curve['encoding']}): mean over seeds; bands: {band}; dashed: majority",
                 fontsize=10)
    return _png(fig), drawn


def lr_sweep_png(curves: Mapping[str, Mapping[float, float | None]], *, chosen: Mapping[str, float], encoding: str,
                 majority: float | None = None) -> bytes:
    """Validation score per LR factor (log x), one line per arm, the chosen factor circled."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for arm, c in curves.items():
        pts = sorted((f, v) for f, v in c.items() if v is not None)
        if not pts:
            continue
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=arm)
        if arm in chosen and chosen[arm] in c and c[chosen[arm]] is not None:
            ax.plot([chosen[arm]], [c[chosen[arm]]], marker="o", markersize=13, markerfacecolor="none",
                    color=line.get_color())
    if majority is not None:
        ax.axhline(majority, color="black", linestyle="--", linewidth=1, label=f"majority {majority:.3f}")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    factors = sorted({f for c in curves.values() for f in c})
    ax.xaxis.set_major_locator(FixedLocator(factors))
    ax.xaxis.set_major_formatter(FixedFormatter([f"x{f:g}" for f in factors]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("learning-rate factor (x the arm's configured LRs)")
    ax.set_ylabel("validation selection-F1")
    ax.set_title(f"LR sweep ({encoding})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def confusion_png(cm: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str) -> bytes:
    """Row-normalised confusion matrix (true rows, predicted columns) with the counts written in."""
    plt = _plt()
    m = np.asarray(cm, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    return _png(fig)

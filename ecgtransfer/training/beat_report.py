"""A beat report from predict's per-beat table: counts and burden per class, runs of ectopic beats, ECG strips.

:func:`beat_summary` counts the predicted beats of each class per record and in total (the *burden* is the
share of all beats, in percent: "V: 412 beats, 3.1 %") and finds the longest runs of consecutive beats of the
ectopic classes (V, S: three or more V in a row is a ventricular run). :func:`write_beat_report` writes it as
``report.md`` + ``report.html`` (with the reports' shared document code, :mod:`ecgtransfer._document`),
``summary.json`` and ``figures/strips.png``: for every predicted class other than N, the ECG strip around
its highest-confidence beats with every beat of the strip marked by its predicted class.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ecgtransfer._atomic import atomic_write_bytes, atomic_write_text
from ecgtransfer._document import Doc, html_page
from ecgtransfer._outdir import ATOMIC_TMP, FolderLayout, peek_json, register_layout

#: classes whose longest runs of consecutive beats are reported
RUN_CLASSES = ("V", "S")
#: the class treated as normal (no strip is drawn for it)
NORMAL = "N"
#: highest-confidence beats shown per class
STRIPS_PER_CLASS = 3
#: seconds of ECG shown on each side of a shown beat
STRIP_HALF_S = 2.5



def _summary_is_ours(folder: Path) -> bool:
    summary = peek_json(folder / "summary.json")
    return summary is not None and {"classes", "total", "records"} <= set(summary)


#: what ``predict --report`` writes into its folder (:func:`write_beat_report`), for the output-folder rule
#: (:mod:`ecgtransfer._outdir`): only these files, and a ``summary.json`` of its shape
REPORT_LAYOUT = register_layout(FolderLayout(
    "report", "an ecgtransfer beat report", names=frozenset({"report.md", "report.html", "summary.json", "figures"}),
    patterns=(ATOMIC_TMP,), markers=frozenset({"summary.json"}),
    check=lambda entries, folder: _summary_is_ours(folder)))

#: ``strip(record_id, start, stop) -> (fs, samples [stop - start] mV)`` reads the ECG around a beat
StripReader = Callable[[str, int, int], "tuple[float, np.ndarray]"]


def longest_runs(labels: Sequence[str], cls: str, top: int = 3) -> list[tuple[int, int]]:
    """The ``top`` longest runs of consecutive ``cls`` in ``labels`` ``[n]``: ``[(first index, length)]``,
    longest first (earlier first among equals)."""
    hit = np.asarray(labels) == cls
    if not hit.any():
        return []
    edges = np.diff(np.concatenate([[0], hit.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    lengths = np.flatnonzero(edges == -1) - starts
    order = np.lexsort((starts, -lengths))[:top]
    return [(int(starts[i]), int(lengths[i])) for i in order]


def beat_summary(table: pd.DataFrame, class_names: Sequence[str]) -> dict[str, Any]:
    """Counts, burden and longest runs per record and in total, from predict's per-beat ``table``.

    Returns ``{"classes", "total": {"beats", "counts", "burden_percent"}, "records": {rid: {...,
    "duration_s", "runs": {cls: [{"length", "start_s", "end_s"}]}}}}``.
    """
    classes = list(class_names)

    def counts(pred: pd.Series) -> dict[str, Any]:
        n = int(len(pred))
        c = {k: int((pred == k).sum()) for k in classes}
        return {"beats": n, "counts": c, "burden_percent": {k: (100.0 * v / n if n else 0.0) for k, v in c.items()}}

    records: dict[str, Any] = {}
    for rid, part in table.groupby("record", sort=False):
        part = part.sort_values("position")
        pred = part["predicted"].astype(str)
        t = part["time_s"].to_numpy(dtype=np.float64)
        info = counts(pred)
        info["duration_s"] = float(t[-1] - t[0]) if len(t) else 0.0
        info["runs"] = {k: [{"length": n, "start_s": float(t[i]), "end_s": float(t[i + n - 1])}
                            for i, n in longest_runs(pred.to_numpy(), k)]
                        for k in RUN_CLASSES if k in classes}
        records[str(rid)] = info
    return {"classes": classes, "total": counts(table["predicted"].astype(str)), "records": records}


def _strip_figure(table: pd.DataFrame, classes: Sequence[str], strip: StripReader) -> tuple[bytes, list[str]]:
    """PNG of the strips around the highest-confidence beats of every non-N class; and one caption per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in classes if c != NORMAL and (table["predicted"] == c).any()]
    captions: list[str] = []
    if not shown:
        return b"", captions
    fig, axes = plt.subplots(len(shown), STRIPS_PER_CLASS, figsize=(5.0 * STRIPS_PER_CLASS, 2.4 * len(shown)),
                             squeeze=False)
    palette = {c: plt.get_cmap("tab10")(i) for i, c in enumerate(classes)}
    for row, cls in enumerate(shown):
        best = table[table["predicted"] == cls].nlargest(STRIPS_PER_CLASS, "confidence")
        for col in range(STRIPS_PER_CLASS):
            ax = axes[row, col]
            if col >= len(best):
                ax.axis("off")
                continue
            beat = best.iloc[col]
            rid, pos = str(beat["record"]), int(beat["position"])
            fs, _ = strip(rid, pos, pos + 1)
            half = int(round(STRIP_HALF_S * fs))
            a = max(0, pos - half)
            _, x = strip(rid, a, pos + half)
            t = (a + np.arange(len(x))) / fs
            ax.plot(t, x, color="0.25", lw=0.8)
            near = table[(table["record"] == beat["record"]) & (table["position"] >= a)
                         & (table["position"] < a + len(x))]
            top = float(np.max(x)) if len(x) else 0.0
            for p, lab in zip(near["position"].to_numpy(), near["predicted"].astype(str)):
                ax.annotate(lab, (p / fs, top), ha="center", va="bottom", fontsize=8, color=palette.get(lab, "k"),
                            annotation_clip=False)
                ax.axvline(p / fs, color=palette.get(lab, "k"), lw=0.5, alpha=0.5)
            ax.axvspan(pos / fs - 0.1, pos / fs + 0.1, color=palette[cls], alpha=0.15)
            ax.set_title(f"{cls}: record {rid}, {pos / fs:.1f} s, p={beat['confidence']:.2f}", fontsize=9)
            ax.set_xlabel("time (s)", fontsize=8)
            ax.set_ylabel("mV", fontsize=8)
            ax.tick_params(labelsize=7)
        captions.append(f"{cls}: the {len(best)} beat(s) predicted {cls} with the highest confidence (shaded), every "
                        "beat of the strip marked by its predicted class")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue(), captions


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def write_beat_report(table: pd.DataFrame, out: str | os.PathLike, *, class_names: Sequence[str],
                      strip: StripReader | None = None, r_peaks: str | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``summary.json`` and ``figures/strips.png`` (when ``strip`` reads the
    ECG and some beat is not N) into ``out``; returns their paths. ``r_peaks`` says where the beats come from (the
    detector and its version, or the reference annotations), in the report and ``summary.json``."""
    out = Path(out)
    summary = beat_summary(table, class_names)
    if r_peaks is not None:
        summary["r_peaks"] = r_peaks
    classes = summary["classes"]
    doc = Doc()
    doc.h(1, "Beat report")
    tot = summary["total"]
    doc.p(", ".join(f"{k}: {tot['counts'][k]} beats, {tot['burden_percent'][k]:.1f} %" for k in classes)
          + f" (of {tot['beats']} beats in {len(summary['records'])} record(s))", strong=True)
    if r_peaks is not None:
        doc.p(f"Beats found by {r_peaks}.")
    doc.h(2, "Counts and burden per record")
    doc.table(["record", "duration", "beats"] + [f"{k} (%)" for k in classes],
              [[rid, _fmt_time(r["duration_s"]), r["beats"]]
               + [f"{r['counts'][k]} ({r['burden_percent'][k]:.1f})" for k in classes]
               for rid, r in summary["records"].items()])
    doc.h(2, "Longest runs of consecutive ectopic beats")
    rows = [[rid, k, run["length"], _fmt_time(run["start_s"]), _fmt_time(run["end_s"])]
            for rid, r in summary["records"].items() for k, runs in r["runs"].items() for run in runs]
    if rows:
        doc.table(["record", "class", "beats in a row", "from", "to"], rows)
    else:
        doc.p("No beat was predicted " + " or ".join(k for k in RUN_CLASSES if k in classes) + ".")
    paths: dict[str, Path] = {}
    if strip is not None:
        png, captions = _strip_figure(table, classes, strip)
        if png:
            doc.h(2, "Highest-confidence beats of each class other than N")
            doc.figure("strips.png", png, "; ".join(captions))
    doc.p("Predicted classes come from a model, not a cardiologist: read the strips before relying on a count.")
    for name, png in doc.figures.items():
        atomic_write_bytes(out / "figures" / name, png)
        paths[name] = out / "figures" / name
    page = html_page("Beat report", doc)
    atomic_write_text(out / "report.md", "\n".join(doc.md) + "\n")
    atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    paths.update(md=out / "report.md", html=out / "report.html", json=out / "summary.json")
    return paths

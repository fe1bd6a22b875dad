"""Aggregation and reports from hand-made cell records (no training): numbers checked against scipy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from ecgtransfer.bench.aggregate import summarise, verdict
from ecgtransfer.bench.config import config_from_dict
from ecgtransfer.bench.report import build, headline, write_reports

CLASSES = ["N", "S", "V", "F", "Q"]


def _metrics(f1: float, se_v: float, cm) -> dict:
    pc = {c: {"support": 10, "se": 0.5, "ppv": 0.5, "f1": 0.5, "specificity": 0.9, "auroc": 0.8} for c in CLASSES}
    pc["V"]["se"] = se_v
    return {"macro_f1": f1, "accuracy": 0.9, "macro_auroc": 0.8, "per_class": pc, "confusion_matrix": cm, "n": 50}


def _record(arm, frac, seed, f1, se_v=0.8, reached=True):
    cm = np.eye(5, dtype=int).tolist()
    return {"cell": {"arm": arm, "encoding": "spectrogram", "fraction": frac, "seed": seed},
            "key": f"{arm}__spectrogram__f{frac:g}__s{seed}", "status": "done", "wall_s": 10.0 + seed,
            "data": {"n_train": int(100 * frac)}, "best_epoch": 2,
            "history": [{"epoch": 1, "elapsed_s": 5.0, "val_macro_f1": f1 - 0.1},
                        {"epoch": 2, "elapsed_s": 10.0, "val_macro_f1": f1}],
            "val": _metrics(f1, se_v, cm), "test": _metrics(f1, se_v, cm),
            "time_to_target": {"target": 0.5, "epoch": 2, "seconds": 10.0} if reached else None,
            "throughput": {"train_images_per_s": 100.0 + seed, "peak_memory_bytes": 2**30}}


SCRATCH = {0.1: [0.40, 0.45, 0.50], 1.0: [0.60, 0.70, 0.65]}
ECG = {0.1: [0.50, 0.57, 0.58], 1.0: [0.61, 0.69, 0.66]}


@pytest.fixture
def results():
    cfg = config_from_dict({
        "bench": {"name": "synthetic", "seeds": [0, 1, 2], "fractions": [0.1, 1.0], "image_size": 64,
                  "target_f1": 0.5},
        "task": {"store": "/nowhere"},
        "arms": ["scratch", "ecg-pretrained", "imagenet"],
        "source": {"store": "/nowhere-else"},
    })
    records = []
    for frac in (0.1, 1.0):
        for s in range(3):
            records.append(_record("scratch", frac, s, SCRATCH[frac][s], se_v=0.6 + 0.1 * s))
            records.append(_record("ecg-pretrained", frac, s, ECG[frac][s]))
    summary = summarise(cfg, records, class_names=CLASSES)
    arms = [{"name": a.name, "init": a.init, "optim": a.optim, "description": a.description,
             "encodings_used": ["spectrogram"], "lrs_used": [1e-3] * 3,
             "status": "skipped" if a.name == "imagenet" else "ran",
             "reason": "ImageNet weights are not available here: offline" if a.name == "imagenet" else None}
            for a in cfg.arms]
    return {"config": cfg.to_dict(), "summary": summary, "baseline": "scratch", "eval_split": "test",
            "arms": arms, "cells": records, "hardware": {"device": "cpu", "torch": "x"},
            "hardware_line": "cpu (test)", "complete": True, "progress": {"total": 18, "done": 12},
            "store": {"path": "/nowhere", "class_names": CLASSES, "manifest": {"database": "mitdb"},
                      "manifest_hash": "abc", "n_segments": 500},
            "split": {"method": "patient", "class_counts": {"test": {c: 10 for c in CLASSES}}},
            "run": {"computed": [], "reused": []}, "failed": {}}


def test_summary_numbers_match_scipy(results):
    s = results["summary"]
    e = s["ecg-pretrained"]["spectrogram"]["10%"]
    lo, hi = st.t.interval(0.95, 2, loc=np.mean(ECG[0.1]), scale=st.sem(ECG[0.1]))
    assert (e["macro_f1"]["lo"], e["macro_f1"]["hi"]) == pytest.approx((lo, hi))
    ref = st.ttest_rel(ECG[0.1], SCRATCH[0.1]).confidence_interval(0.95)
    d = e["diff_vs_baseline"]
    assert d["mean"] == pytest.approx(np.mean(np.subtract(ECG[0.1], SCRATCH[0.1])))
    assert (d["lo"], d["hi"]) == pytest.approx((ref.low, ref.high))
    assert verdict(d) == ("helped" if ref.low > 0 else "no clear difference")
    d100 = s["ecg-pretrained"]["spectrogram"]["100%"]["diff_vs_baseline"]
    ref100 = st.ttest_rel(ECG[1.0], SCRATCH[1.0]).confidence_interval(0.95)
    assert (d100["lo"], d100["hi"]) == pytest.approx((ref100.low, ref100.high))
    assert verdict(d100) == "no clear difference"
    assert s["scratch"]["spectrogram"]["10%"]["diff_vs_baseline"] is None
    # per-class spread over seeds
    v = s["scratch"]["spectrogram"]["100%"]["per_class"]["V"]["se"]
    assert v["min"] == pytest.approx(0.6) and v["max"] == pytest.approx(0.8)
    assert v["sd"] == pytest.approx(np.std([0.6, 0.7, 0.8], ddof=1))
    assert s["scratch"]["spectrogram"]["100%"]["confusion"][0][0] == 3  # summed over 3 seeds
    assert s["scratch"]["spectrogram"]["100%"]["time_to_target"]["reached"] == 3


def test_headline_and_reports(results, tmp_path):
    lines = headline(results)
    text = " ".join(lines)
    assert "ecg-pretrained vs scratch (spectrogram, 100% of the training data, 3 seeds)" in text
    assert "no clear difference" in text
    assert "imagenet: skipped" in text
    ref = st.ttest_rel(ECG[0.1], SCRATCH[0.1]).confidence_interval(0.95)
    assert ("above 0 at 1" in text) == (ref.low > 0)
    if ref.low <= 0:
        assert "At none of the 2 fractions" in text
    paths = write_reports(results, tmp_path)
    md = paths["md"].read_text()
    html = paths["html"].read_text()
    assert md.index("Did transfer help?") < md.index("## Setup")  # the answer comes first
    assert "64x64 (reduced" in md
    assert "0.700 ± 0.100 (0.600–0.800)" in md  # scratch V Se over seeds
    assert html.count("data:image/png;base64,") >= 3
    assert "<details>" in html and "&quot;name&quot;: &quot;synthetic&quot;" in html  # the exact config
    doc = build(results)
    assert set(doc.figures) >= {"data_efficiency_spectrogram.png", "learning_curves_spectrogram.png",
                                "confusion_scratch_spectrogram.png", "confusion_ecg-pretrained_spectrogram.png"}


def test_macro_f1_definition_is_stated(results):
    old = "\n".join(build(results).md)
    assert "older definition" in old  # results without the key: computed before the support-based definition
    results = dict(results, macro_f1_definition="support",
                   split=dict(results["split"], class_counts={"test": {"N": 5, "S": 0, "V": 3, "F": 0, "Q": 0},
                                                              "val": {"N": 4, "S": 2, "V": 0, "F": 0, "Q": 0}}))
    md = "\n".join(build(results).md)
    assert "classes with support in the evaluated split (test: N, V; validation: N, S)" in md
    assert "older definition" not in md


def test_arm_with_its_own_encoding_is_reported():
    """An arm running only ``recurrence`` (not a bench encoding) gets its headline, table, per-class, confusion."""
    cfg = config_from_dict({
        "bench": {"name": "own-enc", "seeds": [0, 1, 2], "fractions": [1.0], "encodings": ["spectrogram"]},
        "task": {"store": "/nowhere"},
        "arms": [{"name": "scratch", "encodings": ["spectrogram", "recurrence"]},
                 {"name": "imagenet", "encodings": ["recurrence"]}],
    })
    records = []
    for s in range(3):
        for arm, enc, f1 in (("scratch", "spectrogram", 0.5), ("scratch", "recurrence", 0.4 + 0.01 * s),
                             ("imagenet", "recurrence", 0.6 + 0.02 * s)):
            r = _record(arm, 1.0, s, f1)
            r["cell"]["encoding"] = enc
            r["key"] = f"{arm}__{enc}__f1__s{s}"
            records.append(r)
    summary = summarise(cfg, records, class_names=CLASSES)
    arms = [{"name": a.name, "init": a.init, "optim": a.optim, "description": "", "status": "ran",
             "encodings_used": list(cfg.arm_encodings(a)), "lrs_used": [1e-3] * 3} for a in cfg.arms]
    results = {"config": cfg.to_dict(), "summary": summary, "baseline": "scratch", "eval_split": "test",
               "arms": arms, "cells": records, "hardware": {"device": "cpu"}, "hardware_line": "cpu (test)",
               "complete": True, "progress": {"total": 9, "done": 9},
               "store": {"path": "/nowhere", "class_names": CLASSES, "manifest": {"database": "mitdb"},
                         "manifest_hash": "abc", "n_segments": 500},
               "split": {"method": "patient", "class_counts": {"test": {c: 10 for c in CLASSES}}}, "failed": {}}
    assert "imagenet vs scratch (recurrence, 100% of the training data, 3 seeds)" in " ".join(headline(results))
    doc = build(results)
    md = "\n".join(doc.md)
    assert "## Test macro-F1 by fraction of training data (recurrence)" in md
    assert "### recurrence, 100% of the training data" in md
    table = md.split("(recurrence)")[1].split("##")[0]
    assert "| imagenet |" in table and "Δ vs scratch" in table
    spectro = md.split("by fraction of training data (spectrogram)")[1].split("##")[0]
    assert "| imagenet |" not in spectro  # it did not run that encoding: no row, not "skipped"
    assert "confusion_imagenet_recurrence.png" in doc.figures
    assert "encodings spectrogram, recurrence" in md


def test_ecg_pretrained_caveat_and_source_time(results):
    results = dict(results, source_models={"spectrogram": {"wall_s": 123.4, "store": "/src", "best_epoch": 1,
                                                            "val": {"macro_f1": 0.4}, "checkpoint": "c.pt"}})
    md = "\n".join(build(results).md)
    assert "every seed fine-tunes the same source model (one per encoding, source seed 0)" in md
    assert "ecg-pretrained vs scratch (spectrogram, 100% of the training data, 3 seeds)" in md
    assert "(Conditional on one source model: see Setup.)" in md
    header = next(line for line in md.splitlines() if line.startswith("| arm | encoding | fraction | steps to target"))
    assert header.endswith("| + source model s |")
    ecg_rows = [line for line in md.splitlines() if line.startswith("| ecg-pretrained | spectrogram | ")
                and "/3 |" in line]
    scratch_rows = [line for line in md.splitlines() if line.startswith("| scratch | spectrogram | ")
                    and "/3 |" in line]
    assert ecg_rows and all(r.endswith("| 123.4 |") for r in ecg_rows)
    assert scratch_rows and all(r.endswith("|  |") for r in scratch_rows)

"""Aggregation and reports from hand-made cell records (no training): numbers checked against scipy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from ecgtransfer.bench.aggregate import summarise, verdict
from ecgtransfer.bench.config_toml import config_from_dict
from ecgtransfer.bench.report import build, write_reports
from ecgtransfer.bench.report_text import headline

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


def _results() -> dict:
    """The results of a three-arm synthetic bench (imagenet skipped), as the bench's results.json holds them."""
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


@pytest.fixture
def results():
    return _results()


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


def test_reports_name_paths_relative_to_their_folder(results, tmp_path):
    """Issue 20: committed reports printed this machine's absolute paths (store, command, checkpoints, config
    folder). Every absolute path the results hold is written relative to the report's folder, in both formats,
    HTML-escaped ones included; the results themselves keep what was recorded."""
    out = tmp_path / "bench & co"
    store = tmp_path / "stores" / "mitdb-beats"
    results = dict(results, store=dict(results["store"], path=str(store)),
                   command=f"ecgtransfer bench cfg.toml --out '{out}' --store={store}",
                   config=dict(results["config"], config_dir=str(tmp_path / "benchmarks")))
    paths = write_reports(results, out)
    md, page = paths["md"].read_text(), paths["html"].read_text()
    for text in (md, page):
        assert str(tmp_path) not in text
    assert "store ../stores/mitdb-beats (mitdb" in md
    assert "--out . --store=../stores/mitdb-beats" in md or "--out '.' --store=../stores/mitdb-beats" in md
    assert '"config_dir": "../benchmarks"' in md and "&quot;config_dir&quot;: &quot;../benchmarks&quot;" in page
    assert results["store"]["path"] == str(store)  # the record is unchanged


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


def _every_section(results: dict) -> dict:
    """``results`` with every optional part of the report filled in: declared primary and Holm-adjusted secondary
    contrasts, a partly run arm, failed and capped cells, LR sweeps, a target check, source models (one that did
    not learn, one with a patient exclusion), several invocations, the config as given and the source manifest."""
    cfg = dict(results["config"], min_steps=50, max_steps=400, patience=3, warmup_steps=10,
               notes="Synthetic: no model was trained.", train={"label_smoothing": 0.1})
    arms = [dict(a) for a in results["arms"]]
    arms[0].update(model="cnn1d", tier_preset="head-only", weight_decay=1e-4, grad_clip=0.0, lr_sweep=[0.5, 1, 2],
                   lr_scale=2)
    arms[1].update(status="partial", reason="2 cells ran out of time; the rest finished", weight_decay=0.0,
                   grad_clip=1.0, lr_sweep=[0.5, 1, 2, 4], lr_scale=1)
    diff = {"mean": 0.05, "lo": -0.01, "hi": 0.11, "n": 3, "n_records": 9, "p": 0.08}
    contrasts = [
        {"arm": "ecg-pretrained", "baseline": "scratch", "encoding": "spectrogram", "fraction": 1.0,
         "label": "ecg-pretrained - scratch, spectrogram, 100%", "primary": True, "diff": diff, "p": 0.08,
         "p_holm": None, "verdict": "no clear difference"},
        {"arm": "ecg-pretrained", "baseline": "scratch", "encoding": "spectrogram", "fraction": 0.1,
         "label": "ecg-pretrained - scratch, spectrogram, 10%", "primary": False,
         "diff": dict(diff, mean=0.1, lo=0.04, hi=0.16, p=0.004), "p": 0.004, "p_holm": 0.008, "verdict": "helped"},
        {"arm": "imagenet", "baseline": "scratch", "encoding": "spectrogram", "fraction": 0.1,
         "label": "imagenet - scratch, spectrogram, 10%", "primary": False,
         "diff": {"mean": -0.2, "lo": None, "hi": None, "n": 1, "p": None}, "p": None, "p_holm": 0.01,
         "verdict": "hurt"}]
    sweep = {"fraction": 0.1, "seed": 0, "chosen": 2.0, "chosen_lrs": [2e-5, 2e-4, 2e-3]}
    sweeps = {"scratch": dict(sweep, factors=[0.5, 1.0, 2.0], edge="highest",
                              curve={"spectrogram": {"0.5": 0.31, "1.0": 0.35, "2.0": 0.4}}),
              "ecg-pretrained": dict(sweep, chosen=1.0, factors=[0.5, 1.0, 2.0, 4.0], chosen_lrs=[1e-5, 1e-4, 1e-3],
                                     curve={"spectrogram": {"0.5": 0.41, "1.0": 0.45, "2.0": 0.44, "4.0": 0.3}},
                                     edge=None, stages=[
                                         {"setting": "weight_decay", "label": "weight decay", "key": "wd_sweep",
                                          "values": [0.0, 1e-4, 1e-2], "own": 1e-4, "chosen": 1e-2,
                                          "edge": "highest", "at": {"factor": 1.0},
                                          "curve": {"spectrogram": {"0": 0.43, "0.0001": 0.45, "0.01": 0.47}}},
                                         {"setting": "grad_clip", "label": "gradient clipping (max norm, 0 = off)",
                                          "key": "clip_sweep", "values": [0.0, 1.0], "own": 1.0, "chosen": 1.0,
                                          "edge": None, "at": {"factor": 1.0, "weight_decay": 1e-2},
                                          "curve": {"spectrogram": {"0": 0.44, "1": 0.47}}}])}
    cells = [dict(r, data=dict(r["data"], epochs=12 if r["cell"]["fraction"] < 1 else 3)) for r in results["cells"]]
    cells[0] = dict(cells[0], majority={"predicts": "N", "macro_f1": 0.18, "selection_f1": 0.2})
    cells.append({"cell": {"arm": "ecg-pretrained", "encoding": "spectrogram", "fraction": 1.0, "seed": 3},
                  "key": "ecg-pretrained__spectrogram__f1__s3", "status": "skipped",
                  "reason": "out of time: not in the budget; " + "x" * 200})
    source_models = {
        "spectrogram": {"wall_s": 123.4, "store": "/src", "best_epoch": 1, "checkpoint": "c.pt",
                        "val": {"macro_f1": 0.4, "macro_auroc": 0.7},
                        "credibility": {"learned": False, "text": "val macro-F1 0.40 is within the majority's CI"},
                        "exclusion": {"why": "the source store is the target store", "dropped_patients": ["100", "101"],
                                      "dropped_segments": 40, "kept_segments": {"train": 300}}},
        "recurrence": {"wall_s": 12.0, "store": "/src2", "best_epoch": 2, "val": {"macro_f1": 0.5},
                       "checkpoint": "d.pt"}}
    invocations = [{"bench_run_id": "r1", "started_at": "2026-01-01T00:00", "finished_at": None, "computed": ["a"],
                    "reused": [], "recomputed": {"a": "changed: epochs", "b": "changed: epochs", "c": "new"},
                    "wall_s": 12.3, "command": "ecgtransfer bench b.toml"},
                   {"bench_run_id": "r2", "computed": [], "reused": ["a", "b"], "command": "ecgtransfer bench b.toml"}]
    manifest = {"database": "mitdb", "version": "1.0.0", "task": "beats",
                "source_files": {f"{i}.dat": f"{i:064x}" for i in range(13)}}
    return dict(
        results, config=cfg, arms=arms, cells=cells, contrasts=contrasts,
        primary={"arm": "ecg-pretrained", "baseline": "scratch", "encoding": "spectrogram", "fraction": 1.0,
                 "declared": True},
        sweeps=sweeps, capped_improving=["scratch__spectrogram__f0.1__s0"],
        majority_val={"macro_f1": 0.2, "selection_f1": 0.21},
        target_check={"text": "the target 0.5 lies above the majority's 0.2", "below_majority": False},
        source_models=source_models, invocations=invocations, config_text='[bench]\nname = "synthetic"\n',
        command="ecgtransfer bench b.toml", source_store={"manifest": manifest},
        store=dict(results["store"], manifest=manifest),
        split=dict(results["split"], notes=["Record 201 and 202 are one patient."],
                   class_counts={"test": {"N": 10, "S": 10, "V": 10, "F": 0, "Q": 10}}),
        failed={"imagenet__spectrogram__f1__s0": "RuntimeError: boom"}, complete=False, interrupted="stopped",
        macro_f1_definition="support")


def _section_digests(doc) -> dict[str, str]:
    """``{section heading: sha256[:16] of its Markdown and HTML}``; the figures count by name and caption only (their
    PNG bytes depend on the matplotlib build), and the resolved config's JSON dump is left out (it is
    ``BenchConfig.to_dict()``, owned and tested by the config)."""
    import hashlib
    import re

    def sections(parts: list[str], heading: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        key = "(before the first heading)"
        for part in parts:
            if re.match(heading, part):
                key = re.sub(r"<[^>]+>", "", part).lstrip("#").strip()
            out.setdefault(key, []).append(part)
        return out

    md = [re.sub(r"(<summary>Resolved bench config \(JSON\)</summary>\n\n```json\n).*?(\n```)", r"\1…\2", p,
                 flags=re.S) for p in doc.md]
    page = [re.sub(r"(<summary>Resolved bench config \(JSON\)</summary><pre>).*?(</pre>)", r"\1…\2",
                   re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,…", p), flags=re.S) for p in doc.html]
    md_s, html_s = sections(md, r"#{1,2} "), sections(page, r"<h[12][ >]")
    assert list(md_s) == list(html_s)
    return {k: hashlib.sha256(("\n".join(md_s[k]) + "\0" + "\n".join(html_s[k])).encode()).hexdigest()[:16]
            for k in md_s}


# digests of the report as rendered before build() was split into one function per section (issue 9): the split
# changed no byte. A deliberate change of the report's text changes them: print _section_digests(build(...)) and
# paste the new values for the sections you meant to change.
GOLDEN_PLAIN = {
    "ecgtransfer bench: synthetic": "79657cc6a8ac47e4",
    "Did transfer help?": "a872f97c25679593",
    "Setup": "b1084a60439a0802",
    "Arms": "bf6f29f7a75186a6",  # ecg-pretrained became an alias of ecg-tiered (its description: what transfers)
    "Test macro-F1 by fraction of training data (spectrogram)": "7621b28094e691c8",
    "Per-class sensitivity (Se) and positive predictivity (+P)": "090acfd6940d85f0",
    "Confusion matrices": "a408460016833b06",
    "Time to reach validation macro-F1 ≥ 0.5": "f56ecd41406a2361",
    "Throughput and hardware": "7296d615623bb3a1",
    "Every cell": "8c07637cee92fac7",
    "Exact configuration and store manifests": "0f0dc458fb98c4a9",
}
GOLDEN_EVERY_SECTION = {
    "ecgtransfer bench: synthetic": "79657cc6a8ac47e4",
    "Did transfer help?": "a9d7b3cf261b5788",
    "Setup": "b24896857c4c96fa",
    "Arms": "e3b86edb71ef5f9c",  # the same
    "Learning-rate sweeps (chosen on validation only)": "c03004c34ee73a5b",
    "Test macro-F1 by fraction of training data (spectrogram)": "9fab96fd85162a84",
    "Per-class sensitivity (Se) and positive predictivity (+P)": "bff44ffbbf3f3389",
    "Confusion matrices": "a408460016833b06",
    "Time to reach validation macro-F1 ≥ 0.5": "9c2ffbec10d49362",
    "Throughput and hardware": "1c0be748d58ae209",
    "Every cell": "10bff287b6fa7983",
    "Exact configuration and store manifests": "32e90abaf3dbd4ab",
}


@pytest.mark.parametrize("variant", ["plain", "every section"])
def test_report_sections_unchanged(results, variant):
    res = results if variant == "plain" else _every_section(results)
    doc = build(res)
    got = _section_digests(doc)
    assert got == (GOLDEN_PLAIN if variant == "plain" else GOLDEN_EVERY_SECTION)
    figures = {"data_efficiency_spectrogram.png", "learning_curves_spectrogram.png",
               "confusion_scratch_spectrogram.png", "confusion_ecg-pretrained_spectrogram.png"}
    assert set(doc.figures) == (figures if variant == "plain" else figures | {"lr_sweep_spectrogram.png"})
    if variant == "every section":  # the sweep's caveats: an edge choice (also in the headline), weight decay
        md = "\n".join(doc.md)
        assert "Tuning caveat: a value chosen on validation is at the edge of its sweep grid for scratch (LR x2, " \
               "the highest factor), ecg-pretrained (weight decay 0.01, the highest value)" in md
        assert "At the edge of the sweep grid" in md and "scratch chose x2, the grid's highest factor" in md
        assert "0: 0.430; 0.0001: 0.450 (arm's); 0.01: 0.470 (chosen)" in md
        assert "ecg-pretrained chose weight decay 0.01, the grid's highest value (widen wd_sweep)" in md
        assert "| ecg-pretrained | gradient clipping (max norm, 0 = off) | spectrogram | 0: 0.440; 1: 0.470 " \
               "(chosen) (arm's) |" in md
        assert "Budget caveat: 1 of" in md


def test_macro_f1_line_lists_only_the_classes_the_cells_score() -> None:
    """The setup's macro-F1 line names the evaluated classes: those with support, less the excluded ones (Q by
    default: AAMI practice), as the cells scored them."""
    from ecgtransfer.bench.report_text import macro_f1_line

    res = {"macro_f1_definition": "support",
           "split": {"class_counts": {p: {"N": 90, "S": 5, "V": 4, "F": 0, "Q": 1} for p in ("val", "test")}}}
    assert "test: N, S, V;" in macro_f1_line({**res, "config": {}}, "test")  # the TrainConfig default leaves Q out
    assert "test: N, S, V, Q;" in macro_f1_line({**res, "config": {"base": {"exclude_classes": []}}}, "test")
    assert "test: N, S, V;" in macro_f1_line({**res, "config": {"train": {"exclude_classes": ["Q"]}}}, "test")


def test_time_to_target_columns_say_which_evaluations_they_count() -> None:
    """Steps count every validation, epochs and seconds the epoch-end ones only: the seeds-reaching column is the
    steps' count, and the epoch columns give the mean (min–max) of the seeds that reached it at an epoch end with
    their count, never an interval over two values that runs below zero."""
    from ecgtransfer.bench.report_sections import _reached_at_epoch_end
    from ecgtransfer.bench.stats import summarise_time_to_target

    t = summarise_time_to_target([(2, 100.0), None, (3, 250.0)])
    assert _reached_at_epoch_end(t, "epochs", 1) == "2.5 (2.0–3.0), 2/3 seeds"
    assert _reached_at_epoch_end(t, "seconds", 1) == "175.0 (100.0–250.0), 2/3 seeds"
    assert _reached_at_epoch_end(summarise_time_to_target([(4, 9.0)]), "epochs", 1) == "4.0, 1/1 seeds"
    assert _reached_at_epoch_end(summarise_time_to_target([None, None]), "epochs", 1) == "not reached (0/2 seeds)"
    old = {"reached": 1, "of": 1, "epochs": {"n": 1, "mean": 2.0, "lo": None, "hi": None}}
    assert _reached_at_epoch_end(old, "epochs", 1) == "2.0 (1 seed, no CI)"  # results of an older version

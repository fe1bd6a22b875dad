"""The bench report's words: number formatting, table cells and the sentences of the headline.

Formatting (``fmt_number``, ``fmt_summary``, ``fmt_spread``, ``fmt_range``, ``fmt_bytes``), the short texts that
table cells and the setup use (``short_reason``, ``statistics_line``, ``macro_f1_line``, ...) and the headline
("did transfer help?": :func:`headline`, :func:`contrast_headline`). Pure functions of the results
(:class:`~ecgtransfer.bench.results.BenchResults`): the sections (:mod:`ecgtransfer.bench.report_sections`) place
them in the document.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

from ecgtransfer.bench.aggregate import majority_test, verdict
from ecgtransfer.bench.grid import fraction_label
from ecgtransfer.bench.results import BenchResults, CellResult
from ecgtransfer.bench.stats import BOOTSTRAP_REPLICATES
from ecgtransfer.signals.beats import AAMI_CLASSES


# -- formatting helpers -----------------------------------------------------------------------------
def fmt_number(x: Any, digits: int = 3, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def fmt_summary(s: Mapping[str, Any] | None, digits: int = 3, signed: bool = False) -> str:
    """``0.812 [0.790, 0.834]`` from a Summary dict; ``0.812 (1 seed)`` without CI; ``n/a`` when empty."""
    if not s or s.get("mean") is None:
        return "n/a"
    if s.get("lo") is None:
        return f"{fmt_number(s['mean'], digits, signed)} (1 seed, no CI)"
    return (f"{fmt_number(s['mean'], digits, signed)} "
            f"[{fmt_number(s['lo'], digits, signed)}, {fmt_number(s['hi'], digits, signed)}]")


def fmt_spread(s: Mapping[str, Any] | None) -> str:
    """Per-class value over seeds: ``0.91 ± 0.03 (0.88–0.94)``, or the single value."""
    if not s or s.get("mean") is None:
        return "n/a"
    if s.get("n", 0) < 2:
        return fmt_number(s["mean"], 3)
    return (f"{fmt_number(s['mean'], 3)} ± {fmt_number(s['sd'], 3)} "
            f"({fmt_number(s['min'], 3)}–{fmt_number(s['max'], 3)})")


def fmt_range(s: Mapping[str, Any] | None, digits: int = 1) -> str:
    """``87.9 (13.8–161.9)`` from a spread dict (or a Summary dict without min/max: its mean)."""
    if not s or s.get("mean") is None:
        return "n/a"
    if s.get("min") is None or s.get("n", 0) < 2:
        return fmt_number(s["mean"], digits)
    return f"{fmt_number(s['mean'], digits)} ({fmt_number(s['min'], digits)}–{fmt_number(s['max'], digits)})"


def manifest_for_report(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with its per-file hashes folded to a count and a digest (the full list is in results.json)."""
    import hashlib

    m = dict(manifest)
    files = m.get("source_files")
    if isinstance(files, Mapping) and len(files) > 12:
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        m["source_files"] = f"{len(files)} files; sha256 of the sorted list {digest[:16]} (full list in results.json)"
    return m


def fmt_bytes(n: Any) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:.0f} MiB"


def short_reason(reason: str | None, limit: int = 140) -> str:
    """The first clause of a skip reason (full reasons are listed in the report's "Skipped arms")."""
    if not reason:
        return ""
    head = reason.split(": not in ")[0].split("; ")[0]
    return head if len(head) <= limit else head[:limit - 1] + "…"


def ordered_classes(class_names: Sequence[str]) -> list[str]:
    if set(class_names) <= set(AAMI_CLASSES):
        return [c for c in AAMI_CLASSES if c in class_names]
    return list(class_names)


def across_text(n: int, counts: Mapping[str, int]) -> str:
    if not counts["helped"] and not counts["hurt"]:
        return f" At none of the {n} fractions does the CI exclude 0."
    parts = []
    if counts["helped"]:
        parts.append(f"above 0 at {counts['helped']}")
    if counts["hurt"]:
        parts.append(f"below 0 at {counts['hurt']}")
    return f" Across the {n} fractions the CI lies " + " and ".join(parts) + "."


def recomputed_text(recomputed: Mapping[str, str] | None) -> str:
    """``3: computed under other settings (...; changed: budget.epochs)`` grouped by reason; ``""`` if none."""
    if not recomputed:
        return ""
    by: dict[str, int] = {}
    for why in recomputed.values():
        by[why] = by.get(why, 0) + 1
    return "; ".join(f"{n}: {why}" for why, n in by.items())


def source_condition(results: BenchResults) -> str | None:
    """The caveat of ecg-pretrained intervals: every seed starts from the same source model (one source seed)."""
    ecg = [a["name"] for a in results.arms if a.get("init") == "ecg" and a.get("status") != "skipped"]
    src = results.config.get("source")
    if not ecg or not src:
        return None
    return (f"{', '.join(ecg)}: every seed fine-tunes the same source model (one per encoding, source seed "
            f"{src.get('seed', 0)}), so its confidence intervals and paired differences cover the variability of "
            "the target training only, conditional on that one source model; another source seed may give "
            "another result.")


def min_steps_clause(cfg: Mapping[str, Any], records: Sequence[CellResult]) -> str:
    """``, raised to at least N optimizer steps per cell (epochs per fraction: 1%: 12, 100%: 3)`` or ``""``."""
    if not cfg.get("min_steps"):
        return ""
    per: dict[float, set[int]] = {}
    for r in records:
        e = r.data.get("epochs")
        if r.done and e is not None:
            per.setdefault(r.cell.fraction, set()).add(int(e))
    text = (f", raised for small fractions so that every cell trains at least {cfg['min_steps']} optimizer steps "
            "(the same epochs for every arm of a fraction and seed)")
    if per:
        text += "; epochs per fraction: " + ", ".join(
            f"{fraction_label(f)}: {'–'.join(str(x) for x in sorted({min(v), max(v)}))}"
            for f, v in sorted(per.items()))
    return text


def bootstrapped(results: BenchResults) -> bool:
    """Whether the summary's intervals are the bootstrap over test records and seeds (else the seed-only t)."""
    return any(e.get("macro_f1", {}).get("n_records") for per in results.summary.values()
               for fr in per.values() for e in fr.values())


def statistics_line(results: BenchResults, base: str | None) -> str:
    """How the intervals were made: the paired bootstrap over test records and seeds, or the seed-only t."""
    cfg = results.config
    if bootstrapped(results):
        return (f"Statistics: patients (test records) are the unit. Each interval is the 95% percentile interval of "
                f"{cfg.get('bootstrap_replicates', BOOTSTRAP_REPLICATES)} bootstrap replicates that draw the test "
                "records and the seeds with replacement, the same draws for every arm (paired), so it covers which "
                "patients are tested as well as the seed; point estimates are means over seeds on the full test "
                "split. One contrast is primary (its interval decides); the others are secondary, their bootstrap "
                "p-values Holm-adjusted together.")
    return (f"Statistics: mean over seeds with a 95% Student-t confidence interval (t with n-1 degrees of freedom); "
            f"differences against {base} are paired by seed (these cells hold no per-record results, so the test "
            "records are fixed: the intervals cover the seeds only).")


def excluded_classes(config: Mapping[str, Any]) -> list[str]:
    """The classes the cells left out (``exclude_classes`` of the shared TrainConfig; older results: ``[train]``,
    else the TrainConfig default)."""
    from ecgtransfer.training.config import TrainConfig

    for table in (config.get("base") or {}, config.get("train") or {}):
        if "exclude_classes" in table:
            return list(table["exclude_classes"])
    return list(TrainConfig().exclude_classes)


def macro_f1_line(results: BenchResults | Mapping[str, Any], split: str) -> str:
    """How macro-F1 was averaged: over the classes with support in the split (or the older definition).
    ``results`` may be the few keys this line reads (``macro_f1_definition``, ``split``, ``config``)."""
    if isinstance(results, BenchResults):
        definition, sp, config = results.macro_f1_definition, results.split, results.config
    else:
        definition, sp, config = results.get("macro_f1_definition"), results["split"], results["config"]
    counts = sp.get("class_counts") or {}
    excluded = set(excluded_classes(config))
    if definition == "support":
        have = {p: [c for c, n in (counts.get(p) or {}).items() if n and c not in excluded] for p in ("val", split)}
        return (f"Macro-F1 is the mean F1 over the classes with support in the evaluated split ({split}: "
                f"{', '.join(have[split]) or 'n/a'}; validation: {', '.join(have['val']) or 'n/a'}), fixed by "
                "the split and the same for every cell; classes without support are left out of the average "
                "(a prediction of one is still an error of the true class).")
    return ("Macro-F1 of these results was computed with an older definition (the mean F1 over the classes "
            "present in the true labels or the predictions), so its class set could differ between cells; "
            "re-run the bench to recompute it over the classes with support in the split.")


def encodings_used(results: BenchResults) -> list[str]:
    """The bench's encodings, then those only some arms run (``[[arms]] encodings = [...]``), then any other
    encoding with results, in that order, without repeats."""
    seen: list[str] = []
    more = [e for a in results.arms for e in a.get("encodings_used") or []]
    more += [e for per in results.summary.values() for e in per]
    for enc in list(results.config["encodings"]) + more:
        if enc not in seen:
            seen.append(enc)
    return seen


def diff_text(d: Mapping[str, Any]) -> str:
    """``+0.061 [+0.020, +0.101] (paired bootstrap over 9 test records x 3 seeds)``."""
    how = (f"paired bootstrap over {d['n_records']} test records x {d['n']} seed{'s' if d['n'] != 1 else ''}"
           if d.get("n_records") else f"paired t over {d.get('n')} seeds, test records fixed")
    return f"{fmt_summary(d, signed=True)} ({how})"


def contrast_headline(results: BenchResults) -> list[str]:
    """The primary contrast first (its interval decides), then one line on the Holm-adjusted secondary ones."""
    cons = results.contrasts
    prim = (results.primary or {})
    out: list[str] = []
    first = next((c for c in cons if c.get("primary")), None)
    declared = ("declared in the config" if prim.get("declared") else
                "not declared in the config ([bench.primary]); by rule the first contrast at the largest fraction")
    if first is None and prim:
        out.append(f"Primary contrast ({declared}): {prim['arm']} vs {prim['baseline']} ({prim['encoding']}, "
                   f"{fraction_label(prim['fraction'])}): no result yet (an arm did not run or its cells are "
                   "missing).")
    elif first is not None:
        out.append(_primary_sentence(results, first, declared))
    sec = [c for c in cons if not c.get("primary")]
    if sec:
        better = [c["label"] for c in sec if c["verdict"] == "helped"]
        worse = [c["label"] for c in sec if c["verdict"] == "hurt"]
        out.append(f"Secondary contrasts ({len(sec)}, Holm-adjusted together, level 0.05): "
                   + (f"better: {'; '.join(better)}. " if better else "")
                   + (f"worse: {'; '.join(worse)}. " if worse else "")
                   + ("none differs after adjustment. " if not better and not worse else "")
                   + "The table below lists each.")
    return out + _contrast_notes(results)


def _primary_sentence(results: BenchResults, first: Mapping[str, Any], declared: str) -> str:
    """The primary contrast's sentence: both arms' scores, the difference with its interval, the verdict."""
    summary = results.summary
    a = ((summary.get(first["arm"]) or {}).get(first["encoding"]) or {}).get(fraction_label(first["fraction"]))
    b = ((summary.get(first["baseline"]) or {}).get(first["encoding"]) or {}).get(
        fraction_label(first["fraction"]))
    scores = (f"{results.eval_split} macro-F1 {fmt_number(a['macro_f1']['mean'])} vs "
              f"{fmt_number(b['macro_f1']['mean'])}, " if a and b else "")
    word = {"helped": "the first arm is better", "hurt": "the first arm is worse",
            "no clear difference": "no clear difference (the 95% interval includes 0)",
            "single seed, no CI": "no interval: not conclusive"}.get(first["verdict"], first["verdict"])
    return (f"Primary contrast ({declared}): {first['arm']} vs {first['baseline']} ({first['encoding']}, "
            f"{fraction_label(first['fraction'])} of the training data): {scores}difference "
            f"{diff_text(first['diff'])}: {word}."
            + (" (Conditional on one source model: see Setup.)"
               if any(a.get("init") == "ecg" and a["name"] in (first["arm"], first["baseline"])
                      for a in results.arms) else ""))


def _contrast_notes(results: BenchResults) -> list[str]:
    """The headline's closing notes: the majority classifier, source models that learned nothing, arms skipped or
    run in part."""
    out: list[str] = []
    mj = majority_test(results)
    if mj:
        out.append(f"Majority classifier (always {mj.get('predicts')}): {results.eval_split} macro-F1 "
                   f"{fmt_number(mj['macro_f1'])}; a model at or below it has learned nothing useful.")
    for enc, m in results.source_models.items():
        cr = m.get("credibility") or {}
        if cr.get("learned") is False:
            out.append(f"Source model ({enc}): {cr.get('text')}: the ecg-initialised arms start from an untrained "
                       "backbone and get no verdict.")
    for a in results.arms:
        if a.get("status") == "skipped":
            out.append(f"{a['name']}: skipped ({short_reason(a.get('reason'))}), so it was not compared "
                       "(full reason under Arms).")
        elif a.get("status") == "partial":
            out.append(f"{a['name']}: ran only in part ({short_reason(a.get('reason'))}); the comparisons use its "
                       "finished cells (full reason under Arms).")
    return out


# -- the headline -------------------------------------------------------------------------------------
def headline(results: BenchResults | Mapping[str, Any]) -> list[str]:
    """Sentences answering "did transfer help?": the primary contrast first and the Holm-adjusted secondary ones
    (results with per-contrast statistics), else the paired differences against the baseline (older results)."""
    results = BenchResults.of(results)
    if results.contrasts or results.primary:
        return contrast_headline(results)
    base = results.baseline
    cfg = results.config
    out: list[str] = []
    if base is None:
        return ["No arm trains from scratch, so there is no baseline to tell whether transfer helped."]
    encodings = encodings_used(results)
    seeds = len(cfg["seeds"])
    for arm in results.arms:
        name = arm["name"]
        if name == base:
            continue
        if arm.get("status") == "skipped":
            out.append(f"{name}: skipped ({short_reason(arm.get('reason'))}), so it was not compared with {base} "
                       "(full reason under Arms).")
            continue
        for enc in encodings:
            sentence = _arm_vs_baseline(results, arm, enc, seeds)
            if sentence is not None:
                out.append(sentence)
        if arm.get("status") == "partial":
            out.append(f"{name}: ran only in part ({short_reason(arm.get('reason'))}); the comparisons above use "
                       "its finished cells (full reason under Arms).")
    if not out:
        out.append("No comparison is available yet (no finished cells of a transfer arm and the baseline).")
    return out


def _arm_vs_baseline(results: BenchResults, arm: Mapping[str, Any], enc: str, seeds: int) -> str | None:
    """Older results' headline sentence of one arm and encoding: the paired difference against the baseline at the
    largest fraction and how many fractions agree; None when the arm or the baseline has no finished cell."""
    summary, base, name = results.summary, results.baseline, arm["name"]
    per_frac = (summary.get(name) or {}).get(enc) or {}
    if not per_frac:
        return None
    largest = max(per_frac.values(), key=lambda e: e["fraction"])
    d = largest.get("diff_vs_baseline")
    b = ((summary.get(base) or {}).get(enc) or {}).get(fraction_label(largest["fraction"]))
    if d is None or b is None:
        return None
    v = verdict(d)
    counts = {"helped": 0, "hurt": 0}
    for e in per_frac.values():
        vv = verdict(e.get("diff_vs_baseline"))
        if vv in counts:
            counts[vv] += 1
    word = {"helped": "transfer helped", "hurt": "transfer hurt",
            "no clear difference": "no clear difference (the 95% CI includes 0)",
            "single seed, no CI": "one seed only, so no confidence interval: not conclusive"}.get(v, v)
    return (f"{name} vs {base} ({enc}, {fraction_label(largest['fraction'])} of the training data, "
            f"{len(largest['seeds'])} seed{'s' if len(largest['seeds']) != 1 else ''}): {results.eval_split} "
            f"macro-F1 {fmt_number(largest['macro_f1']['mean'])} vs {fmt_number(b['macro_f1']['mean'])}, paired "
            f"difference {fmt_summary(d, signed=True)}: {word}."
            + (across_text(len(per_frac), counts) if len(per_frac) > 1 and seeds > 1 else "")
            + (" (Conditional on one source model: see Setup.)" if arm.get("init") == "ecg" else ""))

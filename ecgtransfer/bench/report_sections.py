"""The sections of the bench report, one function each, in the order of :data:`SECTIONS`.

Each section reads the resolved inputs (:class:`ReportInputs`) and returns its part of the document (a
:class:`~ecgtransfer._document.Doc`): the title, the labelled-patients figure, the headline, the setup, the arms,
the learning-rate sweep, the main tables, the curves, per-class results, confusion matrices, time to target,
throughput, the source models, every cell and the exact configuration. Their words come from
:mod:`ecgtransfer.bench.report_text`; :mod:`ecgtransfer.bench.report` joins them and writes the files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ecgtransfer._document import Doc
from ecgtransfer.bench import plots
from ecgtransfer.bench.aggregate import labelled_patients_curve, learning_curves, majority_test, verdict
from ecgtransfer.bench.grid import fraction_label
from ecgtransfer.bench.report_text import (
    bootstrapped,
    diff_text,
    encodings_used,
    fmt_bytes,
    fmt_number,
    fmt_range,
    fmt_spread,
    fmt_summary,
    headline,
    macro_f1_line,
    manifest_for_report,
    min_steps_clause,
    ordered_classes,
    recomputed_text,
    short_reason,
    source_condition,
    statistics_line,
)
from ecgtransfer.bench.results import BenchResults, CellResult
from ecgtransfer.imaging.encode import IMAGE_SIZE
from ecgtransfer.signals.beats import AAMI_CLASSES


@dataclass(frozen=True)
class ReportInputs:
    """What the sections read from ``results``, resolved once.

    Attributes:
        results: the bench's results (``results.json``).
        cfg: the resolved bench config (``results.config``).
        summary: ``{arm: {encoding: {fraction label: cell summary}}}``.
        records: every cell record, in bench order.
        split: the evaluated split (``test`` unless the bench evaluates on ``val``).
        base: the baseline arm, or None.
        class_names: the store's classes, AAMI classes in AAMI order.
        fractions: the bench's fractions, ascending.
        encodings: :func:`encodings_used`.
    """

    results: BenchResults
    cfg: Mapping[str, Any]
    summary: Mapping[str, Any]
    records: Sequence[CellResult]
    split: str
    base: str | None
    class_names: list[str]
    fractions: list[float]
    encodings: list[str]

    @classmethod
    def of(cls, results: BenchResults) -> ReportInputs:
        """The inputs of every section, from ``results``."""
        return cls(results=results, cfg=results.config, summary=results.summary,
                   records=results.cells, split=results.eval_split,
                   base=results.baseline, class_names=ordered_classes(results.class_names),
                   fractions=sorted(results.config["fractions"]), encodings=encodings_used(results))

    @property
    def top(self) -> str:
        """The label of the largest fraction (``100%``)."""
        return fraction_label(max(self.fractions))

    def arm_summary(self, arm: str, encoding: str) -> Mapping[str, Any]:
        """``{fraction label: cell summary}`` of one arm and encoding (empty when it has none)."""
        return (self.summary.get(arm) or {}).get(encoding) or {}


def _title(v: ReportInputs) -> Doc:
    """The report's title: the bench's name."""
    doc = Doc()
    doc.h(1, f"ecgtransfer bench: {v.cfg['name']}")
    return doc


def labelled_patients_rows(curve: Mapping[str, Any]) -> list[list[str]]:
    """The table of the labelled-patients figure, from the same ``curve``: one row per arm and fraction."""
    rows = [[arm, p["label"], f"{p['patients']:g}"] + [fmt_summary(p[m]) for m in curve["metrics"]]
            for arm, points in curve["arms"].items() for p in points]
    mj = curve.get("majority") or {}
    if any(v is not None for v in mj.values()):
        rows.append(["majority", "all", "any"] + [fmt_number(mj.get(m)) for m in curve["metrics"]])
    return rows


def _labelled_patients_section(v: ReportInputs) -> Doc:
    """The figure a reader sees first (with fractions drawn by patients and more than one fraction): macro-F1 and
    the S / V F1 against the number of labelled target patients, one line per arm, bootstrap bands, the majority
    line; then the table of the very numbers it draws (``figures/labelled_patients_<enc>.json`` holds what the
    axes hold, read back from them)."""
    results = v.results
    doc = Doc()
    if v.cfg.get("fraction_mode") not in ("per-patient", "patients") or len(v.fractions) < 2:
        return doc
    band = "95% interval (test records x seeds)" if bootstrapped(results) else "95% CI over seeds"
    for enc in v.encodings:
        curve = labelled_patients_curve(results, enc)
        if not curve["arms"]:
            continue
        if not doc.md:
            doc.h(2, "Fewer labelled patients", "labelled-patients")
        png, drawn = plots.labelled_patients_png(curve, split=v.split, band=band)
        names = ["macro-F1"] + [f"F1 {m[3:]}" for m in curve["metrics"][1:]]
        doc.figure(f"labelled_patients_{enc}.png", png,
                   f"{v.split.capitalize()} {', '.join(names)} against the number of labelled target patients "
                   f"({enc}); one line per arm, mean over seeds; bands: {band}; dashed: the majority classifier.")
        doc.figures[f"labelled_patients_{enc}.json"] = json.dumps(
            {"curve": curve, "drawn": drawn}, indent=1, sort_keys=True).encode()
        doc.table(["arm", "fraction", "labelled patients"] + [f"{n} [95%]" for n in names],
                  labelled_patients_rows(curve))
    return doc


def _headline_section(v: ReportInputs) -> Doc:
    """"Did transfer help?": the :func:`headline` sentences, the table of contrasts (primary first, then the
    Holm-adjusted secondary ones) and warnings on an uninformative target or an incomplete bench."""
    results = v.results
    doc = Doc()
    doc.h(2, "Did transfer help?", "headline")
    for s in headline(results):
        doc.p(s, cls="headline")
    cons = results.contrasts
    if cons:
        doc.table(["contrast", "difference [95% interval]", "p", "p (Holm)", "verdict"],
                  [[("PRIMARY: " if c.get("primary") else "") + c["label"], diff_text(c["diff"]),
                    fmt_number(c.get("p")),
                    "primary, not adjusted" if c.get("primary") else fmt_number(c.get("p_holm")), c["verdict"]]
                   for c in cons])
    tc = (results.target_check or {})
    if tc.get("below_majority"):
        doc.p(f"Steps to target are not informative here: {tc['text']}.", cls="warn")
    edges = [f"{a} (LR x{w['chosen']:g}, the {w['edge']} factor)" if st is None else
             f"{a} ({st['label']} {st['chosen']:g}, the {st['edge']} value)"
             for a, w, st in _edge_choices(results.sweeps)]
    if edges:
        doc.p("Tuning caveat: a value chosen on validation is at the edge of its sweep grid for "
              + ", ".join(edges) + "; these arms may be short of their best (see Learning-rate sweeps).", cls="warn")
    capped = results.capped_improving
    if capped:
        n_cells = sum(1 for c in results.cells if c.done)
        doc.p(f"Budget caveat: {len(capped)} of {n_cells} grid cells stopped at the epoch cap while validation was "
              "still improving (listed below the sweeps).", cls="warn")
    if not results.complete:
        doc.p(f"This bench is incomplete: {results.progress['done']} of {results.progress['total']} cells "
              "are finished"
              + (f" (the run was {results.interrupted}, e.g. by its time limit)" if results.interrupted
                 else "")
              + ". Re-run the same command to finish it (finished cells are kept).", cls="warn")
    return doc


def _budget_line(cfg: Mapping[str, Any], records: Sequence[CellResult]) -> str:
    """The training budget every arm shares: epochs (raised to ``min_steps``), step cap, batch, optimiser,
    schedule, warmup and early stopping."""
    return (f"Budget, identical for every arm: {cfg['epochs']} epochs"
            + min_steps_clause(cfg, records)
            + (f", at most {cfg['max_steps']} steps" if cfg.get("max_steps") else "")
            + f", batch {cfg['batch_size']}, {cfg['optimizer']} with a {cfg['scheduler']} schedule"
            + (f" (warmup {cfg['warmup_steps']} steps)" if cfg.get("warmup_steps") is not None else
               " (warmup: 5% of each cell's steps)")
            + (f"; early stopping after {cfg['patience']} epochs without a better validation selection-F1 (the "
               "epochs above are the cap)" if cfg.get("patience") else
               "; early stopping off" if cfg.get("train", {}).get("early_stopping") is None else
               f"; early stopping after {cfg['train']['early_stopping']} epochs without improvement")
            + "; each cell reports its best epoch on validation macro-F1."
            + (f" Extra training settings for every arm: {dict(cfg['train'])}." if cfg.get("train") else ""))


def _setup_section(v: ReportInputs) -> Doc:
    """"Setup": the target store, the split, seeds and fractions, the budget, the images, the hardware, how the
    statistics and macro-F1 are made, the source-model caveat, the split's notes and the config's notes."""
    results, cfg, split = v.results, v.cfg, v.split
    doc = Doc()
    doc.h(2, "Setup")
    st = results.store
    sp = results.split
    setup = [
        f"Target task: store {st.get('path')} ({st['manifest'].get('database')} {st['manifest'].get('version')}, "
        f"task {st['manifest'].get('task')}, {st.get('n_segments')} segments, classes {', '.join(st['class_names'])}, "
        f"manifest sha256 {st.get('manifest_hash', '')[:12]}).",
        f"Split: {sp.get('method')} (seed {cfg['task']['split_seed']}): {sp.get('n_train')} train / {sp.get('n_val')} "
        f"val / {sp.get('n_test')} test segments from {sp.get('patients_train')} / {sp.get('patients_val')} / "
        f"{sp.get('patients_test')} patients. Metrics in the tables are on the {split} split; no patient is in two "
        "parts.",
        f"Seeds: {list(cfg['seeds'])}. Fractions of the training data: "
        f"{', '.join(fraction_label(f) for f in v.fractions)}, drawn {cfg['fraction_mode']} "
        "(seeded by the cell's seed, nested: smaller fractions are subsets of larger ones; every arm of a seed "
        "sees the same subsample).",
        _budget_line(cfg, v.records),
        f"Images: {cfg['image_size']}x{cfg['image_size']}"
        + ("" if cfg["image_size"] == IMAGE_SIZE
           else f" (reduced from the usual {IMAGE_SIZE}x{IMAGE_SIZE} to fit the time budget)")
        + f", encodings {', '.join(v.encodings)}.",
        f"Hardware: {results.hardware_line}.",
        statistics_line(results, v.base),
        macro_f1_line(results, split),
    ]
    cond = source_condition(results)
    if cond:
        setup.append(cond)
    if sp.get("notes"):
        setup.extend(sp["notes"])
    doc.bullets(setup)
    if cfg.get("notes"):
        doc.p(cfg["notes"], cls="warn")
    return doc


def _arm_row(a: Mapping[str, Any]) -> list[Any]:
    """One arm's row of the "Arms" table: name, init, optimisation, LRs, encodings, settings, what, status."""
    lrs = "/".join(f"{x:g}" for x in a["lrs_used"]) if a.get("lrs_used") else "n/a"
    if a.get("model") == "features":
        lrs = "n/a (closed-form fit)"
    status = {"skipped": f"SKIPPED: {short_reason(a.get('reason'))}",
              "partial": f"PARTIAL: {short_reason(a.get('reason'))}"}.get(a.get("status"), "ran")
    extra = []
    if a.get("model") and a["model"] != "resnet50":
        extra.append(f"model {a['model']}")
    if a.get("tier_preset"):
        extra.append(f"preset {a['tier_preset']}")
    if "weight_decay_used" in a:  # the values the cells trained with (an arm's own override marked)
        gc = a.get("grad_clip_used")
        swept = a.get("settings_swept") or {}

        def how(name: str) -> str:
            return " (swept)" if name in swept else (" (arm)" if a.get(name) is not None else "")

        extra.append(f"{a.get('optimizer_used')}, weight decay {a['weight_decay_used']:g}{how('weight_decay')}, grad "
                     f"clip {'off' if not gc else f'{gc:g}'}{how('grad_clip')}")
    else:  # results of an older version
        wd = a.get("weight_decay")
        gc = a.get("grad_clip")
        extra.append(f"weight decay {'default' if wd is None else f'{wd:g}'}, grad clip "
                     f"{'default' if gc is None else ('off' if not gc else f'{gc:g}')}")
    if a.get("lr_sweep"):
        extra.append(f"LR sweep x{'/'.join(f'{f:g}' for f in a['lr_sweep'])} -> x{a.get('lr_scale', 1):g}")
    for key, what in (("wd_sweep", "weight-decay"), ("clip_sweep", "clipping")):
        if a.get(key):
            extra.append(f"{what} sweep {'/'.join(f'{w:g}' for w in a[key])}")
    return [a["name"], a["init"], a["optim"], lrs, ", ".join(a.get("encodings_used", [])), "; ".join(extra),
            a.get("description", ""), status]


def _arms_section(v: ReportInputs) -> Doc:
    """"Arms": one row per arm, then the skipped and partly run arms with their full reasons and the failed
    cells."""
    results = v.results
    doc = Doc()
    doc.h(2, "Arms")
    doc.table(["arm", "init", "optimisation", "LRs (features_1/features_2/head)", "encodings", "settings", "what",
               "status"], [_arm_row(a) for a in results.arms])
    skipped = [a for a in results.arms if a.get("status") == "skipped"]
    if skipped:
        doc.p("Skipped arms (their cells were not run; the reason in full):", strong=True)
        doc.bullets([f"{a['name']}: {a.get('reason')}" for a in skipped])
    partial = [a for a in results.arms if a.get("status") == "partial"]
    if partial:
        doc.p("Partly run arms (their finished cells are in the tables; the others were skipped):", cls="warn")
        doc.bullets([f"{a['name']}: {a.get('reason')}" for a in partial])
    failed = results.failed
    if failed:
        doc.p(f"{len(failed)} cell(s) failed (re-running the bench retries them):", cls="warn")
        doc.bullets([f"{k}: {why}" for k, why in failed.items()])
    return doc


def _edge_choices(sweeps: Mapping[str, Mapping[str, Any]]
                  ) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any] | None]]:
    """``(arm, its sweep, stage)`` for each choice at the edge of its grid: the LR factors' (stage None) first, then
    each setting stage's (weight decay, clipping)."""
    return ([(a, w, None) for a, w in sweeps.items() if w.get("edge")]
            + [(a, w, st) for a, w in sweeps.items() for st in w.get("stages", []) if st.get("edge")])


def _stage_point(stage: Mapping[str, Any], curve: Mapping[str, Any], x: float) -> str:
    """One point of a sweep stage (weight decay, clipping): ``"<value>: <validation score>"``, tagged chosen / the
    arm's."""
    tags = [t for t, on in (("chosen", x == stage["chosen"]), ("arm's", x == stage["own"])) if on]
    return f"{x:g}: {fmt_number(curve.get(f'{x:g}'))}" + "".join(f" ({t})" for t in tags)


def _lr_sweep_section(v: ReportInputs) -> Doc:
    """"Learning-rate sweeps" (when any arm swept): validation selection-F1 per factor and the choice, a figure
    per encoding; then the arms not swept and the cells stopped at the cap while still improving (these two
    paragraphs also without sweeps)."""
    results = v.results
    doc = Doc()
    sweeps = results.sweeps
    if sweeps:
        doc.h(2, "Learning-rate sweeps (chosen on validation only)")
        sw = next(iter(sweeps.values()))
        doc.p(f"Each arm's learning rate(s) times each factor, trained at {fraction_label(sw['fraction'])} of the "
              f"training data with seed {sw['seed']}; the factor with the best validation selection-F1 (mean over "
              "the arm's encodings) then trains every seed and fraction. Tiered arms scale the whole triple. The "
              "test split plays no part in the choice.")
        _lr_factor_table(doc, sweeps)
        _setting_stages(doc, sweeps)
        short = [a for a, w in sweeps.items() if len(w["factors"]) < 4]
        if short:
            doc.p(f"Swept over fewer than 4 factors (not tuned: a tuned arm needs at least 4 log-spaced factors): "
                  f"{', '.join(short)}.",
                  cls="warn")
        _lr_sweep_figures(doc, v)
    unswept = [a["name"] for a in results.arms if not a.get("lr_sweep") and a.get("status") != "skipped"]
    if sweeps and unswept:
        doc.p(f"Not swept (a fixed recipe, a closed-form fit, or lr_sweep = []): {', '.join(unswept)}.")
    capped = results.capped_improving
    if capped:
        doc.p(f"{len(capped)} cell(s) stopped at the cap (epochs / max_steps) while validation was still improving "
              f"(best epoch = last epoch): {', '.join(capped)}. Their budget was not converged; raise the cap.",
              cls="warn")
    return doc


def _lr_factor_table(doc: Doc, sweeps: Mapping[str, Mapping[str, Any]]) -> None:
    """Into ``doc``: the LR sweep's table (validation selection-F1 per arm, encoding and factor; the choice) and the
    warning on choices at the edge of the factors' grid."""
    rows = []
    for arm, w in sweeps.items():
        for enc, c in w["curve"].items():
            rows.append([arm, enc] + [fmt_number(val) + (" (chosen)" if float(k) == w["chosen"] else "")
                                      for k, val in c.items()]
                        + [f"x{w['chosen']:g}: " + "/".join(f"{x:.2g}" for x in w["chosen_lrs"])
                           + "".join(f", {st['label']} {st['chosen']:g}" for st in w.get("stages", [])
                                     if st["chosen"] != st["own"])])
    factors = sorted({f for w in sweeps.values() for f in w["factors"]})
    same = all(w["factors"] == factors for w in sweeps.values())
    if same:
        doc.table(["arm", "encoding"] + [f"x{f:g}" for f in factors] + ["chosen: LRs"], rows)
    else:
        doc.table(["arm", "encoding", "validation selection-F1 per factor (ascending)", "chosen: LRs"],
                  [[r[0], r[1], "; ".join(r[2:-1]), r[-1]] for r in rows])
    edges = [f"{a} chose x{w['chosen']:g}, the grid's {w['edge']} factor" for a, w, st in _edge_choices(sweeps)
             if st is None]
    if edges:
        doc.p("At the edge of the sweep grid (the best learning rate may lie beyond it; widen lr_sweep before "
              "reading these arms as tuned): " + "; ".join(edges) + ".", cls="warn")


def _setting_stages(doc: Doc, sweeps: Mapping[str, Mapping[str, Any]]) -> None:
    """Into ``doc``: the further settings swept after the LR factor (weight decay, clipping), per arm and encoding,
    and the warning on choices at the edge of their grids (nothing when no arm swept one)."""
    stage_rows = [[arm, st["label"], enc, "; ".join(_stage_point(st, c, x) for x in st["values"])]
                  for arm, w in sweeps.items() for st in w.get("stages", []) for enc, c in st["curve"].items()]
    if stage_rows:
        doc.p("Then each further setting in turn, at the arm's chosen LR factor and the settings chosen before it "
              "(validation selection-F1; the arm's own value is the point already trained):")
        doc.table(["arm", "setting", "encoding", "validation selection-F1 per value (ascending)"], stage_rows)
        stage_edges = [f"{a} chose {st['label']} {st['chosen']:g}, the grid's {st['edge']} value (widen "
                       f"{st['key']})" for a, _, st in _edge_choices(sweeps) if st is not None]
        if stage_edges:
            doc.p("At the edge of a setting's grid: " + "; ".join(stage_edges) + ".", cls="warn")


def _lr_sweep_figures(doc: Doc, v: ReportInputs) -> None:
    """Into ``doc``: one LR-sweep figure per encoding that an arm swept."""
    sweeps = v.results.sweeps
    for enc in v.encodings:
        curves = {a: {float(k): val for k, val in w["curve"].get(enc, {}).items()} for a, w in sweeps.items()
                  if w["curve"].get(enc)}
        if curves:
            doc.figure(f"lr_sweep_{enc}.png",
                       plots.lr_sweep_png(curves, chosen={a: w["chosen"] for a, w in sweeps.items()},
                                          encoding=enc,
                                          majority=(v.results.majority_val or {}).get("selection_f1")),
                       f"LR sweep ({enc}): validation selection-F1 per LR factor; circled: the choice; dashed: "
                       "the majority classifier.")


def _main_tables(v: ReportInputs) -> Doc:
    """The main table, one per encoding: macro-F1 [95% interval] per arm and fraction with the paired difference
    against the baseline and its verdict (the contrast's when there is one), and the majority classifier's row."""
    results, base = v.results, v.base
    doc = Doc()
    con_verdict = {(c["arm"], c["baseline"], c["encoding"], float(c["fraction"])):
                   c["verdict"] + ("" if c.get("primary") else ", Holm") for c in results.contrasts}
    for enc in v.encodings:
        doc.h(2, f"{v.split.capitalize()} macro-F1 by fraction of training data ({enc})")
        rows = []
        for a in results.arms:
            per = v.arm_summary(a["name"], enc)
            if a.get("status") == "skipped":
                if enc in (a.get("encodings_used") or v.cfg["encodings"]):
                    rows.append([a["name"]] + ["skipped"] * len(v.fractions))
                continue
            if not per:
                continue
            row = [a["name"]]
            for f in v.fractions:
                e = per.get(fraction_label(f))
                if e is None:
                    row.append("skipped" if a.get("status") == "partial" else "not run")
                    continue
                txt = fmt_summary(e["macro_f1"])
                if e.get("diff_vs_baseline"):
                    # the contrast's verdict when there is one (primary: its interval; secondary: Holm-adjusted)
                    verdict_text = con_verdict.get((a["name"], base, enc, float(f)), verdict(e["diff_vs_baseline"]))
                    txt += f"; Δ vs {base} {fmt_summary(e['diff_vs_baseline'], signed=True)} ({verdict_text})"
                row.append(txt)
            rows.append(row)
        mj = majority_test(results)
        if mj:
            rows.append([f"majority (always {mj.get('predicts')})"] + [fmt_number(mj["macro_f1"])] * len(v.fractions))
        doc.table(["arm"] + [fraction_label(f) for f in v.fractions], rows)
    return doc


def _curves(v: ReportInputs) -> Doc:
    """The figures per encoding: the data-efficiency curve (with more than one fraction) and the learning
    curves."""
    results, cfg, split = v.results, v.cfg, v.split
    doc = Doc()
    curves = learning_curves(v.records)
    for enc in v.encodings:
        if any(enc in per for per in v.summary.values()):
            if len(v.fractions) > 1:
                mj = majority_test(results)
                doc.figure(f"data_efficiency_{enc}.png",
                           plots.data_efficiency_png(v.summary, encoding=enc, ylabel=f"{split} macro-F1",
                                                     majority=mj["macro_f1"] if mj else None,
                                                     band="95% interval (records x seeds)" if bootstrapped(results)
                                                     else "95% CI over seeds"),
                           f"Data efficiency ({enc}): {split} macro-F1 vs training data used; bands are 95% "
                           "intervals; dashed: the majority classifier.")
            if any(k[1] == enc for k in curves):
                doc.figure(f"learning_curves_{enc}.png",
                           plots.learning_curves_png(curves, fractions=v.fractions, encoding=enc,
                                                     target=cfg["target_f1"],
                                                     majority=(results.majority_val or {}).get("macro_f1"),
                                                     x="step" if results.majority_val else "epoch"),
                           f"Learning curves ({enc}): validation macro-F1 at each evaluation, at each fraction, mean "
                           "over seeds, band = min..max over seeds; dotted: the target; dashed: the majority "
                           "classifier on validation.")
    return doc


def _per_class_section(v: ReportInputs) -> Doc:
    """"Per-class sensitivity (Se) and positive predictivity (+P)" at the largest fraction, one table per
    encoding: the spread over seeds and the records x seeds bootstrap interval; classes absent from the split are
    named and left out."""
    results, split, top = v.results, v.split, v.top
    doc = Doc()
    doc.h(2, "Per-class sensitivity (Se) and positive predictivity (+P)")
    aami = set(results.class_names) <= set(AAMI_CLASSES)
    doc.p(("AAMI beat classes (N normal, S supraventricular ectopic, V ventricular ectopic, F fusion, Q unknown). "
           if aami else "") + f"On the {split} split at the largest fraction; mean ± sd over seeds (min–max).")
    sp = results.split
    absent = [c for c in v.class_names if not (sp.get("class_counts") or {}).get(split, {}).get(c, 1)]
    if absent:
        doc.p(f"Classes with no segment in the {split} split (left out of the table): {', '.join(absent)}.")
    for enc in v.encodings:
        rows = []
        for a in results.arms:
            e = v.arm_summary(a["name"], enc).get(top)
            if e is None:
                continue
            for c in v.class_names:
                pc = e["per_class"].get(c)
                if pc is None or c in absent:
                    continue
                pb = (e.get("per_class_bootstrap") or {}).get(c) or {}
                rows.append([a["name"], c, pc.get("support", ""), fmt_spread(pc["se"]), fmt_spread(pc["ppv"]),
                             fmt_spread(pc["f1"]), fmt_summary(pb.get("se")) if pb else "n/a",
                             fmt_summary(pb.get("ppv")) if pb else "n/a"])
        if rows:
            doc.h(3, f"{enc}, {top} of the training data")
            doc.table(["arm", "class", "support", "Se", "+P", "F1", "Se [95% records x seeds]",
                       "+P [95% records x seeds]"], rows)
    return doc


def _confusion_section(v: ReportInputs) -> Doc:
    """"Confusion matrices": a figure per arm and encoding at the largest fraction, summed over seeds."""
    results, top = v.results, v.top
    doc = Doc()
    doc.h(2, "Confusion matrices")
    doc.p(f"{v.split.capitalize()} split, largest fraction, summed over seeds; rows true class, columns predicted, "
          "colour = row-normalised share.")
    for enc in v.encodings:
        for a in results.arms:
            e = v.arm_summary(a["name"], enc).get(top)
            if e is None or e.get("confusion") is None:
                continue
            names = results.class_names
            doc.figure(f"confusion_{a['name']}_{enc}.png",
                       plots.confusion_png(e["confusion"], names, title=f"{a['name']} ({enc}, {top})"),
                       f"Confusion matrix: {a['name']}, {enc}, {top}, summed over {len(e['seeds'])} seed(s).")
    return doc


def _reached_at_epoch_end(t: Mapping[str, Any], key: str, digits: int) -> str:
    """``"2.5 (2–3), 2/3 seeds"``: the mean (min–max) of ``key`` (``epochs``, ``seconds``) over the seeds whose
    epoch-end validation reached the target; results of an older version (no per-seed values): the mean [CI]."""
    each = t.get(f"{key}_each")
    if each is None:
        return fmt_summary(t[key], digits)
    if not each:
        return f"not reached (0/{t['of']} seeds)"
    spread_ = "" if len(each) == 1 else f" ({fmt_number(min(each), digits)}–{fmt_number(max(each), digits)})"
    return f"{fmt_number(sum(each) / len(each), digits)}{spread_}, {t['reached']}/{t['of']} seeds"


def _time_to_target_section(v: ReportInputs) -> Doc:
    """"Time to reach validation macro-F1 ≥ target": steps, epochs and seconds per arm, encoding and fraction
    (plus the source model's training time for ecg-pretrained arms), after the target check."""
    results, cfg = v.results, v.cfg
    doc = Doc()
    doc.h(2, f"Time to reach validation macro-F1 ≥ {cfg['target_f1']:g}")
    sources = results.source_models
    doc.p("Steps count every validation (the within-epoch ones of val_every_steps too); epochs and cumulative "
          "seconds (training + validation) count the epoch-end validations only, so a seed may reach the target in "
          "steps before any epoch end does: those two columns give the mean (min–max) over the seeds whose "
          "epoch-end validation reached it, and how many did."
          + (" For ecg-pretrained arms the source model's training time comes on top (paid once per encoding and "
             "shared by all their cells): the last column." if sources else ""))
    tc = (results.target_check or {})
    if tc:
        doc.p(tc["text"] + "." + (" Steps (optimizer steps until the first evaluation at or above the target) do not "
                                  "depend on the machine; a run that never reaches it is censored (counted as "
                                  "slower than any, not dropped)." if not tc.get("below_majority") else ""),
              cls="warn" if tc.get("below_majority") else None)
    rows = []
    for a in results.arms:
        for enc, per in (v.summary.get(a["name"]) or {}).items():
            for flabel, e in sorted(per.items(), key=lambda kv: kv[1]["fraction"]):
                t = e["time_to_target"]
                stp = e.get("steps_to_target") or {}
                per_seed = ", ".join("—" if x is None else str(x) for x in stp.get("steps", []))
                reached = f"{stp['reached']}/{stp['of']}" if "reached" in stp else f"{t['reached']}/{t['of']}"
                row = [a["name"], enc, flabel, stp.get("text", f"{t['reached']}/{t['of']}"), per_seed or "n/a",
                       reached, _reached_at_epoch_end(t, "epochs", 1), _reached_at_epoch_end(t, "seconds", 1)]
                if sources:
                    src = sources.get(enc) if a.get("init") == "ecg" else None
                    row.append(fmt_number(src.get("wall_s"), 1) if src else "")
                rows.append(row)
    doc.table(["arm", "encoding", "fraction", "steps to target", "steps per seed (— not reached)",
               "seeds reaching it (steps)", "epochs (at epoch ends)", "seconds (at epoch ends)"]
              + (["+ source model s"] if sources else []), rows)
    return doc


def _throughput_section(v: ReportInputs) -> Doc:
    """"Throughput and hardware": images/s, peak memory and wall time per arm, encoding and fraction, and the
    hardware table."""
    results = v.results
    doc = Doc()
    doc.h(2, "Throughput and hardware")
    rows = []
    for a in results.arms:
        for enc, per in (v.summary.get(a["name"]) or {}).items():
            for flabel, e in sorted(per.items(), key=lambda kv: kv[1]["fraction"]):
                share = e.get("data_share") or {}
                rows.append([a["name"], enc, flabel, fmt_range(e["images_per_s"]),
                             fmt_range(e.get("eval_images_per_s")),
                             "n/a" if share.get("mean") is None else f"{100 * share['mean']:.1f}%",
                             fmt_bytes(e["peak_memory_bytes"]), fmt_range(e["wall_s"])])
    doc.table(["arm", "encoding", "fraction", "train images/s", "eval images/s", "data wait (of training time)",
               "peak memory", "wall s per cell"], rows)
    data_s, train_s = 0.0, 0.0
    for r in v.records:
        t = r.throughput
        if r.done and t.get("data_seconds") is not None and t.get("train_seconds"):
            data_s += float(t["data_seconds"])
            train_s += float(t["train_seconds"])
    if train_s > 0:
        doc.p(f"Data time against compute time: over every cell, {data_s:.1f} s of {train_s:.1f} s of training "
              f"({100 * data_s / train_s:.1f}%) were spent waiting for the next batch from the store; the rest is the "
              "device's work (rendering the images per batch, forward, backward, the optimiser step). A share near 0 "
              "means the image pipeline does not starve the device.")
    doc.p("Timings: mean over seeds (min–max); they depend on the machine's load at the time, so no interval.")
    kind = "CUDA max_memory_allocated" if str(results.hardware.get("device", "")).startswith("cuda") else \
        "the process's peak resident set size (whole bench process, so it only grows)"
    doc.p(f"Images/s include rendering the images on the training device; peak memory is {kind}.")
    hw = results.hardware
    doc.table(["key", "value"], [[k, hw[k]] for k in sorted(hw)])
    return doc


def _source_class_f1(m: Mapping[str, Any]) -> str:
    """A source model's validation F1 per class (its AUC per statement when multi-label), or ``n/a``."""
    val = m.get("val") or {}
    if m.get("multilabel"):  # sigmoid outputs: the AUC of each statement (no F1 per class)
        return ", ".join(f"{c} AUC {fmt_number(a, 2)}" for c, a in (val.get("auc") or {}).items()
                         if a is not None) or "n/a"
    pc = val.get("per_class") or {}
    return ", ".join(f"{c} {fmt_number(r.get('f1'), 2)}" for c, r in pc.items()
                     if isinstance(r, Mapping) and r.get("support")) or "n/a"


def _source_macro_f1(m: Mapping[str, Any]) -> str:
    """A source model's validation macro-F1 (``n/a`` with its Fmax when multi-label)."""
    val = m.get("val") or {}
    return (f"n/a (multi-label; Fmax {fmt_number(val.get('fmax'))})" if m.get("multilabel")
            else fmt_number(val.get("macro_f1")))


def _source_macro_auroc(m: Mapping[str, Any]) -> str:
    """A source model's validation macro-AUROC (its macro-AUC over the statements when multi-label)."""
    val = m.get("val") or {}
    return fmt_number(val.get("macro_auc") if m.get("multilabel") else val.get("macro_auroc"))


def _source_models_section(v: ReportInputs) -> Doc:
    """"Source models (ecg-pretrained)", when the bench trained any: per encoding its store, validation scores,
    whether it learned, best epoch, time and checkpoint, and the target patients dropped from its store."""
    models = v.results.source_models
    doc = Doc()
    if not models:
        return doc
    doc.h(3, "Source models (ecg-pretrained)")
    stated = any(m.get("input") for m in models.values())  # what the source model reads (results before: absent)
    rows = [[enc, m.get("store"), *([m.get("input") or "n/a"] if stated else []), m.get("steps", "n/a"),
             _source_macro_f1(m), _source_macro_auroc(m), _source_class_f1(m),
             (m.get("credibility") or {}).get("text", "not checked (older results)"), m.get("best_epoch"),
             fmt_number(m.get("wall_s"), 1), m.get("checkpoint")] for enc, m in models.items()]
    doc.table(["encoding", "source store", *(["source input"] if stated else []), "steps", "val macro-F1",
               "val macro-AUROC", "val F1 per class", "did it learn? (bootstrap over its validation records)",
               "best epoch", "wall s", "checkpoint"], rows)
    doc.p("The source model's own validation part is split by patient from the source store (its patients only).")
    if any(m.get("multilabel") for m in models.values()):
        doc.p("A multi-label source (PTB-XL statements) trains with sigmoid outputs and binary cross-entropy and picks "
              "its best epoch on validation macro-AUC (the mean AUC over the statements with positives and negatives "
              "in its validation part; its macro-AUROC column); its head never transfers (another label space): "
              "the ecg arms start from its backbone only.")
    transfers = {}
    for r in v.records:
        if r.done and r.record.get("transfer"):
            transfers.setdefault(r.cell.arm, set()).add(r.record["transfer"])
    if transfers:
        doc.p("What transferred into each arm's cells (from their load reports): "
              + "; ".join(f"{arm}: {' / '.join(sorted(t))}" for arm, t in transfers.items()) + ".")
    for enc, m in models.items():
        ex = m.get("exclusion")
        if ex:
            doc.p(f"Source model ({enc}): {ex.get('why', 'the source store overlaps the target')}, so the "
                  f"segments of the target's validation/test patients were dropped from it before its own split "
                  f"(they were never trained on nor used to pick the source epoch): "
                  f"{len(ex['dropped_patients'])} patients ({', '.join(ex['dropped_patients']) or 'none found'}), "
                  f"{ex['dropped_segments']} segments; the source model trained on "
                  f"{ex['kept_segments']['train']} segments.", cls="warn")
    return doc


def _cells_section(v: ReportInputs) -> Doc:
    """"Every cell": one row per cell record, then one per invocation of the bench (computed, reused,
    recomputed and why)."""
    results, split = v.results, v.split
    doc = Doc()
    doc.h(2, "Every cell")
    rows = []
    for r in v.records:
        c = r.cell
        m = r.metrics(split)
        rows.append([c.arm, c.encoding, fraction_label(c.fraction), c.seed, r.status,
                     r.data.get("n_train", ""), fmt_number(m.get("macro_f1")), fmt_number(m.get("accuracy")),
                     r.record.get("best_epoch", ""), fmt_number(r.wall_s, 1), short_reason(r.reason)])
    doc.table(["arm", "encoding", "fraction", "seed", "status", "train segments", f"{split} macro-F1",
               f"{split} accuracy", "best epoch", "wall s", "note"], rows)
    inv = results.invocations
    doc.table(["invocation", "started", "finished", "cells computed", "cells reused", "recomputed (why)", "wall s",
               "command"],
              [[i.get("bench_run_id"), i.get("started_at") or "n/a", i.get("finished_at") or "n/a",
                len(i.get("computed", [])), len(i.get("reused", [])), recomputed_text(i.get("recomputed")),
                fmt_number(i.get("wall_s"), 0), i.get("command") or ""] for i in inv])
    return doc


def _config_section(v: ReportInputs) -> Doc:
    """"Exact configuration and store manifests": the command, the resolved config, the config file as given and
    the target (and source) store manifests."""
    results = v.results
    doc = Doc()
    doc.h(2, "Exact configuration and store manifests")
    if results.command:
        doc.p(f"Command: {results.command}")
    doc.code(json.dumps(v.cfg, indent=2, sort_keys=True), "Resolved bench config (JSON)", "json")
    if results.config_text:
        doc.code(results.config_text, "Config file as given (TOML)", "toml")
    doc.code(json.dumps(manifest_for_report(results.store["manifest"]), indent=2, sort_keys=True),
             "Target store manifest", "json")
    if results.source_store:
        doc.code(json.dumps(manifest_for_report(results.source_store["manifest"]), indent=2, sort_keys=True),
                 "Source store manifest", "json")
    return doc


#: the report's sections in order; each reads :class:`ReportInputs` and returns its part of the document
SECTIONS = (_title, _labelled_patients_section, _headline_section, _setup_section, _arms_section, _lr_sweep_section,
            _main_tables, _curves, _per_class_section, _confusion_section, _time_to_target_section, _throughput_section,
            _source_models_section, _cells_section, _config_section)

"""Run a benchmark: every cell of the grid, resumably, then ``results.json`` and the reports.

The bench itself trains nothing by hand: each cell is one call of
:func:`ecgtransfer.training.fine_tune` on the target store with an explicit split (the fixed validation
and test patients, and the cell's subsample of the training split), the arm's initialisation and
optimiser mode, and the budget shared by every arm. ``ecg`` arms first train a source model on the
``[source]`` store (once per encoding, kept in ``OUT/source/<encoding>/``) and start from its best
checkpoint: the backbone transfers, the head is re-initialised when the class counts differ. A multi-label source
(PTB-XL's statements, :mod:`ecgtransfer.training.multilabel`) trains with sigmoid outputs and transfers its backbone
only (another label space); ``[source].lead`` says which of its leads the source model images
(:func:`ecgtransfer.bench.source.source_input`).

This module is the orchestrator: :func:`run` checks the output folder and takes its lock, :class:`_Bench` sets up
the split and the prerequisites, runs the sweeps and then the grid's cells, and writes the results after each.
The jobs live in their own rooms, which :class:`_Bench` joins: :mod:`~ecgtransfer.bench.source` (source store,
source models, pooled store), :mod:`~ecgtransfer.bench.cell_run` (one cell), :mod:`~ecgtransfer.bench.sweep_run`
(the sweeps), :mod:`~ecgtransfer.bench.assemble` (``results.json``); :mod:`~ecgtransfer.bench.cell_plan` (each
cell's TrainConfig and budget) and :mod:`~ecgtransfer.bench.run_records` (what a run leaves) serve them.

Output directory::

    OUT/
      config.json        the resolved bench config
      cells/<key>.json   one finished cell each (the resume state; see :mod:`ecgtransfer.bench.cells`)
      runs/<key>/        each cell's run directory (metrics.jsonl, run.json; checkpoints only if kept)
      source/<encoding>/ source models of ``ecg`` arms (best.pt is kept: later cells load it)
      results.json       every cell, every metric, summaries, hardware
      report.md, report.html, figures/*.png
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from tqdm.auto import tqdm

from ecgtransfer._atomic import atomic_write_json
from ecgtransfer._lock import FolderLock
from ecgtransfer._formats import RESULTS_FORMAT  # noqa: F401  (documented: runner.RESULTS_FORMAT still works)
from ecgtransfer._outdir import check_output_dir
from ecgtransfer.bench.assemble import ResultsAssembly, earlier_invocations
from ecgtransfer.bench.cell_plan import MACRO_F1_DEFINITION, target_split, majority_validation, plan_estimate, target_check
from ecgtransfer.bench.cell_run import CellRuns
from ecgtransfer.bench.cells import BENCH_LAYOUT, CellStore
from ecgtransfer.bench.arms import ARM_LATER_FIELDS, ArmConfig
from ecgtransfer.bench.config import BenchConfig
from ecgtransfer.bench.config_toml import load_config
from ecgtransfer.bench.grid import cells as grid_cells
from ecgtransfer.bench.hardware import hardware_info
from ecgtransfer.bench.report import write_reports
from ecgtransfer.bench.results import read_results, upgrade_cell_counts
from ecgtransfer.bench.run_records import RECORD_CONFUSION_VERSION, utc_now
from ecgtransfer.bench.source import SourceModels, source_settings
from ecgtransfer.bench.sweep_run import SweepRuns
from ecgtransfer.bench.sweeps import SETTING_KEYS
from ecgtransfer.errors import BenchError, ConfigError, EcgTransferError, WeightsUnavailableError
from ecgtransfer.signals.split import SPLIT_RULE_VERSION
from ecgtransfer.store import SegmentStore

log = logging.getLogger(__name__)


@dataclass
class BenchResult:
    """What :func:`run` returns.

    Attributes:
        out: the output directory.
        results: the content of ``results.json`` (:func:`~ecgtransfer.bench.results.read_results` reads it typed).
        paths: ``{"results", "md", "html", "figures"}``.
        computed: keys of the cells trained by this call.
        reused: keys of finished cells loaded from ``OUT/cells``.
        skipped: ``{arm: reason}`` of arms that could not run.
        failed: ``{cell key: error}`` of cells whose training failed (retried on the next run).
    """

    out: Path
    results: dict[str, Any]
    paths: dict[str, Path]
    computed: list[str]
    reused: list[str]
    skipped: dict[str, str]
    failed: dict[str, str]

    @property
    def summary(self) -> dict[str, Any]:
        return self.results["summary"]

    @property
    def complete(self) -> bool:
        return bool(self.results.get("complete"))


class _Bench(SourceModels, CellRuns, SweepRuns, ResultsAssembly):
    """One bench run: its state, the setup, the prerequisites and the loop over the grid (the rooms it joins hold
    the source side, one cell's run, the sweeps and the results)."""

    def __init__(self, cfg: BenchConfig, out: Path, *, resume: bool, progress: bool, command: str | None) -> None:
        self.cfg = cfg
        self.out = out
        self.resume = resume
        self.progress = progress
        self.command = command
        self.cellstore = CellStore(out)
        self.skipped: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.computed: list[str] = []
        self.reused: list[str] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.source_models: dict[str, dict[str, Any]] = {}
        self.run_id = uuid.uuid4().hex[:12]
        self.started_at = utc_now()
        self.t0 = time.perf_counter()
        self.previous_invocations = earlier_invocations(out)
        self.imagenet_checks: dict[str, str | None] = {}  # weights version -> why unavailable (None: available)
        self.interrupted: str | None = None
        self.recomputed: dict[str, str] = {}  # cell key -> why its earlier result could not be reused
        self.config_text: str | None = None  # the TOML text of the config file, read once (for results.json)
        self.lr_scale: dict[str, float] = {}  # arm -> the LR factor its sweep chose
        self.choice: dict[str, dict[str, float]] = {}  # arm -> the settings its sweep chose away from its own
        self.sweeps: dict[str, dict[str, Any]] = {}  # arm -> the sweep's cells, validation curve and choice

    # -- setup ------------------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.store = SegmentStore(cfg.store_path)
        self.parts, self.split_info = target_split(self.store, cfg)
        self.eval_split = cfg.task.eval_split
        if self.eval_split == "test" and self.parts["test"].size == 0:
            self.eval_split = "val"
            self.split_info["notes"].append(
                "The split has no test part (e.g. de Chazal without the DS2 records), so the tables report the "
                "validation split, which also selected the best epoch: these figures are optimistic.")
            log.warning("split %s of %s has no test part: reporting the validation split", cfg.task.split,
                        self.store.path)
        self.majority_val = majority_validation(self.store, self.parts, cfg.base)
        self.target_check = target_check(cfg.target_f1, self.majority_val)
        if self.target_check["below_majority"]:
            log.warning("bench %s: %s", cfg.name, self.target_check["text"])
        self.hardware = hardware_info(cfg.device)
        self.device = self.hardware["device"]
        self.fingerprint = cfg.budget_fingerprint()
        self.grid = grid_cells(cfg)

    def fingerprint_inputs(self, arm: ArmConfig, lr_scale: float | None = None,
                           settings: Mapping[str, float] | None = None) -> dict[str, Any]:
        """Everything a cell's result depends on besides its coordinates (JSON-normalised, stored per cell).

        ``lr_scale``: the LR factor the cell trains with (default: the one its arm's sweep chose, else 1);
        ``settings``: swept settings away from the arm's own (default: those its sweep chose). The grids
        themselves (``lr_sweep``, ``wd_sweep``...) are not inputs: a point's cell is the same whichever grid it
        belongs to."""
        if lr_scale is None:
            lr_scale = self.lr_scale.get(arm.name, 1.0)
        if settings is None:
            settings = self.choice.get(arm.name, {})
        d = {"budget": self.cfg.budget_dict(),
             "arm": {k: v for k, v in vars(arm).items()
                     if k not in ("description", "encodings", "lr_sweep", *SETTING_KEYS)
                     and not (k in ARM_LATER_FIELDS and v == ARM_LATER_FIELDS[k])},
             "lr_scale": float(lr_scale),
             "lrs": self.cfg.arm_lrs(arm), "lr": self.cfg.arm_lr(arm), "split_seed": self.cfg.task.split_seed,
             "macro_f1": MACRO_F1_DEFINITION, "split_rule": SPLIT_RULE_VERSION,
             "record_confusion": RECORD_CONFUSION_VERSION}
        for name, value in settings.items():  # only swept points carry them: earlier cells keep their fingerprints
            d[f"{name}_swept"] = float(value)
        if arm.uses_source:  # only these arms depend on the source task
            d["source_store"] = self.source_hash
            d["source"] = source_settings(self.cfg.source)
        return json.loads(json.dumps(d, sort_keys=True, default=str))

    def cell_fingerprint(self, arm: ArmConfig, lr_scale: float | None = None,
                         settings: Mapping[str, float] | None = None) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint_inputs(arm, lr_scale, settings), sort_keys=True
                                         ).encode()).hexdigest()[:16]

    # -- prerequisites ----------------------------------------------------------------------------
    def check_arms(self) -> None:
        """Mark arms whose prerequisites are missing as skipped, with the reason."""
        self.open_source()  # the source store of ecg and pooled arms, and the pooled store
        from ecgtransfer.models.weight_registry import imagenet_unavailable, is_weight_name

        for a in self.cfg.arms:
            if a.name in self.skipped:
                continue
            if is_weight_name(a.init):  # any case, as the arm's check and the loader take it
                reason = imagenet_unavailable(a.init, cache=self.imagenet_checks)
                if reason:
                    self.skipped[a.name] = reason
            elif a.init not in ("scratch", "ecg"):
                p = self.cfg.resolve_path(a.init)
                if not p.is_file():
                    self.skipped[a.name] = f"initial weights file {p} does not exist"
        for name, why in self.skipped.items():
            log.warning("arm %s skipped: %s", name, why)

    def announce_plan(self) -> None:
        """Log what the grid will train (:func:`plan_estimate`): a warning when it runs for days."""
        steps = []
        for cell in self.grid:
            if cell.arm in self.skipped or (self.resume and self.cellstore.path(cell).is_file()):
                continue
            spe, epochs = self.plan_cell(cell)[2:]
            steps.append(min(spe * epochs, self.cfg.max_steps or spe * epochs))
        line, warn = plan_estimate(steps, self.cfg.batch_size, self.device)
        (log.warning if warn else log.info)("bench %s: %s%s", self.cfg.name, line,
                                            "; reduce seeds, fractions, epochs or max_steps, or stop with Ctrl-C "
                                            "(finished cells are kept)" if warn else "")

    def execute(self) -> None:
        cfg = self.cfg
        self.announce_plan()
        self.run_sweeps()
        bar = tqdm(self.grid, desc=f"bench {cfg.name}", unit="cell", disable=not self.progress,
                   dynamic_ncols=True)
        for cell in bar:
            arm = cfg.arm(cell.arm)
            bar.set_postfix_str(cell.key)
            if self.resume:  # cells finished earlier stay valid even if the arm cannot run now
                done, why = self.cellstore.check(cell, fingerprint=self.cell_fingerprint(arm),
                                                 store_hash=self.store.manifest_hash,
                                                 inputs=self.fingerprint_inputs(arm))
                if done is not None and (stale := self.stale_budget(cell, done)) is not None:
                    done, why = None, stale
                if done is not None:
                    self.records[cell.key] = upgrade_cell_counts(done, self.out, self.store)
                    self.reused.append(cell.key)
                    continue
                if why is not None:
                    self.recomputed[cell.key] = why
            elif self.cellstore.path(cell).is_file():
                self.recomputed[cell.key] = "--no-resume (resume=False)"
            if cell.arm in self.skipped:
                self.records[cell.key] = {"cell": cell.to_dict(), "key": cell.key, "status": "skipped",
                                          "reason": self.skipped[cell.arm]}
                continue
            try:
                record = self.run_cell(cell)
            except WeightsUnavailableError as exc:
                self.skipped[cell.arm] = f"weights unavailable: {exc}"
                log.warning("arm %s skipped: %s", cell.arm, exc)
                self.records[cell.key] = {"cell": cell.to_dict(), "key": cell.key, "status": "skipped",
                                          "reason": self.skipped[cell.arm]}
                continue
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one failing cell must not lose the others; it is reported and retried
                kind = "" if isinstance(exc, EcgTransferError) else f"{type(exc).__name__}: "
                log.error("cell %s failed: %s%s", cell.key, kind, exc)
                log.debug("%s", traceback.format_exc())
                self.failed[cell.key] = f"{kind}{exc}"
                record = {"cell": cell.to_dict(), "key": cell.key, "status": "failed", "reason": f"{kind}{exc}",
                          "fingerprint": self.cell_fingerprint(arm), "store_manifest_hash": self.store.manifest_hash,
                          "bench_run_id": self.run_id, "finished_at": utc_now()}
                self.cellstore.save(cell, record)
                self.records[cell.key] = record
                continue
            self.cellstore.save(cell, record)
            self.records[cell.key] = record
            self.computed.append(cell.key)
            self.write_results()  # a usable partial results.json after every cell
        bar.close()


def run(config: BenchConfig | str | os.PathLike, out: str | os.PathLike, *, store: str | os.PathLike | None = None,
        source_store: str | os.PathLike | None = None, device: str | None = None, resume: bool = True,
        progress: bool = True, overrides: Mapping[str, Any] | None = None, command: str | None = None,
        ) -> BenchResult:
    """Run (or finish) a benchmark and write its results and reports into ``out``.

    Args:
        config: a :class:`BenchConfig` or the path of a TOML config (see :func:`load_config`).
        out: output directory (created). Finished cells found there are reused when ``resume``.
        store: target store path, replacing ``task.store``.
        source_store: source store path of ``ecg`` arms, replacing ``source.store``.
        device: replaces ``bench.device`` (``cpu``, ``cuda``, ``auto``).
        resume: reuse finished cells (default); False recomputes every cell.
        progress: tqdm progress bars.
        overrides: dotted config keys (``{"bench.seeds": [0]}``), only with a config path.
        command: the command line recorded in the report (the CLI passes it).

    Returns:
        a :class:`BenchResult`. Arms whose prerequisites are missing are skipped with the reason; cells that
        fail are recorded with their error. Neither stops the other cells.
    """
    config_path = None
    if isinstance(config, BenchConfig):
        if overrides:
            raise ConfigError("overrides need a config path; apply them to the BenchConfig with dataclasses.replace")
        cfg = config
    else:
        config_path = Path(config)
        cfg = load_config(config_path, overrides=overrides)
    if store is not None:
        cfg = replace(cfg, task=replace(cfg.task, store=str(Path(store).resolve())))
    if source_store is not None:
        if cfg.source is None:
            raise ConfigError("--source-store given but the config has no [source] table (no 'ecg' arm)")
        cfg = replace(cfg, source=replace(cfg.source, store=str(Path(source_store).resolve())))
    if device is not None:
        cfg = replace(cfg, base=cfg.base.replace(device=device))
    out = check_output_dir(out, kind=BENCH_LAYOUT, inputs={"--store": cfg.store_path,
                                                      "--source-store": cfg.source_store_path})
    with FolderLock(out, what="bench folder"):
        return _run_locked(cfg, out, config_path=config_path, resume=resume, progress=progress, command=command)


def _run_locked(cfg: BenchConfig, out: Path, *, config_path: Path | None, resume: bool, progress: bool,
                command: str | None) -> BenchResult:
    """:func:`run` once the output folder is checked and its writer lock held."""
    if command is None:
        command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else None
    bench = _Bench(cfg, out, resume=resume, progress=progress, command=command)
    if config_path is not None:
        try:
            bench.config_text = config_path.read_text(encoding="utf-8")
        except OSError:
            pass
    bench.setup()  # opens the store: a missing store fails here, before OUT is created
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.to_dict())
    bench.check_arms()
    try:
        bench.execute()
    except KeyboardInterrupt:
        # SIGINT (Ctrl-C, or `timeout -s INT` in benchmarks/gpu.sh): the finished cells are kept and the partial
        # results and reports are written below; re-running the same command finishes the bench
        bench.interrupted = f"interrupted (SIGINT) at {utc_now()} after {time.perf_counter() - bench.t0:.0f} s"
        log.warning("bench %s %s; writing the partial results and reports", cfg.name, bench.interrupted)
        raise
    finally:
        results = bench.write_results()
        paths = write_reports(results, out)
    paths["results"] = out / "results.json"
    log.info("bench %s: %d cells computed, %d reused, %d failed; report %s", cfg.name, len(bench.computed),
             len(bench.reused), len(bench.failed), paths["html"])
    return BenchResult(out=out, results=results.to_dict(), paths=paths, computed=bench.computed, reused=bench.reused,
                       skipped=dict(bench.skipped), failed=dict(bench.failed))


def write_report(out: str | os.PathLike) -> dict[str, Path]:
    """Re-write ``report.md``/``report.html`` of a bench directory from its ``results.json`` (a damaged one is one
    :class:`BenchError` line naming it)."""
    out = Path(out)
    path = out / "results.json"
    if not os.path.lexists(path):
        raise ConfigError(f"{out} holds no results.json (run the bench first)")
    results = read_results(path)
    try:
        return write_reports(results, out)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError, RecursionError) as exc:
        # a value deeper in the file of the wrong kind: still the file's fault, named as such
        raise BenchError(f"{path}: a value the report needs is missing or of the wrong type "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); the bench results are "
                         "damaged (run the bench again to rewrite them)") from None

"""Benchmark configuration: the dataclasses of a bench config, each checking itself.

A benchmark config names the target task (a segment store and how to split it), the arms to compare
(:mod:`ecgtransfer.bench.arms`), the seeds, the fractions of the training data, the budget every arm gets (epochs,
steps, batch size, schedule family), the image size and the encodings. See ``docs/bench.md`` for every key.

Each dataclass checks its own rules in a ``check(where)`` method, raising one :class:`ConfigError` line that names
the key (:class:`TaskConfig`, :class:`SourceConfig`, :class:`PrimaryContrast`,
:class:`~ecgtransfer.bench.arms.ArmConfig`); :meth:`BenchConfig.check` runs them in order, with the rules that
span the whole config. The TOML file is read by :mod:`ecgtransfer.bench.config_toml` (:func:`load_config`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from ecgtransfer.bench.arms import OPTIM_MODES, ArmConfig
from ecgtransfer.bench.checks import (check_nameable, check_positive_int, check_setting_values, config_error,
                                     same_fraction)
from ecgtransfer.bench.stats import BOOTSTRAP_REPLICATES
from ecgtransfer.bench.sweeps import SETTING_KEYS
from ecgtransfer._validate import check_seed
from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging.encode import check_encoding
from ecgtransfer.signals.split import LATER_FIELDS, SplitConfig
from ecgtransfer.training.config import PART_KEYS, TrainConfig, part_view

FRACTION_MODES = ("per-class", "per-patient", "patients")  # "patients" = "per-patient": fewer labelled patients
#: ``[bench]`` keys that are training settings: bench key -> ``TrainConfig`` field of :attr:`BenchConfig.base`
#: (validated there, by their owner)
BENCH_TRAIN_KEYS: dict[str, str] = {
    "image_size": "image_size", "epochs": "epochs", "max_steps": "max_steps", "batch_size": "batch_size",
    "scheduler": "scheduler", "warmup_steps": "warmup_steps", "lrs": "tiers", "optimizer": "optimizer",
    "device": "device", "threads": "num_threads", "patience": "early_stopping"}
#: the bench's own defaults for them where they differ from ``TrainConfig``'s (a short budget, no early stopping)
BENCH_TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 5, "batch_size": 64, "early_stopping": None}
#: ``[task]`` keys that are split settings: task key -> ``SplitConfig`` field (the bench's split seed defaults to 0)
TASK_SPLIT_KEYS: dict[str, str] = {k: name for k, (part, name) in PART_KEYS.items() if part == "data_split"}



@dataclass(frozen=True)
class TaskConfig:
    """The target task: a segment store and its patient-wise split.

    Attributes:
        store: path of the segment store (relative paths are relative to the config file).
        data_split: the split (:class:`ecgtransfer.signals.split.SplitConfig`, the owner of its rules), written flat
            in ``[task]``: ``split`` (``patient`` | ``kfold`` | ``dechazal`` | ``random``), ``split_seed`` (fixed
            across arms and bench seeds: every cell sees the same patients; default 0), ``val_fraction``,
            ``test_fraction`` (shares of patients for validation and test, ``patient`` split), ``n_folds``, ``fold``
            (``kfold``). Read back as ``task.split``, ``task.split_seed``, ...
        eval_split: the split whose metrics the report's tables use (``test``; ``val`` when there is no test).
        max_val_segments, max_test_segments: cap the validation / test split at about this many segments,
            drawn per class in proportion (seeded by ``split_seed``; the same subset for every cell), to fit a
            CPU budget; ``None`` (default) evaluates on the whole split. The report states any cap.
    """

    store: str
    data_split: SplitConfig = field(default_factory=lambda: SplitConfig(seed=0))
    eval_split: str = "test"
    max_val_segments: int | None = None
    max_test_segments: int | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> "TaskConfig":
        """From a ``[task]`` table with the split settings written flat (:data:`TASK_SPLIT_KEYS`)."""
        kw = {k: v for k, v in table.items() if k not in TASK_SPLIT_KEYS}
        split_kw = {"seed": 0, **{TASK_SPLIT_KEYS[k]: v for k, v in table.items() if k in TASK_SPLIT_KEYS}}
        return cls(data_split=SplitConfig(**split_kw), **kw)

    def to_dict(self) -> dict[str, Any]:
        """The ``[task]`` table (split settings flat; those of :data:`~ecgtransfer.signals.split.LATER_FIELDS`
        only when set, so a bench that does not use them keeps its fingerprint)."""
        out: dict[str, Any] = {"store": self.store}
        out.update({k: getattr(self.data_split, name) for k, name in TASK_SPLIT_KEYS.items()
                    if not (name in LATER_FIELDS and getattr(self.data_split, name) == LATER_FIELDS[name])})
        out.update(eval_split=self.eval_split, max_val_segments=self.max_val_segments,
                   max_test_segments=self.max_test_segments)
        return out

    def check(self, where: str) -> None:
        """Raise :class:`ConfigError` naming the key: the evaluation caps and the evaluated split (the split's own
        rules were checked by :class:`~ecgtransfer.signals.split.SplitConfig` when it was built)."""
        check_positive_int(where, "task.max_val_segments", self.max_val_segments, allow_none=True)
        check_positive_int(where, "task.max_test_segments", self.max_test_segments, allow_none=True)
        if self.eval_split not in ("test", "val"):
            raise config_error(where, f"task.eval_split must be 'test' or 'val', found {self.eval_split!r}")


for _key, _name in TASK_SPLIT_KEYS.items():
    setattr(TaskConfig, _key, part_view("data_split", _name, f"``data_split.{_name}`` (``[task].{_key}``)"))


@dataclass(frozen=True)
class SourceConfig:
    """The source task of the ``ecg`` init: the bench trains a model on it first (once per encoding).

    Attributes:
        store: path of the source segment store (e.g. challenge-2017 rhythm windows, or mitdb beats).
        split: how to split it (validation picks the best source epoch).
        init: initialisation of the source model (``scratch`` or an ImageNet variant).
        optim: optimiser mode of the source training.
        epochs, max_steps: budget of the source training (default: the bench's).
        seed: seed of the source training.
        train: ``TrainConfig`` fields for the source training only, applied over the bench's ``[train]`` (for
            example ``{exclude_classes = ["~"], rr = "on"}``: the source task's own classes and inputs).
        lead: which of the source store's leads the source model images: a lead name of the source store (imaged
            like the target's lead, e.g. ``"II"`` of a 12-lead PTB-XL store for MLII beats), ``"grid"`` (every lead
            as a tile, :func:`ecgtransfer.imaging.grid_layout`), or None (the ``encoding_params`` of ``[train]`` /
            ``[source.train]``, as before). A source store with another number of leads than the target's needs
            one (``ecg`` arms are skipped with the reason otherwise).
    """

    store: str
    split: str = "patient"
    init: str = "scratch"
    optim: str = "uniform"
    epochs: int | None = None
    max_steps: int | None = None
    seed: int = 0
    train: Mapping[str, Any] = field(default_factory=dict)
    lead: str | None = None

    def check(self, where: str) -> None:
        """Raise :class:`ConfigError` naming the key (``where``: ``"<config> [source]"``): the optimiser mode, the
        init (not ``ecg`` itself) and the lead (given once)."""
        if self.optim not in OPTIM_MODES:
            raise config_error(where, f"optim must be one of {OPTIM_MODES}, found {self.optim!r}")
        if self.init == "ecg":
            raise config_error(where, "the source model cannot itself start from 'ecg'")
        if self.lead is not None:
            if not isinstance(self.lead, str) or not self.lead.strip():
                raise config_error(where, f"lead must be a lead name of the source store or "
                                          f"{SOURCE_LEAD_GRID!r}, found {self.lead!r}")
            if "lead" in dict(self.train.get("encoding_params") or {}):
                raise config_error(where, "lead is given twice: [source].lead and [source.train] "
                                          "encoding_params.lead; keep one")


#: ``[source].lead`` value that images every lead of the source store as a tile of one image
SOURCE_LEAD_GRID = "grid"


@dataclass(frozen=True)
class PrimaryContrast:
    """The one contrast declared primary (reported first, at the unadjusted level; the others are Holm-adjusted).

    Attributes:
        arm, baseline: arm names (``arm - baseline`` of test macro-F1).
        fraction: the data fraction (default: the largest).
        encoding: the encoding (default: the bench's first).
    """

    arm: str
    baseline: str
    fraction: float | None = None
    encoding: str | None = None

    def check(self, where: str, *, names: Sequence[str], fractions: Sequence[float],
              encodings: Sequence[str]) -> None:
        """Raise :class:`ConfigError` (``where``: ``"<config> [bench.primary]"``) unless it names two different arms
        of ``names``, one of the bench's ``fractions`` and one of its ``encodings``."""
        for x in (self.arm, self.baseline):
            if x not in names:
                raise config_error(where, f"names no arm {x!r}; arms are {list(names)}")
        if self.arm == self.baseline:
            raise config_error(where, "arm and baseline are the same arm")
        if self.fraction is not None and not any(same_fraction(self.fraction, f) for f in fractions):
            raise config_error(where, f"fraction {self.fraction} is not one of the fractions {list(fractions)}")
        if self.encoding is not None and self.encoding not in encodings:
            raise config_error(where, f"encoding {self.encoding!r} is not one of the encodings {list(encodings)}")


@dataclass(frozen=True)
class BenchConfig:
    """A whole benchmark. Every arm gets the same budget, schedule family, data and image size.

    Attributes:
        name: label of the benchmark (report title).
        task: the target task.
        arms: the arms compared (at least one; ``scratch`` is the baseline of the paired differences).
        seeds: training seeds; each seed also draws its own data subsample (shared by all arms: paired).
        fractions: fractions of the training data, each in (0, 1]; smaller fractions are subsets of larger ones.
        fraction_mode: ``per-class`` (that share of each class's training segments, at least one per class)
            or ``per-patient`` (that share of the training patients, all their segments).
        encodings: the encodings (every arm runs each unless it names its own).
        base: the training settings every cell shares, one :class:`~ecgtransfer.training.TrainConfig` (the owner of
            their defaults and rules); a cell's config is this with the cell's coordinates replaced. Written in TOML
            as ``[bench]`` keys (:data:`BENCH_TRAIN_KEYS`, read back as ``cfg.epochs``, ``cfg.lrs``...) and the
            ``[train]`` table, with the ``[task]`` split: ``image_size``; ``epochs`` (per cell, the same for every
            arm; with ``patience`` the cap); ``max_steps`` (optional cap on a cell's steps); ``batch_size``;
            ``scheduler`` (one schedule family for every arm); ``warmup_steps`` (None: 5% of the cell's steps);
            ``lrs`` (the default tier learning rates, TrainConfig ``tiers``); ``optimizer``; ``device``; ``threads``
            (torch CPU threads, TrainConfig ``num_threads``); ``patience`` (early stopping after this many epochs
            without a better validation selection-F1, TrainConfig ``early_stopping``; the same rule for every arm).
        min_steps: optional floor on the optimisation steps of a cell: a cell whose training subsample gives
            fewer than ``min_steps`` steps in ``epochs`` epochs trains ``ceil(min_steps / steps_per_epoch)``
            epochs instead (small fractions otherwise get only a handful of steps). The steps per epoch depend
            only on the cell's subsample, which every arm of a (fraction, seed) shares, so arms stay equal.
        target_f1: the validation macro-F1 whose first crossing gives "epochs/seconds to target".
        keep_checkpoints: keep each cell's checkpoints (off: a bench directory stays small).
        train: the ``[train]`` table as written (``TrainConfig`` fields for every cell, e.g. ``num_workers``,
            ``amp``, augmentation), already part of ``base``.
        source: the source task of ``ecg`` arms.
        notes: free text printed near the top of the report (e.g. why the image size is reduced).
        lr_sweep: scale factors of every arm's learning rate(s) (e.g. ``[0.1, 0.3, 1, 3]``, >= 4 log-spaced for a
            tuned arm) tried before the grid, on validation ``selection_f1`` only, at ``sweep_fraction`` (default the
            largest fraction) and the first seed; the chosen factor then trains every seed and fraction. Empty: no
            sweep (the configured LRs).
        wd_sweep: weight-decay values (absolute, >= 0) tried after the LR sweep, at each arm's chosen LR factor,
            on validation ``selection_f1`` (a coordinate-wise search, :mod:`ecgtransfer.bench.sweeps`: LR first,
            then weight decay, then clipping). The arm's own value is the point already trained. Empty: not swept.
        clip_sweep: gradient-clipping max norms (0 = off) tried after the weight decay, the same way.
        sweep_fraction: the fraction the sweep trains on.
        primary: the primary contrast (``[bench.primary]``: ``arm``, ``baseline``, ``fraction``, ``encoding``);
            None: the first contrast at the largest fraction, reported as not declared.
        contrasts: the ``[arm, baseline]`` pairs compared at every fraction, or ``[arm, baseline, fraction]`` at that
            fraction only (the questions declared before the run; default: every arm against the baseline arm).
        bootstrap_replicates: replicates of the paired bootstrap over test records and seeds.
        bootstrap_seed: seed of its draws (the same draws for every arm).
        config_dir: directory that relative paths are resolved against (set by :func:`load_config`).
    """

    task: TaskConfig
    arms: tuple[ArmConfig, ...]
    name: str = "bench"
    seeds: tuple[int, ...] = (0,)
    fractions: tuple[float, ...] = (1.0,)
    fraction_mode: str = "per-class"
    encodings: tuple[str, ...] = ("spectrogram",)
    base: TrainConfig = field(default_factory=lambda: TrainConfig(**BENCH_TRAIN_DEFAULTS))
    min_steps: int | None = None
    target_f1: float = 0.5
    keep_checkpoints: bool = False
    train: Mapping[str, Any] = field(default_factory=dict)
    source: SourceConfig | None = None
    notes: str = ""
    lr_sweep: tuple[float, ...] = ()
    wd_sweep: tuple[float, ...] = ()
    clip_sweep: tuple[float, ...] = ()
    sweep_fraction: float | None = None
    primary: PrimaryContrast | None = None
    contrasts: tuple[tuple[Any, ...], ...] = ()
    bootstrap_replicates: int = BOOTSTRAP_REPLICATES
    bootstrap_seed: int = 0
    config_dir: str | None = None

    # -- derived ----------------------------------------------------------------------------------
    def arm(self, name: str) -> ArmConfig:
        for a in self.arms:
            if a.name == name:
                return a
        raise ConfigError(f"no arm named {name!r}; arms are {[a.name for a in self.arms]}")

    def arm_encodings(self, arm: ArmConfig) -> tuple[str, ...]:
        return arm.encodings if arm.encodings is not None else self.encodings

    def resolve_path(self, path: str) -> Path:
        """``path`` as given, or relative to the config file's directory."""
        p = Path(os.path.expanduser(path))
        if not p.is_absolute() and self.config_dir is not None:
            p = Path(os.path.normpath(Path(self.config_dir) / p))
        return p

    @property
    def store_path(self) -> Path:
        return self.resolve_path(self.task.store)

    @property
    def source_store_path(self) -> Path | None:
        return self.resolve_path(self.source.store) if self.source is not None else None

    def arm_lrs(self, arm: ArmConfig) -> tuple[float, float, float]:
        return tuple(arm.lrs) if arm.lrs is not None else tuple(self.lrs)  # type: ignore[return-value]

    def arm_sweep(self, arm: ArmConfig) -> tuple[float, ...]:
        """The LR scale factors swept for ``arm`` (empty: no sweep)."""
        if not arm.sweepable:
            return ()
        return tuple(arm.lr_sweep) if arm.lr_sweep is not None else tuple(self.lr_sweep)

    def arm_values(self, arm: ArmConfig, key: str) -> tuple[float, ...]:
        """The values of swept setting ``key`` (``wd_sweep``, ``clip_sweep``: :data:`SETTING_KEYS`) tried for
        ``arm`` after its LR factor (empty: not swept)."""
        if key not in SETTING_KEYS:
            raise ConfigError(f"{key!r} is not a swept setting; they are {list(SETTING_KEYS)}")
        if not arm.sweepable:
            return ()
        own = getattr(arm, key)
        return tuple(own) if own is not None else tuple(getattr(self, key))

    @property
    def sweep_at(self) -> float:
        """The fraction the LR sweep trains on."""
        return float(self.sweep_fraction if self.sweep_fraction is not None else max(self.fractions))

    def arm_lr(self, arm: ArmConfig) -> float:
        return float(arm.lr) if arm.lr is not None else float(max(self.arm_lrs(arm)))

    def cell_epochs(self, steps_per_epoch: int) -> int:
        """Epochs of a cell with ``steps_per_epoch`` optimiser steps per epoch: ``epochs``, raised to reach
        ``min_steps`` (``max_steps`` still caps the steps)."""
        if not self.min_steps or steps_per_epoch <= 0:
            return self.epochs
        return max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists), as recorded in results.json: the TOML keys (``[bench]`` training
        keys flat, ``task`` with its split flat) and ``base``, the shared TrainConfig."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("base", "task", "arms", "source",
                                                                                    "primary")}
        d.update({k: getattr(self, k) for k in BENCH_TRAIN_KEYS})
        d.update(task=self.task.to_dict(), arms=[asdict(a) for a in self.arms],
                 source=None if self.source is None else {**asdict(self.source), "train": dict(self.source.train)},
                 primary=None if self.primary is None else asdict(self.primary), train=dict(self.train),
                 base=self.base.to_dict())
        return json.loads(json.dumps(d))

    def budget_fingerprint(self) -> str:
        """Hash of the settings every cell shares (task, budget, ``[train]``), not the cell's coordinates.

        ``[source]`` is not part of it: only ``ecg`` arms depend on the source task, and the bench adds it to
        their cells' fingerprints. Finished cells whose fingerprint differs from the current one are recomputed.
        """
        return hashlib.sha256(json.dumps(self.budget_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def budget_dict(self) -> dict[str, Any]:
        """The settings :meth:`budget_fingerprint` hashes (JSON-able; store paths left out)."""
        keys = ("task", "fraction_mode", "image_size", "epochs", "min_steps", "max_steps", "batch_size",
                "scheduler", "warmup_steps", "optimizer", "train", "patience")
        d = self.to_dict()
        d["task"] = {k: v for k, v in d["task"].items() if k != "store"}  # the path may move; the hash is checked
        return {k: d[k] for k in keys}

    # -- checks -----------------------------------------------------------------------------------
    def check(self, where: str = "bench config") -> None:
        """Raise :class:`ConfigError` naming the key when this config is inconsistent, in this order: the grid,
        the task, the arm names and the bootstrap, the sweeps, the contrasts, the primary contrast, each arm, the
        source. (The training settings (epochs, batch_size, image_size, max_steps, threads, warmup_steps, lrs,
        scheduler, optimizer, patience, the split) were checked by their owners when ``base`` was built.)"""
        self._check_grid(where)
        self.task.check(where)
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise config_error(where, f"arm names must be unique, found {names}")
        check_positive_int(where, "bootstrap_replicates", self.bootstrap_replicates)
        self._check_sweeps(where)
        self._check_contrasts(where, names)
        if self.primary is not None:
            self.primary.check(f"{where} [bench.primary]", names=names, fractions=self.fractions,
                               encodings=self.encodings)
        for a in self.arms:
            a.check(f"{where} arm {a.name!r}", has_source=self.source is not None, encodings=self.arm_encodings(a))
        if self.source is not None:
            self.source.check(f"{where} [source]")

    def _check_grid(self, where: str) -> None:
        """``min_steps``, the seeds, the fractions and their mode, the encodings, ``target_f1``."""
        check_positive_int(where, "min_steps", self.min_steps, allow_none=True)
        if self.min_steps and self.max_steps and self.min_steps > self.max_steps:
            raise config_error(where, f"min_steps ({self.min_steps}) is larger than max_steps ({self.max_steps})")
        if not self.seeds:
            raise config_error(where, "seeds is empty")
        if len(set(self.seeds)) != len(self.seeds):
            raise config_error(where, f"seeds contain duplicates: {list(self.seeds)}")
        for seed in self.seeds:
            try:
                check_seed(seed, "seeds")
            except ConfigError as exc:
                raise config_error(where, f"{exc} (in {list(self.seeds)})") from None
        if not self.fractions:
            raise config_error(where, "fractions is empty")
        for f in self.fractions:
            if not (0.0 < f <= 1.0) or math.isnan(f):
                raise config_error(where, f"each fraction must be in (0, 1], found {f}")
        if len(set(self.fractions)) != len(self.fractions):
            raise config_error(where, f"fractions contain duplicates: {list(self.fractions)}")
        if self.fraction_mode not in FRACTION_MODES:
            raise config_error(where, f"fraction_mode must be one of {FRACTION_MODES}, found {self.fraction_mode!r}")
        if not self.encodings:
            raise config_error(where, "encodings is empty; name at least one image encoding (e.g. [\"spectrogram\"])")
        for enc in self.encodings:
            check_encoding(enc, where)
        if not (0.0 < self.target_f1 <= 1.0):
            raise config_error(where, f"target_f1 must be in (0, 1], found {self.target_f1}")

    def _check_sweeps(self, where: str) -> None:
        """The LR factors and the swept settings' values, and the fraction the sweep trains on."""
        if any(not (x > 0) for x in self.lr_sweep) or len(set(self.lr_sweep)) != len(self.lr_sweep):
            raise config_error(where, f"lr_sweep factors must be distinct positive numbers, found "
                                      f"{list(self.lr_sweep)}")
        check_nameable(where, "lr_sweep", self.lr_sweep)
        for key in SETTING_KEYS:
            check_setting_values(where, key, getattr(self, key))
        if self.sweep_fraction is not None and not any(same_fraction(self.sweep_fraction, f) for f in self.fractions):
            raise config_error(where, f"sweep_fraction {self.sweep_fraction} is not one of the fractions "
                                      f"{list(self.fractions)}")

    def _check_contrasts(self, where: str, names: Sequence[str]) -> None:
        """Each contrast names two arms of ``names`` (and, when it has one, one of the fractions)."""
        for a, b, *at in self.contrasts:
            for x in (a, b):
                if x not in names:
                    raise config_error(where, f"contrast [{a!r}, {b!r}] names no arm {x!r}; arms are {list(names)}")
            if at and not any(same_fraction(at[0], f) for f in self.fractions):
                raise config_error(where, f"contrast [{a!r}, {b!r}, {at[0]}]: fraction {at[0]} is not one of the "
                                          f"fractions {list(self.fractions)}")


for _key, _name in BENCH_TRAIN_KEYS.items():  # cfg.epochs, cfg.lrs, cfg.threads...: views of base, not copies
    setattr(BenchConfig, _key, part_view("base", _name, f"``base.{_name}`` (``[bench].{_key}``)"))

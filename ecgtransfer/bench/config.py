"""Benchmark configuration: dataclasses, TOML loading and validation.

A benchmark config names the target task (a segment store and how to split it), the arms to compare,
the seeds, the fractions of the training data, the budget every arm gets (epochs, steps, batch size,
schedule family), the image size and the encodings. See ``docs/bench.md`` for every key.

Example (``benchmarks/smoke.toml``)::

    [bench]
    name = "smoke"
    seeds = [0, 1]
    fractions = [0.2, 1.0]
    encodings = ["spectrogram"]
    image_size = 64
    epochs = 2

    [task]
    store = "../stores/mitdb-beats"     # relative to this file
    split = "patient"

    [[arms]]
    name = "scratch"

    [[arms]]
    name = "imagenet"

Arms may also be given as plain strings (``arms = ["scratch", "imagenet"]``), which picks the preset of
that name (:data:`ARM_PRESETS`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ecgtransfer.bench.stats import BOOTSTRAP_REPLICATES
from ecgtransfer.bench.sweeps import SETTING_KEYS
from ecgtransfer._validate import check_seed
from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging.encode import check_encoding
from ecgtransfer.models.tiers import TierConfig
from ecgtransfer.models.weight_registry import WEIGHT_NAMES
from ecgtransfer.models.weights import HEAD_MODES
from ecgtransfer.signals.split import LATER_FIELDS, SplitConfig
from ecgtransfer.training.config import PART_KEYS, TrainConfig, part_view

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: How the pretrained backbone is adapted.
#: ``tiered``: three learning rates (features_1 < features_2 < classifier);
#: ``uniform``: one learning rate for every parameter;
#: ``linear-probe``: backbone frozen, only the classifier head trains.
OPTIM_MODES = ("tiered", "uniform", "linear-probe")
#: Initialisations an arm can start from (a path to a checkpoint or state_dict is accepted too): random, the weight
#: registry's names, or the bench's own ECG source model.
INITS = ("scratch", *WEIGHT_NAMES, "ecg")
#: What an arm trains on: ``target`` (the cell's subsample of the target's training patients) or ``pooled`` (that
#: subsample and every segment of the ``[source]`` store in one training set; the target's validation and test
#: patients untouched): the competitor of "pretrain on the source, fine-tune on the target".
TRAIN_DATA = ("target", "pooled")
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
class ArmConfig:
    """One arm of the comparison: where the weights start and how they are trained.

    Attributes:
        name: unique label used in tables and file names (``[A-Za-z0-9_.-]+``).
        init: ``scratch`` (random init), ``imagenet`` (torchvision V2 weights), ``imagenet-v1``,
            ``imagenet-v2``, ``ecg`` (a source model the bench trains first on ``[source].store``), or a path
            to an ecgtransfer checkpoint / torchvision state_dict.
        optim: ``tiered``, ``uniform`` or ``linear-probe`` (see :data:`OPTIM_MODES`).
        encodings: encodings this arm runs; ``None`` means every encoding of the bench.
        lrs: the three tier learning rates (tiered), default ``[bench].lrs``.
        lr: the single learning rate (uniform, and the head's LR for linear-probe); default the largest tier LR.
        description: free text shown in the report.
        model: the model kind (``ecgtransfer.models.registry.MODELS``: ``resnet50``, ``cnn1d``, ``features``);
            None: the training default (resnet50). ``cnn1d`` and ``features`` are the reference models.
        tier_preset: ``"seed"``: the seed recipe (SGD, 1e-5/1e-4/1e-3, momentum 0.1 on features_1, no weight
            decay), which fixes its learning rates (no sweep).
        weight_decay, grad_clip: per-arm overrides of the training defaults (``grad_clip = 0`` turns clipping off).
        lr_sweep: scale factors of this arm's learning rate(s) tried on validation (default ``[bench].lr_sweep``);
            tiered arms scale the whole triple; ``[]`` turns the sweep off for this arm.
        wd_sweep, clip_sweep: weight decays / gradient-clipping norms (0 = off) tried on validation at the chosen
            LR factor (defaults ``[bench].wd_sweep`` / ``clip_sweep``; ``[]``: the arm's own value, not swept).
        init_head: what happens to the pretrained head (:data:`~ecgtransfer.models.weights.HEAD_MODES`):
            ``auto`` loads it when it fits (an ``ecg`` source of the target's classes: the whole model transfers),
            ``new`` re-initialises it (backbone only). The cell's load report says which.
        train_data: :data:`TRAIN_DATA`: ``target``, or ``pooled`` (the target subsample plus the ``[source]`` store
            in one training set, for as many optimiser steps as the source model plus the cell's target budget).
    """

    name: str
    init: str = "scratch"
    optim: str = "tiered"
    encodings: tuple[str, ...] | None = None
    lrs: tuple[float, float, float] | None = None
    lr: float | None = None
    description: str = ""
    model: str | None = None
    tier_preset: str | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    lr_sweep: tuple[float, ...] | None = None
    wd_sweep: tuple[float, ...] | None = None
    clip_sweep: tuple[float, ...] | None = None
    init_head: str = "auto"
    train_data: str = "target"

    @property
    def sweepable(self) -> bool:
        """Whether a learning-rate / weight-decay sweep applies (not to a fixed recipe or a closed-form fit)."""
        from ecgtransfer.models.registry import CLOSED_FORM

        return self.tier_preset is None and self.model not in CLOSED_FORM

    @property
    def pretrained(self) -> bool:
        return self.init != "scratch"


#: ArmConfig fields added after results were committed, with their defaults: an arm at the default keeps its cells'
#: fingerprints (they enter a cell's fingerprint only when set otherwise)
ARM_LATER_FIELDS: dict[str, Any] = {"init_head": "auto", "train_data": "target"}


#: Named arms: ``arms = ["scratch", "imagenet"]`` in a config picks these.
ARM_PRESETS: dict[str, ArmConfig] = {
    # From scratch there are no pretrained features to protect: one learning rate (the head's) for all.
    "scratch": ArmConfig("scratch", init="scratch", optim="uniform",
                         description="random initialisation, one learning rate (the head's) for every layer"),
    "imagenet": ArmConfig("imagenet", init="imagenet", optim="tiered",
                          description="ImageNet (torchvision V2) weights, tiered learning rates"),
    "imagenet-v1": ArmConfig("imagenet-v1", init="imagenet-v1", optim="tiered",
                             description="ImageNet (torchvision V1) weights, tiered learning rates"),
    "imagenet-uniform": ArmConfig("imagenet-uniform", init="imagenet", optim="uniform",
                                  description="ImageNet V2 weights, one learning rate for every layer (ablation)"),
    "imagenet-linear-probe": ArmConfig("imagenet-linear-probe", init="imagenet", optim="linear-probe",
                                       description="ImageNet V2 weights, backbone frozen, head only (ablation)"),
    "ecg-pretrained": ArmConfig("ecg-pretrained", init="ecg", optim="tiered",
                                description="backbone pretrained by the bench on the [source] ECG store, "
                                            "tiered learning rates"),
    # the 2x2 (init x learning-rate scheme) and its neighbours (issue 11): init and optimiser are not confounded
    "scratch-uniform": ArmConfig("scratch-uniform", init="scratch", optim="uniform",
                                 description="random initialisation, one learning rate for every layer"),
    "scratch-tiered": ArmConfig("scratch-tiered", init="scratch", optim="tiered",
                                description="random initialisation, tiered learning rates (the optimiser of the "
                                            "transfer arms without their weights)"),
    "imagenet-tiered": ArmConfig("imagenet-tiered", init="imagenet", optim="tiered",
                                 description="ImageNet (torchvision V2) weights, tiered learning rates"),
    "ecg-uniform": ArmConfig("ecg-uniform", init="ecg", optim="uniform",
                             description="backbone pretrained on the [source] ECG store, one learning rate"),
    "ecg-tiered": ArmConfig("ecg-tiered", init="ecg", optim="tiered",
                            description="pretrained on the [source] ECG store (the whole model when the source has "
                                        "the target's classes, else the backbone), tiered learning rates"),
    # a source of the target's classes (e.g. svdb beats for mitdb beats): the head can transfer too (issue 22)
    "ecg-backbone-tiered": ArmConfig("ecg-backbone-tiered", init="ecg", optim="tiered", init_head="new",
                                     description="backbone pretrained on the [source] ECG store, head "
                                                 "re-initialised, tiered learning rates"),
    "pooled-tiered": ArmConfig("pooled-tiered", init="scratch", optim="tiered", train_data="pooled",
                               description="random initialisation, trained on the target subsample and the "
                                           "[source] store together (pooling), tiered learning rates"),
    "pooled-uniform": ArmConfig("pooled-uniform", init="scratch", optim="uniform", train_data="pooled",
                                description="random initialisation, trained on the target subsample and the "
                                            "[source] store together (pooling), one learning rate"),
    "seed-recipe": ArmConfig("seed-recipe", init="imagenet", optim="tiered", tier_preset="seed",
                             description="the seed recipe: ImageNet weights, SGD 1e-5/1e-4/1e-3, momentum 0.1 on "
                                         "features_1, no weight decay (fixed, not swept)"),
    "linear-probe": ArmConfig("linear-probe", init="imagenet", optim="linear-probe",
                              description="ImageNet V2 weights, backbone frozen, head only"),
    "cnn1d": ArmConfig("cnn1d", init="scratch", optim="uniform", model="cnn1d",
                       description="reference: a 1-D CNN on the raw beat (no images)"),
    "features": ArmConfig("features", init="scratch", optim="uniform", model="features",
                          description="reference: RR + morphology features with a linear classifier (closed form)"),
}


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


for _key, _name in BENCH_TRAIN_KEYS.items():  # cfg.epochs, cfg.lrs, cfg.threads...: views of base, not copies
    setattr(BenchConfig, _key, part_view("base", _name, f"``base.{_name}`` (``[bench].{_key}``)"))


# -- loading and validation ---------------------------------------------------------------------

_SECTION_KEYS = {"bench", "task", "arms", "train", "source"}


def _err(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _check_setting_values(where: str, key: str, values: Sequence[float]) -> None:
    """The values of a swept setting (``wd_sweep``, ``clip_sweep``): distinct numbers >= 0, each named exactly."""
    if any(not (x >= 0) for x in values) or len(set(values)) != len(values):
        raise _err(where, f"{key} values must be distinct numbers >= 0, found {list(values)}")
    _check_nameable(where, key, values)


def _check_nameable(where: str, key: str, values: Sequence[float]) -> None:
    """A sweep point's cell name carries its values with 6 significant digits (``f"{v:g}"``) and the cell trains
    the value read back from it: a value the name cannot hold exactly is refused."""
    inexact = [x for x in values if float(f"{x:g}") != x]
    if inexact:
        raise _err(where, f"{key} values {inexact} have more than 6 significant digits (cell names hold "
                          f"{[float(f'{x:g}') for x in inexact]}): round them")


def _check_keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _err(where, f"unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _tuple_of(where: str, key: str, value: Any, kind: type) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        value = [value]
    out = []
    for v in value:
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or isinstance(v, bool):
            raise _err(where, f"{key} must be a list of {kind.__name__}, found {v!r}")
        out.append(v)
    return tuple(out)


def _arm_from(where: str, raw: Any) -> ArmConfig:
    if isinstance(raw, str):
        if raw not in ARM_PRESETS:
            raise _err(where, f"unknown arm preset {raw!r}; presets are {sorted(ARM_PRESETS)} "
                              "(or give a table with name/init/optim)")
        return ARM_PRESETS[raw]
    if not isinstance(raw, Mapping):
        raise _err(where, f"an arm must be a preset name or a table, found {raw!r}")
    allowed = {f.name for f in fields(ArmConfig)}
    _check_keys(where, raw, allowed)
    if "name" not in raw:
        raise _err(where, "an arm table needs a 'name'")
    base = ARM_PRESETS.get(raw["name"], ArmConfig(str(raw["name"])))
    kw = dict(raw)
    if "encodings" in kw:
        kw["encodings"] = _tuple_of(where, "encodings", kw["encodings"], str)
    if "lrs" in kw:
        kw["lrs"] = _tuple_of(where, "lrs", kw["lrs"], float)
    for key in ("lr_sweep", *SETTING_KEYS):
        if key in kw:
            kw[key] = _tuple_of(where, key, kw[key], float)
    for key in ("weight_decay", "grad_clip"):
        if key in kw and kw[key] is not None:
            if isinstance(kw[key], bool) or not isinstance(kw[key], (int, float)) or kw[key] < 0:
                raise _err(where, f"{key} must be a number >= 0, found {kw[key]!r}")
            kw[key] = float(kw[key])
    if "lr" in kw and kw["lr"] is not None:
        if isinstance(kw["lr"], bool) or not isinstance(kw["lr"], (int, float)):
            raise _err(where, f"lr must be a positive number (a learning rate such as 1e-3), found {kw['lr']!r}")
        kw["lr"] = float(kw["lr"])
    return replace(base, **kw)


def config_from_dict(raw: Mapping[str, Any], *, config_dir: str | os.PathLike | None = None,
                     where: str = "bench config") -> BenchConfig:
    """Build and validate a :class:`BenchConfig` from a parsed TOML document (see the module docstring)."""
    raw = copy.deepcopy(dict(raw))
    _check_keys(where, raw, _SECTION_KEYS)
    bench = dict(raw.get("bench", {}))
    if "arms" in bench:  # ``arms = [...]`` written under [bench] (TOML puts it there) is the same list
        if "arms" in raw:
            raise _err(where, "arms are given twice ([bench].arms and top-level arms / [[arms]])")
        raw["arms"] = bench.pop("arms")
    bench_fields = ({f.name for f in fields(BenchConfig)} - {"task", "arms", "train", "source", "config_dir", "base"}
                    | set(BENCH_TRAIN_KEYS))
    _check_keys(f"{where} [bench]", bench, bench_fields)
    if "task" not in raw:
        raise _err(where, "missing [task] table (at least task.store)")
    task_raw = raw["task"]
    _check_keys(f"{where} [task]", task_raw, ({f.name for f in fields(TaskConfig)} - {"data_split"})
                | set(TASK_SPLIT_KEYS))
    if "store" not in task_raw:
        raise _err(f"{where} [task]", "missing 'store' (path of the target segment store)")
    try:
        task = TaskConfig.from_table(task_raw)
    except ConfigError as exc:
        raise _err(f"{where} [task]", str(exc)) from None
    arms_raw = raw.get("arms")
    if not arms_raw:
        raise _err(where, "no arms: add arms = [\"scratch\", \"imagenet\"] or [[arms]] tables")
    arms = tuple(_arm_from(f"{where} arms[{i}]", a) for i, a in enumerate(arms_raw))
    source = None
    if "source" in raw:
        _check_keys(f"{where} [source]", raw["source"], {f.name for f in fields(SourceConfig)})
        if "store" not in raw["source"]:
            raise _err(f"{where} [source]", "missing 'store' (path of the source segment store)")
        src_raw = dict(raw["source"])
        if not isinstance(src_raw.get("train", {}), Mapping):
            raise _err(f"{where} [source]", f"train must be a table of TrainConfig fields, found {src_raw['train']!r}")
        src_raw["train"] = dict(src_raw.get("train", {}))
        source = SourceConfig(**src_raw)
    kw: dict[str, Any] = dict(bench)
    for key, kind in (("seeds", int), ("fractions", float), ("encodings", str), ("lrs", float),
                      ("lr_sweep", float), *((k, float) for k in SETTING_KEYS)):
        if key in kw:
            kw[key] = _tuple_of(f"{where} [bench]", key, kw[key], kind)
    train_raw = raw.get("train", {})
    if not isinstance(train_raw, Mapping):
        raise _err(f"{where} [train]", f"must be a table of TrainConfig fields, found {train_raw!r}")
    _check_bench_owned(where, dict(train_raw), None if source is None else dict(source.train), bench)
    base_kw = {**BENCH_TRAIN_DEFAULTS, **dict(train_raw),
               **{BENCH_TRAIN_KEYS[k]: kw.pop(k) for k in list(kw) if k in BENCH_TRAIN_KEYS}}
    try:
        base = TrainConfig(**base_kw, data_split=task.data_split)
    except ConfigError as exc:
        renamed = [f"[bench].{k} is TrainConfig {n}" for k, n in BENCH_TRAIN_KEYS.items()
                   if k != n and n in str(exc)]
        raise _err(where, f"{exc}" + (f" ({'; '.join(renamed)})" if renamed else "")) from None
    if "target_f1" in kw:
        kw["target_f1"] = float(kw["target_f1"])
    if "primary" in kw:
        pr = kw["primary"]
        if not isinstance(pr, Mapping):
            raise _err(f"{where} [bench.primary]",
                       f"must be a table {{arm, baseline, fraction, encoding}}, found {pr!r}")
        _check_keys(f"{where} [bench.primary]", pr, {f.name for f in fields(PrimaryContrast)})
        if "arm" not in pr or "baseline" not in pr:
            raise _err(f"{where} [bench.primary]", "needs 'arm' and 'baseline' (arm names)")
        pr = dict(pr)
        if pr.get("fraction") is not None:
            pr["fraction"] = float(pr["fraction"])
        kw["primary"] = PrimaryContrast(**pr)
    if "contrasts" in kw:
        pairs = []
        for pair in kw["contrasts"] if isinstance(kw["contrasts"], (list, tuple)) else [kw["contrasts"]]:
            if (not isinstance(pair, (list, tuple)) or len(pair) not in (2, 3)
                    or not all(isinstance(x, str) for x in pair[:2])
                    or (len(pair) == 3 and (isinstance(pair[2], bool) or not isinstance(pair[2], (int, float))))):
                raise _err(f"{where} [bench]", "contrasts must be a list of [arm, baseline] pairs or [arm, baseline, "
                                               f"fraction] entries, found {pair!r}")
            pairs.append((pair[0], pair[1]) if len(pair) == 2 else (pair[0], pair[1], float(pair[2])))
        kw["contrasts"] = tuple(pairs)
    cfg = BenchConfig(task=task, arms=arms, train=dict(train_raw), source=source, base=base,
                      config_dir=str(config_dir) if config_dir is not None else None, **kw)
    validate(cfg, where=where)
    return cfg


#: TrainConfig fields a ``[train]`` table may not set: the bench sets them per cell or from its own keys
#: (the split's fractions are allowed: they are the ``ecg`` source model's; the target's come from ``[task]``)
BENCH_OWNED_TRAIN_FIELDS = frozenset({"encoding", "seed", "init", "weights", "out", "out_dir", "run_dir",
                                      "data_split", "optim", "split", "split_seed", "tiers", "freeze",
                                      *(n for k, n in BENCH_TRAIN_KEYS.items() if k != "patience")})


def _check_bench_owned(where: str, train: Mapping[str, Any], source_train: Mapping[str, Any] | None,
                       bench: Mapping[str, Any]) -> None:
    """``[train]`` / ``[source.train]`` may not set what the bench sets (:data:`BENCH_OWNED_TRAIN_FIELDS`), nor
    ``early_stopping`` next to ``[bench].patience``."""
    for section, table in (("[train]", train), ("[source.train]", source_train or {})):
        clash = sorted(BENCH_OWNED_TRAIN_FIELDS & set(table))
        if clash:
            raise _err(f"{where} {section}", f"{clash} are set by the bench itself ([bench]/[task]/[source] keys or "
                                             f"per cell); remove them from {section}")
    if bench.get("patience") is not None and "early_stopping" in train:
        raise _err(f"{where} [train]", "early_stopping is set by [bench].patience; remove it from [train]")


def validate(cfg: BenchConfig, *, where: str = "bench config") -> None:
    """Raise :class:`ConfigError` naming the key when ``cfg`` is inconsistent."""
    def pos_int(key: str, v: Any, allow_none: bool = False) -> None:
        if v is None and allow_none:
            return
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _err(where, f"{key} must be a positive integer, found {v!r}")

    # the training settings (epochs, batch_size, image_size, max_steps, threads, warmup_steps, lrs, scheduler,
    # optimizer, patience, the split) were validated by their owners when ``base`` was built
    pos_int("min_steps", cfg.min_steps, allow_none=True)
    if cfg.min_steps and cfg.max_steps and cfg.min_steps > cfg.max_steps:
        raise _err(where, f"min_steps ({cfg.min_steps}) is larger than max_steps ({cfg.max_steps})")
    if not cfg.seeds:
        raise _err(where, "seeds is empty")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise _err(where, f"seeds contain duplicates: {list(cfg.seeds)}")
    for seed in cfg.seeds:
        try:
            check_seed(seed, "seeds")
        except ConfigError as exc:
            raise _err(where, f"{exc} (in {list(cfg.seeds)})") from None
    if not cfg.fractions:
        raise _err(where, "fractions is empty")
    for f in cfg.fractions:
        if not (0.0 < f <= 1.0) or math.isnan(f):
            raise _err(where, f"each fraction must be in (0, 1], found {f}")
    if len(set(cfg.fractions)) != len(cfg.fractions):
        raise _err(where, f"fractions contain duplicates: {list(cfg.fractions)}")
    if cfg.fraction_mode not in FRACTION_MODES:
        raise _err(where, f"fraction_mode must be one of {FRACTION_MODES}, found {cfg.fraction_mode!r}")
    if not cfg.encodings:
        raise _err(where, "encodings is empty; name at least one image encoding (e.g. [\"spectrogram\"])")
    for enc in cfg.encodings:
        check_encoding(enc, where)
    if not (0.0 < cfg.target_f1 <= 1.0):
        raise _err(where, f"target_f1 must be in (0, 1], found {cfg.target_f1}")
    pos_int("task.max_val_segments", cfg.task.max_val_segments, allow_none=True)
    pos_int("task.max_test_segments", cfg.task.max_test_segments, allow_none=True)
    if cfg.task.eval_split not in ("test", "val"):
        raise _err(where, f"task.eval_split must be 'test' or 'val', found {cfg.task.eval_split!r}")
    names = [a.name for a in cfg.arms]
    if len(set(names)) != len(names):
        raise _err(where, f"arm names must be unique, found {names}")
    pos_int("bootstrap_replicates", cfg.bootstrap_replicates)
    if any(not (x > 0) for x in cfg.lr_sweep) or len(set(cfg.lr_sweep)) != len(cfg.lr_sweep):
        raise _err(where, f"lr_sweep factors must be distinct positive numbers, found {list(cfg.lr_sweep)}")
    _check_nameable(where, "lr_sweep", cfg.lr_sweep)
    for key in SETTING_KEYS:
        _check_setting_values(where, key, getattr(cfg, key))
    if cfg.sweep_fraction is not None and all(abs(cfg.sweep_fraction - f) > 1e-12 for f in cfg.fractions):
        raise _err(where, f"sweep_fraction {cfg.sweep_fraction} is not one of the fractions {list(cfg.fractions)}")
    for a, b, *at in cfg.contrasts:
        for x in (a, b):
            if x not in names:
                raise _err(where, f"contrast [{a!r}, {b!r}] names no arm {x!r}; arms are {names}")
        if at and all(abs(at[0] - f) > 1e-12 for f in cfg.fractions):
            raise _err(where, f"contrast [{a!r}, {b!r}, {at[0]}]: fraction {at[0]} is not one of the fractions "
                              f"{list(cfg.fractions)}")
    if cfg.primary is not None:
        pw = f"{where} [bench.primary]"
        for x in (cfg.primary.arm, cfg.primary.baseline):
            if x not in names:
                raise _err(pw, f"names no arm {x!r}; arms are {names}")
        if cfg.primary.arm == cfg.primary.baseline:
            raise _err(pw, "arm and baseline are the same arm")
        if cfg.primary.fraction is not None and all(abs(cfg.primary.fraction - f) > 1e-12 for f in cfg.fractions):
            raise _err(pw, f"fraction {cfg.primary.fraction} is not one of the fractions {list(cfg.fractions)}")
        if cfg.primary.encoding is not None and cfg.primary.encoding not in cfg.encodings:
            raise _err(pw, f"encoding {cfg.primary.encoding!r} is not one of the encodings {list(cfg.encodings)}")
    for a in cfg.arms:
        aw = f"{where} arm {a.name!r}"
        if not a.name or any(not (c.isalnum() or c in "_.-") for c in a.name):
            raise _err(aw, "name may only hold letters, digits, '_', '.', '-'")
        if a.optim not in OPTIM_MODES:
            raise _err(aw, f"optim must be one of {OPTIM_MODES}, found {a.optim!r}")
        if a.init not in INITS and not (os.sep in a.init or a.init.endswith((".pt", ".pth", ".ckpt"))):
            raise _err(aw, f"init must be one of {INITS} or a checkpoint path, found {a.init!r}")
        if a.init == "ecg" and cfg.source is None:
            raise _err(aw, "init = 'ecg' needs a [source] table naming the source store")
        if a.init_head not in HEAD_MODES:
            raise _err(aw, f"init_head must be one of {HEAD_MODES}, found {a.init_head!r}")
        if a.train_data not in TRAIN_DATA:
            raise _err(aw, f"train_data must be one of {TRAIN_DATA}, found {a.train_data!r}")
        if a.train_data == "pooled" and cfg.source is None:
            raise _err(aw, "train_data = 'pooled' needs a [source] table naming the store to pool with")
        if a.train_data == "pooled" and a.model == "features":
            raise _err(aw, "train_data = 'pooled' is for trained models (resnet50, cnn1d), not the closed-form "
                           "features reference")
        if a.lrs is not None:
            try:  # the tier rule's owner
                TierConfig(lrs=tuple(a.lrs))
            except ConfigError as exc:
                raise _err(aw, str(exc)) from None
        if a.lr is not None and not a.lr > 0:
            raise _err(aw, f"lr must be positive, found {a.lr}")
        for enc in cfg.arm_encodings(a):
            check_encoding(enc, aw)
        if a.model is not None:
            from ecgtransfer.models.registry import MODELS

            if a.model not in MODELS:
                raise _err(aw, f"model must be one of {MODELS}, found {a.model!r}")
        if a.tier_preset is not None and a.tier_preset != "seed":
            raise _err(aw, f"tier_preset must be 'seed' or absent, found {a.tier_preset!r}")
        if any(not (x > 0) for x in (a.lr_sweep or ())):
            raise _err(aw, f"lr_sweep factors must be positive, found {list(a.lr_sweep or ())}")
        _check_nameable(aw, "lr_sweep", a.lr_sweep or ())
        for key in SETTING_KEYS:
            _check_setting_values(aw, key, getattr(a, key) or ())
    if cfg.source is not None:
        if cfg.source.optim not in OPTIM_MODES:
            raise _err(f"{where} [source]", f"optim must be one of {OPTIM_MODES}, found {cfg.source.optim!r}")
        if cfg.source.init == "ecg":
            raise _err(f"{where} [source]", "the source model cannot itself start from 'ecg'")
        if cfg.source.lead is not None:
            if not isinstance(cfg.source.lead, str) or not cfg.source.lead.strip():
                raise _err(f"{where} [source]", f"lead must be a lead name of the source store or "
                                                f"{SOURCE_LEAD_GRID!r}, found {cfg.source.lead!r}")
            if "lead" in dict(cfg.source.train.get("encoding_params") or {}):
                raise _err(f"{where} [source]", "lead is given twice: [source].lead and [source.train] "
                                                "encoding_params.lead; keep one")


def load_config(path: str | os.PathLike, *, overrides: Mapping[str, Any] | None = None) -> BenchConfig:
    """Read and validate a bench config TOML file.

    Args:
        path: the TOML file; relative store paths inside it are resolved against its directory.
        overrides: dotted keys replacing values after loading, e.g. ``{"task.store": "stores/x",
            "bench.seeds": [0]}`` (what the CLI's ``--set`` and ``--store`` do).
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"bench config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"bench config {path} is not valid TOML: {exc}") from exc
    for key, value in (overrides or {}).items():
        apply_override(raw, key, value, where=str(path))
    return config_from_dict(raw, config_dir=path.resolve().parent, where=str(path))


def apply_override(raw: dict[str, Any], key: str, value: Any, *, where: str = "override") -> None:
    """Set dotted ``key`` (``section.name``) in a raw config dict; a bare name goes to ``[bench]``."""
    parts = key.split(".")
    if len(parts) == 1:
        parts = ["bench", parts[0]]
    if parts[0] not in _SECTION_KEYS or parts[0] == "arms":
        raise ConfigError(f"{where}: cannot override {key!r}; use bench.*, task.*, train.* or source.*")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: cannot override {key!r}: {p} is not a table")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"bench.seeds=[0,1]"`` -> ``("bench.seeds", [0, 1])`` (the value is parsed as a TOML value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, found {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare string
    return key.strip(), parsed

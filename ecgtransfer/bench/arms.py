"""The arms of a benchmark: :class:`ArmConfig` (where an arm's weights start and how they are trained), the rules
it checks itself against, and the named presets (:data:`ARM_PRESETS`, with :data:`ARM_ALIASES`: one arm under two
names is one definition).

A bench config picks presets by name (``arms = ["scratch", "imagenet"]``) or writes ``[[arms]]`` tables
(:mod:`ecgtransfer.bench.config_toml`); :class:`~ecgtransfer.bench.config.BenchConfig` holds them and asks each to
:meth:`~ArmConfig.check` itself.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from ecgtransfer.bench.checks import check_nameable, check_setting_values, config_error
from ecgtransfer.bench.sweeps import SETTING_KEYS
from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging.encode import check_encoding
from ecgtransfer.models.tiers import TierConfig
from ecgtransfer.models.weight_registry import WEIGHT_NAMES, is_weight_name, is_weights_path
from ecgtransfer.models.weights import HEAD_MODES

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

    @property
    def uses_source(self) -> bool:
        """Whether the arm needs the ``[source]`` store: it starts from the source model (``init = "ecg"``) or trains
        on the pooled store (``train_data = "pooled"``)."""
        return self.init == "ecg" or self.train_data == "pooled"

    def check(self, where: str, *, has_source: bool, encodings: Sequence[str]) -> None:
        """Raise :class:`ConfigError` naming the key when this arm is inconsistent (``where``: e.g. ``"bench.toml
        arm 'tuned'"``): its choices, then its learning rates and sweeps. ``has_source``: the bench has a
        ``[source]`` table; ``encodings``: the encodings the arm runs."""
        self._check_choices(where, has_source)
        self._check_rates(where, encodings)

    def _check_choices(self, where: str, has_source: bool) -> None:
        """The name, the optimiser mode, the init (and its source), the head and the training data."""
        if not self.name or any(not (c.isalnum() or c in "_.-") for c in self.name):
            raise config_error(where, "name may only hold letters, digits, '_', '.', '-'")
        if self.optim not in OPTIM_MODES:
            raise config_error(where, f"optim must be one of {OPTIM_MODES}, found {self.optim!r}")
        if self.init not in INITS and not is_weight_name(self.init) and not is_weights_path(self.init):  # the one rule, the training config's too
            raise config_error(where, f"init must be one of {INITS} or a checkpoint path, found {self.init!r}")
        if self.init == "ecg" and not has_source:
            raise config_error(where, "init = 'ecg' needs a [source] table naming the source store")
        if self.init_head not in HEAD_MODES:
            raise config_error(where, f"init_head must be one of {HEAD_MODES}, found {self.init_head!r}")
        if self.train_data not in TRAIN_DATA:
            raise config_error(where, f"train_data must be one of {TRAIN_DATA}, found {self.train_data!r}")
        if self.train_data == "pooled" and not has_source:
            raise config_error(where, "train_data = 'pooled' needs a [source] table naming the store to pool with")
        if self.train_data == "pooled" and self.model == "features":
            raise config_error(where, "train_data = 'pooled' is for trained models (resnet50, cnn1d), not the "
                                      "closed-form features reference")

    def _check_rates(self, where: str, encodings: Sequence[str]) -> None:
        """The learning rates, the encodings, the model, the recipe and the swept values."""
        if self.lrs is not None:
            try:  # the tier rule's owner
                TierConfig(lrs=tuple(self.lrs))
            except ConfigError as exc:
                raise config_error(where, str(exc)) from None
        if self.lr is not None and not self.lr > 0:
            raise config_error(where, f"lr must be positive, found {self.lr}")
        for enc in encodings:
            check_encoding(enc, where)
        if self.model is not None:
            from ecgtransfer.models.registry import MODELS

            if self.model not in MODELS:
                raise config_error(where, f"model must be one of {MODELS}, found {self.model!r}")
        if self.tier_preset is not None and self.tier_preset != "seed":
            raise config_error(where, f"tier_preset must be 'seed' or absent, found {self.tier_preset!r}")
        if any(not (x > 0) for x in (self.lr_sweep or ())):
            raise config_error(where, f"lr_sweep factors must be positive, found {list(self.lr_sweep or ())}")
        check_nameable(where, "lr_sweep", self.lr_sweep or ())
        for key in SETTING_KEYS:
            check_setting_values(where, key, getattr(self, key) or ())


#: ArmConfig fields added after results were committed, with their defaults: an arm at the default keeps its cells'
#: fingerprints (they enter a cell's fingerprint only when set otherwise)
ARM_LATER_FIELDS: dict[str, Any] = {"init_head": "auto", "train_data": "target"}

#: Named arms: ``arms = ["scratch", "imagenet"]`` in a config picks these. Each arm is defined once; the names of
#: :data:`ARM_ALIASES` are added below as copies under their own name.
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
    # the 2x2 (init x learning-rate scheme) and its neighbours (issue 11): init and optimiser are not confounded
    "scratch-tiered": ArmConfig("scratch-tiered", init="scratch", optim="tiered",
                                description="random initialisation, tiered learning rates (the optimiser of the "
                                            "transfer arms without their weights)"),
    "ecg-uniform": ArmConfig("ecg-uniform", init="ecg", optim="uniform",
                             description="pretrained on the [source] ECG store (the whole model when the source has "
                                         "the target's classes, else the backbone), one learning rate"),
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

#: Preset names that are another preset under a second name (the same init, optimiser and description; only the
#: name, which labels its cells, differs): alias -> the arm it copies. The 2x2's names (issue 11) next to the
#: older names that existing configs use. (``ecg-pretrained``, the first name of ``ecg-tiered``, described only the
#: backbone's transfer; reports of earlier benches keep their words: results.json holds each arm's description.)
ARM_ALIASES: dict[str, str] = {
    "scratch-uniform": "scratch",
    "ecg-pretrained": "ecg-tiered",
    "imagenet-tiered": "imagenet",
    "imagenet-linear-probe": "linear-probe",
}
ARM_PRESETS.update({alias: replace(ARM_PRESETS[arm], name=alias) for alias, arm in ARM_ALIASES.items()})


__all__ = ["ARM_ALIASES", "ARM_LATER_FIELDS", "ARM_PRESETS", "INITS", "OPTIM_MODES", "TRAIN_DATA", "ArmConfig"]

"""The fine-tuning configuration: one dataclass, loadable from TOML, written to every run directory.

Example TOML (keys may sit at the top level or under a ``[train]`` table)::

    [train]
    init = "imagenet"
    encoding = "spectrogram"
    image_size = 224
    split = "patient"
    epochs = 20
    batch_size = 64
    tiers = [1e-5, 1e-4, 1e-3]
    scheduler = "cosine"
    warmup_steps = 200
    imbalance = "weighted"

    [train.encoding_params]
    nperseg = 64
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ecgtransfer._toml import read_toml
from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging.encode import ENCODINGS, IMAGE_SIZE, check_encoding
from ecgtransfer.models.tiers import TierConfig
from ecgtransfer.models.weight_registry import WEIGHT_FILE_SUFFIXES, WEIGHT_NAMES, is_weight_name, is_weights_path
from ecgtransfer.training.decision import DECISIONS, PREVALENCES
from ecgtransfer.training.schedules import SCHEDULERS
from ecgtransfer.signals.split import METHODS as SPLIT_METHODS
from ecgtransfer.signals.split import SplitConfig
from ecgtransfer.signals.template import check_beat_input, uses_template

if TYPE_CHECKING:  # pragma: no cover
    from ecgtransfer.imaging import ImageEncoder

#: ``init`` names (a path to a weights file is accepted too): the weight registry's names, then random init
INIT_CHOICES = (*WEIGHT_NAMES, "scratch")
IMBALANCE = ("weighted", "sampler", "none")
#: ``rr``: ``auto`` reads the store's RR context when it has one, ``on`` requires it, ``off`` ignores it
RR_MODES = ("auto", "on", "off")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
#: ``channels_last`` values; older configs' ``None`` / ``True`` / ``False`` read as auto / on / off
CHANNELS_LAST_CHOICES = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda")

#: fields that may differ between a checkpoint and the configuration that resumes it (``decision`` is fitted
#: after training: resuming a finished run with another one refits it)
RESUME_MUTABLE = frozenset({"device", "num_workers", "checkpoint_every", "progress", "compile", "num_threads",
                            "log_every", "decision"})


#: the parts a TrainConfig holds, each defined (defaults, validation) by its owner
PARTS: dict[str, type] = {"data_split": SplitConfig, "optim": TierConfig}
#: flat names of the parts' fields where they differ from the field's own name (older configs use them)
_FLAT_NAMES = {"data_split": {"method": "split", "seed": "split_seed"},
               "optim": {"lrs": "tiers", "preset": "tier_preset", "spread": "lr_spread"}}
#: flat key (TOML, CLI, keyword argument, ``config.json``) -> (part, field of the part); derived from the parts, so
#: a new field of TierConfig or SplitConfig is a training option without any change here
PART_KEYS: dict[str, tuple[str, str]] = {_FLAT_NAMES[part].get(f.name, f.name): (part, f.name)
                                         for part, cls in PARTS.items() for f in fields(cls)}


@dataclass(init=False)
class TrainConfig:
    """Everything that defines a fine-tuning run.

    Model and input
        model: ``"resnet50"`` (images), ``"cnn1d"`` (a 1-D CNN on the raw beat) or ``"features"`` (RR + morphology
            features with linear discriminants, fitted in closed form), see :mod:`ecgtransfer.models.registry`.
            ``init`` defaults to ``"scratch"`` for the reference models (they have no pretrained weights).
        rr: RR context fused late into the model: ``"auto"`` (when the store holds the ``rr`` extra), ``"on"``
            (required: a store without it is an error) or ``"off"``.
        lda_shrinkage: covariance shrinkage of the ``features`` model's weighted LDA, one of
            :data:`ecgtransfer.models.features.LDA_SHRINKAGE`: ``"none"`` (as de Chazal et al. published, the
            default) or ``"auto"`` (Ledoit-Wolf); other models ignore it.
        init: ``"imagenet"`` (torchvision's current ImageNet weights), ``"imagenet-v1"``, ``"imagenet-v2"``,
            ``"scratch"`` (random init) or a path to a weights file (``.pt``/``.pth``, loaded weights-only).
        init_head: ``"auto"`` (a source head with the model's shapes and classes loads: the whole model transfers)
            or ``"new"`` (it is re-initialised: only the backbone transfers); the run's load report says which
            (:data:`ecgtransfer.models.weights.HEAD_MODES`).
        encoding: image encoding of the signals (``"spectrogram"``, ``"recurrence"``, ``"gasf"``, ``"gadf"``,
            ``"stack"``); images are rendered per batch on the training device.
        encoding_params: extra keyword arguments of the encoder (for example ``nperseg``).
        image_size: side of the square images ``[B, 3, image_size, image_size]``.
        beat_input: what the model sees of a beat (:data:`ecgtransfer.signals.template.BEAT_INPUTS`): ``"leads"``
            (the stored leads), ``"template"`` (the leads and each lead minus its record's template: ``2C``
            channels) or ``"template-rgb"`` (lead 0 / lead 0 minus its template / lead 1: three image channels).
            The template is the median beat of the record (:mod:`ecgtransfer.signals.template`), computed from
            the record alone, in training as at predict time. With an image model the channels become the
            image's channels (``lead="stack"`` unless ``encoding_params`` names a lead).

    Data
        data_split: how the store is split, a :class:`ecgtransfer.signals.split.SplitConfig` (its owner). Given
            flat as ``split`` (the method: ``"patient"``, ``"kfold"``, ``"dechazal"``, ``"records"``, ``"random"``),
            ``split_seed`` (``None``: ``seed``), ``val_fraction``, ``test_fraction``, ``n_folds``, ``fold``,
            ``fold_database`` (``kfold``), ``test_records`` (``records``).
        train_fraction: fraction (0, 1] of the training segments used, per class (``ceil(fraction * n_class)``,
            at least one, seeded: :func:`ecgtransfer.training.data.subsample`, the bench's subsampler too); for
            data-efficiency curves.
        exclude_classes: classes left out of training and evaluation (their segments are dropped, the model has no
            output for them). Default ``("Q",)``: AAMI practice for MIT-BIH (unclassifiable beats, 8 in DS1); a
            name the store does not have is ignored. ``()`` keeps every class.
        majority_cap: keep at most this many segments of the majority class (the most frequent in the training
            part) per patient in the training and validation parts, seeded; every other class is kept in full.
            The test part is never subsampled. ``None``: no cap.
        select_min_support: the best epoch (``best.pt``, early stopping) maximises the validation macro-F1 over
            the classes with at least this many validation segments (``selection_f1``), so that a class with a
            handful of validation beats cannot swing the choice.
        validation_prevalence: ``"true"`` (default): when ``majority_cap`` capped the validation part, its
            segments are weighted back to the uncapped counts per patient and class
            (:func:`ecgtransfer.training.data.prevalence_weights`), so the validation metrics, the selection of the
            best epoch and the decision rule are those of the real prevalence; ``"capped"``: the capped part as it
            is. Choices: :data:`ecgtransfer.training.decision.PREVALENCES`.
        decision: how probabilities become a class, fitted on validation after training and stored in ``best.pt``
            and ``run.json`` (``evaluate`` and ``predict`` apply it): ``"argmax"`` (default, no bias),
            ``"prior"`` (Bayes correction from the training's prior to the validation prevalence) or ``"tuned"``
            (the prior rule adjusted per class to the best validation selection-F1); see
            :mod:`ecgtransfer.training.decision`.
        imbalance: ``"weighted"`` (default: cross-entropy with inverse-frequency class weights
            ``w_c = n / (K * n_c)`` over the K classes present in the training split), ``"sampler"``
            (plain cross-entropy, batches drawn with replacement with probability proportional to
            ``1 / n_c``, so classes are seen equally often) or ``"none"``.
        augment: apply signal augmentation to training batches ``[B, C, L]``.
        aug_scale: amplitude scaling, factor uniform in ``[1 - aug_scale, 1 + aug_scale]`` per sample and lead.
        aug_wander: baseline wander amplitude, relative to each segment's standard deviation.
        aug_noise: Gaussian noise standard deviation, relative to each segment's standard deviation.
        aug_shift: largest time shift as a fraction of the segment length (edges replicated).

    Optimisation
        epochs: number of passes over the training split.
        max_steps: stop after this many optimizer steps in total (``None``: no limit).
        batch_size: training batch size per process.
        eval_batch_size: evaluation batch size (``None``: ``2 * batch_size``).
        optim: the optimiser and its tiers, a :class:`ecgtransfer.models.tiers.TierConfig` (its owner: defaults and
            validation live there). Its fields are also given flat (TOML, CLI, keyword arguments, ``config.json``),
            under their own names except ``tiers`` (``lrs``: learning rates of the three tiers), ``tier_preset``
            (``preset``: ``"seed"``, the blog recipe) and ``lr_spread`` (``spread``); see :data:`PART_KEYS`:
            ``optimizer``, ``momentum``, ``tier_momentum``, ``weight_decay``, ``layer_decay``, ``freeze``,
            ``freeze_bn_stats``, ``no_decay_bn_bias``, ``betas``, ``nesterov``.
        scheduler: ``"cosine"`` (linear warmup then cosine decay), ``"onecycle"`` or ``"constant"``.
        warmup_steps: linear warmup steps (``None``: 5% of the total steps).
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        label_smoothing: cross-entropy label smoothing.
        early_stopping: stop after this many epochs without a better validation macro-F1 (``None``: never).
        val_every_steps: also validate every this many optimizer steps inside an epoch (``None``: at epoch ends
            only). These evaluations give the learning curve in steps (``val_steps.jsonl``, the bench's steps to
            target); the best epoch and early stopping still use the epoch-end evaluations.

    Execution
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        amp: ``"auto"`` (bf16 autocast on CUDA, and on CPUs that compute bf16 natively, else fp32), ``"bf16"``,
            ``"fp16"`` (CUDA, with a grad scaler) or ``"off"`` (exact fp32, no autocast); see
            :mod:`ecgtransfer.training.precision`.
        channels_last: the channels-last memory format: ``"auto"`` (on for CUDA and CPU bf16, off for CPU fp32),
            ``"on"`` or ``"off"``.
        compile: wrap the model in ``torch.compile``.
        deterministic: ``torch.use_deterministic_algorithms`` (warn-only) and cuDNN determinism.
        seed: seeds Python, NumPy and torch; the data order and augmentation are pure functions of
            ``(seed, epoch, step, rank)``.
        num_workers: DataLoader worker processes reading the store.
        num_threads: ``torch.set_num_threads`` for the run (``None``: leave torch's default).
        checkpoint_every: also write ``last.pt`` every this many optimizer steps (``None``: per epoch only).
        log_every: refresh the progress bar's loss every this many steps.
        progress: show a tqdm progress bar (rank 0 only).
    """

    model: str = "resnet50"
    rr: str = "auto"
    lda_shrinkage: str = "none"
    init: str = "imagenet"
    init_head: str = "auto"
    encoding: str = "spectrogram"
    encoding_params: dict[str, Any] = field(default_factory=dict)
    image_size: int = IMAGE_SIZE
    beat_input: str = "leads"

    data_split: SplitConfig = field(default_factory=SplitConfig)
    train_fraction: float = 1.0
    exclude_classes: tuple[str, ...] = ("Q",)
    majority_cap: int | None = None
    select_min_support: int = 10
    validation_prevalence: str = "true"
    decision: str = "argmax"
    imbalance: str = "weighted"
    augment: bool = False
    aug_scale: float = 0.1
    aug_wander: float = 0.1
    aug_noise: float = 0.02
    aug_shift: float = 0.05

    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    optim: TierConfig = field(default_factory=TierConfig)
    scheduler: str = "cosine"
    warmup_steps: int | None = None
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    early_stopping: int | None = 5
    val_every_steps: int | None = None

    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    deterministic: bool = True
    seed: int = 0
    num_workers: int = 0
    num_threads: int | None = None
    checkpoint_every: int | None = None
    log_every: int = 1
    progress: bool = True

    def __init__(self, **kwargs: Any) -> None:
        """Keyword arguments are the fields, or the parts' fields by their flat names (:data:`PART_KEYS`), which
        replace those of a part given whole (``optim=TierConfig(...)``)."""
        given: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        for key in [k for k in kwargs if k in PART_KEYS]:
            part, name = PART_KEYS[key]
            given[part][name] = kwargs.pop(key)
        own = {f.name: f for f in fields(self)}
        unknown = sorted(set(kwargs) - set(own))
        if unknown:
            raise ConfigError(f"train config: unknown key(s) {unknown}; valid keys are "
                              f"{sorted((set(own) - set(PARTS)) | set(PART_KEYS))}")
        for name, f in own.items():
            if name in kwargs:
                value = kwargs[name]
            elif f.default is not dataclasses.MISSING:
                value = f.default
            else:
                value = f.default_factory()  # type: ignore[misc]
            setattr(self, name, value)
        for part, cls in PARTS.items():
            value = getattr(self, part)
            if isinstance(value, Mapping):  # a nested table
                value = {**value, **given[part]}
            elif isinstance(value, cls):
                value = {**{f.name: getattr(value, f.name) for f in fields(cls)}, **given[part]} if given[part] \
                    else value
            else:
                raise ConfigError(f"train config: {part} must be a {cls.__name__} or a table, got {value!r}")
            if isinstance(value, Mapping):
                try:
                    value = cls(**value)
                except ConfigError as exc:
                    raise ConfigError(f"train config: {exc}") from None
                except TypeError as exc:
                    raise ConfigError(f"train config: {part}: {exc}") from None
            setattr(self, part, value)
        self.__post_init__()

    def __post_init__(self) -> None:
        from ecgtransfer._validate import check_field_types, check_seed

        from ecgtransfer.models.registry import KINDS

        kind = KINDS.get(self.model) if isinstance(self.model, str) else None
        if kind is not None and not kind.pretrained and self.init == "imagenet":  # the default init is a pretrained
            self.init = "scratch"                                                 # kind's
        self.exclude_classes = ((self.exclude_classes,) if isinstance(self.exclude_classes, str)
                                else tuple(str(v) for v in self.exclude_classes))
        self.encoding_params = dict(self.encoding_params)
        self.channels_last = normalise_channels_last(self.channels_last)
        check_field_types(self, "train config")  # a string where a number belongs names the field
        check_seed(self.seed, "train config: seed")
        self.validate()

    # -- validation -------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field and what it expects: the choices first, then
        the numbers."""
        self._check_choices()
        self._check_numbers()

    def _bad(self, name: str, expected: str) -> ConfigError:
        return ConfigError(f"train config: {name} must be {expected}, got {getattr(self, name)!r}")

    def _check_choices(self) -> None:
        bad = self._bad
        if self.init not in INIT_CHOICES and not is_weight_name(self.init) and not is_weights_path(self.init):
            raise bad("init", f"one of {INIT_CHOICES} or a weights file path (a folder in it or a name ending in "
                              f"{'/'.join(WEIGHT_FILE_SUFFIXES)})")
        from ecgtransfer.models.registry import KINDS
        from ecgtransfer.models.weights import HEAD_MODES

        if self.init_head not in HEAD_MODES:
            raise bad("init_head", f"one of {HEAD_MODES}")
        if not isinstance(self.model, str) or self.model not in KINDS:
            raise bad("model", f"one of {tuple(KINDS)}")
        if self.rr not in RR_MODES:
            raise bad("rr", f"one of {RR_MODES}")
        from ecgtransfer.models.features import LDA_SHRINKAGE

        if self.lda_shrinkage not in LDA_SHRINKAGE:
            raise bad("lda_shrinkage", f"one of {LDA_SHRINKAGE}")
        if not KINDS[self.model].pretrained and self.init != "scratch":
            raise bad("init", f"'scratch' for model {self.model!r} (pretrained weights exist for "
                              f"{', '.join(k.name for k in KINDS.values() if k.pretrained)} only)")
        if self.majority_cap is not None and int(self.majority_cap) < 1:
            raise bad("majority_cap", "a positive integer or None")
        if int(self.select_min_support) < 1:
            raise bad("select_min_support", "a positive integer")
        if self.validation_prevalence not in PREVALENCES:
            raise bad("validation_prevalence", f"one of {PREVALENCES}")
        if self.decision not in DECISIONS:
            raise bad("decision", f"one of {DECISIONS}")
        if self.scheduler not in SCHEDULERS:
            raise bad("scheduler", f"one of {SCHEDULERS}")
        check_encoding(self.encoding, "train config: encoding")
        check_beat_input(self.beat_input, "train config: beat_input")
        if self.imbalance not in IMBALANCE:
            raise bad("imbalance", f"one of {IMBALANCE}")
        if self.amp not in AMP_CHOICES:
            raise bad("amp", f"one of {AMP_CHOICES}")
        if self.channels_last not in CHANNELS_LAST_CHOICES:
            raise bad("channels_last", f"one of {CHANNELS_LAST_CHOICES}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise bad("device", f"one of {DEVICES} or 'cuda:N'")

    def _check_numbers(self) -> None:
        from ecgtransfer._validate import MAX_IMAGE_SIZE, positive_int

        bad = self._bad

        def whole(name: str, expected: str) -> None:  # inf / nan / 1.5 are refused, not int()-ed into a traceback
            try:
                positive_int(getattr(self, name), name)
            except ConfigError:
                raise bad(name, expected) from None

        for name in ("epochs", "batch_size", "image_size", "log_every"):
            whole(name, "a positive integer")
        if int(self.image_size) > MAX_IMAGE_SIZE:  # before any [B, 3, S, S] image is allocated
            raise bad("image_size", f"at most {MAX_IMAGE_SIZE} pixels")
        for name in ("max_steps", "eval_batch_size", "checkpoint_every", "early_stopping", "num_threads",
                     "val_every_steps"):
            if getattr(self, name) is not None:
                whole(name, "a positive integer or None")
        if self.warmup_steps is not None and int(self.warmup_steps) < 0:
            raise bad("warmup_steps", "a non-negative integer or None")
        if self.num_workers < 0:
            raise bad("num_workers", "a non-negative integer")
        if not 0.0 < self.train_fraction <= 1.0:
            raise bad("train_fraction", "in (0, 1]")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", "in [0, 1)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "positive or None")
        for name in ("aug_scale", "aug_wander", "aug_noise", "aug_shift"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, "in [0, 1)")

    def tier_config(self) -> TierConfig:
        """The :class:`~ecgtransfer.models.tiers.TierConfig` of the optimizer this configuration builds (``optim``)."""
        return self.optim

    def eval_batch(self) -> int:
        """The evaluation batch size: ``eval_batch_size``, or ``2 * batch_size`` when it is ``None``."""
        return int(self.eval_batch_size or 2 * self.batch_size)

    def image_encoder(self, fs: float | None, *, check_finite_values: bool = True) -> "ImageEncoder":
        """The :class:`~ecgtransfer.imaging.ImageEncoder` of this run for a store sampled at ``fs`` Hz."""
        from ecgtransfer.imaging import ImageEncoder

        params = dict(self.encoding_params)
        if uses_template(self.beat_input):  # the composed channels (beat, beat - template, ...) are the image's
            params.setdefault("lead", "stack")
        return ImageEncoder(self.encoding, size=self.image_size, fs=fs, check_finite_values=check_finite_values,
                            **params)

    # -- conversion -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A flat JSON/TOML-friendly dict (tuples become lists): the fields, with the parts' fields under their
        flat names (:data:`PART_KEYS`), as TOML files and ``config.json`` spell them."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in PARTS:
                continue
            out[f.name] = _plain(getattr(self, f.name))
        for key, (part, name) in PART_KEYS.items():
            out[key] = _plain(getattr(getattr(self, part), name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys raise :class:`ConfigError` listing the valid ones."""
        known = {f.name for f in fields(cls)} | set(PART_KEYS)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"train config: unknown key(s) {unknown}; valid keys are {sorted(known)}")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"train config: {exc}") from exc

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Load from a TOML file (top-level keys, or a ``[train]`` table)."""
        path = Path(path)
        data = read_toml(path, "config file")
        if "train" in data and isinstance(data["train"], dict):
            data = data["train"]
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def replace(self, **overrides: Any) -> "TrainConfig":
        """A copy with ``overrides`` applied (``None`` values are ignored only for unknown-free keys)."""
        merged = self.to_dict()
        merged.update(overrides)
        return TrainConfig.from_dict(merged)

    def incompatible_with(self, other: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Fields (other than :data:`RESUME_MUTABLE`) whose value differs from ``other`` (a config dict).

        Returns ``{name: (other's value, this value)}``; empty when a checkpoint with ``other`` may be resumed.
        """
        mine = self.to_dict()
        try:  # the checkpoint's settings as this version resolves them (a preset's values, flat names)
            resolved = TrainConfig.from_dict({k: v for k, v in other.items() if k in mine}).to_dict()
        except ConfigError:
            resolved = {}
        defaults = TrainConfig().to_dict()
        diff = {}
        for key, value in mine.items():
            if key in RESUME_MUTABLE:
                continue
            theirs = other.get(key, _MISSING)
            if key == "channels_last" and theirs is not _MISSING:
                theirs = normalise_channels_last(theirs)  # a checkpoint's older None/True/False
            if theirs is _MISSING:
                if key in resolved and _normalise(resolved[key]) == _normalise(value):
                    continue  # set by the checkpoint's own preset the same way
                if _normalise(value) == _normalise(defaults[key]):
                    continue  # a field added later, at its default: the checkpoint's run used that behaviour
            elif key in resolved:
                theirs = resolved[key]  # an older checkpoint's preset read as this version expands it
            if _normalise(theirs) != _normalise(value):
                diff[key] = (theirs if theirs is not _MISSING else "<absent>", value)
        return diff


_MISSING = object()


def _plain(v: Any) -> Any:
    """Tuples (also nested) as lists, dicts copied: a JSON/TOML value."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def part_view(part: str, name: str, doc: str) -> property:
    """A read-only property reading ``self.<part>.<name>``: how a config exposes a field of a part it holds whole
    (TrainConfig's flat names, the bench's ``[bench]`` / ``[task]`` keys) without a copy."""
    return property(lambda self: getattr(getattr(self, part), name), doc=doc)


for _key, (_part, _name) in PART_KEYS.items():  # cfg.tiers, cfg.split, ...: views of the parts, not copies
    setattr(TrainConfig, _key, part_view(_part, _name, f"``{_part}.{_name}`` (read-only: give ``{_key}=`` or "
                                                       "replace the part)"))


def normalise_channels_last(value: Any) -> Any:
    """``None`` / ``True`` / ``False`` (configs written before the choices existed) and true/false-like strings
    -> ``"auto"`` / ``"on"`` / ``"off"``; anything else is returned as given (``validate`` names it)."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        low = value.strip().lower()
        return {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}.get(low, low)
    return value


def _normalise(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_normalise(x) for x in v]
    if isinstance(v, dict):
        return {k: _normalise(x) for k, x in sorted(v.items())}
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def resolve_config(config: TrainConfig | Mapping[str, Any] | str | os.PathLike | None = None,
                   **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a config object, a dict, a TOML path or ``None`` (defaults), plus overrides."""
    if config is None:
        base = TrainConfig()
    elif isinstance(config, TrainConfig):
        base = config
    elif isinstance(config, Mapping):
        base = TrainConfig.from_dict(config)
    else:
        base = TrainConfig.from_toml(config)
    return base.replace(**overrides) if overrides else base

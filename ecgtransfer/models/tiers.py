"""Tiered learning rates: optimizer parameter groups for the three tiers a model declares.

The transfer-learning recipe fine-tunes the early feature extractor slowly and the new head fast:

=============  ==============================  ==============
tier           modules                         default LR
=============  ==============================  ==============
features_1     the early feature extractor     1e-5
features_2     the late features + pooling     1e-4
classifier     the head                        1e-3
=============  ==============================  ==============

Which parameters form each tier, and each block unit inside it, is the model's own declaration
(:meth:`~ecgtransfer.models.base.TieredModel.group_matcher`, applied by :func:`~ecgtransfer.models.base.match_tiers`);
nothing here knows a model's parameter names.

:class:`TierConfig` describes it (SGD or AdamW, weight decay off for batch-norm and bias parameters,
frozen tiers, a geometric spread of LRs, optional layer-wise decay inside tiers, the ``"seed"`` preset);
:func:`param_groups` turns it into ``torch.optim`` parameter groups (every group carries ``"tier"`` and
``"name"`` keys) and :func:`build_optimizer` into an optimizer. The learning-rate schedules that scale every group
from its own base LR are :mod:`ecgtransfer.training.schedules`.

Frozen tiers (:func:`freeze_tiers`) get ``requires_grad=False`` and stay in their parameter groups (a
parameter without a gradient is skipped by the optimizer, including its weight decay, so a later
:func:`unfreeze_tiers` needs no new optimizer). With ``bn_eval=True`` (``TierConfig.freeze_bn_stats``) their
batch-norm layers are also kept in eval mode, so running statistics stay the pretrained ones:
:meth:`TieredModel.train <ecgtransfer.models.base.TieredModel.train>` re-applies this automatically; for another
module call :func:`keep_frozen_bn_eval` after ``model.train()``. With ``bn_eval=False`` a frozen tier's batch norms
still update their running mean/variance in training mode (only their affine weights are frozen).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from ecgtransfer._validate import check_field_types
from ecgtransfer.errors import ConfigError
from ecgtransfer.models.base import TIERS, keep_frozen_bn_eval, match_tiers, tier_batchnorms, unwrap

log = logging.getLogger(__name__)

__all__ = ["OPTIMIZERS", "PRESETS", "SEED_PRESET", "TIERS", "TierConfig", "build_optimizer", "freeze_tiers",
           "keep_frozen_bn_eval", "param_groups", "unfreeze_tiers", "unwrap"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")

#: The blog recipe this toolkit comes from: plain SGD, one group per tier, LRs 1e-5 / 1e-4 / 1e-3,
#: momentum 0.1 on the first tier and 0.9 on the others, and no weight decay (SGD's default 0).
SEED_PRESET: dict[str, Any] = {
    "optimizer": "sgd",
    "lrs": (1e-5, 1e-4, 1e-3),
    "momentum": 0.9,
    "tier_momentum": (0.1, 0.9, 0.9),
    "weight_decay": 0.0,
    "no_decay_bn_bias": False,
    "nesterov": False,
    "spread": None,
    "layer_decay": None,
}
PRESETS: dict[str, dict[str, Any]] = {"seed": SEED_PRESET}


@dataclass
class TierConfig:
    """Optimizer settings per tier (loadable from TOML: lists become tuples).

    Args:
        lrs: base learning rates of ``(features_1, features_2, classifier)``, each > 0.
        optimizer: ``"sgd"`` or ``"adamw"``.
        momentum: SGD momentum for every tier (ignored by AdamW, which uses ``betas``).
        tier_momentum: optional SGD momentum per tier, overriding ``momentum`` (the seed uses 0.1/0.9/0.9).
        weight_decay: L2 (SGD) / decoupled (AdamW) weight decay, >= 0.
        no_decay_bn_bias: put batch-norm weights/biases and all biases (every parameter with ndim <= 1)
            into groups with weight decay 0.
        freeze: tier names to freeze (``requires_grad=False``) when the optimizer is built.
        freeze_bn_stats: keep the batch norms of frozen tiers in eval mode (running statistics frozen).
        spread: ``(lr_first, lr_last)``: geometric spread over the three tiers, replacing ``lrs``:
            ``lr_i = lr_first * (lr_last / lr_first) ** (i / 2)`` (``(1e-5, 1e-3)`` gives 1e-5, 1e-4, 1e-3).
        layer_decay: in (0, 1]: layer-wise decay inside each tier; the tier's last block unit gets the tier LR
            and each unit before it ``layer_decay`` times the next one (the units are the model's declaration,
            :meth:`~ecgtransfer.models.base.TieredModel.group_matcher`, e.g. one per residual block).
        betas: AdamW betas.
        nesterov: SGD Nesterov momentum.
        preset: ``None`` or ``"seed"`` (the blog recipe, :data:`SEED_PRESET`); a preset sets its fields,
            and setting one of them to a different non-default value is an error.
    """

    lrs: tuple[float, float, float] = (1e-5, 1e-4, 1e-3)
    optimizer: str = "sgd"
    momentum: float = 0.9
    tier_momentum: Optional[tuple[float, float, float]] = None
    weight_decay: float = 1e-4
    no_decay_bn_bias: bool = True
    freeze: tuple[str, ...] = ()
    freeze_bn_stats: bool = True
    spread: Optional[tuple[float, float]] = None
    layer_decay: Optional[float] = None
    betas: tuple[float, float] = (0.9, 0.999)
    nesterov: bool = False
    preset: Optional[str] = None

    def __post_init__(self) -> None:
        check_field_types(self, "tiers")
        for name in ("lrs", "tier_momentum", "freeze", "spread", "betas"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, tuple(value))
            elif name == "freeze" and isinstance(value, str):
                self.freeze = (value,)
        if self.preset is not None:
            self._apply_preset()
        self._validate()

    def _apply_preset(self) -> None:
        values = PRESETS.get(self.preset)  # type: ignore[arg-type]
        if values is None:
            raise ConfigError(f"unknown tier preset {self.preset!r}: expected one of {sorted(PRESETS)}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, value in values.items():
            current = getattr(self, name)
            if current != defaults[name] and current != value:
                raise ConfigError(
                    f"TierConfig(preset={self.preset!r}) sets {name}={value!r}, but {name}={current!r} was given; "
                    "drop the preset or the conflicting setting"
                )
            setattr(self, name, value)

    def _validate(self) -> None:
        if len(self.lrs) != 3 or any(not (float(lr) > 0) for lr in self.lrs):
            raise ConfigError(f"lrs must be three positive learning rates (features_1, features_2, classifier), got {self.lrs}")
        self.lrs = tuple(float(x) for x in self.lrs)  # type: ignore[assignment]
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.tier_momentum is not None:
            if self.optimizer != "sgd":
                raise ConfigError("tier_momentum is an SGD setting; AdamW uses betas")
            if len(self.tier_momentum) != 3 or any(not 0 <= m < 1 for m in self.tier_momentum):
                raise ConfigError(f"tier_momentum must be three values in [0, 1), got {self.tier_momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        unknown = [t for t in self.freeze if t not in TIERS]
        if unknown:
            raise ConfigError(f"freeze: unknown tier(s) {unknown}; tiers are {TIERS}")
        if self.spread is not None and (len(self.spread) != 2 or any(not (float(x) > 0) for x in self.spread)):
            raise ConfigError(f"spread must be two positive learning rates (first tier, last tier), got {self.spread}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.nesterov and self.optimizer == "sgd" and min(self.tier_momenta()) <= 0:
            raise ConfigError("nesterov needs momentum > 0 on every tier")

    def tier_lrs(self) -> tuple[float, float, float]:
        """The three base LRs after applying ``spread``."""
        if self.spread is None:
            return self.lrs
        first, last = (float(x) for x in self.spread)
        return tuple(first * (last / first) ** (i / (len(TIERS) - 1)) for i in range(len(TIERS)))  # type: ignore[return-value]

    def tier_momenta(self) -> tuple[float, float, float]:
        """SGD momentum per tier."""
        return self.tier_momentum if self.tier_momentum is not None else (self.momentum,) * 3  # type: ignore[return-value]


def param_groups(model: nn.Module, cfg: Optional[TierConfig] = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups, one per (tier[, block unit], decay/no-decay), from the model's declaration.

    Every parameter of the model (including frozen ones) is in exactly one group, in the model's parameter
    order; groups follow :data:`TIERS`, then the units in order. Each group has ``params``, ``lr``,
    ``weight_decay``, ``tier`` (a name of :data:`TIERS`), ``name`` (``"features_1"``, ``"features_1/no_decay"``,
    with ``layer_decay`` the block unit's name as the model declares it...) and, for SGD, ``momentum``. Empty groups
    are left out. A parameter the model's ``group_matcher`` puts in no tier, or in two, is a
    :class:`~ecgtransfer.errors.ConfigError`.
    """
    cfg = cfg or TierConfig()
    lrs = dict(zip(TIERS, cfg.tier_lrs()))
    momenta = dict(zip(TIERS, cfg.tier_momenta()))
    where = match_tiers(model)
    # tier -> unit -> kind -> parameters, each in the model's order; units in order of first appearance
    tiers: dict[str, dict[str, dict[str, list[nn.Parameter]]]] = {t: {} for t in TIERS}
    for name, p in unwrap(model).named_parameters():
        at = where[name]
        unit = at.unit if cfg.layer_decay is not None else at.tier
        kind = "no_decay" if (cfg.no_decay_bn_bias and p.ndim <= 1) else "decay"
        tiers[at.tier].setdefault(unit, {"decay": [], "no_decay": []})[kind].append(p)
    groups: list[dict[str, Any]] = []
    for tier, units in tiers.items():
        n_units = len(units)
        for i, (unit, kinds) in enumerate(units.items()):
            scale = cfg.layer_decay ** (n_units - 1 - i) if cfg.layer_decay is not None else 1.0
            for kind, params in kinds.items():
                if not params:
                    continue
                name = unit + ("/no_decay" if kind == "no_decay" and cfg.no_decay_bn_bias else "")
                group: dict[str, Any] = {
                    "params": params,
                    "lr": lrs[tier] * scale,
                    "weight_decay": 0.0 if kind == "no_decay" else cfg.weight_decay,
                    "tier": tier,
                    "name": name,
                }
                if cfg.optimizer == "sgd":
                    group["momentum"] = momenta[tier]
                groups.append(group)
    return groups


def build_optimizer(model: nn.Module, cfg: Optional[TierConfig] = None) -> torch.optim.Optimizer:
    """Freeze ``cfg.freeze`` tiers, then build SGD or AdamW over :func:`param_groups` (one LR per tier)."""
    cfg = cfg or TierConfig()
    if cfg.freeze:
        freeze_tiers(model, cfg.freeze, bn_eval=cfg.freeze_bn_stats)
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=groups[0]["lr"], momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    else:
        opt = torch.optim.AdamW(groups, lr=groups[0]["lr"], betas=cfg.betas, weight_decay=cfg.weight_decay)
    log.info(
        "%s over %d groups: %s",
        cfg.optimizer,
        len(groups),
        ", ".join(f"{t} lr={lr:g}" for t, lr in zip(TIERS, cfg.tier_lrs())) + (f"; frozen {list(cfg.freeze)}" if cfg.freeze else ""),
    )
    return opt


# --------------------------------------------------------------------------------------------------
# freezing
# --------------------------------------------------------------------------------------------------
def _check_names(names: Iterable[str]) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)  # type: ignore[list-item]
    unknown = [n for n in names if n not in TIERS]
    if unknown:
        raise ConfigError(f"unknown tier(s) {unknown}; tiers are {TIERS}")
    return names


def _set_requires_grad(model: nn.Module, names: Sequence[str] | str, flag: bool) -> tuple[nn.Module, set[str], list]:
    """``requires_grad_(flag)`` on the named tiers' parameters: (inner model, its frozen-BN tiers, the names)."""
    names = _check_names(names)
    where = match_tiers(model)
    inner = unwrap(model)
    for name, p in inner.named_parameters():
        if where[name].tier in names:
            p.requires_grad_(flag)
    return inner, set(getattr(inner, "frozen_bn_tiers", set())), names


def freeze_tiers(model: nn.Module, names: Sequence[str] | str, bn_eval: bool = True) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of the named tiers.

    With ``bn_eval`` their batch norms are put in eval mode and remembered in ``model.frozen_bn_tiers``
    (:meth:`TieredModel.train <ecgtransfer.models.base.TieredModel.train>` keeps them in eval; for other modules
    call :func:`keep_frozen_bn_eval` after ``model.train()``). Returns ``model``.
    """
    inner, frozen, names = _set_requires_grad(model, names, False)
    if bn_eval:
        frozen.update(names)
    inner.frozen_bn_tiers = frozen  # type: ignore[assignment]
    keep_frozen_bn_eval(model)
    return model


def unfreeze_tiers(model: nn.Module, names: Sequence[str] | str) -> nn.Module:
    """Undo :func:`freeze_tiers`: gradients back on, batch norms follow the model's train/eval mode."""
    inner, frozen, names = _set_requires_grad(model, names, True)
    frozen.difference_update(names)
    for m in tier_batchnorms(inner, names):
        m.train(inner.training)
    inner.frozen_bn_tiers = frozen  # type: ignore[assignment]
    return model

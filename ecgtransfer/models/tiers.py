"""Tiered learning rates: optimizer parameter groups for the three tiers of :class:`ResNet50`.

The transfer-learning recipe fine-tunes the early feature extractor slowly and the new head fast:

=============  ==========================  ==============
tier           modules                     default LR
=============  ==========================  ==============
features_1     stem + stage1..stage3       1e-5
features_2     stage4 + pooling            1e-4
classifier     the linear head             1e-3
=============  ==========================  ==============

:class:`TierConfig` describes it (SGD or AdamW, weight decay off for batch-norm and bias parameters,
frozen tiers, a geometric spread of LRs, optional layer-wise decay inside tiers, the ``"seed"`` preset);
:func:`param_groups` turns it into ``torch.optim`` parameter groups (every group carries ``"tier"`` and
``"name"`` keys), :func:`build_optimizer` into an optimizer, and :func:`build_scheduler` makes a
warmup + cosine / one-cycle / constant schedule that scales every group from its own base LR, so the
ratios between tiers stay fixed through training.

Frozen tiers (:func:`freeze_tiers`) get ``requires_grad=False`` and stay in their parameter groups (a
parameter without a gradient is skipped by the optimizer, including its weight decay, so a later
:func:`unfreeze_tiers` needs no new optimizer). With ``bn_eval=True`` (``TierConfig.freeze_bn_stats``) their
batch-norm layers are also kept in eval mode, so running statistics stay the pretrained ones:
:meth:`ResNet50.train` re-applies this automatically; for another module call :func:`keep_frozen_bn_eval`
after ``model.train()``. With ``bn_eval=False`` a frozen tier's batch norms still update their running
mean/variance in training mode (only their affine weights are frozen).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.lr_scheduler import LambdaLR

from ecgtransfer.errors import ConfigError
from ecgtransfer.models.base import TIERS

log = logging.getLogger(__name__)

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULES: tuple[str, ...] = ("cosine", "onecycle", "constant")

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
        layer_decay: in (0, 1]: layer-wise decay inside each tier; the tier's last block gets the tier LR
            and each block before it ``layer_decay`` times the next one (blocks: stem, stage1.block0, ...;
            the head is one block).
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


def unwrap(model: nn.Module) -> nn.Module:
    """The module with the tiers inside a ``DistributedDataParallel`` / ``torch.compile`` wrapper."""
    for attr in ("module", "_orig_mod"):
        while not hasattr(model, TIERS[0]) and isinstance(getattr(model, attr, None), nn.Module):
            model = getattr(model, attr)
    return model


def _tier_modules(model: nn.Module) -> dict[str, nn.Module]:
    model = unwrap(model)
    missing = [t for t in TIERS if not isinstance(getattr(model, t, None), nn.Module)]
    if missing:
        raise ConfigError(f"{type(model).__name__} has no tier module(s) {missing}; expected attributes {TIERS}")
    return {t: getattr(model, t) for t in TIERS}


def _unit(name: str) -> str:
    """Layer-wise-decay unit of a parameter name inside its tier: ``stem``, ``stage2.block3``, ``fc``."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[0].startswith("stage") and parts[1].startswith("block"):
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def param_groups(model: nn.Module, cfg: Optional[TierConfig] = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups, one per (tier[, block], decay/no-decay).

    Every parameter of the model (including frozen ones) is in exactly one group. Each group has
    ``params``, ``lr``, ``weight_decay``, ``tier`` (a name of :data:`TIERS`), ``name`` (``"features_1"``,
    ``"features_1/no_decay"``, ``"features_1.stage2.block3"`` with ``layer_decay``...) and, for SGD,
    ``momentum``. Empty groups are left out.
    """
    cfg = cfg or TierConfig()
    lrs = dict(zip(TIERS, cfg.tier_lrs()))
    momenta = dict(zip(TIERS, cfg.tier_momenta()))
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for tier, module in _tier_modules(model).items():
        units: dict[str, dict[str, list[nn.Parameter]]] = {}
        for name, p in module.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            unit = _unit(name) if cfg.layer_decay is not None else ""
            kind = "no_decay" if (cfg.no_decay_bn_bias and p.ndim <= 1) else "decay"
            units.setdefault(unit, {"decay": [], "no_decay": []})[kind].append(p)
        n_units = len(units)
        for i, (unit, kinds) in enumerate(units.items()):
            scale = cfg.layer_decay ** (n_units - 1 - i) if cfg.layer_decay is not None else 1.0
            for kind, params in kinds.items():
                if not params:
                    continue
                name = tier + (f".{unit}" if unit else "") + ("/no_decay" if kind == "no_decay" and cfg.no_decay_bn_bias else "")
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
    outside = [n for n, p in unwrap(model).named_parameters() if id(p) not in seen]
    if outside:
        raise ConfigError(f"parameters outside the tiers {TIERS}: {outside[:5]}")
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
# schedules
# --------------------------------------------------------------------------------------------------
def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def lr_factor(
    kind: str,
    total_steps: int,
    warmup_steps: int = 0,
    *,
    final_lr_ratio: float = 0.0,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Callable[[int], float]:
    """The multiplier ``f(step)`` applied to every group's base LR.

    * ``"constant"``: linear warmup ``(step + 1) / warmup_steps`` then 1;
    * ``"cosine"``: linear warmup, then cosine from 1 down to ``final_lr_ratio`` at ``total_steps``;
    * ``"onecycle"``: the shape of :class:`torch.optim.lr_scheduler.OneCycleLR` (cosine annealing, peak =
      the base LR, start ``1 / div_factor``, end ``1 / (div_factor * final_div_factor)``), rising for
      ``warmup_steps`` (or ``pct_start * total_steps`` when 0). Momentum is *not* cycled, so per-tier
      momenta (the seed preset) stay as configured.
    """
    if kind not in SCHEDULES:
        raise ConfigError(f"scheduler must be one of {SCHEDULES}, got {kind!r}")
    total_steps = int(total_steps)
    warmup_steps = int(warmup_steps)
    if total_steps < 1:
        raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0 or (kind != "constant" and warmup_steps >= total_steps):
        raise ConfigError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")

    if kind == "onecycle":
        pct = warmup_steps / total_steps if warmup_steps else pct_start
        up_end = pct * total_steps - 1
        down_end = total_steps - 1
        initial = 1.0 / div_factor
        minimum = initial / final_div_factor
        if up_end <= 0 or down_end <= up_end:
            raise ConfigError(f"onecycle needs a rising and a falling phase; got total_steps={total_steps}, pct={pct}")

        def onecycle(step: int) -> float:
            if step <= up_end:
                return _cos_anneal(initial, 1.0, step / up_end)
            return _cos_anneal(1.0, minimum, min(1.0, (step - up_end) / (down_end - up_end)))

        return onecycle

    def warm(step: int) -> Optional[float]:
        return (step + 1) / warmup_steps if step < warmup_steps else None

    if kind == "constant":
        def constant(step: int) -> float:
            w = warm(step)
            return 1.0 if w is None else w

        return constant

    span = max(1, total_steps - warmup_steps)

    def cosine(step: int) -> float:
        w = warm(step)
        if w is not None:
            return w
        progress = min(1.0, (step - warmup_steps) / span)
        return final_lr_ratio + (1 - final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return cosine


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str = "cosine",
    total_steps: int = 1,
    warmup_steps: int = 0,
    **kwargs: Any,
) -> LambdaLR:
    """A per-step :class:`~torch.optim.lr_scheduler.LambdaLR` with one lambda per group.

    Every group's LR is its own base LR (``initial_lr``) times the same :func:`lr_factor`, so the ratios
    between tiers (and layer-decay blocks) never change. Call ``scheduler.step()`` after each optimizer
    step. ``kwargs`` go to :func:`lr_factor` (``final_lr_ratio``, ``pct_start``, ``div_factor``,
    ``final_div_factor``).
    """
    factor = lr_factor(kind, total_steps, warmup_steps, **kwargs)
    return LambdaLR(optimizer, [factor] * len(optimizer.param_groups))


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
    tiers = _tier_modules(model)
    for name in names:
        for p in tiers[name].parameters():
            p.requires_grad_(flag)
    inner = unwrap(model)
    return inner, set(getattr(inner, "frozen_bn_tiers", set())), names


def freeze_tiers(model: nn.Module, names: Sequence[str] | str, bn_eval: bool = True) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of the named tiers.

    With ``bn_eval`` their batch norms are put in eval mode and remembered in ``model.frozen_bn_tiers``
    (:meth:`ResNet50.train` keeps them in eval; for other modules call :func:`keep_frozen_bn_eval` after
    ``model.train()``). Returns ``model``.
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
    for name in names:
        frozen.discard(name)
        for m in getattr(inner, name).modules():
            if isinstance(m, _BatchNorm):
                m.train(inner.training)
    inner.frozen_bn_tiers = frozen  # type: ignore[assignment]
    return model


def keep_frozen_bn_eval(model: nn.Module) -> nn.Module:
    """Put the batch norms of ``model.frozen_bn_tiers`` in eval mode (call after ``model.train()``)."""
    inner = unwrap(model)
    for name in getattr(inner, "frozen_bn_tiers", ()):
        for m in getattr(inner, name).modules():
            if isinstance(m, _BatchNorm):
                m.eval()
    return model

"""Learning-rate schedules: one multiplier per step, applied to every parameter group's own base LR.

Every group (a tier of :mod:`ecgtransfer.models.tiers`, or a layer-decay block inside it) keeps its base LR
(``initial_lr``) and is scaled by the same factor ``f(step)``, so the ratios between tiers never change:

* ``"cosine"``: linear warmup, then cosine from 1 down to ``final_lr_ratio``;
* ``"onecycle"``: the LR shape of :class:`torch.optim.lr_scheduler.OneCycleLR` (momentum not cycled);
* ``"constant"``: linear warmup, then 1.

:data:`SCHEDULERS` is the one list of these names (the configs and the CLI take their choices from it);
:func:`lr_factor` is the multiplier and :func:`build_scheduler` the per-step
:class:`~torch.optim.lr_scheduler.LambdaLR`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch.optim.lr_scheduler import LambdaLR

from ecgtransfer.errors import ConfigError

__all__ = ["SCHEDULERS", "build_scheduler", "lr_factor"]

#: The schedule names, in the order the CLI lists them (the default first).
SCHEDULERS: tuple[str, ...] = ("cosine", "onecycle", "constant")


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
    if kind not in SCHEDULERS:
        raise ConfigError(f"scheduler must be one of {SCHEDULERS}, got {kind!r}")
    total_steps = int(total_steps)
    warmup_steps = int(warmup_steps)
    if total_steps < 1:
        raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0 or (kind != "constant" and warmup_steps >= total_steps):
        raise ConfigError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")

    if kind == "onecycle":
        return _onecycle(total_steps, warmup_steps, pct_start=pct_start, div_factor=div_factor,
                         final_div_factor=final_div_factor)
    if kind == "constant":
        return _constant(warmup_steps)
    return _cosine(total_steps, warmup_steps, final_lr_ratio)


def _onecycle(total_steps: int, warmup_steps: int, *, pct_start: float, div_factor: float,
              final_div_factor: float) -> Callable[[int], float]:
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


def _warm(step: int, warmup_steps: int) -> Optional[float]:
    """The linear warm-up factor ``(step + 1) / warmup_steps`` of a step inside the warm-up, else None."""
    return (step + 1) / warmup_steps if step < warmup_steps else None


def _constant(warmup_steps: int) -> Callable[[int], float]:
    def constant(step: int) -> float:
        w = _warm(step, warmup_steps)
        return 1.0 if w is None else w

    return constant


def _cosine(total_steps: int, warmup_steps: int, final_lr_ratio: float) -> Callable[[int], float]:
    span = max(1, total_steps - warmup_steps)

    def cosine(step: int) -> float:
        w = _warm(step, warmup_steps)
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

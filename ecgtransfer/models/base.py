"""What every model of ecgtransfer shares: three learning-rate tiers, declared by the model, and batch norms that
stay frozen.

A model says which of its parameters form each tier, and each block unit inside a tier, with
:meth:`TieredModel.group_matcher` (as timm's models do with ``group_matcher`` for its optimiser factory): for every
tier of :data:`TIERS`, regular expressions over parameter names. A parameter's tier is the tier whose pattern
matches the start of its name, up to a ``.`` or the end; its block unit (the step of layer-wise decay) is the text
that matched. :func:`match_tiers` applies a model's declaration; :mod:`ecgtransfer.models.tiers` builds the
optimiser's parameter groups from it and knows no model's naming.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ecgtransfer.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ecgtransfer.models.weights import LoadReport

#: The three learning-rate tiers, from input to output: every model has these three child modules.
TIERS: tuple[str, ...] = ("features_1", "features_2", "classifier")

#: A model's declaration: tier name -> regular expressions of its block units (see :meth:`TieredModel.group_matcher`).
GroupMatcher = Mapping[str, Sequence[str]]


def children_matcher(tiers: Iterable[str] = TIERS) -> dict[str, tuple[str, ...]]:
    r"""The declaration of a model whose tiers are its child modules ``tiers`` and whose block units are the
    children of those: ``{"features_1": (r"features_1\.[^.]+",), ...}``."""
    return {t: (re.escape(t) + r"\.[^.]+",) for t in tiers}


@dataclass(frozen=True)
class TierMatch:
    """Where a parameter (or buffer) belongs: its ``tier`` (a name of :data:`TIERS`) and block ``unit``
    (``"features_1.stage2.block3"``)."""

    tier: str
    unit: str


@functools.lru_cache(maxsize=64)
def _compile(matcher: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, tuple[re.Pattern, ...]], ...]:
    bad = [t for t, _ in matcher if t not in TIERS]
    if bad:
        raise ConfigError(f"group_matcher declares unknown tier(s) {bad}; tiers are {TIERS}")
    try:
        return tuple((t, tuple(re.compile(f"(?:{p})(?=\\.|$)") for p in pats)) for t, pats in matcher)
    except re.error as exc:
        raise ConfigError(f"group_matcher holds an invalid regular expression: {exc}") from None


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel`` (``.module``) / ``torch.compile`` (``._orig_mod``) wrappers."""
    while TIERS[0] not in model._modules and not callable(getattr(type(model), "group_matcher", None)):
        inner = model._modules.get("module", model._modules.get("_orig_mod"))
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def group_matcher_of(model: nn.Module) -> GroupMatcher:
    """What ``model`` (unwrapped) declares: its :meth:`~TieredModel.group_matcher`, or for a plain module with the
    three tier children, :func:`children_matcher`."""
    model = unwrap(model)
    declared = getattr(model, "group_matcher", None)
    if callable(declared):
        return declared()
    missing = [t for t in TIERS if not isinstance(getattr(model, t, None), nn.Module)]
    if missing:
        raise ConfigError(f"{type(model).__name__} has no tier module(s) {missing}; expected attributes {TIERS} "
                          "or a group_matcher()")
    return children_matcher()


class _Matcher:
    """A compiled declaration: ``match(name)`` -> :class:`TierMatch` or ``None``; a name in two tiers is an error."""

    def __init__(self, model: nn.Module) -> None:
        declared = group_matcher_of(model)
        self.model_name = type(unwrap(model)).__name__
        self.tiers = _compile(tuple((t, tuple(declared[t])) for t in declared))

    def match(self, name: str) -> Optional[TierMatch]:
        found: list[TierMatch] = []
        for tier, patterns in self.tiers:
            for pattern in patterns:
                m = pattern.match(name)
                if m:
                    found.append(TierMatch(tier, m.group(0)))
                    break
        if len(found) > 1:
            raise ConfigError(f"{self.model_name}.group_matcher puts {name!r} in two tiers: "
                              f"{[f.tier for f in found]}")
        return found[0] if found else None


def match_tiers(model: nn.Module) -> dict[str, TierMatch]:
    """Every parameter name of ``model`` (unwrapped, in ``named_parameters`` order) -> its :class:`TierMatch`.

    Raises :class:`~ecgtransfer.errors.ConfigError` when a parameter is in no tier or in two.
    """
    matcher = _Matcher(model)
    out: dict[str, TierMatch] = {}
    outside: list[str] = []
    for name, _ in unwrap(model).named_parameters():
        m = matcher.match(name)
        if m is None:
            outside.append(name)
        else:
            out[name] = m
    if outside:
        raise ConfigError(f"parameters outside the tiers {TIERS} of {matcher.model_name}.group_matcher: {outside[:5]}")
    return out


def tier_batchnorms(model: nn.Module, tiers: Iterable[str]) -> list[_BatchNorm]:
    """The batch-norm layers of ``model`` (unwrapped) whose tensors (parameters or buffers) belong to ``tiers``."""
    wanted = set(tiers)
    if not wanted:
        return []
    matcher = _Matcher(model)
    found = []
    for prefix, m in unwrap(model).named_modules():
        if not isinstance(m, _BatchNorm):
            continue
        own = [n for n, _ in m.named_parameters(recurse=False)] + [n for n, _ in m.named_buffers(recurse=False)]
        matches = [matcher.match(f"{prefix}.{n}" if prefix else n) for n in own]
        if any(x is not None and x.tier in wanted for x in matches):
            found.append(m)
    return found


def keep_frozen_bn_eval(model: nn.Module) -> nn.Module:
    """Put the batch norms of ``model.frozen_bn_tiers`` in eval mode (call after ``model.train()``)."""
    for m in tier_batchnorms(model, getattr(unwrap(model), "frozen_bn_tiers", ())):
        m.eval()
    return model


class TieredModel(nn.Module):
    """A model made of the modules :data:`TIERS` (``features_1``, ``features_2``, ``classifier``) that declares
    its tiers and block units (:meth:`group_matcher`).

    Attributes:
        frozen_bn_tiers: tiers whose batch-norm layers :meth:`train` keeps in eval mode
            (set by :func:`ecgtransfer.models.tiers.freeze_tiers`).
        load_report: the :class:`~ecgtransfer.models.weights.LoadReport` of loaded weights, or ``None``.
        rr_dim: RR-context columns the model reads (0: none).
    """

    def __init__(self) -> None:
        super().__init__()
        self.frozen_bn_tiers: set[str] = set()
        self.load_report: Optional["LoadReport"] = None
        self.rr_dim = 0

    def train(self, mode: bool = True) -> "TieredModel":
        """Like :meth:`nn.Module.train`, but batch norms of tiers in ``frozen_bn_tiers`` stay in eval mode."""
        super().train(mode)
        if mode and self.frozen_bn_tiers:
            keep_frozen_bn_eval(self)
        return self

    def group_matcher(self) -> dict[str, tuple[str, ...]]:
        """For each tier of :data:`TIERS`, the regular expressions of its block units, in forward order.

        A parameter belongs to the tier one of whose patterns matches the start of its name, ending at a ``.`` or
        the end of the name; the matched text is its block unit (layer-wise decay scales the units of a tier
        geometrically, the last one at the tier's LR). Every parameter must match exactly one tier. This default
        is :func:`children_matcher`: each child module of a tier module is one unit; models override it.
        """
        return children_matcher()

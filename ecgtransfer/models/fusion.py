"""Late fusion of RR-interval context into a classifier head.

A beat's shape alone cannot show prematurity: a supraventricular beat (S) looks like a normal one and differs
by arriving early. The store's RR context (``rr`` ``[B, R]``, the columns of
:data:`ecgtransfer.signals.beats.RR_FEATURES`: RR intervals in seconds and their ratio to the record's mean RR)
is therefore fused late, after the backbone has pooled its features ``[B, F]``:

    rr [B, R] -> log -> Linear(R, E) -> ReLU -> Linear(E, E) -> ReLU = e [B, E]
    logits = Linear(F + E, K)(concat(features, e))

Every tensor of the fusion belongs to the head (the ``classifier`` tier): the backbone and its ImageNet mapping
are untouched, and the head is freshly initialised whenever weights are loaded (its input is wider than
torchvision's ``fc``). The logarithm makes intervals and ratios symmetric around their usual values (a ratio of
0.5 and of 2 are equally far from 1) without any statistic learned from the training patients.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import nn

#: width ``E`` of the RR embedding
RR_EMBED_DIM = 32
#: floor of an RR value (seconds or ratio) before the logarithm
RR_FLOOR = 1e-3


class RRHead(nn.Module):
    """Classifier head over pooled features ``[B, F, ...]`` (flattened) and, when ``rr_dim > 0``, RR context.

    Args:
        in_features: ``F``, the pooled feature width of the backbone.
        num_classes: ``K`` outputs.
        rr_dim: ``R`` RR columns read (0: no fusion; the head is ``flatten`` + ``fc``, torchvision's ``fc``).
        embed_dim: ``E``.

    Forward: ``(features [B, F, ...], rr [B, R] or None) -> logits [B, K]``; ``rr`` is required when
    ``rr_dim > 0`` and must be ``None`` otherwise.
    """

    def __init__(self, in_features: int, num_classes: int, rr_dim: int = 0, embed_dim: int = RR_EMBED_DIM) -> None:
        super().__init__()
        self.rr_dim = int(rr_dim)
        self.flatten = nn.Flatten(1)
        if self.rr_dim > 0:
            self.rr = nn.Sequential(OrderedDict(
                fc1=nn.Linear(self.rr_dim, embed_dim), relu1=nn.ReLU(inplace=True),
                fc2=nn.Linear(embed_dim, embed_dim), relu2=nn.ReLU(inplace=True)))
            self.fc = nn.Linear(in_features + embed_dim, num_classes)
        else:
            self.fc = nn.Linear(in_features, num_classes)

    @staticmethod
    def unit_patterns(prefix: str) -> tuple[str, ...]:
        """The block units of a head registered as ``prefix`` (for a model's ``group_matcher``): the RR embedding
        ``rr`` (present with ``rr_dim > 0``), then ``fc``."""
        return (rf"{re.escape(prefix)}\.rr", rf"{re.escape(prefix)}\.fc")

    def forward(self, features: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        h = self.flatten(features)
        if self.rr_dim > 0:
            if rr is None:
                raise ValueError(f"this head fuses {self.rr_dim} RR features; call it with rr [B, {self.rr_dim}]")
            if rr.shape[-1] != self.rr_dim:
                raise ValueError(f"expected rr [B, {self.rr_dim}], got {list(rr.shape)}")
            e = self.rr(torch.log(rr.to(h.dtype).clamp_min(RR_FLOOR)))
            h = torch.cat([h, e.to(h.dtype)], dim=1)
        return self.fc(h)

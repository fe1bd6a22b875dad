"""A 1-D convolutional network on the raw beat, the reference that answers "does the detour through images pay?".

The beat ``[B, C, L]`` (the store's segment, in its physical units) is standardised per segment and lead (zero
mean, unit standard deviation: amplitude differs between patients and electrodes far more than between
classes), then passes through residual 1-D convolution blocks; the pooled features are fused with the RR
context in the same :class:`~ecgtransfer.models.fusion.RRHead` as the ResNet50's. The modules follow the
same three tiers as the ResNet50 (``features_1`` = stem + blocks 1-2, ``features_2`` = block 3 + pooling,
``classifier``), so the tiered optimiser, freezing and schedules apply unchanged.

Shapes: ``x [B, C, L]`` -> ``features_1`` ``[B, 64, L/8]`` -> ``features_2`` ``[B, 128, 1]`` -> logits ``[B, K]``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ecgtransfer.models.base import TieredModel
from ecgtransfer.models.fusion import RRHead

#: channels of the stem and the three blocks
CNN1D_WIDTHS: tuple[int, ...] = (32, 32, 64, 128)
CNN1D_KERNEL = 7


class Standardize1d(nn.Module):
    """Per-segment, per-lead standardisation ``[B, C, L] -> [B, C, L]`` (a flat segment stays zero)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True).clamp_min(1e-6)
        return (x - mean) / std


class ResBlock1d(nn.Module):
    """conv(k, stride 2) -> BN -> ReLU -> conv(k) -> BN, plus a 1x1/2 projection; ReLU after the sum.

    ``[B, c_in, L] -> [B, c_out, ceil(L / 2)]``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = CNN1D_KERNEL) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=2, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm1d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class BeatCNN(TieredModel):
    """1-D CNN beat classifier with late RR fusion.

    Args:
        num_classes: ``K``.
        in_channels: leads ``C`` of the segments.
        rr_dim: RR-context columns fused into the head (0: none).

    Forward: ``(x [B, C, L], rr [B, rr_dim] or None) -> logits [B, K]``.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, rr_dim: int = 0) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.rr_dim = int(rr_dim)
        w = CNN1D_WIDTHS
        self.features_1 = nn.Sequential(OrderedDict(
            standardize=Standardize1d(),
            stem=nn.Sequential(nn.Conv1d(self.in_channels, w[0], CNN1D_KERNEL, padding=CNN1D_KERNEL // 2, bias=False),
                               nn.BatchNorm1d(w[0]), nn.ReLU(inplace=True)),
            block1=ResBlock1d(w[0], w[1]), block2=ResBlock1d(w[1], w[2])))
        self.features_2 = nn.Sequential(OrderedDict(block3=ResBlock1d(w[2], w[3]), pool=nn.AdaptiveAvgPool1d(1)))
        self.classifier = RRHead(w[3], self.num_classes, rr_dim=self.rr_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.features_2(self.features_1(x)), rr)

    def group_matcher(self) -> dict[str, tuple[str, ...]]:
        """Tiers and block units (see :meth:`TieredModel.group_matcher`): the stem and each residual block, then
        the head's RR embedding and ``fc``."""
        return {
            "features_1": (r"features_1\.stem", r"features_1\.block\d+"),
            "features_2": (r"features_2\.block\d+",),
            "classifier": RRHead.unit_patterns("classifier"),
        }

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, in_channels={self.in_channels}, rr_dim={self.rr_dim}"

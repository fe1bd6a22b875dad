"""ResNet50, written out readably and architecturally identical to ``torchvision.models.resnet50``.

This is the "V1.5" ResNet50 that torchvision ships (He et al. 2016, "Deep Residual Learning for Image
Recognition", with the stride of each stage's first block on its 3x3 convolution):

* stem: 7x7/2 convolution (64 channels, no bias) -> batch norm -> ReLU -> 3x3/2 max pool;
* four stages of bottleneck blocks, (3, 4, 6, 3) blocks with (64, 128, 256, 512) middle channels and
  4x as many output channels (256, 512, 1024, 2048); the first block of stages 2-4 halves the resolution
  with stride 2 on its 3x3 convolution;
* every convolution is followed by batch norm; the shortcut of a stage's first block is a 1x1 convolution
  (stride as the block) followed by batch norm; the ReLU comes *after* the residual addition;
* global average pooling, then one linear layer.

The modules are organised into the three learning-rate tiers of the transfer-learning recipe:

* ``features_1`` = ``stem`` + ``stage1`` .. ``stage3``  (torchvision: ``conv1``, ``bn1``, ``layer1``-``layer3``)
* ``features_2`` = ``stage4`` + ``pool``               (torchvision: ``layer4``, ``avgpool``)
* ``classifier`` = ``flatten`` + ``fc``                (torchvision: ``fc``), plus the RR embedding ``rr`` of
  :class:`~ecgtransfer.models.fusion.RRHead` when the model fuses RR context (``rr_dim > 0``)

so parameter names read ``features_1.stem.conv.weight``, ``features_1.stage1.block0.conv1.weight``,
``features_1.stage1.block0.shortcut.conv.weight``, ``features_2.stage4.block2.bn3.running_mean``,
``classifier.fc.weight``. :mod:`ecgtransfer.models.weights` translates these to and from torchvision's
names explicitly; nothing is matched by position or by shape. :meth:`ResNet50.group_matcher` declares the
tiers and their block units (the stem, each bottleneck block, the head's RR embedding and ``fc``) to the
tiered optimiser.

:class:`ResNet50` is the architecture only (random init, as torchvision's ``ResNet``); :func:`resnet50` builds
it and then loads weights, as torchvision's ``resnet50(weights=...)`` does.

Shapes: input ``[B, C, H, W]`` (``C = in_channels``, 3 for ImageNet weights) and, with ``rr_dim > 0``, RR context
``[B, rr_dim]``; ``features_1`` output ``[B, 1024, H/16, W/16]``, ``features_2`` output ``[B, 2048, 1, 1]``, logits
``[B, num_classes]``.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from ecgtransfer.errors import ConfigError
from ecgtransfer.models.base import TIERS, TieredModel
from ecgtransfer.models.fusion import RRHead
from ecgtransfer.models.resnet_layout import EXPANSION, FEATURE_DIM, STAGE_BLOCKS, STAGE_WIDTHS, STEM_CHANNELS
from ecgtransfer.models.weights import load_weights

log = logging.getLogger(__name__)

__all__ = ["TIERS", "Bottleneck", "EXPANSION", "FEATURE_DIM", "ResNet50", "STAGE_BLOCKS", "STAGE_WIDTHS",
           "STEM_CHANNELS", "init_weights", "resnet50"]

WeightsSpec = Union[None, str, os.PathLike]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that steps with stride 1 along an input dimension of size 1 whenever that gives the same
    output (one output position whose window starts at ``-padding`` either way): the same numbers, a different
    kernel. oneDNN's bf16 weight gradient of a strided convolution over a 1-pixel input reads uninitialised memory
    on CPUs with native bf16 (AVX512-BF16 / AMX, torch 2.14): about one backward pass in ten returns NaN in the
    weight gradient, which clipping then spreads into every weight. ResNet50 meets that shape at small images
    (layer4's first 3x3/2 convolution sees 1x1 features below 32 px; layer3's below 16 px). State dict and
    outputs are nn.Conv2d's (``tests/test_models.py`` checks torchvision equality, ``tests/test_precision.py``
    the bf16 gradients).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1) and 1 in x.shape[-2:]:
            stride = tuple(1 if n == 1 and _out_len(n, k, s, p, d) == _out_len(n, k, 1, p, d) else s
                           for n, k, s, p, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.padding,
                                                    self.dilation))
            if stride != self.stride:
                return nn.functional.conv2d(x, self.weight, self.bias, stride, self.padding, self.dilation,
                                            self.groups)
        return super().forward(x)


def _out_len(n: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a convolution along one dimension (input ``n``, kernel ``k``, stride, padding, dilation)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


class Stem(nn.Sequential):
    """7x7/2 convolution -> batch norm -> ReLU -> 3x3/2 max pool: ``[B, C, H, W] -> [B, 64, H/4, W/4]``."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__(
            OrderedDict(
                conv=Conv2d(in_channels, STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False),
                bn=nn.BatchNorm2d(STEM_CHANNELS),
                relu=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )


class Shortcut(nn.Sequential):
    """Projection shortcut: 1x1 convolution (with the block's stride) -> batch norm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            OrderedDict(
                conv=Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                bn=nn.BatchNorm2d(out_channels),
            )
        )


class Bottleneck(nn.Module):
    """Bottleneck residual block (V1.5): 1x1 reduce -> 3x3 (stride here) -> 1x1 expand, plus a shortcut.

    ``[B, in_channels, H, W] -> [B, 4 * width, H / stride, W / stride]``. Each convolution is followed by
    batch norm; ReLU after the first two and after the residual addition. The shortcut is the identity
    unless the shape changes, then a :class:`Shortcut` projection.
    """

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        # Registration order matches torchvision's Bottleneck (conv1, bn1, conv2, bn2, conv3, bn3, relu,
        # downsample) so that, from the same RNG seed, both models draw identical initial weights.
        self.conv1 = Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: Optional[Shortcut] = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.shortcut is None else self.shortcut(x)
        return self.relu(out)


def make_stage(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    """A stage: ``blocks`` bottlenecks named ``block0``, ``block1``...; only ``block0`` has ``stride``."""
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    for i in range(blocks):
        layers[f"block{i}"] = Bottleneck(in_channels if i == 0 else width * EXPANSION, width, stride if i == 0 else 1)
    return nn.Sequential(layers)


class ResNet50(TieredModel):
    """ResNet50 (torchvision-exact, V1.5) in three tiers, randomly initialised: the architecture only.

    :func:`resnet50` builds one and loads pretrained weights into it.

    Args:
        num_classes: outputs of the head (``classifier.fc``), >= 1.
        in_channels: input channels ``C`` (3 for ImageNet weights as they are; see :func:`resnet50`).
        zero_init_residual: set every block's last batch-norm weight (``bn3``) to zero at init, so each
            block starts as the identity (torchvision's option; only affects random init).
        rr_dim: RR-context columns fused late into the head (0: none, the plain torchvision head).

    Attributes:
        load_report: ``None``; :func:`resnet50` sets the
            :class:`~ecgtransfer.models.weights.LoadReport` of the weights it loads.
        frozen_bn_tiers: tiers whose batch-norm layers :meth:`train` keeps in eval mode
            (set by :func:`ecgtransfer.models.tiers.freeze_tiers`).

    Forward: ``([B, in_channels, H, W], rr [B, rr_dim] or None) -> [B, num_classes]`` logits.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        zero_init_residual: bool = False,
        rr_dim: int = 0,
    ) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if int(in_channels) < 1:
            raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.rr_dim = int(rr_dim)

        widths_in = [STEM_CHANNELS] + [w * EXPANSION for w in STAGE_WIDTHS[:-1]]
        strides = (1, 2, 2, 2)
        stages = [make_stage(widths_in[i], STAGE_WIDTHS[i], STAGE_BLOCKS[i], strides[i]) for i in range(4)]
        self.features_1 = nn.Sequential(
            OrderedDict(stem=Stem(self.in_channels), stage1=stages[0], stage2=stages[1], stage3=stages[2])
        )
        self.features_2 = nn.Sequential(OrderedDict(stage4=stages[3], pool=nn.AdaptiveAvgPool2d((1, 1))))
        self.classifier = RRHead(FEATURE_DIM, self.num_classes, rr_dim=self.rr_dim)
        init_weights(self, zero_init_residual=zero_init_residual)

    def group_matcher(self) -> dict[str, tuple[str, ...]]:
        """Tiers and block units (see :meth:`TieredModel.group_matcher`): in ``features_1`` the stem and each
        bottleneck block of stages 1-3, in ``features_2`` each block of stage 4 (the pooling has no parameters),
        in the head the RR embedding (when fused) and ``fc``."""
        return {
            "features_1": (r"features_1\.stem", r"features_1\.stage\d+\.block\d+"),
            "features_2": (r"features_2\.stage\d+\.block\d+",),
            "classifier": RRHead.unit_patterns("classifier"),
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, 2048, 1, 1]`` pooled features (before the head)."""
        return self.features_2(self.features_1(x))

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """``([B, C, H, W], rr [B, rr_dim] or None) -> [B, num_classes]`` logits."""
        return self.classifier(self.features_2(self.features_1(x)), rr)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, in_channels={self.in_channels}, rr_dim={self.rr_dim}"


def resnet50(
    num_classes: int = 1000,
    *,
    weights: WeightsSpec = None,
    in_channels: int = 3,
    progress: bool = True,
    class_names: Optional[Sequence[str]] = None,
    head: str = "auto",
    **kwargs: Any,
) -> ResNet50:
    """Build a :class:`ResNet50`, then load ``weights`` into it and attach the load report (torchvision's builder).

    Args:
        num_classes: outputs of the head, >= 1. With pretrained ImageNet weights and ``num_classes != 1000`` the
            head is freshly initialised; every other tensor is loaded.
        weights: ``None`` (random init, like torchvision), ``"imagenet"`` (= ``"imagenet-v2"``, torchvision's
            ``IMAGENET1K_V2``), ``"imagenet-v1"`` (``IMAGENET1K_V1``), or a path to a torchvision-format state dict
            or an ecgtransfer checkpoint (see :func:`ecgtransfer.models.weights.load_weights`). Anything that does
            not match raises :class:`~ecgtransfer.errors.WeightsError`; ImageNet weights that cannot be obtained
            (offline, not cached) raise :class:`~ecgtransfer.errors.WeightsUnavailableError`.
        in_channels: input channels ``C``. With pretrained 3-channel weights the first convolution is adapted:
            1 channel sums the RGB kernels; any other ``C`` repeats them cyclically and scales by ``3 / C`` (so a
            ``C``-channel input made of repeated RGB gives the RGB response).
        progress: show a download progress bar (ImageNet weights not cached yet).
        class_names: the model's classes; a source head of other classes is re-initialised even when the count
            matches.
        head: ``"auto"`` loads a source head that fits (same shapes and classes: the whole model transfers),
            ``"new"`` re-initialises it anyway (backbone only); :data:`ecgtransfer.models.weights.HEAD_MODES`.
        **kwargs: the other :class:`ResNet50` arguments (``zero_init_residual``, ``rr_dim``). With ``rr_dim > 0``
            the head (:class:`~ecgtransfer.models.fusion.RRHead`) is always freshly initialised when weights load;
            every backbone tensor still loads.

    Returns:
        the model; ``model.load_report`` is the :class:`~ecgtransfer.models.weights.LoadReport`, or ``None`` when
        ``weights=None``.
    """
    model = ResNet50(num_classes, in_channels=in_channels, **kwargs)
    if weights is not None:
        model.load_report = load_weights(model, weights, progress=progress, class_names=class_names,
                                         head=head)
    return model


def init_weights(model: nn.Module, *, zero_init_residual: bool = False) -> None:
    """torchvision's ResNet initialisation, in the same module order.

    Convolutions: Kaiming normal, ``mode="fan_out"``, ReLU gain; batch norm: weight 1, bias 0; the linear
    head keeps PyTorch's default init (as torchvision does). ``zero_init_residual`` zeroes every
    bottleneck's ``bn3.weight``.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.constant_(m.bn3.weight, 0)

"""ecgtransfer.models: a torchvision-exact ResNet50 in three tiers, verified ImageNet weights, tiered LRs.

* :data:`MODELS` / :func:`build_model` / :class:`ModelSpec`: ``resnet50``, ``cnn1d`` (a 1-D CNN on the raw
  beat) and ``features`` (RR + morphology with linear discriminants), each optionally fusing RR context late
  (:class:`RRHead`);
* :class:`ResNet50` (``features_1`` = stem + stages 1-3, ``features_2`` = stage 4 + pooling,
  ``classifier`` = head), the architecture; its builder :func:`resnet50` loads weights ``None`` /
  ``"imagenet"`` / ``"imagenet-v1"`` / ``"imagenet-v2"`` / a path;
* :class:`TieredModel`: every model declares its tiers and block units (``group_matcher``, applied by
  :func:`match_tiers`);
* :mod:`~ecgtransfer.models.weight_registry`: the weight versions (:data:`WEIGHT_NAMES`, :func:`get_weights`),
  their hash-checked files, download, pre-fetching for offline machines, the availability probe;
* :mod:`~ecgtransfer.models.weights`: the explicit name mapping to torchvision, reading weight files, the
  :class:`LoadReport`, input-channel adaptation;
* :mod:`~ecgtransfer.models.tiers`: :class:`TierConfig`, :func:`param_groups`, :func:`build_optimizer`,
  :func:`freeze_tiers` (the learning-rate schedules are :mod:`ecgtransfer.training.schedules`).
"""
from ecgtransfer.models.base import TIERS, TieredModel, TierMatch, match_tiers
from ecgtransfer.models.cnn1d import BeatCNN
from ecgtransfer.models.features import BeatFeatureModel
from ecgtransfer.models.fusion import RRHead
from ecgtransfer.models.registry import MODELS, ModelSpec, build_model
from ecgtransfer.models.resnet import Bottleneck, ResNet50, init_weights, resnet50
from ecgtransfer.models.tiers import (
    TierConfig,
    build_optimizer,
    freeze_tiers,
    keep_frozen_bn_eval,
    param_groups,
    unfreeze_tiers,
)
from ecgtransfer.models.weight_registry import WEIGHT_NAMES, fetch_imagenet, get_weights
from ecgtransfer.models.weights import (
    LoadReport,
    adapt_input_conv,
    from_torchvision_name,
    load_weights,
    to_torchvision_name,
)

__all__ = [
    "MODELS",
    "TIERS",
    "BeatCNN",
    "BeatFeatureModel",
    "ModelSpec",
    "RRHead",
    "TierMatch",
    "TieredModel",
    "build_model",
    "Bottleneck",
    "LoadReport",
    "ResNet50",
    "TierConfig",
    "WEIGHT_NAMES",
    "adapt_input_conv",
    "build_optimizer",
    "fetch_imagenet",
    "freeze_tiers",
    "from_torchvision_name",
    "get_weights",
    "init_weights",
    "keep_frozen_bn_eval",
    "load_weights",
    "match_tiers",
    "param_groups",
    "resnet50",
    "to_torchvision_name",
    "unfreeze_tiers",
]

"""The model kinds a run can train, and how a run builds (and a checkpoint rebuilds) one.

======== ============================================= ======================= ===============================
kind     model                                         input                   trained by
======== ============================================= ======================= ===============================
resnet50 :class:`~ecgtransfer.models.ResNet50`         images ``[B, 3, H, W]`` the tiered optimiser
cnn1d    :class:`~ecgtransfer.models.cnn1d.BeatCNN`    raw beats ``[B, C, L]`` the tiered optimiser
features :class:`~ecgtransfer.models.features.         raw beats ``[B, C, L]`` closed-form LDA fit
         BeatFeatureModel`
======== ============================================= ======================= ===============================

Each reads RR context ``[B, rr_dim]`` when built with ``rr_dim > 0``. A :class:`ModelSpec` holds everything the
architecture depends on; it is stored in every checkpoint, so evaluation and prediction rebuild the exact model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from ecgtransfer.errors import ConfigError

@dataclass(frozen=True)
class ModelKind:
    """One kind of model, declared once in :data:`KINDS`: adding a model is one entry here and its module.

    Attributes:
        name: the ``model`` value of a config (``TrainConfig.model``, a bench arm's ``model``).
        input: what it reads: rendered ``"images"`` ``[B, 3, H, W]`` or the raw ``"signal"`` ``[B, C, L]``.
        closed_form: fitted in closed form (one pass over the training part) instead of by the optimiser.
        pretrained: takes pretrained weights (``init = "imagenet"`` or a path).
        build: ``(spec, weights, class_names, head) -> nn.Module``; imports its module lazily.
    """

    name: str
    input: str
    closed_form: bool
    pretrained: bool
    build: Callable[["ModelSpec", Any, Sequence[str] | None, str], nn.Module] = field(repr=False, compare=False)


def _build_resnet50(spec: "ModelSpec", weights: Any, class_names: Sequence[str] | None, head: str) -> nn.Module:
    from ecgtransfer.models.resnet import resnet50

    return resnet50(spec.num_classes, weights=weights, in_channels=spec.in_channels, class_names=class_names,
                    rr_dim=spec.rr_dim, head=head)


def _build_cnn1d(spec: "ModelSpec", weights: Any, class_names: Sequence[str] | None, head: str) -> nn.Module:
    from ecgtransfer.models.cnn1d import BeatCNN

    return BeatCNN(spec.num_classes, in_channels=spec.in_channels, rr_dim=spec.rr_dim)


def _build_features(spec: "ModelSpec", weights: Any, class_names: Sequence[str] | None, head: str) -> nn.Module:
    from ecgtransfer.models.features import BeatFeatureModel

    if spec.length < 1 or spec.fs <= 0:
        raise ConfigError("the features model needs the segment length and sampling rate of the store")
    return BeatFeatureModel(spec.num_classes, spec.in_channels, spec.length, spec.fs, spec.r_index,
                            rr_dim=spec.rr_dim, n_leads=spec.n_leads or None)


#: every kind of model, in the order the docs list them (the table above)
KINDS: dict[str, ModelKind] = {k.name: k for k in (
    ModelKind("resnet50", input="images", closed_form=False, pretrained=True, build=_build_resnet50),
    ModelKind("cnn1d", input="signal", closed_form=False, pretrained=False, build=_build_cnn1d),
    ModelKind("features", input="signal", closed_form=True, pretrained=False, build=_build_features),
)}
#: the kinds' names (read from :data:`KINDS`)
MODELS: tuple[str, ...] = tuple(KINDS)
#: what each kind reads: rendered ``images`` or the raw ``signal`` (read from :data:`KINDS`)
MODEL_INPUT: dict[str, str] = {k.name: k.input for k in KINDS.values()}
#: kinds fitted in closed form instead of by the optimiser (read from :data:`KINDS`)
CLOSED_FORM: frozenset[str] = frozenset(k.name for k in KINDS.values() if k.closed_form)


@dataclass(frozen=True)
class ModelSpec:
    """The architecture of a run's model.

    Attributes:
        kind: one of :data:`MODELS`.
        num_classes: outputs ``K``.
        in_channels: input channels (image channels for ``resnet50``, leads for the others).
        rr_dim: RR-context columns fused (0: none).
        length, fs, r_index: segment samples, rate and R-peak sample (the ``features`` extractor needs them).
        n_leads: raw leads among the input channels, the first ``n_leads`` (0: every channel is a lead); the
            ``features`` model computes heartbeat intervals of these only (the rest are difference channels).
    """

    kind: str
    num_classes: int
    in_channels: int
    rr_dim: int = 0
    length: int = 0
    fs: float = 0.0
    r_index: int = 0
    n_leads: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ConfigError(f"model must be one of {tuple(KINDS)}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def build_model(spec: ModelSpec, *, weights: Any = None, class_names: Sequence[str] | None = None,
                head: str = "auto") -> nn.Module:
    """A model of ``spec``, freshly initialised or loaded with ``weights`` (``resnet50`` only, by its builder
    :func:`ecgtransfer.models.resnet.resnet50`: ``"imagenet"``, ``"imagenet-v1"``, ``"imagenet-v2"`` or a path, see
    :func:`ecgtransfer.models.weights.load_weights`; the load report is ``model.load_report``). ``class_names``
    are the model's classes: a source head of other classes is re-initialised even when the count matches;
    ``head = "new"`` re-initialises a fitting head too (``models.weights.HEAD_MODES``)."""
    kind = KINDS[spec.kind]
    if weights is not None and not kind.pretrained:
        raise ConfigError(f"model {spec.kind!r} has no pretrained weights; use init = \"scratch\" "
                          "(pretrained initialisation is for the resnet50)")
    return kind.build(spec, weights, class_names, head)

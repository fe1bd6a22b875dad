"""Pretrained weights for :class:`~ecgtransfer.models.resnet.ResNet50`: name mapping, reading, applying, load report.

Which weight versions exist and how their files are found, hash-checked, downloaded and fetched is
:mod:`~ecgtransfer.models.weight_registry`; this module turns a file into loaded tensors.

Where weights come from (:func:`read_weights`):

* a name of :data:`~ecgtransfer.models.weight_registry.WEIGHT_NAMES` (``"imagenet"`` = ``"imagenet-v2"``,
  torchvision's ``IMAGENET1K_V2``; ``"imagenet-v1"``): the registry's local, SHA256-checked file
  (:func:`~ecgtransfer.models.weight_registry.imagenet_file`; on an offline machine without it,
  :class:`~ecgtransfer.errors.WeightsUnavailableError` says how to fix it);
* a path: a torchvision-format state dict (``conv1.weight``, ``layer1.0.downsample.0.weight``, ``fc.bias``),
  an ecgtransfer state dict (``model.state_dict()``, our names) or an ecgtransfer checkpoint (a dict whose
  ``"model"`` entry is such a state dict). A uniform ``module.`` (DDP) or ``_orig_mod.`` (torch.compile)
  prefix is stripped. Files are read with ``torch.load(weights_only=True, map_location="cpu")``: a file
  holding arbitrary pickled objects is refused, never executed.

How they are loaded (:func:`apply_weights`): names are translated explicitly (:func:`to_torchvision_name`,
:func:`from_torchvision_name`); every backbone tensor of the model must be present with the same shape;
the head (``classifier.fc``) is loaded when the source has one of the same shape and re-initialised
otherwise (e.g. ``num_classes != 1000``); a 3-channel first convolution is adapted to ``in_channels``
(:func:`adapt_input_conv`). Missing, unexpected or mis-shaped tensors raise
:class:`~ecgtransfer.errors.WeightsError` naming them: there is no partial load. The result is a
:class:`LoadReport`, logged and stored as ``model.load_report``.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ecgtransfer.errors import ConfigError, WeightsError
from ecgtransfer.models import weight_registry
from ecgtransfer.models.resnet_layout import STAGE_BLOCKS

log = logging.getLogger(__name__)

STEM_CONV = "features_1.stem.conv.weight"
HEAD_PREFIX = "classifier."
#: what the known weight versions imply (:class:`~ecgtransfer.models.weight_registry.WeightMeta`): the source's
#: names of its first conv and classifier (the name map's ``conv1`` and ``fc``) and its input channels (3: RGB,
#: what :func:`adapt_input_conv` adapts from)
_SOURCE = weight_registry.DEFAULT_META
#: What happens to a source head that fits the model (same tensors, shapes and, where known, classes): ``auto``
#: loads it (the whole model transfers), ``new`` re-initialises it all the same (only the backbone transfers). A
#: head that does not fit is re-initialised under either.
HEAD_MODES = ("auto", "new")
_STRIPPABLE_PREFIXES = ("module.", "_orig_mod.")
_BOTTLENECK_LAYERS = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")
_CONV_LEAVES = ("weight",)
_BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_LINEAR_LEAVES = ("weight", "bias")


# --------------------------------------------------------------------------------------------------
# name mapping
# --------------------------------------------------------------------------------------------------
def _stage_prefix(stage: int) -> str:
    """Our module path of stage ``stage`` (1-based): stages 1-3 in ``features_1``, stage 4 in ``features_2``."""
    return f"features_1.stage{stage}" if stage <= 3 else f"features_2.stage{stage}"


@functools.lru_cache(maxsize=None)
def module_name_map() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every parameterised module: our module path -> (torchvision module path, its tensor leaf names).

    The explicit table the translation uses, built from ResNet50's layout (blocks per stage
    ``(3, 4, 6, 3)``):

    ===========================================  ==========================
    ecgtransfer                                  torchvision
    ===========================================  ==========================
    ``features_1.stem.conv``                     ``conv1``
    ``features_1.stem.bn``                       ``bn1``
    ``features_1.stage{s}.block{b}.conv1``       ``layer{s}.{b}.conv1`` (s = 1..3; same for bn1..bn3)
    ``features_1.stage{s}.block0.shortcut.conv`` ``layer{s}.0.downsample.0``
    ``features_1.stage{s}.block0.shortcut.bn``   ``layer{s}.0.downsample.1``
    ``features_2.stage4.block{b}.*``             ``layer4.{b}.*``
    ``classifier.fc``                            ``fc``
    ===========================================  ==========================
    """
    table: dict[str, tuple[str, tuple[str, ...]]] = {
        "features_1.stem.conv": (_SOURCE.first_conv, _CONV_LEAVES),
        "features_1.stem.bn": ("bn1", _BN_LEAVES),
    }
    for stage, blocks in enumerate(STAGE_BLOCKS, start=1):
        for block in range(blocks):
            ours = f"{_stage_prefix(stage)}.block{block}"
            theirs = f"layer{stage}.{block}"
            for layer in _BOTTLENECK_LAYERS:
                leaves = _CONV_LEAVES if layer.startswith("conv") else _BN_LEAVES
                table[f"{ours}.{layer}"] = (f"{theirs}.{layer}", leaves)
            if block == 0:  # every ResNet50 stage's first block projects its shortcut
                table[f"{ours}.shortcut.conv"] = (f"{theirs}.downsample.0", _CONV_LEAVES)
                table[f"{ours}.shortcut.bn"] = (f"{theirs}.downsample.1", _BN_LEAVES)
    table["classifier.fc"] = (_SOURCE.classifier, _LINEAR_LEAVES)
    return table


@functools.lru_cache(maxsize=None)
def _tensor_maps() -> tuple[dict[str, str], dict[str, str]]:
    ours_to_tv: dict[str, str] = {}
    for ours, (theirs, leaves) in module_name_map().items():
        for leaf in leaves:
            ours_to_tv[f"{ours}.{leaf}"] = f"{theirs}.{leaf}"
    tv_to_ours = {v: k for k, v in ours_to_tv.items()}
    assert len(tv_to_ours) == len(ours_to_tv), "name map is not one-to-one"
    return ours_to_tv, tv_to_ours


def to_torchvision_name(name: str) -> str:
    """``features_1.stage1.block0.shortcut.conv.weight`` -> ``layer1.0.downsample.0.weight``.

    Raises ``KeyError`` for a name that is not a ResNet50 tensor of ours.
    """
    try:
        return _tensor_maps()[0][name]
    except KeyError:
        raise KeyError(f"{name!r} is not an ecgtransfer ResNet50 tensor name") from None


def from_torchvision_name(name: str) -> str:
    """``layer1.0.downsample.0.weight`` -> ``features_1.stage1.block0.shortcut.conv.weight`` (``KeyError`` if unknown)."""
    try:
        return _tensor_maps()[1][name]
    except KeyError:
        raise KeyError(f"{name!r} is not a torchvision resnet50 tensor name") from None


def to_torchvision_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> torchvision names (loadable with ``strict=True`` into ``torchvision.models.resnet50``)."""
    return {to_torchvision_name(k): v for k, v in state.items()}


def from_torchvision_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """torchvision state dict -> (our names, torchvision names that have no counterpart)."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    tv_to_ours = _tensor_maps()[1]
    for k, v in state.items():
        ours = tv_to_ours.get(k)
        if ours is None:
            unknown.append(k)
        else:
            out[ours] = v
    return out, unknown


# --------------------------------------------------------------------------------------------------
# load report
# --------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What happened to every tensor when weights were loaded into a model (names are ours).

    ``loaded``: copied from the source; ``reinitialised``: freshly initialised instead (the head when the
    source's head shape differs or it has none); ``adapted``: loaded after adapting (the first conv to
    ``in_channels``); ``unexpected``: source tensors the model has no place for (source names);
    ``missing``: model tensors the source lacks; ``mismatched``: ``(name, model shape, source shape)``.
    A report returned by :func:`apply_weights` always has empty ``unexpected``/``missing``/``mismatched``
    (otherwise it raised); :func:`check_weights` returns them filled for inspection.
    """

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    source_head_shape: Optional[tuple[int, ...]] = None
    model_head_shape: Optional[tuple[int, ...]] = None
    source_in_channels: Optional[int] = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or mis-shaped."""
        return not (self.unexpected or self.missing or self.mismatched)

    @property
    def backbone_loaded(self) -> int:
        """Number of loaded tensors outside the head."""
        return sum(1 for k in self.loaded if not k.startswith(HEAD_PREFIX))

    def summary(self) -> str:
        """One line: source, format, counts, what happened to the head and the first conv."""
        total = len(self.loaded) + len(self.reinitialised)
        parts = [f"weights {self.source} ({self.format}): loaded {len(self.loaded)}/{total} tensors"]
        if self.reinitialised:
            parts.append(
                f"re-initialised head {_shape(self.model_head_shape)} (source head {_shape(self.source_head_shape)})"
            )
        else:
            parts.append(f"head {_shape(self.model_head_shape)} loaded")
        if self.adapted:
            parts.append(f"first conv adapted from {self.source_in_channels} input channels")
        if not self.ok:
            parts.append(
                f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} mis-shaped"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["mismatched"] = [[n, list(a), list(b)] for n, a, b in self.mismatched]
        d["ok"] = self.ok
        return d

    def format_text(self) -> str:
        """Multi-line human-readable report (``ecgtransfer weights inspect``)."""
        lines = [
            f"source:         {self.source}",
            f"format:         {self.format}",
            f"loaded:         {len(self.loaded)} tensors ({self.backbone_loaded} backbone, "
            f"{len(self.loaded) - self.backbone_loaded} head)",
            f"re-initialised: {len(self.reinitialised)} {_names(self.reinitialised)}",
            f"adapted:        {len(self.adapted)} {_names(self.adapted)}",
            f"source head:    {_shape(self.source_head_shape)}  (model head {_shape(self.model_head_shape)})",
            f"input channels: {self.source_in_channels}",
            f"unexpected:     {len(self.unexpected)} {_names(self.unexpected)}",
            f"missing:        {len(self.missing)} {_names(self.missing)}",
            f"mis-shaped:     {len(self.mismatched)} "
            + _names([f"{n} model {list(a)} source {list(b)}" for n, a, b in self.mismatched]),
        ]
        lines = [line.rstrip() for line in lines]
        lines += [f"note:           {n}" for n in self.notes]
        lines.append(f"status:         {'OK' if self.ok else 'DOES NOT MATCH'}")
        return "\n".join(lines)


def _shape(shape: Optional[tuple[int, ...]]) -> str:
    return "none" if shape is None else "[" + ", ".join(str(s) for s in shape) + "]"


def _names(names: list[str], limit: int = 8) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:limit])
    more = f", ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"({shown}{more})"


# --------------------------------------------------------------------------------------------------
# reading state-dict files
# --------------------------------------------------------------------------------------------------
@dataclass
class SourceWeights:
    """A state dict already translated to our names, with where it came from.

    ``unknown``: source names that could not be translated (they become ``unexpected``). ``class_names``: the
    classes of the source's head when the file says (an ecgtransfer checkpoint), else ``None``.
    """

    state: dict[str, torch.Tensor]
    source: str
    format: str
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    class_names: Optional[list[str]] = None


def _strip_prefix(state: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    state = dict(state)
    for prefix in _STRIPPABLE_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            notes.append(f"stripped the {prefix!r} prefix from every name")
    return state


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


_GLOBAL = re.compile(r"\bGLOBAL\s+([A-Za-z_][\w.]*)", re.I)
_OPERAND = re.compile(r"unsupported operand\s+(\S+)", re.I)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[0].split())[:200] if lines else type(exc).__name__


def torch_load_weights_only(path: Union[str, os.PathLike], *, map_location: Any = "cpu",
                            error: type[Exception] = WeightsError, what: str = "weights file") -> Any:
    """``torch.load(path, weights_only=True)``; every failure is one ``error`` line naming ``path``.

    A file that needs a Python global (a pickled module, class or function: a ``__reduce__`` that would run
    code) is refused with "refused: pickled Python objects" and never executed; torch's own advice to retry
    with ``weights_only=False`` is not repeated. Anything else unreadable (not a torch file, truncated,
    corrupt) is "not a readable torch file". The owner of these messages for weights files and checkpoints.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = _GLOBAL.search(text)
        if found or "unsupported global" in text.lower():
            name = found.group(1) if found else "a Python global"
            raise error(
                f"{path}: refused: pickled Python objects (it needs {name}, which torch.load(weights_only=True) "
                f"never imports or runs); ecgtransfer reads only {what}s made of tensors and plain containers. If you "
                "made the file yourself, re-save it as torch.save(model.state_dict(), path)") from None
        op = _OPERAND.search(text)
        detail = (f"the weights-only unpickler met pickle opcode {op.group(1)}, which torch files of tensors "
                  "do not contain") if op else "it is not a pickle of tensors"
        raise error(f"{path}: not a readable torch file ({detail}); expected a {what} written by torch.save") from None
    except Exception as exc:  # corrupt zip, truncated file, not a torch file
        raise error(f"{path}: not a readable torch file ({type(exc).__name__}: {_first_line(exc)}); expected a "
                    f"{what} written by torch.save") from None


def check_finite_state(state: Mapping[str, Any], source: Union[str, os.PathLike]) -> None:
    """Raise :class:`WeightsError` when a floating-point tensor of ``state`` holds NaN or infinite values."""
    bad = [name for name, t in state.items() if isinstance(t, torch.Tensor) and t.is_floating_point()
           and t.numel() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise WeightsError(f"{source}: {len(bad)} of {len(state)} tensors hold NaN or infinite values "
                           f"({', '.join(bad[:3])}{more}); the weights are damaged or come from a diverged "
                           "training run: use other weights")


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (expected a state dict or checkpoint file)")
    return torch_load_weights_only(path)


def read_state_dict_file(path: Union[str, os.PathLike]) -> SourceWeights:
    """Read a weights file (``weights_only=True``) and translate it to our names.

    Formats (detected): ``"torchvision"`` (torchvision resnet50 names), ``"ecgtransfer-state-dict"`` (our
    names), ``"ecgtransfer-checkpoint"`` (a dict whose ``"model"`` entry is a state dict in our or
    torchvision's names; other entries such as optimizer state are ignored).
    """
    path = Path(path).expanduser()
    obj = _load_file(path)
    notes: list[str] = []
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        state, container = obj["model"], "ecgtransfer-checkpoint"
        others = sorted(str(k) for k in obj if k != "model")
        if others:
            notes.append(f"checkpoint entries ignored: {', '.join(others)}")
    elif isinstance(obj, Mapping):
        state, container = obj, None
    else:
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, expected a state dict (a dict of tensors)")
    if not _is_tensor_dict(state):
        bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)][:5]
        raise WeightsError(
            f"{path}: not a state dict: expected a dict of name -> tensor"
            + (f", found non-tensor entries {bad}" if bad else " (it is empty)")
        )
    state = _strip_prefix(state, notes)
    check_finite_state(state, path)
    ours_names = set(_tensor_maps()[0])
    n_ours = sum(1 for k in state if k in ours_names or k.startswith(("features_1.", "features_2.", "classifier.")))
    n_tv = sum(1 for k in state if k in _tensor_maps()[1])
    if n_ours == 0 and n_tv == 0:
        raise WeightsError(
            f"{path}: no ResNet50 tensor names found (first names: {list(state)[:5]}); expected torchvision "
            "names (conv1.weight, layer1.0.conv1.weight, fc.weight) or ecgtransfer names "
            "(features_1.stem.conv.weight, ..., classifier.fc.weight)"
        )
    if n_tv > n_ours:
        translated, unknown = from_torchvision_state_dict(state)
        names = "torchvision"
    else:
        translated, unknown = dict(state), []
        names = "ecgtransfer"
    fmt = container or ("torchvision" if names == "torchvision" else "ecgtransfer-state-dict")
    if container:
        notes.append(f"model state uses {names} names")
    names_of_head = obj.get("class_names") if container else None
    return SourceWeights(state=translated, source=str(path), format=fmt, unknown=unknown, notes=notes,
                         class_names=[str(c) for c in names_of_head] if isinstance(names_of_head, list) else None)


def read_weights(spec: Union[str, os.PathLike], *, progress: bool = True) -> SourceWeights:
    """Resolve a weights spec (a name of :data:`~ecgtransfer.models.weight_registry.WEIGHT_NAMES` or a path) to
    tensors in our names; a name's file comes from :func:`~ecgtransfer.models.weight_registry.imagenet_file`."""
    if weight_registry.is_weight_name(spec):
        version = weight_registry.get_weights(str(spec))
        path = weight_registry.imagenet_file(version, progress=progress)
        src = read_state_dict_file(path)
        src.source = f"torchvision {version.torchvision_name} ({path})"
        return src
    if isinstance(spec, str) and spec.lower().startswith("imagenet") and not Path(spec).exists():
        raise ConfigError(f"unknown weights {spec!r}: expected {', '.join(weight_registry.WEIGHT_NAMES)} or a file "
                          "path")
    return read_state_dict_file(spec)


# --------------------------------------------------------------------------------------------------
# applying
# --------------------------------------------------------------------------------------------------
def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a pretrained RGB first-conv kernel ``[O, 3, kh, kw]`` to ``[O, in_channels, kh, kw]``.

    * ``in_channels == 1``: sum over the RGB kernels, so a grey input ``g`` responds like the RGB image
      ``(g, g, g)``;
    * otherwise: repeat the RGB kernels cyclically (R, G, B, R, G, ...) and scale by ``3 / in_channels``,
      which keeps the response to an input whose channels repeat the RGB image cyclically (for
      ``in_channels`` a multiple of 3 exactly; otherwise the activation scale is roughly preserved).
    """
    rgb = _SOURCE.in_channels
    if weight.dim() != 4 or weight.shape[1] != rgb:
        raise WeightsError(f"{STEM_CONV}: expected a [O, {rgb}, kh, kw] kernel to adapt, found {list(weight.shape)}")
    if in_channels == rgb:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    idx = torch.arange(in_channels) % rgb
    return weight[:, idx] * (float(rgb) / in_channels)


def check_weights(model: nn.Module, src: SourceWeights, class_names: Optional[Sequence[str]] = None,
                  head: str = "auto") -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Match ``src`` against ``model`` without changing it: (report, the tensors to load in our names).

    The head (every ``classifier.`` tensor) loads only as a whole, when the source has exactly the model's head
    tensors with the same shapes and, where both are known, the same ``class_names`` (a head of other classes
    with the same count is re-initialised, never reused); a source head the model cannot take is left out, not
    an error. ``head = "new"`` (:data:`HEAD_MODES`) re-initialises a head that would load (backbone only), and
    the report's notes say so.
    """
    if head not in HEAD_MODES:
        raise WeightsError(f"head must be one of {HEAD_MODES}, found {head!r}")
    target = model.state_dict()
    state = src.state
    report = _empty_report(src, target)
    to_load = _match_backbone(target, state, report)
    head_keys = [k for k in target if k.startswith(HEAD_PREFIX)]
    head_ok = _head_loads(target, src, head_keys, class_names, head, report)
    for k in head_keys:  # the head goes as a whole: all of it loads, or all of it is re-initialised
        if head_ok:
            to_load[k] = state[k]
            report.loaded.append(k)
        else:
            report.reinitialised.append(k)
    report.unexpected += [k for k in state if k not in target and not k.startswith(HEAD_PREFIX)]
    return report, to_load


def _empty_report(src: SourceWeights, target: Mapping[str, torch.Tensor]) -> LoadReport:
    """The report of ``src`` before matching: its notes and untranslated names, both heads' shapes and the source's
    input channels."""
    state = src.state
    report = LoadReport(source=src.source, format=src.format, unexpected=list(src.unknown), notes=list(src.notes))
    if "classifier.fc.weight" in state:
        report.source_head_shape = tuple(state["classifier.fc.weight"].shape)
    if "classifier.fc.weight" in target:
        report.model_head_shape = tuple(target["classifier.fc.weight"].shape)
    if STEM_CONV in state and state[STEM_CONV].dim() == 4:
        report.source_in_channels = int(state[STEM_CONV].shape[1])
    return report


def _match_backbone(target: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                    report: LoadReport) -> dict[str, torch.Tensor]:
    """Every model tensor outside the head, from ``state``: loaded (the first conv adapted to the model's input
    channels where it can be), or reported missing or mis-shaped. Returns the tensors to load."""
    to_load: dict[str, torch.Tensor] = {}
    for name, want in target.items():
        if name.startswith(HEAD_PREFIX):
            continue
        have = state.get(name)
        if have is None:
            report.missing.append(name)
            continue
        if name == STEM_CONV and have.shape != want.shape and _adaptable(have, want):
            have = adapt_input_conv(have, want.shape[1])
            report.adapted.append(name)
        if have.shape != want.shape:
            report.mismatched.append((name, tuple(want.shape), tuple(have.shape)))
            continue
        to_load[name] = have
        report.loaded.append(name)
    return to_load


def _head_loads(target: Mapping[str, torch.Tensor], src: SourceWeights, head_keys: list[str],
                class_names: Optional[Sequence[str]], head: str, report: LoadReport) -> bool:
    """Whether the source's head loads whole: the model's head tensors, shapes and (where both are known)
    classes, and not ``head = "new"``; a fitting head re-initialised all the same gets a note."""
    state = src.state
    src_head = [k for k in state if k.startswith(HEAD_PREFIX)]
    head_ok = (all(k in state and state[k].shape == target[k].shape for k in head_keys)
               and set(src_head) == set(head_keys))
    if head_ok and class_names is not None and src.class_names is not None and list(class_names) != src.class_names:
        head_ok = False
        report.notes.append(f"head re-initialised: the source's classes {src.class_names} are not the model's "
                            f"{list(class_names)}")
    if head_ok and head == "new":
        head_ok = False
        report.notes.append("head re-initialised on request (head = 'new': only the backbone transfers, although "
                            "the source head fits)")
    return head_ok


def _adaptable(have: torch.Tensor, want: torch.Tensor) -> bool:
    return (
        have.dim() == 4
        and have.shape[1] == _SOURCE.in_channels
        and have.shape[0] == want.shape[0]
        and have.shape[2:] == want.shape[2:]
    )


def apply_weights(model: nn.Module, src: SourceWeights, class_names: Optional[Sequence[str]] = None,
                  head: str = "auto") -> LoadReport:
    """Load ``src`` into ``model`` (all backbone tensors or nothing); re-initialise the head if it differs.

    Raises:
        WeightsError: missing, unexpected or mis-shaped tensors (all named in the message); the model is
            left unchanged.
    """
    report, to_load = check_weights(model, src, class_names, head)
    if not report.ok:
        problems = []
        if report.missing:
            problems.append(f"{len(report.missing)} missing {_names(report.missing)}")
        if report.unexpected:
            problems.append(f"{len(report.unexpected)} unexpected {_names(report.unexpected)}")
        if report.mismatched:
            problems.append(
                f"{len(report.mismatched)} with a different shape "
                + _names([f"{n}: model {list(a)}, file {list(b)}" for n, a, b in report.mismatched])
            )
        raise WeightsError(
            f"weights {src.source} ({src.format}) do not match ResNet50: " + "; ".join(problems)
            + ". Nothing was loaded."
        )
    target = model.state_dict()
    full = {k: to_load.get(k, v) for k, v in target.items()}
    model.load_state_dict(full, strict=True)
    if report.reinitialised:
        for name, module in model.named_modules():
            if name.startswith(HEAD_PREFIX) and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    log.info(report.summary())
    return report


def load_weights(model: nn.Module, spec: Union[str, os.PathLike], *, progress: bool = True,
                 class_names: Optional[Sequence[str]] = None, head: str = "auto") -> LoadReport:
    """Resolve ``spec`` (see :func:`read_weights`) and load it into ``model``; returns the :class:`LoadReport`.

    ``class_names``: the model's classes; a source head of other classes is re-initialised (see
    :func:`check_weights`); ``head``: :data:`HEAD_MODES` (``new``: re-initialise a fitting head too)."""
    return apply_weights(model, read_weights(spec, progress=progress), class_names, head)

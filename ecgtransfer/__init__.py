"""ecgtransfer: transfer learning on ECG signals.

Verified PhysioNet downloads, wfdb-based segmentation into patient-aware segment stores, batched torch
ECG imaging, a torchvision-exact ResNet50 with verified ImageNet weight mapping and tiered learning rates.

Heavy submodules (torch) are imported lazily: ``import ecgtransfer as et`` is cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute" (attribute empty for a submodule)
_LAZY = {
    "download": "ecgtransfer.physionet.download:download",
    "convert": "ecgtransfer.conversion:convert",
    "combine_stores": "ecgtransfer.combine:combine_stores",
    "SegmentStore": "ecgtransfer.store:SegmentStore",
    "split": "ecgtransfer.signals.split:split",
    "fine_tune": "ecgtransfer.training:fine_tune",
    "physionet": "ecgtransfer.physionet:",
    "signals": "ecgtransfer.signals:",
    "imaging": "ecgtransfer.imaging:",
    "models": "ecgtransfer.models:",
    "training": "ecgtransfer.training:",
    "bench": "ecgtransfer.bench:",
    "errors": "ecgtransfer.errors:",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'ecgtransfer' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value

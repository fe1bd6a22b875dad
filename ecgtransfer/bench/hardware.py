"""What the benchmark ran on: device, CPU, library versions (recorded in results.json and the report)."""
from __future__ import annotations

import os
import platform
from typing import Any


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def hardware_info(device: str = "auto") -> dict[str, Any]:
    """Device name, CUDA/cuDNN/torch/torchvision/numpy versions, CPU model and thread counts."""
    import numpy
    import torch
    import torchvision

    from ecgtransfer import __version__
    from ecgtransfer.training.precision import cpu_info
    from ecgtransfer.training.runtime import resolve_device

    dev = str(resolve_device(device))  # the training's rule: "cuda" without a GPU is refused here too
    cpu_model = str(cpu_info()["model"])  # the machine description has one owner: training.precision.cpu_info
    info: dict[str, Any] = {
        "device": dev,
        "device_name": cpu_model,
        "cpu_model": cpu_model,
        "cpus_usable": _usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ecgtransfer": __version__,
    }
    if dev.startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(dev).index or 0
        props = torch.cuda.get_device_properties(idx)
        info["device_name"] = props.name
        info["gpu_memory_bytes"] = int(props.total_memory)
        info["gpu_capability"] = f"{props.major}.{props.minor}"
    return info


def hardware_line(info: dict[str, Any]) -> str:
    """One line: ``cpu (AMD EPYC ..., 2 CPUs, 2 torch threads), torch 2.x, CUDA n/a``."""
    if info.get("device", "cpu").startswith("cuda"):
        mem = info.get("gpu_memory_bytes")
        mem_s = f", {mem / 2**30:.0f} GiB" if mem else ""
        head = f"{info['device']} ({info['device_name']}{mem_s}; host {info['cpu_model']}, {info['cpus_usable']} CPUs)"
    else:
        head = f"cpu ({info['cpu_model']}, {info['cpus_usable']} usable CPUs, {info['torch_threads']} torch threads)"
    return (f"{head}; torch {info['torch']}, torchvision {info['torchvision']}, CUDA {info.get('cuda') or 'n/a'}, "
            f"cuDNN {info.get('cudnn') or 'n/a'}, Python {info['python']}")

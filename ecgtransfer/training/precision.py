"""Numeric precision and memory format of a run: which autocast dtype and whether channels_last, per device.

One owner for the rules behind ``TrainConfig.amp`` and ``TrainConfig.channels_last`` (training, evaluation,
prediction and the bench all resolve them here):

* ``amp="auto"``: bf16 autocast on CUDA; on a CPU, bf16 autocast when the CPU computes bf16 natively
  (x86 ``avx512_bf16`` or ``amx_bf16``, from ``/proc/cpuinfo`` or torch's own CPU probes, see
  :func:`native_bf16`), fp32 otherwise (emulated bf16 is several times slower than fp32, see
  ``docs/training.md``, "Precision and speed"). ``"off"`` is plain fp32 with no autocast at all.
* ``channels_last="auto"``: on for CUDA and for CPU bf16 (oneDNN's bf16 convolutions run in NHWC), off for
  CPU fp32 (measured no faster on the CPUs we ran, and slower for eval at 64 px on a Xeon).

Image rendering stays float32 whatever is chosen: autocast covers the model's forward only, so the cast
happens at the model's input (its first convolution).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Iterable

import torch

from ecgtransfer.errors import ConfigError

log = logging.getLogger(__name__)

#: x86 CPU flags (``/proc/cpuinfo``) that mean bf16 dot products run in hardware
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def native_bf16(flags: Iterable[str]) -> bool:
    """Whether a CPU with these feature ``flags`` (as ``/proc/cpuinfo`` spells them) computes bf16 natively.

    A pure function of the flags: ``avx512_bf16`` (Intel Cooper Lake and later, AMD Zen 4 and later) or
    ``amx_bf16`` (Intel Sapphire Rapids and later). AVX2 or plain AVX-512 CPUs emulate bf16 (convert to fp32 and
    back), which is slower than fp32.
    """
    return bool(NATIVE_BF16_FLAGS.intersection(f.strip().lower() for f in flags))


def read_cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The first ``flags`` line of ``/proc/cpuinfo`` as a set (empty where the file is absent, e.g. not Linux)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "flags":
            return frozenset(value.split())
    return frozenset()


def _torch_flags() -> frozenset[str]:
    """The same facts from torch's CPU probes (cpuinfo library), where this torch has them."""
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    found = set()
    for flag, name in probes.items():
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                found.add(flag)
        except Exception:  # pragma: no cover - a probe that fails says nothing
            continue
    return frozenset(found)


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, object]:
    """This machine's CPU as far as precision is concerned.

    Returns ``{"model": lscpu-style model name, "capability": torch.backends.cpu.get_cpu_capability(),
    "bf16_flags": the native-bf16 flags found, "native_bf16": bool}``.
    """
    flags = read_cpu_flags() | _torch_flags()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                model = value.strip()
                break
    except OSError:
        pass
    if not model:
        import platform

        model = platform.processor() or platform.machine()
    return {"model": model, "capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_flags": sorted(NATIVE_BF16_FLAGS & flags), "native_bf16": native_bf16(flags)}


def amp_dtype(amp: str, device: torch.device, *, cpu_native_bf16: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of ``TrainConfig.amp`` on ``device`` (``None``: no autocast, exact fp32).

    ``"auto"``: bf16 on CUDA; on CPU bf16 when the CPU computes it natively (``cpu_native_bf16``, by default
    :func:`cpu_info`'s detection), else ``None``. ``"fp16"`` needs CUDA.
    """
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        if device.type == "cpu":
            native = cpu_info()["native_bf16"] if cpu_native_bf16 is None else cpu_native_bf16
            return torch.bfloat16 if native else None
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp='fp16' needs a CUDA device; use 'bf16' or 'off' on CPU")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    raise ConfigError(f"amp must be auto, bf16, fp16 or off, got {amp!r}")


def use_channels_last(choice: str, device: torch.device, dtype: torch.dtype | None) -> bool:
    """Whether to run the model in the channels-last memory format for ``TrainConfig.channels_last``.

    ``"on"`` / ``"off"`` as given; ``"auto"``: on CUDA, on for CPU bf16 autocast, off for CPU fp32.
    """
    if choice in ("on", "off"):
        return choice == "on"
    if choice != "auto":
        raise ConfigError(f"channels_last must be auto, on or off, got {choice!r}")
    if device.type == "cuda":
        return True
    return device.type == "cpu" and dtype == torch.bfloat16


def run_precision(amp: str, channels_last: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, channels_last)`` of a run's ``amp`` and ``channels_last`` choices on ``device``: what
    training, ``evaluate`` and the multi-label runs all use (:func:`amp_dtype`, then :func:`use_channels_last`)."""
    dtype = amp_dtype(amp, device)
    return dtype, use_channels_last(channels_last, device, dtype)


def dtype_name(dtype: torch.dtype | None) -> str:
    """``"bfloat16"``, ``"float16"`` or ``"float32"`` (no autocast), as ``run.json`` records it."""
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


def describe(amp: str, channels_last: str, device: torch.device, dtype: torch.dtype | None,
             use_cl: bool) -> str:
    """One line for the start of a run: the resolved precision and memory format and why."""
    why = ""
    if device.type == "cpu" and (amp == "auto" or dtype == torch.bfloat16):
        info = cpu_info()
        why = (f" ({info['model']}: native bf16 via {', '.join(info['bf16_flags'])})" if info["native_bf16"]
               else f" ({info['model']}: no native bf16, capability {info['capability']}"
               + ("; bf16 is emulated here, several times slower than fp32)" if dtype is not None else ")"))
    return (f"precision: {dtype_name(dtype)}{' autocast' if dtype is not None else ''} (amp={amp}){why}; "
            f"channels_last {'on' if use_cl else 'off'} (channels_last={channels_last}) on {device}")

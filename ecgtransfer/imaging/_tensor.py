"""Small shared helpers: input conversion, validation and a per-device cache of constant tensors."""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable, Hashable, Iterator, Sequence

import numpy as np
import torch

from ecgtransfer.errors import ConfigError, SignalError

_CACHE: dict[tuple[Hashable, str, torch.dtype], torch.Tensor] = {}
_LOCK = threading.Lock()


def as_signal(x: Any, *, name: str = "x") -> torch.Tensor:
    """``x`` as a floating tensor ``[..., L]``: float16/bfloat16/integers become float32, float64 stays."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim < 1:
        raise SignalError(f"{name}: expected a series [..., L], got a scalar")
    if t.shape[-1] < 1:
        raise SignalError(f"{name}: expected at least one sample per series, got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t


def check_finite(x: torch.Tensor, *, name: str = "x") -> None:
    """Raise :class:`SignalError` naming the offending series when ``x [..., L]`` holds NaN or inf."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        per = bad.reshape(-1, x.shape[-1]).any(dim=-1) if x.ndim > 1 else bad.any().reshape(1)
        idx = torch.nonzero(per).flatten()[:5].tolist()
        raise SignalError(f"{name}: expected finite samples, found NaN or infinite values in "
                          f"{int(per.sum())} of {per.numel()} series (first flat indices {idx}); "
                          "interpolate or drop them before imaging")


def segment_names(store: Any, indices: Sequence[int]) -> str:
    """``"store S: segments [3, 17] (records ['100', '119'])"`` for store indices (first five)."""
    idx = [int(i) for i in indices][:5]
    records = sorted({str(store.record_ids[i]) for i in idx}) if store is not None else []
    more = f" and {len(indices) - 5} more" if len(indices) > 5 else ""
    where = f"store {store.path}: " if store is not None else ""
    return f"{where}segments {idx}{more}" + (f" (records {records})" if records else "")


@contextlib.contextmanager
def naming_segments(x: torch.Tensor, indices: Sequence[int] | np.ndarray | torch.Tensor,
                    store: Any = None) -> Iterator[None]:
    """Re-raise a NaN/inf :class:`SignalError` from imaging the batch ``x [B, ...]`` naming its bad rows by
    ``indices [B]`` (store indices) and, with ``store``, their records, instead of flat batch positions."""
    try:
        yield
    except SignalError as exc:
        bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=-1)
        rows = torch.nonzero(bad).flatten().tolist()
        if not rows:
            raise
        named = [int(indices[r]) for r in rows]
        raise SignalError(f"{segment_names(store, named)} hold NaN or infinite samples ({len(named)} of "
                          f"{x.shape[0]} in this batch); interpolate or drop them before imaging") from exc


def flatten_series(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``[..., L] -> ([N, L], leading shape)``."""
    lead = tuple(x.shape[:-1])
    return x.reshape(-1, x.shape[-1]), lead


def cached(key: Hashable, build: Callable[[], np.ndarray], device: torch.device | str,
           dtype: torch.dtype) -> torch.Tensor:
    """A constant tensor built once per (key, device, dtype) from a numpy builder."""
    dev = torch.device(device)
    ck = (key, str(dev), dtype)
    t = _CACHE.get(ck)
    if t is None:
        arr = build()
        t = torch.as_tensor(np.array(arr, copy=True)).to(device=dev, dtype=dtype)
        with _LOCK:
            if len(_CACHE) > 256:
                _CACHE.clear()
            _CACHE[ck] = t
    return t


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def resolve_size(value: Any, n: int, name: str) -> int:
    """pyts convention: an int in ``[1, n]`` is taken as is; a float in ``(0, 1]`` is ``ceil(value * n)``."""
    if is_int(value):
        if not 1 <= int(value) <= n:
            raise ConfigError(f"{name}: an integer must be in [1, {n}] (the series length), got {value}")
        return int(value)
    if is_number(value):
        if not 0 < float(value) <= 1.0:
            raise ConfigError(f"{name}: a float is a fraction of the series length and must be in (0, 1], got {value}")
        return int(math.ceil(float(value) * n))
    raise ConfigError(f"{name}: expected an integer or a float, got {type(value).__name__}")


_NUMPY_ALLOC_BYTES = 1 << 21


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """An uninitialised tensor; on the CPU, buffers of 2 MiB or more are allocated by numpy.

    numpy asks Linux for transparent huge pages on large arrays, which cuts the first-touch page faults of a
    freshly allocated image batch (about 10x, measured: a [64, 3, 224, 224] float32 batch costs ~35 ms in page
    faults through torch's allocator, ~3 ms through numpy). The tensor shares the numpy array's memory and
    frees it with itself.
    """
    dev = torch.device(device)
    nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    if dev.type == "cpu" and nbytes >= _NUMPY_ALLOC_BYTES and dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.empty(shape, dtype=np.float32 if dtype == torch.float32 else np.float64))
    return torch.empty(shape, dtype=dtype, device=dev)

"""Checkpoints: atomic writes, weights-only loading, RNG state capture, compatibility checks.

A checkpoint is a plain dict holding only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs)::

    {"format": "ecgtransfer-checkpoint", "format_version": 1,
     "model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,
     "rng": {"python": [...], "numpy": {...}, "torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "epoch": int, "step": int, "step_in_epoch": int, "config": dict, "store_manifest_hash": str,
     "class_names": [...], "history": [...], "best": {...}, "accum": {...}, "package_version": str}

``epoch``/``step_in_epoch`` say where training continues: the data order of an epoch is a pure function of
``(seed, epoch)``, so a resumed run skips the first ``step_in_epoch`` batches of epoch ``epoch``.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ecgtransfer import __version__
from ecgtransfer._atomic import atomic_open
from ecgtransfer.errors import TrainingError

CHECKPOINT_FORMAT = "ecgtransfer-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


# -- RNG state ---------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) global RNG states as tensors/lists (weights-only loadable)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- save / load -------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` (plain containers and tensors) to ``path`` atomically."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
               "package_version": __version__, **state}
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; any problem is a :class:`TrainingError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise TrainingError(f"checkpoint {path} cannot be loaded safely (weights_only=True): {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not an ecgtransfer checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if int(ckpt.get("format_version", 0)) > CHECKPOINT_FORMAT_VERSION:
        raise TrainingError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this ecgtransfer "
                            f"reads ({CHECKPOINT_FORMAT_VERSION}); upgrade ecgtransfer")
    return ckpt


def check_compatible(ckpt: Mapping[str, Any], *, path: str | os.PathLike, store_manifest_hash: str,
                     config: Any, class_names: list[str]) -> None:
    """Refuse to resume ``ckpt`` with another store or an incompatible configuration (:class:`TrainingError`)."""
    found = ckpt.get("store_manifest_hash")
    if found != store_manifest_hash:
        raise TrainingError(f"checkpoint {path} was made with another store (manifest hash {str(found)[:12]}..., "
                            f"this store has {store_manifest_hash[:12]}...); resume with the same store or "
                            "start a new run directory")
    if list(ckpt.get("class_names", [])) != list(class_names):
        raise TrainingError(f"checkpoint {path} has classes {ckpt.get('class_names')}, the store has {class_names}")
    diff = config.incompatible_with(ckpt.get("config", {}))
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
        raise TrainingError(f"checkpoint {path} was made with a different configuration ({detail}); "
                            "resume with the same settings or start a new run directory")


def state_digest(module: torch.nn.Module) -> str:
    """SHA256 of a module's state dict (names, dtypes, shapes, bytes): equal digests mean identical weights."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()

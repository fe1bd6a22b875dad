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

import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ecgtransfer import __version__
from ecgtransfer._atomic import atomic_open
from ecgtransfer.errors import TrainingError
from ecgtransfer.training.run_files import check_checkpoint_fields

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
def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` (plain containers and tensors) to ``path`` atomically.

    A failed write (disk full, ...) leaves the previous file at ``path`` untouched and raises one
    :class:`TrainingError` line naming the file (torch reports a full disk as a zip-writer RuntimeError).
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
               "package_version": __version__, **state}
    try:
        with atomic_open(path, "wb") as fh:
            torch.save(payload, fh)
    except (OSError, RuntimeError) as exc:
        need = _nbytes(payload)
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < need):
            reason = (f"no space left on the device ({free if free is not None else '?'} bytes free, the "
                      f"checkpoint needs about {need}); free some space, then resume with --resume")
        else:
            reason = _one_line(exc)
        raise TrainingError(f"cannot write checkpoint {path}: {reason}; the previous {path.name} is unchanged"
                            ) from None


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


def load_model_state(model: torch.nn.Module, state: Any, *, path: str | os.PathLike) -> None:
    """``model.load_state_dict(state)``, or one :class:`TrainingError` line naming the checkpoint and the first
    tensors whose names or shapes do not fit the model (torch's message is many lines)."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TrainingError(f"checkpoint {path}: its 'model' entry is not a state dict (a dict of tensors)")
    want = model.state_dict()
    wrong = [f"{k} {list(v.shape)} (model {list(want[k].shape)})" for k, v in state.items()
             if k in want and tuple(v.shape) != tuple(want[k].shape)]
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of another shape: {', '.join(wrong[:2])}"
                        + (f" and {len(wrong) - 2} more" if len(wrong) > 2 else ""))
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:2])}" + (" ..." if len(missing) > 2 else ""))
    if extra:
        problems.append(f"{len(extra)} unexpected: {', '.join(extra[:2])}" + (" ..." if len(extra) > 2 else ""))
    if problems:
        raise TrainingError(f"checkpoint {path} does not fit the model of this run ({'; '.join(problems)}); "
                            "it is damaged or belongs to another run")
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise TrainingError(f"checkpoint {path} does not fit the model of this run ({_one_line(exc)})") from None


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; any problem is a :class:`TrainingError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist")
    from ecgtransfer.models.weights import torch_load_weights_only

    ckpt = torch_load_weights_only(path, map_location=map_location, error=TrainingError, what="checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not an ecgtransfer checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    check_checkpoint_fields(ckpt, path)
    if ckpt.get("format_version", 0) > CHECKPOINT_FORMAT_VERSION:
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

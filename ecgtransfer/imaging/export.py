"""Write the images of a segment store to files: a uint8 ``.npy`` array or PNG files, plus an index CSV.

Layout of the output directory ``OUT``::

    OUT/images.npy     uint8 [N, 3, S, S] (format "npy"; np.load(..., mmap_mode="r") works), or
    OUT/png/0000000.png ... one RGB PNG per segment (format "png")
    OUT/index.csv      index,file,label,class,record,patient (one row per segment, store order)
    OUT/images.json    what was made: encoding, parameters, store and its manifest hash; written last,
                       its presence marks a complete output

Images are those of :func:`~ecgtransfer.imaging.encode` before ImageNet normalisation, in ``[0, 1]``,
stored as ``round(255 * v)``. Work proceeds in chunks of ``batch_size`` segments; after each chunk is on
disk a marker (``OUT/.progress.json``) records how many are done, so an interrupted run continues where
it stopped when re-run with the same parameters. The array is filled under a temporary name and renamed
into place when complete; every PNG, the CSV and the JSON are written atomically.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ecgtransfer import __version__
from ecgtransfer._atomic import atomic_open, atomic_write_json, atomic_write_text, fsync_dir
from ecgtransfer._lock import FolderLock
from ecgtransfer._outdir import ATOMIC_TMP, FolderLayout, check_output_dir, register_layout
from ecgtransfer._validate import human_bytes
from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging._tensor import naming_segments
from ecgtransfer.imaging.encode import IMAGE_SIZE, check_encoding, encode
from ecgtransfer.store import SegmentStore

log = logging.getLogger(__name__)
FORMATS = ("npy", "png")
INFO = "images.json"
PROGRESS = ".progress.json"
ARRAY = "images.npy"
PARTIAL = ".images.npy.partial"
#: what ``ecgtransfer images`` writes into its folder: an image folder holds nothing else (and
#: :mod:`ecgtransfer._atomic`'s temporary files of a crash); ``images.json`` marks one seen from inside
IMAGES_LAYOUT = register_layout(FolderLayout(
    "images", "an ecgtransfer image folder",
    names=frozenset({INFO, ARRAY, PARTIAL, PROGRESS, "index.csv", "png"}), patterns=(ATOMIC_TMP,),
    encloses=lambda folder: (folder / INFO).is_file(), precedence=2))


def to_uint8(img01: torch.Tensor) -> np.ndarray:
    """Images in ``[0, 1]`` -> uint8 ``round(255 * v)`` (numpy, on the CPU)."""
    return (img01.clamp(0, 1) * 255.0).round_().to(torch.uint8).cpu().numpy()


def _encode_batch(x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    return encode(x, normalize=False, **kwargs)


def _png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def materialise(store: str | os.PathLike | SegmentStore, out: str | os.PathLike, *, encoding: str = "spectrogram",
                size: int = IMAGE_SIZE, format: str = "npy", batch_size: int = 64, lead: int | str = 0,
                colour: str = "gray", cmap: str = "viridis", device: str | torch.device = "cpu",
                overwrite: bool = False, progress: bool = True, **params: Any) -> Path:
    """Render every segment of ``store`` and write the images into ``out``; returns ``out``.

    Args:
        store: a segment store (path or :class:`~ecgtransfer.store.SegmentStore`).
        out: output directory (created).
        encoding, size, lead, colour, cmap, **params: as :func:`~ecgtransfer.imaging.encode`; the store's
            sampling rate is passed as ``fs``.
        format: ``"npy"`` (one uint8 array ``[N, 3, S, S]``) or ``"png"`` (one file per segment).
        batch_size: segments per chunk (the unit of progress and of resumption).
        device: where images are rendered (``"cuda"`` if available is fastest).
        overwrite: replace a complete output made with other parameters (else :class:`ConfigError`).
        progress: show a tqdm bar.
    """
    st = store if isinstance(store, SegmentStore) else SegmentStore(store)
    out = Path(out)
    check_output_dir(out, kind=IMAGES_LAYOUT, inputs={"STORE": st.path})
    check_encoding(encoding, "images")
    if format not in FORMATS:
        raise ConfigError(f"images: format must be one of {list(FORMATS)}, got {format!r}")
    if int(batch_size) < 1:
        raise ConfigError(f"images: batch size must be >= 1, got {batch_size}")
    n = len(st)
    channels = st.shape[1] if lead == "stack" else 3
    if format == "png" and channels != 3:
        raise ConfigError(f"images: PNG needs 3 channels; lead='stack' on a {st.shape[1]}-lead store gives "
                          f"{channels}; use --format npy")
    kwargs = dict(encoding=encoding, size=size, fs=st.fs, lead=lead, colour=colour, cmap=cmap, **params)
    probe = torch.from_numpy(st.batch(np.arange(min(n, 1)))).to(device)
    with naming_segments(probe, range(len(probe)), st):
        encode(probe, normalize=False, **kwargs)  # size and every encoding setting checked before any write
    kwargs["size"] = int(size)
    with FolderLock(out, what="image folder"):
        return _materialise_locked(st, out, n=n, channels=channels, kwargs=kwargs, encoding=encoding,
                                   size=int(size), format=format, batch_size=int(batch_size), lead=lead,
                                   colour=colour, cmap=cmap, device=device, overwrite=overwrite,
                                   progress=progress, params=params)


def _materialise_locked(st: SegmentStore, out: Path, *, n: int, channels: int, kwargs: dict[str, Any],
                        encoding: str, size: int, format: str, batch_size: int, lead: int | str, colour: str,
                        cmap: str, device: str | torch.device, overwrite: bool, progress: bool,
                        params: dict[str, Any]) -> Path:
    """:func:`materialise` once its arguments are checked and the folder's writer lock is held."""
    settings = {"encoding": encoding, "size": int(size), "format": format, "lead": lead, "colour": colour,
                "cmap": cmap, "params": params, "store_manifest_hash": st.manifest_hash}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    info_path = out / INFO
    if _complete_and_matching(out, info_path, key, overwrite):
        return out
    shape = (n, channels, int(size), int(size))
    done, arr = _open_target(out, key, n, format, shape)
    if done:
        log.info("resuming %s at segment %d of %d", out, done, n)
    _render_chunks(st, out, arr, key, n=n, done=done, batch_size=batch_size, kwargs=kwargs, encoding=encoding,
                   format=format, device=device, progress=progress)
    if format == "npy":
        del arr
        with open(out / PARTIAL, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(out / PARTIAL, out / ARRAY)
        fsync_dir(out)
    _write_index(st, out, format)
    atomic_write_json(info_path, {**settings, "key": key, "shape": list(shape), "dtype": "uint8",
                                  "scaling": "round(255 * v), v = per-image min-max scaled image in [0, 1]",
                                  "store": str(st.path), "fs": st.fs, "class_names": st.class_names,
                                  "package_version": __version__})
    (out / PROGRESS).unlink(missing_ok=True)
    return out


def _complete_and_matching(out: Path, info_path: Path, key: str, overwrite: bool) -> bool:
    """True when ``out`` holds complete images made with these settings (``key``); a complete output made
    otherwise is refused, or (``overwrite``) its ``images.json`` removed so that the images are made again."""
    if info_path.is_file():
        try:
            done_info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            done_info = None
        if not isinstance(done_info, dict):
            if not overwrite:
                raise ConfigError(f"{info_path} is not a readable images.json; pass --overwrite to make the images "
                                  "again")
            done_info = {}
        if done_info.get("key") == key:
            log.info("images in %s are complete and match; nothing to do", out)
            return True
        if not overwrite:
            raise ConfigError(f"{out} already holds images made with other parameters or another store "
                              f"({done_info.get('encoding')}, size {done_info.get('size')}); choose another --out "
                              "or pass --overwrite")
        info_path.unlink()
    return False


def _open_target(out: Path, key: str, n: int, format: str, shape: tuple[int, ...]
                 ) -> tuple[int, np.memmap | None]:
    """(segments already done, the partial array ``[N, C, S, S]`` to fill for ``npy``, None for ``png``): a
    partial array of another shape is started afresh."""
    done = _resume_point(out, key, n, format) if out.is_dir() else 0
    arr = None
    if format == "npy":
        partial = out / PARTIAL
        if done and partial.is_file():
            arr = np.load(partial, mmap_mode="r+")
            if arr.shape != shape:
                del arr
                arr = None
        if arr is None:
            done = 0
            arr = _allocate_array(out, partial, shape)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "png").mkdir(exist_ok=True)
    return done, arr


def _render_chunks(st: SegmentStore, out: Path, arr: np.memmap | None, key: str, *, n: int, done: int,
                   batch_size: int, kwargs: dict[str, Any], encoding: str, format: str,
                   device: str | torch.device, progress: bool) -> None:
    """Render segments ``done..n`` in chunks of ``batch_size`` into ``arr`` (npy) or PNG files, recording the
    progress after each chunk is on disk."""
    bar = tqdm(total=n, initial=done, unit="img", desc=f"images {encoding}", disable=not progress)
    try:
        for start in range(done, n, int(batch_size)):
            stop = min(n, start + int(batch_size))
            x = torch.from_numpy(st.batch(np.arange(start, stop))).to(device)
            with naming_segments(x, range(start, stop), st):
                imgs = to_uint8(_encode_batch(x, **kwargs))
            if format == "npy":
                arr[start:stop] = imgs
                arr.flush()
            else:
                for i, img in zip(range(start, stop), imgs):
                    with atomic_open(out / "png" / _png_name(i)) as fh:
                        fh.write(_png_bytes(img))
            atomic_write_json(out / PROGRESS, {"key": key, "done": stop, "n": n})
            bar.update(stop - start)
    finally:
        bar.close()

def _nearest_folder(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (where the bytes of a folder yet to be made will go)."""
    path = Path(os.path.abspath(path))
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _allocate_array(out: Path, partial: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new uint8 ``.npy`` of ``shape`` at ``partial``, its blocks reserved on the disk, memory-mapped for writing.

    The bytes it needs are compared with the free space of ``out``'s disk before anything is created, and reserved
    with :func:`os.posix_fallocate`: a memory-mapped file left sparse turns a full disk into a SIGBUS in the middle
    of the run (exit 135, no message), where here it is one :class:`ConfigError` line, with neither the array nor
    a folder made for it left behind.
    """
    header = len(_npy_header_bytes(shape))
    need = header + int(np.prod(shape, dtype=np.int64))
    made_out = not out.is_dir()
    try:
        free = shutil.disk_usage(_nearest_folder(out)).free
    except OSError:
        free = None
    if partial.is_file():  # an array of another shape, replaced: its blocks come back
        free = None if free is None else free + partial.stat().st_blocks * 512

    def refuse(have: int | None) -> ConfigError:
        dims = " x ".join(str(d) for d in shape)
        return ConfigError(f"images: {out / ARRAY} ({dims} uint8) needs {human_bytes(need)} but its disk has "
                           f"{human_bytes(have) + ' free' if have is not None else 'not enough free'}; free some "
                           f"space, choose a smaller --size or another --out")

    if free is not None and need > free:
        raise refuse(free)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with open(partial, "wb") as fh:
            fh.write(_npy_header_bytes(shape))
            fh.flush()
            os.posix_fallocate(fh.fileno(), header, need - header)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if made_out:
            with contextlib.suppress(OSError):
                out.rmdir()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise refuse(None) from None
        raise
    return np.load(partial, mmap_mode="r+")


def _npy_header_bytes(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (format 1.0) header of a C-ordered uint8 array of ``shape``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                               "fortran_order": False, "shape": tuple(int(d) for d in shape)})
    return buf.getvalue()


def _png_name(i: int) -> str:
    return f"{i:07d}.png"


def _resume_point(out: Path, key: str, n: int, format: str) -> int:
    marker = out / PROGRESS
    if not marker.is_file():
        return 0
    try:
        prog = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return 0
    if prog.get("key") != key or prog.get("n") != n:
        log.warning("%s holds a partial run with other parameters; starting over", out)
        return 0
    return int(prog.get("done", 0))


def _write_index(st: SegmentStore, out: Path, format: str) -> None:
    names = st.class_names
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "file", "label", "class", "record", "patient"])
    for i, (lab, rec, pat) in enumerate(zip(st.labels.tolist(), st.record_ids.tolist(), st.patient_ids.tolist())):
        w.writerow([i, ARRAY if format == "npy" else f"png/{_png_name(i)}", lab, names[lab], rec, pat])
    atomic_write_text(out / "index.csv", buf.getvalue())

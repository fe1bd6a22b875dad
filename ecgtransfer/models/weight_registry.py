"""The pretrained weight versions ecgtransfer knows, and getting their files: lookup, hashes, cache, download, probe.

One :class:`WeightVersion` per version (as torchvision's ``Weights`` entries of a ``WeightsEnum``), looked up
by name or alias with :func:`get_weights`. Each entry carries what the weights imply, its :class:`WeightMeta` (as
torchvision's ``Weights.meta`` and ``transforms``, or timm's ``default_cfg``): the normalisation the images must
have (``mean``, ``std``), the first convolution and its input channels, the classifier and its classes, the
license and the recipe. The code that needs them reads them here: the image encoder's ImageNet normalisation
(:mod:`ecgtransfer.imaging.colour`), the name map and the first-conv adaptation of
:mod:`ecgtransfer.models.weights`.

* ``imagenet-v1``: torchvision's ``ResNet50_Weights.IMAGENET1K_V1``, ``resnet50-0676ba61.pth`` (76.1 % top-1);
* ``imagenet-v2``: ``ResNet50_Weights.IMAGENET1K_V2``, ``resnet50-11ad3fa6.pth`` (80.9 % top-1);
* ``imagenet``: an alias of the current default, ``imagenet-v2``.

torchvision's file names carry the first hex digits of the file's SHA256 after the ``-``.

:data:`WEIGHT_NAMES` is the one list of weight names a user can pass (``--init``, ``init = ...`` in TOML,
``weights=`` in Python); every other list of choices imports it.

A version's file (:func:`imagenet_file`) is looked up in ``$ECGTRANSFER_WEIGHTS_DIR`` (a folder filled by
``ecgtransfer weights fetch``), then in torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), in both with its
SHA256 checked against the prefix in its file name, and otherwise downloaded into that cache with a timeout on
every socket operation of that request (never a process-wide one) and the same check before the file gets its
name. :func:`imagenet_unavailable` answers "can these weights be had here?" without hanging on an offline
machine: local files first, ``$ECGTRANSFER_OFFLINE``, then a HEAD request with its own timeout, and only then a
download. This module knows nothing of models: reading, mapping and applying the tensors is
:mod:`ecgtransfer.models.weights`.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union
from urllib.parse import urlparse

import torch

from ecgtransfer._atomic import atomic_open
from ecgtransfer._hashing import sha256_file
from ecgtransfer.errors import ConfigError, WeightsError, WeightsUnavailableError

log = logging.getLogger(__name__)

#: Environment variable naming a folder of pre-fetched weight files (``ecgtransfer weights fetch --out``).
WEIGHTS_DIR_ENV = "ECGTRANSFER_WEIGHTS_DIR"
#: Environment variable: when 1/true/yes/on, :func:`imagenet_unavailable` never tries the network.
OFFLINE_ENV = "ECGTRANSFER_OFFLINE"
#: Seconds the HEAD request of :func:`imagenet_unavailable` may wait for an answer.
PROBE_TIMEOUT_S = 10.0
#: Seconds each socket operation (connect, every read) of a weights download may wait.
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightMeta:
    """What a weight version implies, besides its file (torchvision's ``Weights.meta`` / timm's ``default_cfg``).

    ``mean`` / ``std``: the per-channel (RGB) normalisation of the images it was trained on, ``(v - mean) / std``
    of images in ``[0, 1]``; ``first_conv`` / ``in_channels``: the source's name of its first convolution and
    the input channels of its kernel ``[O, in_channels, kh, kw]``; ``classifier`` / ``num_classes``: the
    source's name of its classifier and its outputs; ``classes``: what those outputs are; ``license`` and
    ``recipe``: under which terms the weights come and how they were trained.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    first_conv: str
    in_channels: int
    classifier: str
    num_classes: int
    classes: str
    license: str
    recipe: str


#: torchvision's ImageNet-1K ResNet50 weights: both versions are trained on the same images, normalised alike, with
#: torchvision's resnet50 module names (``recipe`` differs per version)
TORCHVISION_IMAGENET = WeightMeta(
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), first_conv="conv1", in_channels=3, classifier="fc",
    num_classes=1000, classes="ImageNet-1K", license="BSD-3-Clause (torchvision); ImageNet's terms of access apply "
    "to the images it was trained on", recipe="")


@dataclass(frozen=True)
class WeightVersion:
    """One version of pretrained ResNet50 weights.

    ``name``: ours (``"imagenet-v2"``); ``version``: the short form ``ecgtransfer weights fetch --version``
    takes (``"v2"``); ``member``: torchvision's ``ResNet50_Weights`` member (``"IMAGENET1K_V2"``); ``url``:
    where torchvision downloads it from; ``aliases``: other names that select it (``"imagenet"`` for the default);
    ``meta``: what the weights imply (:class:`WeightMeta`: normalisation, first conv, classifier, license,
    recipe). The file name and its SHA256 prefix follow from ``url``.
    """

    name: str
    version: str
    member: str
    url: str
    meta: WeightMeta
    aliases: tuple[str, ...] = ()
    description: str = ""

    @property
    def file_name(self) -> str:
        """torchvision's file name, e.g. ``resnet50-11ad3fa6.pth``."""
        return os.path.basename(urlparse(self.url).path)

    @property
    def hash_prefix(self) -> Optional[str]:
        """The first hex digits of the file's SHA256, as its name carries them (``11ad3fa6``); None if it has none."""
        return hash_prefix_of(self.file_name)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name that selects this version: its own, then its aliases."""
        return (self.name, *self.aliases)

    @property
    def torchvision_name(self) -> str:
        """``ResNet50_Weights.IMAGENET1K_V2``."""
        return f"ResNet50_Weights.{self.member}"


IMAGENET1K_V1 = WeightVersion(
    name="imagenet-v1", version="v1", member="IMAGENET1K_V1",
    url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
    meta=replace(TORCHVISION_IMAGENET,
                 recipe="https://github.com/pytorch/vision/tree/main/references/classification#resnet"),
    description="torchvision's original ImageNet-1K weights (76.1 % top-1), the ones most papers used")
IMAGENET1K_V2 = WeightVersion(
    name="imagenet-v2", version="v2", member="IMAGENET1K_V2",
    url="https://download.pytorch.org/models/resnet50-11ad3fa6.pth", aliases=("imagenet",),
    meta=replace(TORCHVISION_IMAGENET,
                 recipe="https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621"),
    description="torchvision's improved-recipe ImageNet-1K weights (80.9 % top-1), the default")

#: Every known version, oldest first.
REGISTRY: tuple[WeightVersion, ...] = (IMAGENET1K_V1, IMAGENET1K_V2)
#: The name of the default ImageNet weights (an alias of the newest version).
DEFAULT_WEIGHTS = "imagenet"
#: The weight names a user can pass (``--init``, TOML ``init``, ``weights=``): every name and alias, sorted.
WEIGHT_NAMES: tuple[str, ...] = tuple(sorted(n for w in REGISTRY for n in w.names))
#: The short versions ``ecgtransfer weights fetch --version`` takes.
VERSION_NAMES: tuple[str, ...] = tuple(w.version for w in REGISTRY)
_BY_NAME: dict[str, WeightVersion] = {n: w for w in REGISTRY for n in (*w.names, w.version)}
assert len(_BY_NAME) == sum(len(w.names) + 1 for w in REGISTRY), "a weight name is used twice"
assert DEFAULT_WEIGHTS in WEIGHT_NAMES
#: what the default weights imply; every known version is a torchvision resnet50 of the same names and inputs, so
#: one name map (:func:`ecgtransfer.models.weights.module_name_map`) and one normalisation serve them all
DEFAULT_META: WeightMeta = _BY_NAME[DEFAULT_WEIGHTS].meta
assert all(replace(w.meta, recipe="") == replace(DEFAULT_META, recipe="") for w in REGISTRY), \
    "a weight version of other names, inputs or normalisation needs its own name map and normalisation"


def is_weight_name(spec: object) -> bool:
    """True when ``spec`` is one of :data:`WEIGHT_NAMES` (case-insensitive), not a path."""
    return isinstance(spec, str) and spec.lower() in WEIGHT_NAMES


#: The suffixes of a weights file (a checkpoint of ours, a torchvision state dict) that ``init`` may name.
WEIGHT_FILE_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt")


def is_weights_path(spec: object) -> bool:
    """The one rule for "``init`` names a weights file": a string that is not a weight name (:func:`is_weight_name`)
    and holds a path separator or ends with one of :data:`WEIGHT_FILE_SUFFIXES` (``best.pt``, ``runs/x/best.pt``).
    Anything else (``imagenet1``, ``scratchh``) is a misspelt name, refused with the list of names, not looked
    for on disk."""
    if not isinstance(spec, str) or not spec.strip() or is_weight_name(spec):
        return False
    return os.sep in spec or "/" in spec or spec.lower().endswith(WEIGHT_FILE_SUFFIXES)


def get_weights(name: Union[str, WeightVersion]) -> WeightVersion:
    """The :class:`WeightVersion` of ``name``: one of :data:`WEIGHT_NAMES` or :data:`VERSION_NAMES`
    (case-insensitive); a :class:`WeightVersion` is returned as it is.

    Raises:
        ConfigError: an unknown name; the message lists the valid ones.
    """
    if isinstance(name, WeightVersion):
        return name
    found = _BY_NAME.get(str(name).lower())
    if found is None:
        raise ConfigError(f"unknown weights {name!r}: expected one of {', '.join(WEIGHT_NAMES)} "
                          f"(or a version: {', '.join(VERSION_NAMES)})")
    return found


# --------------------------------------------------------------------------------------------------
# hashes
# --------------------------------------------------------------------------------------------------
def hash_prefix_of(file_name: str) -> Optional[str]:
    """The SHA256 prefix a file name carries after its ``-`` (torch.hub's convention), else None."""
    m = torch.hub.HASH_REGEX.search(file_name)
    return m.group(1) if m and m.group(1) else None


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def verify_file(path: Path, prefix: Optional[str], what: str, fix: str) -> Path:
    """``path`` when its SHA256 starts with ``prefix`` (no check when ``prefix`` is None), else WeightsError
    naming the file, ``what`` it should be and the ``fix``.

    A file already verified with the same size and modification time is not hashed again.
    """
    if not prefix:
        return path
    st = path.stat()
    if not _sha256_cached(str(path), st.st_size, st.st_mtime_ns).startswith(prefix):
        raise WeightsError(f"{path}: SHA256 does not start with {prefix} ({what}); the file is corrupt or not "
                           f"torchvision's: {fix}")
    return path


def _write_verified(fin: BinaryIO, dst: Path, prefix: Optional[str], mismatch: Callable[[str], Exception],
                    progress: Optional[Callable[[int], object]] = None) -> None:
    """Copy ``fin`` to ``dst`` atomically, hashing the bytes written; ``mismatch(digest)`` is raised (and nothing
    written) when the SHA256 does not start with ``prefix``."""
    h = hashlib.sha256()
    with atomic_open(dst, "wb") as fout:
        for chunk in iter(lambda: fin.read(_CHUNK), b""):
            h.update(chunk)
            fout.write(chunk)
            if progress is not None:
                progress(len(chunk))
        if prefix and not h.hexdigest().startswith(prefix):  # checked before the rename
            raise mismatch(h.hexdigest())


# --------------------------------------------------------------------------------------------------
# local files, download
# --------------------------------------------------------------------------------------------------
def cache_path(weights: Union[str, WeightVersion]) -> Path:
    """Where torch.hub keeps the file of ``weights``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / get_weights(weights).file_name


def download_file(url: str, dst: Union[str, os.PathLike], *, hash_prefix: Optional[str] = None,
             timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> Path:
    """Download ``url`` to ``dst`` atomically, with ``timeout`` seconds for each socket operation of this request.

    torch.hub's ``download_url_to_file`` takes no timeout (a stalled connection would wait forever, or on the
    process-wide socket default), hence this. The SHA256 is checked against ``hash_prefix`` before the file gets
    its name.

    Raises:
        OSError: the request fails (``URLError``, ``HTTPError``, a timeout, no space left); nothing is written.
        WeightsError: the bytes do not match ``hash_prefix``; nothing is written.
    """
    from tqdm.auto import tqdm

    dst = Path(dst)
    request = urllib.request.Request(url, headers={"User-Agent": "ecgtransfer"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        size = response.headers.get("Content-Length")
        with tqdm(total=int(size) if size and size.isdigit() else None, unit="B", unit_scale=True,
                  desc=dst.name, disable=not progress) as bar:
            _write_verified(response, dst, hash_prefix, lambda digest: WeightsError(
                f"downloaded {url} does not match its SHA256 prefix {hash_prefix} (got {digest[:16]}...); "
                "nothing was kept"), bar.update)
    return dst


def imagenet_file(weights: Union[str, WeightVersion] = DEFAULT_WEIGHTS, *, progress: bool = True,
                  download: bool = True, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Local path of the file of ``weights`` (a name of :data:`WEIGHT_NAMES`/:data:`VERSION_NAMES` or a
    :class:`WeightVersion`), downloading it into torch.hub's cache if needed.

    Looks in ``$ECGTRANSFER_WEIGHTS_DIR``, then torch.hub's cache (in both the file's SHA256 must start with the
    prefix in its name), then downloads from the version's URL (``timeout`` seconds per socket operation,
    hash-checked before the file is kept).

    Raises:
        WeightsUnavailableError: not found locally and the download fails (offline) or ``download=False``.
        WeightsError: a local or downloaded file whose SHA256 does not match.
        ConfigError: an unknown name.
    """
    w = get_weights(weights)
    env_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if env_dir:
        candidate = Path(env_dir).expanduser() / w.file_name
        if candidate.is_file():
            log.debug("ImageNet weights %s from %s=%s", w.member, WEIGHTS_DIR_ENV, env_dir)
            return verify_file(candidate, w.hash_prefix, f"torchvision {w.member}",
                               "fetch it again with `ecgtransfer weights fetch`")
        log.debug("%s=%s has no %s", WEIGHTS_DIR_ENV, env_dir, w.file_name)

    cached = cache_path(w)
    if cached.is_file():
        return verify_file(cached, w.hash_prefix, f"torchvision {w.member}",
                           "delete it from torch's cache so it is downloaded again")
    if not download:
        raise WeightsUnavailableError(unavailable_message(w, f"downloading {w.url} is disabled"))
    log.info("downloading ImageNet ResNet50 weights (torchvision %s) from %s", w.member, w.url)
    try:
        download_file(w.url, cached, hash_prefix=w.hash_prefix, timeout=timeout, progress=progress)
    except OSError as exc:  # URLError, HTTPError, timeouts, no space left
        raise WeightsUnavailableError(unavailable_message(w, f"downloading {w.url} failed ({exc})")) from exc
    return cached



def unavailable_message(weights: Union[str, WeightVersion], why: str) -> str:
    """The message of :class:`WeightsUnavailableError` for ``weights``, with ``why`` saying what happened to the
    download; it says how to get the file onto this machine."""
    w = get_weights(weights)
    folder = cache_path(w).parent
    return (
        f"ImageNet ResNet50 weights (torchvision {w.member}, {w.file_name}) are not available here: not in "
        f"${WEIGHTS_DIR_ENV} nor in torch's cache {folder}, and {why}. "
        f"On a machine with internet run `ecgtransfer weights fetch --version {w.version} --out weights/`, "
        f"copy weights/{w.file_name} here, then pass its path as the weights (e.g. --init weights/{w.file_name}), "
        f"or set {WEIGHTS_DIR_ENV}=weights, or put the file into {folder}/"
    )


def fetch_imagenet(version: Union[str, WeightVersion] = "v2", out: Union[str, os.PathLike] = ".", *,
                   progress: bool = True) -> Path:
    """Get the file of ``version`` (:func:`imagenet_file`: downloaded, or found locally) and write it to ``out``
    atomically.

    ``out`` is a folder (existing, or given with a trailing ``/``) that receives torchvision's file name
    (``resnet50-11ad3fa6.pth`` for v2, ``resnet50-0676ba61.pth`` for v1), or a file path. The bytes are
    torchvision's original state-dict file, SHA256-checked against the prefix in its name where it was found or
    downloaded and again as they are copied, so a folder of fetched files works as ``$ECGTRANSFER_WEIGHTS_DIR``.

    Raises:
        WeightsUnavailableError: the download fails (offline machine).
        WeightsError: a cached file that is not torchvision's (SHA256 mismatch); nothing is written.
    """
    w = get_weights(version)
    out_s = os.fspath(out)
    out_path = Path(out_s).expanduser()
    if out_path.is_dir() or out_s.endswith(("/", os.sep)):
        out_path = out_path / w.file_name
    src_path = imagenet_file(w, progress=progress)
    if src_path.resolve() != out_path.resolve():
        with open(src_path, "rb") as fin:
            _write_verified(fin, out_path, w.hash_prefix, lambda digest: WeightsError(
                f"{src_path} changed while it was copied to {out_path}: its SHA256 no longer starts with "
                f"{w.hash_prefix}; nothing was written"))
    log.info("wrote %s (torchvision %s)", out_path, w.member)
    return out_path


# --------------------------------------------------------------------------------------------------
# availability probe
# --------------------------------------------------------------------------------------------------
def offline() -> bool:
    """True when ``$ECGTRANSFER_OFFLINE`` is 1/true/yes/on."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def url_unreachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """None when ``url`` answers a HEAD request within ``timeout`` seconds (per socket operation), else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 and exc.code not in (403, 404) else f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:  # URLError, timeouts, DNS failures
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def imagenet_unavailable(weights: Union[str, WeightVersion], *, cache: Optional[dict[str, Optional[str]]] = None,
                         probe_timeout: float = PROBE_TIMEOUT_S, download_timeout: float = DOWNLOAD_TIMEOUT_S,
                         ) -> Optional[str]:
    """None when the file of ``weights`` can be had here, else why not (a :func:`unavailable_message`).

    Looks for the file locally (``$ECGTRANSFER_WEIGHTS_DIR``, torch's cache); if it is not there and
    ``$ECGTRANSFER_OFFLINE`` is not set, probes the URL with a HEAD request (``probe_timeout``) and only then
    downloads it (``download_timeout`` per socket operation), so an offline machine answers within seconds
    instead of hanging. Both timeouts belong to their requests: the process-wide socket default is never
    changed. ``cache`` (``{version: answer}``) keeps the answer per version (e.g. for the rest of a bench run).

    Raises:
        WeightsError: a local or downloaded file whose SHA256 does not match.
    """
    w = get_weights(weights)
    if cache is not None and w.version in cache:
        return cache[w.version]
    reason = _probe(w, probe_timeout, download_timeout)
    if cache is not None:
        cache[w.version] = reason
    return reason


def _probe(w: WeightVersion, probe_timeout: float, download_timeout: float) -> Optional[str]:
    try:
        imagenet_file(w, progress=False, download=False)
        return None
    except WeightsUnavailableError:
        pass  # not on this machine: say below why no download is tried, or try it
    if offline():
        return unavailable_message(w, f"no download was attempted ({OFFLINE_ENV}=1)")
    why = url_unreachable(w.url, probe_timeout)
    if why is not None:
        return unavailable_message(
            w, f"no download was attempted: {w.url} did not answer within {probe_timeout:g} s ({why})")
    try:
        imagenet_file(w, progress=False, download=True, timeout=download_timeout)
        return None
    except WeightsUnavailableError as exc:
        return str(exc)

"""The weight registry: versions against torchvision's (the oracle), lookup, hash checks, download and the probe,
against real files and real HTTP servers on 127.0.0.1."""
from __future__ import annotations

import dataclasses
import hashlib
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from torchvision.models import ResNet50_Weights

from ecgtransfer.errors import ConfigError, WeightsError, WeightsUnavailableError
from ecgtransfer.models import weight_registry as R
from ecgtransfer.models import weights as W


@pytest.fixture
def no_local_weights(monkeypatch, tmp_path) -> Path:
    """An empty torch hub cache, no weights dir, $ECGTRANSFER_OFFLINE unset; returns the cache folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(R.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.delenv(R.OFFLINE_ENV, raising=False)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def _wait_for(condition: Callable[[], bool], limit_s: float = 10.0) -> bool:
    """Poll ``condition`` (a server thread catching up), not a timing assertion."""
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: (base URL, accepted connections)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.05)  # this socket's own timeout, so the thread can stop
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # kept open, never read from or written to

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", held
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _weights_file(folder: Path, *, prefix: str | None = None) -> tuple[Path, bytes]:
    """A real torch file named as torchvision names its files, ``resnet50-<SHA256 prefix>.pth`` (its own prefix
    unless ``prefix`` is given)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.pth"
    torch.save({"conv1.weight": torch.randn(4, 3, 7, 7, generator=torch.Generator().manual_seed(0))}, tmp)
    data = tmp.read_bytes()
    tmp.unlink()
    path = folder / f"resnet50-{prefix or hashlib.sha256(data).hexdigest()[:8]}.pth"
    path.write_bytes(data)
    return path, data


def _other_prefix(data: bytes) -> str:
    """An 8-digit prefix that the SHA256 of ``data`` does not start with."""
    real = hashlib.sha256(data).hexdigest()[:8]
    return ("1" if real[0] == "0" else "0") + real[1:]


# ------------------------------------------------------------------------------------------------
# the registry
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", R.REGISTRY, ids=lambda w: w.name)
def test_entries_match_torchvision(entry):
    tv = ResNet50_Weights[entry.member]
    assert entry.url == tv.url
    assert entry.file_name == Path(tv.url).name
    assert entry.hash_prefix == torch.hub.HASH_REGEX.search(Path(tv.url).name).group(1)
    assert entry.torchvision_name == f"ResNet50_Weights.{tv.name}"
    assert f"{tv.meta['_metrics']['ImageNet-1K']['acc@1']:.1f} % top-1" in entry.description


@pytest.mark.parametrize("entry", R.REGISTRY, ids=lambda w: w.name)
def test_entry_meta_is_what_torchvision_says(entry):
    """Issue 21 item 7: a weight version carries what it implies (normalisation, first conv, classifier, classes,
    recipe), as torchvision's ``Weights(url, transforms, meta)``; the users read it from the entry."""
    from torchvision.models import resnet50

    tv = ResNet50_Weights[entry.member]
    meta = entry.meta
    transforms = tv.transforms()
    assert list(meta.mean) == list(transforms.mean) and list(meta.std) == list(transforms.std)
    assert meta.num_classes == len(tv.meta["categories"])
    assert meta.recipe == tv.meta["recipe"]
    model = resnet50()
    first, classifier = getattr(model, meta.first_conv), getattr(model, meta.classifier)
    assert first is next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == meta.in_channels and classifier.out_features == meta.num_classes


def test_users_of_the_meta_read_it_from_the_entry():
    from ecgtransfer.imaging import IMAGENET_MEAN, IMAGENET_STD
    from ecgtransfer.models import weights as W

    meta = R.get_weights(R.DEFAULT_WEIGHTS).meta
    assert (IMAGENET_MEAN, IMAGENET_STD) == (meta.mean, meta.std)
    assert W.module_name_map()["features_1.stem.conv"][0] == meta.first_conv
    assert W.module_name_map()["classifier.fc"][0] == meta.classifier


def test_lookup_names_aliases_and_versions():
    assert R.WEIGHT_NAMES == ("imagenet", "imagenet-v1", "imagenet-v2")
    assert R.VERSION_NAMES == ("v1", "v2")
    for name in ("imagenet", "imagenet-v2", "IMAGENET-V2", "Imagenet", "v2", "V2"):
        assert R.get_weights(name) is R.IMAGENET1K_V2
    for name in ("imagenet-v1", "v1"):
        assert R.get_weights(name) is R.IMAGENET1K_V1
    assert R.get_weights(R.DEFAULT_WEIGHTS) is R.REGISTRY[-1]  # the default is the newest version
    assert R.get_weights(R.IMAGENET1K_V1) is R.IMAGENET1K_V1
    assert sorted(n for w in R.REGISTRY for n in w.names) == list(R.WEIGHT_NAMES)
    assert R.is_weight_name("ImageNet-V1") and not R.is_weight_name("weights/resnet50-11ad3fa6.pth")
    assert not R.is_weight_name(Path("imagenet")) and not R.is_weight_name("v1")  # a version is no --init name


@pytest.mark.parametrize("name", ["imagenet-v3", "resnet50", "", "IMAGENET1K_V2", "v0"])
def test_unknown_name_lists_the_valid_names(name):
    with pytest.raises(ConfigError) as info:
        R.get_weights(name)
    msg = str(info.value)
    assert f"unknown weights {name!r}" in msg and "imagenet, imagenet-v1, imagenet-v2" in msg and "v1, v2" in msg


def test_read_weights_refuses_an_unknown_imagenet_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown weights 'imagenet-v3': expected imagenet, imagenet-v1, "
                                          r"imagenet-v2 or a file path"):
        W.read_weights("imagenet-v3")


# ------------------------------------------------------------------------------------------------
# hashes
# ------------------------------------------------------------------------------------------------
def test_hash_prefix_verification_good_and_damaged_file(tmp_path):
    path, data = _weights_file(tmp_path)
    prefix = R.hash_prefix_of(path.name)
    assert prefix == hashlib.sha256(data).hexdigest()[:8] and len(prefix) == 8
    assert R.hash_prefix_of("state.pth") is None and R.hash_prefix_of("resnet50.pth") is None
    assert R.verify_file(path, prefix, "a test file", "make it again") == path
    assert R.verify_file(path, None, "a test file", "make it again") == path  # no prefix, no check

    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged) + b"\0")  # another size too: the verified-file cache must not answer
    with pytest.raises(WeightsError) as info:
        R.verify_file(path, prefix, "a test file", "make it again")
    msg = str(info.value)
    assert str(path) in msg and f"SHA256 does not start with {prefix} (a test file)" in msg and "make it again" in msg


def test_local_file_is_found_and_checked(no_local_weights, monkeypatch, tmp_path):
    wdir = tmp_path / "wdir"
    path, _ = _weights_file(wdir)
    entry = dataclasses.replace(R.IMAGENET1K_V2, url=f"http://127.0.0.1:9/{path.name}")
    monkeypatch.setenv(R.WEIGHTS_DIR_ENV, str(wdir))
    assert R.imagenet_file(entry, download=False) == path
    assert R.imagenet_unavailable(entry) is None  # found locally: no network at all
    wrong = _other_prefix(path.read_bytes())
    bad = dataclasses.replace(entry, url=f"http://127.0.0.1:9/resnet50-{wrong}.pth")
    path.rename(wdir / bad.file_name)
    with pytest.raises(WeightsError, match=f"SHA256 does not start with {wrong}.*weights fetch"):
        R.imagenet_file(bad, download=False)


# ------------------------------------------------------------------------------------------------
# download and the availability probe
# ------------------------------------------------------------------------------------------------
def test_probe_of_a_server_that_never_answers_names_the_timeout(no_local_weights, silent_server):
    base, held = silent_server
    entry = dataclasses.replace(R.IMAGENET1K_V2, url=f"{base}/resnet50-11ad3fa6.pth")
    before = socket.getdefaulttimeout()
    cache: dict = {}
    why = R.imagenet_unavailable(entry, cache=cache, probe_timeout=0.5)
    assert socket.getdefaulttimeout() == before
    assert why is not None and "not available here" in why and "IMAGENET1K_V2" in why
    assert f"{entry.url} did not answer within 0.5 s" in why and "timed out" in why
    assert "no download was attempted" in why
    assert _wait_for(lambda: len(held) == 1)
    assert R.imagenet_unavailable(entry, cache=cache, probe_timeout=0.5) == why  # cached per version
    v1 = dataclasses.replace(R.IMAGENET1K_V1, url=f"{base}/resnet50-0676ba61.pth")
    assert "IMAGENET1K_V1" in R.imagenet_unavailable(v1, cache=cache, probe_timeout=0.5)
    assert set(cache) == {"v1", "v2"} and _wait_for(lambda: len(held) == 2)
    assert not no_local_weights.exists()  # nothing downloaded, nothing created


def test_probe_offline_env_tries_no_network(no_local_weights, silent_server, monkeypatch):
    base, held = silent_server
    monkeypatch.setenv(R.OFFLINE_ENV, "1")
    entry = dataclasses.replace(R.IMAGENET1K_V2, url=f"{base}/resnet50-11ad3fa6.pth")
    why = R.imagenet_unavailable(entry)
    assert "not available here" in why and f"no download was attempted ({R.OFFLINE_ENV}=1)" in why
    assert held == []


def test_probe_downloads_a_good_file_with_a_per_request_timeout(no_local_weights, serve_dir, tmp_path):
    path, data = _weights_file(tmp_path / "served")
    server = serve_dir(path.parent)
    seen: list = []
    server.faults[f"/{path.name}"] = lambda handler: seen.append(socket.getdefaulttimeout()) or False
    entry = dataclasses.replace(R.IMAGENET1K_V2, url=server.url + path.name)
    before = socket.getdefaulttimeout()
    assert R.imagenet_unavailable(entry, probe_timeout=5.0, download_timeout=5.0) is None
    assert seen == [before]  # the process-wide default was left alone while the file downloaded
    assert socket.getdefaulttimeout() == before
    cached = R.cache_path(entry)
    assert cached.parent == no_local_weights and cached.read_bytes() == data
    assert [p.name for p in no_local_weights.iterdir()] == [path.name]  # no temporary file left
    assert R.imagenet_file(entry, download=False) == cached


def test_download_of_a_damaged_file_keeps_nothing(no_local_weights, serve_dir, tmp_path):
    good, data = _weights_file(tmp_path / "served")
    wrong = _other_prefix(data)
    damaged = good.rename(good.parent / f"resnet50-{wrong}.pth")  # the bytes do not carry the name's prefix
    server = serve_dir(damaged.parent)
    entry = dataclasses.replace(R.IMAGENET1K_V2, url=server.url + damaged.name)
    with pytest.raises(WeightsError, match=f"does not match its SHA256 prefix {wrong}"):
        R.imagenet_unavailable(entry, probe_timeout=5.0, download_timeout=5.0)
    with pytest.raises(WeightsError, match="nothing was kept"):
        R.imagenet_file(entry, progress=False)
    assert not no_local_weights.exists() or list(no_local_weights.iterdir()) == []


def test_probe_of_a_missing_file_says_http_404(no_local_weights, serve_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    server = serve_dir(tmp_path / "empty")
    entry = dataclasses.replace(R.IMAGENET1K_V2, url=server.url + "resnet50-11ad3fa6.pth")
    why = R.imagenet_unavailable(entry, probe_timeout=5.0)
    assert "did not answer within 5 s (HTTP 404)" in why


def test_download_timeout_is_one_clear_unavailable_error(no_local_weights, silent_server):
    base, _ = silent_server
    entry = dataclasses.replace(R.IMAGENET1K_V2, url=f"{base}/resnet50-11ad3fa6.pth")
    before = socket.getdefaulttimeout()
    with pytest.raises(WeightsUnavailableError) as info:
        R.imagenet_file(entry, progress=False, timeout=0.5)
    assert socket.getdefaulttimeout() == before
    msg = str(info.value)
    assert "timed out" in msg and "ecgtransfer weights fetch --version v2" in msg
    assert not no_local_weights.exists() or list(no_local_weights.iterdir()) == []


@pytest.mark.parametrize("spec, expected", [
    ("imagenet", False), ("IMAGENET-V1", False), ("scratch", False), ("", False), ("  ", False), (None, False),
    ("best.pt", True), ("model.PTH", True), ("x.ckpt", True), ("runs/a/best", True), ("imagenet1", False),
    ("scratchh", False),
])
def test_one_rule_says_whether_init_names_a_weights_file(spec, expected) -> None:
    from ecgtransfer.models.weight_registry import is_weights_path

    assert is_weights_path(spec) is expected


def test_training_and_the_bench_refuse_a_misspelt_weight_name_by_the_same_rule(tmp_path) -> None:
    """Two rules used to disagree: the training config took any non-empty string for a weights path (``imagenett``
    was looked for on disk), the bench refused it. Both ask ``is_weights_path`` now."""
    from ecgtransfer.errors import ConfigError
    from ecgtransfer.training.config import TrainConfig

    with pytest.raises(ConfigError, match=r"init must be one of .* or a weights file path"):
        TrainConfig(init="imagenett").validate()
    TrainConfig(init=str(tmp_path / "best.pt")).validate()
    TrainConfig(init="best.pt").validate()
    TrainConfig(init="ImageNet").validate()  # weight names are case-insensitive, as the loader reads them

"""ResNet50 against torchvision's resnet50 (the oracle), the name mapping and weight loading."""
from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
import torchvision

from ecgtransfer.errors import ConfigError, WeightsError, WeightsUnavailableError
from ecgtransfer.models import ResNet50, from_torchvision_name, resnet50, to_torchvision_name
from ecgtransfer.models import weight_registry as R
from ecgtransfer.models import weights as W

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BN affine params and running statistics, so swapped BN layers would show in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(7)


@pytest.fixture(scope="module")
def tv_model() -> torchvision.models.ResNet:
    torch.manual_seed(123)
    model = torchvision.models.resnet50()
    _randomise_bn(model)
    return model.eval()


@pytest.fixture(scope="module")
def tv_file(tv_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tv-resnet50.pth"
    torch.save(tv_model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tv_out(tv_model) -> torch.Tensor:
    with torch.no_grad():
        return tv_model(X)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    scale = max(1.0, b.abs().max().item())
    diff = (a - b).abs().max().item()
    assert diff <= tol * scale, f"max abs diff {diff} (scale {scale})"


# ------------------------------------------------------------------------------------------------
# architecture and names
# ------------------------------------------------------------------------------------------------
def test_name_mapping_is_a_bijection_between_both_models():
    ours = ResNet50(1000).state_dict()
    theirs = torchvision.models.resnet50().state_dict()
    assert len(ours) == len(theirs) == 320
    assert {to_torchvision_name(k) for k in ours} == set(theirs)
    assert {from_torchvision_name(k) for k in theirs} == set(ours)
    for k in ours:
        assert from_torchvision_name(to_torchvision_name(k)) == k
        assert ours[k].shape == theirs[to_torchvision_name(k)].shape, k
    # a few spelled out, so the table itself is checked too
    assert to_torchvision_name("features_1.stem.conv.weight") == "conv1.weight"
    assert to_torchvision_name("features_1.stem.bn.running_var") == "bn1.running_var"
    assert to_torchvision_name("features_1.stage3.block5.bn3.weight") == "layer3.5.bn3.weight"
    assert to_torchvision_name("features_1.stage1.block0.shortcut.conv.weight") == "layer1.0.downsample.0.weight"
    assert to_torchvision_name("features_2.stage4.block0.shortcut.bn.bias") == "layer4.0.downsample.1.bias"
    assert to_torchvision_name("classifier.fc.bias") == "fc.bias"
    with pytest.raises(KeyError):
        to_torchvision_name("features_1.stage1.block1.shortcut.conv.weight")
    with pytest.raises(KeyError):
        from_torchvision_name("layer5.0.conv1.weight")


@pytest.mark.parametrize("zero_init_residual", [False, True])
def test_seeded_init_matches_torchvision_exactly(zero_init_residual):
    """Same modules created and initialised in the same order: identical tensors from the same seed."""
    torch.manual_seed(7)
    theirs = torchvision.models.resnet50(zero_init_residual=zero_init_residual).state_dict()
    torch.manual_seed(7)
    ours = ResNet50(1000, zero_init_residual=zero_init_residual)
    assert ours.load_report is None
    mapped = W.to_torchvision_state_dict(ours.state_dict())
    for k, v in theirs.items():
        assert torch.equal(mapped[k], v), k
    bn3 = [m.bn3.weight for m in ours.modules() if hasattr(m, "bn3")]
    assert len(bn3) == 16
    assert all(bool((w == 0).all()) == zero_init_residual for w in bn3)


def test_tiers_and_shapes():
    model = ResNet50(7).eval()
    with torch.no_grad():
        f1 = model.features_1(X)
        f2 = model.features_2(f1)
        out = model.classifier(f2)
    assert f1.shape == (2, 1024, 4, 4)
    assert f2.shape == (2, 2048, 1, 1)
    assert out.shape == (2, 7)
    assert list(dict(model.named_children())) == ["features_1", "features_2", "classifier"]
    with pytest.raises(ConfigError):
        ResNet50(0)


# ------------------------------------------------------------------------------------------------
# the builder: ResNet50 is the architecture, resnet50() builds then loads
# ------------------------------------------------------------------------------------------------
def test_the_architecture_loads_nothing_and_the_builder_without_weights_is_the_same_model():
    torch.manual_seed(11)
    bare = ResNet50(3, in_channels=2, rr_dim=6)
    torch.manual_seed(11)
    built = resnet50(3, in_channels=2, rr_dim=6)
    assert bare.load_report is None and built.load_report is None
    assert type(built) is ResNet50 and (built.num_classes, built.in_channels, built.rr_dim) == (3, 2, 6)
    assert bare.state_dict().keys() == built.state_dict().keys()
    assert all(torch.equal(v, built.state_dict()[k]) for k, v in bare.state_dict().items())
    with pytest.raises(TypeError, match="weights"):
        ResNet50(3, weights="imagenet")  # the constructor is the architecture only
    with pytest.raises(TypeError):
        ResNet50(3, 2)  # everything after num_classes is a keyword


def test_builder_passes_class_names_to_the_head_check(tmp_path):
    torch.manual_seed(4)
    source = ResNet50(4)
    ckpt = tmp_path / "four.pt"
    torch.save({"model": source.state_dict(), "class_names": ["N", "S", "V", "F"]}, ckpt)
    same = resnet50(4, weights=ckpt, class_names=["N", "S", "V", "F"], progress=False)
    assert same.load_report.reinitialised == [] and len(same.load_report.loaded) == 320
    assert torch.equal(same.classifier.fc.weight, source.classifier.fc.weight)
    other = resnet50(4, weights=ckpt, class_names=["N", "S", "V", "Q"], progress=False)
    assert other.load_report.reinitialised == ["classifier.fc.weight", "classifier.fc.bias"]
    assert other.load_report.backbone_loaded == 318


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------
def test_torchvision_file_loads_and_outputs_match(tv_file, tv_out, tv_model):
    model = resnet50(1000, weights=tv_file).eval()
    rep = model.load_report
    assert rep is not None and rep.ok
    assert rep.format == "torchvision"
    assert len(rep.loaded) == 320 and rep.reinitialised == [] and rep.adapted == []
    assert rep.source_head_shape == (1000, 2048)
    with torch.no_grad():
        out = model(X)
    _close(out, tv_out)

    # and back: our state in torchvision's names loads strictly into a fresh torchvision model
    fresh = torchvision.models.resnet50()
    fresh.load_state_dict(W.to_torchvision_state_dict(model.state_dict()), strict=True)
    for k, v in tv_model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    with torch.no_grad():
        _close(fresh.eval()(X), tv_out, tol=0)


def test_new_head_keeps_every_backbone_tensor(tv_file, tv_model):
    torch.manual_seed(0)
    model = resnet50(5, weights=tv_file)
    rep = model.load_report
    assert rep.reinitialised == ["classifier.fc.weight", "classifier.fc.bias"]
    assert rep.backbone_loaded == 318 and len(rep.loaded) == 318
    assert rep.source_head_shape == (1000, 2048) and rep.model_head_shape == (5, 2048)
    theirs = tv_model.state_dict()
    for k, v in model.state_dict().items():
        if k.startswith("classifier."):
            continue
        assert torch.equal(v, theirs[to_torchvision_name(k)]), k
    assert model.classifier.fc.weight.shape == (5, 2048)
    assert "re-initialised head [5, 2048]" in rep.summary()


def _save_modified(tv_model, path: Path, edit) -> Path:
    sd = dict(tv_model.state_dict())
    edit(sd)
    torch.save(sd, path)
    return path


def test_wrong_shape_raises_and_loads_nothing(tv_model, tmp_path):
    def edit(sd):
        sd["layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)

    path = _save_modified(tv_model, tmp_path / "bad.pth", edit)
    model = ResNet50(1000)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match=r"features_1\.stage2\.block0\.conv2\.weight.*\[128, 128, 3, 3\]"):
        W.load_weights(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_tensors_raise(tv_model, tmp_path):
    def edit(sd):
        del sd["layer3.5.bn3.running_var"]
        del sd["layer1.0.downsample.0.weight"]

    path = _save_modified(tv_model, tmp_path / "missing.pth", edit)
    with pytest.raises(WeightsError, match="2 missing") as info:
        resnet50(1000, weights=path)
    assert "features_1.stage3.block5.bn3.running_var" in str(info.value)
    assert "features_1.stage1.block0.shortcut.conv.weight" in str(info.value)


def test_unexpected_tensors_raise(tv_model, tmp_path):
    def edit(sd):
        sd["layer5.0.conv1.weight"] = torch.zeros(1)

    path = _save_modified(tv_model, tmp_path / "extra.pth", edit)
    with pytest.raises(WeightsError, match=r"1 unexpected \(layer5\.0\.conv1\.weight\)"):
        resnet50(1000, weights=path)


class NotAStateDict:
    def __init__(self) -> None:
        self.payload = torch.zeros(3)


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "object.pth"
    torch.save(NotAStateDict(), path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        resnet50(2, weights=path)
    whole = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), whole)
    with pytest.raises(WeightsError, match="refused"):
        resnet50(2, weights=whole)


def test_unreadable_or_foreign_files_raise(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="not a readable torch file"):
        resnet50(2, weights=garbage)
    with pytest.raises(WeightsError, match="does not exist"):
        resnet50(2, weights=tmp_path / "absent.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, foreign)
    with pytest.raises(WeightsError, match="no ResNet50 tensor names"):
        resnet50(2, weights=foreign)
    with pytest.raises(ConfigError, match="imagenet-v3"):
        resnet50(2, weights="imagenet-v3")


def test_ecgtransfer_checkpoint_and_state_dict_formats(tmp_path):
    torch.manual_seed(3)
    trained = ResNet50(5, in_channels=1)
    _randomise_bn(trained, seed=5)
    trained.eval()
    x = X[:, :1]
    with torch.no_grad():
        want = trained(x)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": trained.state_dict(), "epoch": 3, "config": {"lr": 0.1}}, ckpt)
    model = resnet50(5, weights=ckpt, in_channels=1).eval()
    rep = model.load_report
    assert rep.format == "ecgtransfer-checkpoint"
    assert len(rep.loaded) == 320 and not rep.reinitialised and not rep.adapted
    with torch.no_grad():
        _close(model(x), want, tol=0)

    # a DDP-wrapped model's bare state dict (module. prefix)
    ddp = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in trained.state_dict().items()}, ddp)
    model = resnet50(3, weights=ddp, in_channels=1).eval()
    assert model.load_report.format == "ecgtransfer-state-dict"
    assert model.load_report.reinitialised == ["classifier.fc.weight", "classifier.fc.bias"]
    assert any("module." in n for n in model.load_report.notes)
    with torch.no_grad():
        _close(model.forward_features(x), trained.forward_features(x), tol=0)


def test_in_channels_adaptation_matches_repeated_rgb(tv_file, tv_model, tv_out):
    grey = X[:, :1]
    with torch.no_grad():
        want = tv_model(grey.repeat(1, 3, 1, 1))
    model = resnet50(1000, weights=tv_file, in_channels=1).eval()
    assert model.load_report.adapted == ["features_1.stem.conv.weight"]
    assert model.load_report.source_in_channels == 3
    assert model.features_1.stem.conv.weight.shape == (64, 1, 7, 7)
    with torch.no_grad():
        _close(model(grey), want, tol=1e-4)

    six = resnet50(1000, weights=tv_file, in_channels=6).eval()
    with torch.no_grad():
        _close(six(torch.cat([X, X], dim=1)), tv_out, tol=1e-4)

    w = torch.randn(64, 3, 7, 7)
    four = W.adapt_input_conv(w, 4)
    assert torch.allclose(four[:, 3], w[:, 0] * 0.75) and torch.allclose(four[:, :3], w * 0.75)


def test_single_channel_file_cannot_fill_a_three_channel_model(tmp_path):
    path = tmp_path / "grey.pt"
    torch.save(ResNet50(2, in_channels=1).state_dict(), path)
    with pytest.raises(WeightsError, match=r"stem\.conv\.weight: model \[64, 3, 7, 7\], file \[64, 1, 7, 7\]"):
        resnet50(2, weights=path)


# ------------------------------------------------------------------------------------------------
# ImageNet sources
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, an empty torch hub cache, no weights dir."""

    def no_network(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(R.WEIGHTS_DIR_ENV, raising=False)
    return tmp_path / "torch-home"


def test_imagenet_offline_raises_a_clear_error(offline):
    with pytest.raises(WeightsUnavailableError) as info:
        resnet50(2, weights="imagenet")
    msg = str(info.value)
    assert "IMAGENET1K_V2" in msg and "resnet50-11ad3fa6.pth" in msg
    assert "ecgtransfer weights fetch --version v2" in msg and R.WEIGHTS_DIR_ENV in msg
    with pytest.raises(WeightsUnavailableError, match="IMAGENET1K_V1"):
        resnet50(2, weights="imagenet-v1")
    assert not list(offline.rglob("*.pth"))  # no half file left in the cache


def _own_prefix(monkeypatch, path: Path) -> None:
    """Make ``path`` (random weights under torchvision's file name) carry its own SHA256 prefix, as the real
    file does: the name's prefix is what the content is checked against."""
    real = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(R, "hash_prefix_of", lambda file_name: real)


def test_imagenet_from_torch_hub_cache(offline, monkeypatch, tv_model, tv_out, tv_file):
    cache = offline / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet50-0676ba61.pth").write_bytes(tv_file.read_bytes())
    with pytest.raises(WeightsError, match="SHA256 does not start with 0676ba61.*torch's cache"):
        resnet50(1000, weights="imagenet-v1")  # a cache file that is not torchvision's is refused
    _own_prefix(monkeypatch, cache / "resnet50-0676ba61.pth")
    model = resnet50(1000, weights="imagenet-v1").eval()
    assert "IMAGENET1K_V1" in model.load_report.source
    with torch.no_grad():
        _close(model(X), tv_out)
    with pytest.raises(WeightsUnavailableError):  # v2 is not cached
        resnet50(1000, weights="imagenet")


def test_imagenet_from_weights_dir_checks_the_hash(offline, monkeypatch, tmp_path, tv_file):
    wdir = tmp_path / "wdir"
    wdir.mkdir()
    (wdir / "resnet50-11ad3fa6.pth").write_bytes(tv_file.read_bytes())
    monkeypatch.setenv(R.WEIGHTS_DIR_ENV, str(wdir))
    with pytest.raises(WeightsError, match="SHA256 does not start with 11ad3fa6"):
        resnet50(2, weights="imagenet")
    _own_prefix(monkeypatch, wdir / "resnet50-11ad3fa6.pth")
    assert resnet50(2, weights="imagenet").load_report.backbone_loaded == 318


def test_fetch_offline_fails_cleanly(offline, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(WeightsUnavailableError, match="weights fetch"):
        R.fetch_imagenet("v2", out)
    assert not out.exists() or not list(out.iterdir())


def test_fetch_copies_the_verified_file(offline, monkeypatch, tmp_path, tv_file):
    cache = offline / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet50-11ad3fa6.pth").write_bytes(tv_file.read_bytes())
    out = tmp_path / "weights"
    out.mkdir()
    with pytest.raises(WeightsError, match="SHA256 does not start with 11ad3fa6"):
        R.fetch_imagenet("v2", out)  # random weights under the real name: refused, nothing written
    assert list(out.iterdir()) == []
    _own_prefix(monkeypatch, cache / "resnet50-11ad3fa6.pth")
    written = R.fetch_imagenet("v2", out)
    assert written == out / "resnet50-11ad3fa6.pth"
    assert written.read_bytes() == tv_file.read_bytes()
    assert [p.name for p in out.iterdir()] == ["resnet50-11ad3fa6.pth"]
    named = R.fetch_imagenet("v2", tmp_path / "elsewhere" / "r50.pth")
    assert named.read_bytes() == tv_file.read_bytes()


# ------------------------------------------------------------------------------------------------
# the load report in run.json
# ------------------------------------------------------------------------------------------------
def test_run_json_stores_the_load_report_as_a_dict(physionet_root, tmp_path):
    """run.json keeps ``LoadReport.to_dict()`` of the run's model; the bench's one-line summary of a cell and
    load_run read it."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from training_helpers import make_store, record_split

    from ecgtransfer.bench.run_records import load_report_text
    from ecgtransfer.models import ModelSpec, build_model
    from ecgtransfer.training import fine_tune, load_run

    store = make_store(physionet_root, tmp_path / "store", {r: 8 for r in ("119", "209", "106")})
    init = tmp_path / "init.pt"
    torch.manual_seed(0)
    torch.save(ResNet50(1000).state_dict(), init)
    out = tmp_path / "run"
    fine_tune(store, out=out, split_indices=record_split(store, ["119", "209"], ["106"], []), init=str(init),
              image_size=32, batch_size=8, num_threads=1, progress=False, epochs=1, max_steps=1)
    run = json.loads((out / "run.json").read_text())
    stored = run["load_report"]
    assert isinstance(stored, dict)
    model = build_model(ModelSpec.from_dict(run["model"]))
    expected = W.load_weights(model, init, class_names=run["class_names"]).to_dict()
    assert stored == json.loads(json.dumps(expected))
    assert stored["ok"] is True and stored["source"] == str(init) and len(stored["loaded"]) == 318
    k = len(run["class_names"])
    assert load_report_text(out) == (f"source {init}; 318 tensors loaded; reinitialised: classifier.fc.weight, "
                                 f"classifier.fc.bias; head (1000, 2048) -> ({k}, 2048)")
    assert load_run(out).class_names == run["class_names"]


def test_a_model_kind_is_declared_once(monkeypatch):
    """Issue 21: models were added in four places (three tables and an if-chain). ``registry.KINDS`` is the one
    declaration: the other tables are read from it, ``build_model`` dispatches through it, and a kind registered there
    (here a test's own) is accepted by ModelSpec and TrainConfig and built without touching anything else."""
    import torch

    from ecgtransfer.models import registry
    from ecgtransfer.training.config import TrainConfig

    assert registry.MODELS == tuple(registry.KINDS)
    assert registry.MODEL_INPUT == {k: v.input for k, v in registry.KINDS.items()}
    assert registry.CLOSED_FORM == {k for k, v in registry.KINDS.items() if v.closed_form}
    built = []

    def build(spec, weights, class_names, head):
        built.append(spec)
        return torch.nn.Linear(spec.in_channels, spec.num_classes)

    monkeypatch.setitem(registry.KINDS, "tiny", registry.ModelKind("tiny", input="signal", closed_form=False,
                                                                   pretrained=False, build=build))
    from ecgtransfer.models.registry import ModelSpec, build_model

    model = build_model(ModelSpec(kind="tiny", num_classes=3, in_channels=4))
    assert isinstance(model, torch.nn.Linear) and built[0].kind == "tiny"
    assert TrainConfig(model="tiny").init == "scratch"  # not pretrained: the default init becomes scratch
    with pytest.raises(ConfigError, match="pretrained weights exist for resnet50 only"):
        TrainConfig(model="tiny", init="imagenet-v1")
    with pytest.raises(ConfigError, match="has no pretrained weights"):
        build_model(ModelSpec(kind="tiny", num_classes=3, in_channels=4), weights="imagenet")
    with pytest.raises(ConfigError, match=r"model must be one of \('resnet50', 'cnn1d', 'features', 'tiny'\)"):
        ModelSpec(kind="huge", num_classes=3, in_channels=4)

"""``ecgtransfer weights fetch|inspect``."""
from __future__ import annotations

import hashlib
import json
import socket

import pytest
import torch
import torchvision

from ecgtransfer.cli import main
from ecgtransfer.models import weight_registry as R


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cli") / "tv.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


def test_inspect_torchvision_file(tv_file, capsys):
    assert main(["weights", "inspect", str(tv_file)]) == 0
    out = capsys.readouterr().out
    assert "format:         torchvision" in out
    assert "loaded:         320 tensors (318 backbone, 2 head)" in out
    assert "source head:    [1000, 2048]" in out
    assert "status:         OK" in out


def test_inspect_json_with_new_head(tv_file, capsys):
    assert main(["weights", "inspect", str(tv_file), "--num-classes", "5", "--in-channels", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["reinitialised"] == ["classifier.fc.weight", "classifier.fc.bias"]
    assert report["adapted"] == ["features_1.stem.conv.weight"]
    assert len(report["loaded"]) == 318


def test_inspect_mismatch_reports_and_fails(tv_file, tmp_path, capsys):
    sd = torch.load(tv_file, weights_only=True)
    del sd["layer4.2.bn3.bias"]
    sd["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    assert main(["weights", "inspect", str(bad)]) == 2
    captured = capsys.readouterr()
    assert "missing:        1 (features_2.stage4.block2.bn3.bias)" in captured.out
    assert "unexpected:     1 (extra.weight)" in captured.out
    assert "DOES NOT MATCH" in captured.out
    assert "does not match" in captured.err


def test_inspect_refuses_pickled_objects(tmp_path, capsys):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    assert main(["weights", "inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecgtransfer: error: ") and "refused" in err and err.count("\n") == 1


def test_fetch_offline_is_one_clear_error(monkeypatch, tmp_path, capsys):
    def no_network(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(R.WEIGHTS_DIR_ENV, raising=False)
    assert main(["-q", "weights", "fetch", "--version", "v1", "--out", str(tmp_path / "w") + "/"]) == 2
    err = capsys.readouterr().err
    assert "IMAGENET1K_V1" in err and "ecgtransfer weights fetch --version v1" in err
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())


def test_fetch_writes_the_file_only_once_it_loads_into_resnet50(monkeypatch, tmp_path, tv_file, capsys):
    """A cached file carrying its own SHA256 prefix (as torchvision's do) is copied once it loads; one that
    matches its hash but not ResNet50 fails with exit code 2 and nothing is written."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(R.WEIGHTS_DIR_ENV, raising=False)
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    monkeypatch.setattr(R, "hash_prefix_of",
                        lambda file_name: hashlib.sha256((cache / file_name).read_bytes()).hexdigest()[:8])
    cached = cache / "resnet50-0676ba61.pth"
    cached.write_bytes(tv_file.read_bytes())
    out = tmp_path / "w"
    assert main(["-q", "weights", "fetch", "--version", "v1", "--out", str(out) + "/"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "resnet50-0676ba61.pth")
    assert (out / "resnet50-0676ba61.pth").read_bytes() == tv_file.read_bytes()

    sd = torch.load(tv_file, weights_only=True)
    del sd["layer4.2.bn3.bias"]
    torch.save(sd, cached)
    other = tmp_path / "w2"
    assert main(["-q", "weights", "fetch", "--version", "v1", "--out", str(other) + "/"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecgtransfer: error: ") and "features_2.stage4.block2.bn3.bias" in err
    assert err.count("\n") == 1 and not other.exists()


def test_fetch_versions_are_the_registry_versions(capsys):
    with pytest.raises(SystemExit) as info:
        main(["weights", "fetch", "--version", "v3", "--out", "w/"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'v3'" in err and ", ".join(repr(v) for v in R.VERSION_NAMES) in err

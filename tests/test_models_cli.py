"""``ecgtransfer weights fetch|inspect``."""
from __future__ import annotations

import json
import socket

import pytest
import torch
import torchvision

from ecgtransfer.cli import main
from ecgtransfer.models import weights as W


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
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)
    assert main(["-q", "weights", "fetch", "--version", "v1", "--out", str(tmp_path / "w") + "/"]) == 2
    err = capsys.readouterr().err
    assert "IMAGENET1K_V1" in err and "ecgtransfer weights fetch --version v1" in err
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())

"""Precision and memory format: native-bf16 detection, what amp/channels_last "auto" resolve to, run.json, a bf16
vs fp32 training on real beats, and exact CPU resume within bf16."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgtransfer.errors import ConfigError, TrainingError
from ecgtransfer.store import SegmentStore
from ecgtransfer.training import TrainConfig, fine_tune, precision
from ecgtransfer.training.checkpoint import load_checkpoint
from ecgtransfer.training.precision import amp_dtype, native_bf16, read_cpu_flags, use_channels_last

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_store, record_split  # noqa: E402

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# /proc/cpuinfo flags of real CPUs (abridged to the vector extensions)
ZEN3 = "fpu sse sse2 avx f16c fma avx2 bmi2 sha_ni vaes vpclmulqdq".split()  # AMD EPYC 7003 (this machine's kind)
SKYLAKE_X = ZEN3 + "avx512f avx512dq avx512cd avx512bw avx512vl".split()  # AVX-512 without bf16
COOPER_LAKE = SKYLAKE_X + "avx512_vnni avx512_bf16".split()
ZEN4 = SKYLAKE_X + "avx512_vnni avx512_bf16 avx512_vbmi2".split()
SAPPHIRE_RAPIDS = COOPER_LAKE + "amx_bf16 amx_tile amx_int8".split()
FAST = dict(init="scratch", encoding="spectrogram", image_size=32, num_threads=1, progress=False, seed=3)


@pytest.mark.parametrize("flags, expected", [
    (ZEN3, False), (SKYLAKE_X, False), ([], False), (COOPER_LAKE, True), (ZEN4, True), (SAPPHIRE_RAPIDS, True),
    (["amx_bf16"], True), (["AVX512_BF16\n"], True), (["avx512_bf16x"], False),
])
def test_native_bf16_from_cpu_flags(flags, expected) -> None:
    assert native_bf16(flags) is expected


def test_read_cpu_flags_takes_the_flags_line(tmp_path) -> None:
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                 f"flags\t\t: {' '.join(SAPPHIRE_RAPIDS)}\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert read_cpu_flags(f) == frozenset(SAPPHIRE_RAPIDS) and native_bf16(read_cpu_flags(f))
    assert read_cpu_flags(tmp_path / "absent") == frozenset()


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make the detection see the given flags (from /proc/cpuinfo and torch's probes), fresh cache each time."""

    def set_flags(flags: list[str]) -> dict:
        monkeypatch.setattr(precision, "read_cpu_flags", lambda *a: frozenset(flags))
        monkeypatch.setattr(precision, "_torch_flags", lambda: frozenset())
        precision.cpu_info.cache_clear()
        return precision.cpu_info()

    yield set_flags
    precision.cpu_info.cache_clear()


def test_auto_resolves_by_the_cpu(fake_cpu) -> None:
    info = fake_cpu(ZEN3)
    assert info["native_bf16"] is False and info["bf16_flags"] == []
    assert amp_dtype("auto", CPU) is None  # fp32: emulated bf16 is slower
    assert use_channels_last("auto", CPU, amp_dtype("auto", CPU)) is False
    info = fake_cpu(SAPPHIRE_RAPIDS)
    assert info["native_bf16"] is True and info["bf16_flags"] == ["amx_bf16", "avx512_bf16"]
    assert amp_dtype("auto", CPU) is torch.bfloat16
    assert use_channels_last("auto", CPU, torch.bfloat16) is True
    assert amp_dtype("off", CPU) is None  # off is exact fp32 whatever the CPU
    assert amp_dtype("bf16", CPU) is torch.bfloat16 and amp_dtype("auto", CUDA) is torch.bfloat16


def test_explicit_choices_and_errors() -> None:
    assert amp_dtype("auto", CPU, cpu_native_bf16=False) is None
    assert amp_dtype("auto", CPU, cpu_native_bf16=True) is torch.bfloat16
    assert amp_dtype("fp16", CUDA) is torch.float16
    with pytest.raises(ConfigError, match="fp16.*CUDA"):
        amp_dtype("fp16", CPU)
    assert use_channels_last("auto", CUDA, None) is True and use_channels_last("auto", CUDA, torch.bfloat16)
    assert use_channels_last("on", CPU, None) is True and use_channels_last("off", CUDA, torch.bfloat16) is False
    with pytest.raises(ConfigError, match="channels_last"):
        use_channels_last("sometimes", CPU, None)


def test_config_channels_last_choices_and_older_values() -> None:
    assert TrainConfig().channels_last == "auto"
    assert [TrainConfig(channels_last=v).channels_last for v in (None, True, False, "ON", "false")] == \
        ["auto", "on", "off", "on", "off"]
    with pytest.raises(ConfigError, match="channels_last must be one of"):
        TrainConfig(channels_last="sometimes")
    cfg = TrainConfig()
    older = {**cfg.to_dict(), "channels_last": None}  # a checkpoint written when the field was bool | None
    assert cfg.incompatible_with(older) == {}
    assert set(TrainConfig(channels_last="on").incompatible_with(older)) == {"channels_last"}
    assert set(cfg.incompatible_with({**cfg.to_dict(), "amp": "bf16"})) == {"amp"}  # amp is part of the run


def test_cli_takes_the_config_choices(tmp_path) -> None:
    from ecgtransfer.cli import build_parser
    from ecgtransfer.cli.train import config_from_args

    def cfg(*argv: str) -> TrainConfig:
        return config_from_args(build_parser().parse_args(["train", "s", "--out", str(tmp_path), *argv]))

    assert (cfg().amp, cfg().channels_last) == ("auto", "auto")
    assert cfg("--channels-last", "true").channels_last == "on" and cfg("--channels-last", "off").channels_last == "off"
    assert cfg("--amp", "off").amp == "off"
    with pytest.raises(SystemExit):
        cfg("--amp", "int8")


@pytest.fixture(scope="module")
def beats(physionet_root, tmp_path_factory) -> SegmentStore:
    """96 real mitdb beats (16 from each of 6 records)."""
    records = {"119": 16, "209": 16, "106": 16, "118": 16, "208": 16, "223": 16}
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "mitdb96", records)


def test_run_json_records_the_resolved_choices_logged_once(beats, tmp_path, fake_cpu, caplog) -> None:
    split = record_split(beats, ["119", "209"], ["106"], [])
    kw = dict(split_indices=split, **FAST, batch_size=8, epochs=1, max_steps=1)
    fake_cpu(ZEN3)
    with caplog.at_level(logging.INFO, logger="ecgtransfer.training.engine"):
        fine_tune(beats, out=tmp_path / "fp32", **kw)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision:")]
    assert len(lines) == 1 and "float32 (amp=auto)" in lines[0] and "no native bf16" in lines[0], lines
    assert "channels_last off (channels_last=auto)" in lines[0]
    run = json.loads((tmp_path / "fp32" / "run.json").read_text())
    assert (run["amp"], run["channels_last"]) == ("float32", False)
    assert run["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    fake_cpu(SAPPHIRE_RAPIDS)
    fine_tune(beats, out=tmp_path / "bf16", **kw)
    run = json.loads((tmp_path / "bf16" / "run.json").read_text())
    assert (run["amp"], run["channels_last"]) == ("bfloat16", True)


def test_bf16_and_fp32_training_reach_the_same_validation_metrics(beats, tmp_path) -> None:
    """Seeded, identical runs but for the precision: a frozen-backbone fit of the head on 64 real beats
    (random beat-level split, 32 validation beats), 5 epochs. Tolerance on the last epoch's validation metrics:
    loss within 15% of each other, accuracy and macro-F1 within 0.1; and both must have learned (validation
    loss below half its first-epoch value)."""
    perm = np.random.default_rng(0).permutation(len(beats))
    split = {"train": np.sort(perm[:64]), "val": np.sort(perm[64:]), "test": perm[:0]}
    kw = dict(split_indices=split, **FAST, batch_size=16, freeze=("features_1", "features_2"),
              tiers=(1e-3, 1e-3, 1e-3), optimizer="adamw", weight_decay=0.0, epochs=5, warmup_steps=0,
              early_stopping=None)
    runs = {amp: fine_tune(beats, out=tmp_path / amp, amp=amp, **kw) for amp in ("off", "bf16")}
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["amp"] == "bfloat16"
    first = {amp: r.history[0]["val"] for amp, r in runs.items()}
    last = {amp: r.history[-1]["val"] for amp, r in runs.items()}
    for amp in runs:
        assert last[amp]["loss"] < 0.5 * first[amp]["loss"], (amp, first[amp]["loss"], last[amp]["loss"])
    a, b = last["off"], last["bf16"]
    assert abs(a["loss"] - b["loss"]) <= 0.15 * a["loss"], (a["loss"], b["loss"])
    assert abs(a["accuracy"] - b["accuracy"]) <= 0.1 and abs(a["macro_f1"] - b["macro_f1"]) <= 0.1, (a, b)
    # and they are not the same numbers: bf16 autocast did run
    assert a["loss"] != b["loss"]


class _Crash(RuntimeError):
    pass


def test_cpu_resume_is_exact_within_bf16(beats, tmp_path, monkeypatch) -> None:
    """A bf16 run interrupted after step 3 (last.pt at step 2) and resumed ends with bit-identical weights and
    history to the uninterrupted bf16 run; resuming it as fp32 is refused."""
    from ecgtransfer.training.engine import TIMING_KEYS, _Trainer

    split = record_split(beats, ["119"], ["106"], [])
    kw = dict(split_indices=split, **FAST, batch_size=4, amp="bf16", channels_last="on", epochs=1,
              checkpoint_every=2)
    ref = fine_tune(beats, out=tmp_path / "ref", **kw)
    assert ref.steps == 4

    step = _Trainer.train_step

    def crashing(self, *args, **kwargs):
        if self.step == 3:
            raise _Crash("interrupted")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(_Trainer, "train_step", crashing)
    with pytest.raises(_Crash):
        fine_tune(beats, out=tmp_path / "cut", **kw)
    monkeypatch.setattr(_Trainer, "train_step", step)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 2
    with pytest.raises((TrainingError, ConfigError), match="amp"):
        fine_tune(beats, out=tmp_path / "cut", resume=True, **{**kw, "amp": "off"})
    done = fine_tune(beats, out=tmp_path / "cut", resume=True, **kw)
    a, b = load_checkpoint(tmp_path / "cut" / "last.pt"), load_checkpoint(tmp_path / "ref" / "last.pt")
    assert done.steps == a["step"] == b["step"] == 4
    for name, tensor in b["model"].items():
        assert torch.equal(a["model"][name], tensor), name

    def strip(history: list[dict]) -> str:
        return json.dumps([{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history], sort_keys=True)

    assert strip(a["history"]) == strip(b["history"])


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (1, 2, 0), (7, 2, 3)])
def test_strided_convolution_over_one_pixel_is_nn_conv2d(kernel, stride, padding) -> None:
    """The ResNet's Conv2d steps with stride 1 along a 1-pixel input dimension (the oneDNN bf16 workaround): the
    same outputs and gradients as nn.Conv2d in fp32, for 1x1, 1xN and larger inputs."""
    from ecgtransfer.models.resnet import Conv2d

    torch.manual_seed(0)
    ours = Conv2d(8, 6, kernel, stride=stride, padding=padding, bias=False)
    ref = torch.nn.Conv2d(8, 6, kernel, stride=stride, padding=padding, bias=False)
    ref.load_state_dict(ours.state_dict())
    for shape in [(4, 8, 1, 1), (4, 8, 1, 5), (4, 8, 6, 1), (4, 8, 5, 5)]:
        x = torch.randn(shape)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = ours(xa), ref(xb)
        assert ya.shape == yb.shape
        torch.testing.assert_close(ya, yb, rtol=0, atol=1e-6)
        ya.square().sum().backward()
        yb.square().sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=0, atol=1e-4)
        ours.zero_grad()
        ref.zero_grad()


def test_bf16_weight_gradient_of_a_strided_conv_over_one_pixel() -> None:
    """bf16 autocast forced on any CPU (emulated where the CPU lacks it, so CI covers the path everywhere): layer4's
    first 3x3/2 convolution over 1x1 features (ResNet50 below 32 px). On CPUs with native bf16, oneDNN's weight
    gradient of nn.Conv2d there came back NaN in 3 of these 40 passes (measured on an AVX512-BF16 Xeon, torch
    2.14: the bench cells' 'training loss became nan' at any learning rate); ours is finite in every pass."""
    from ecgtransfer.models.resnet import Conv2d

    torch.manual_seed(0)
    conv = Conv2d(512, 512, 3, stride=2, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(8, 512, 1, 1).contiguous(memory_format=torch.channels_last)
    bad = 0
    for _ in range(40):
        conv.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.float().square().sum().backward()
        bad += int(not torch.isfinite(conv.weight.grad).all())
    assert bad == 0

"""Tiered learning rates: the tiers each model declares, parameter groups, optimizers, freezing, schedulers,
the seed preset."""
from __future__ import annotations

import math
import re
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from ecgtransfer.errors import ConfigError
from ecgtransfer.models import BeatCNN, BeatFeatureModel, ResNet50, TieredModel, match_tiers
from ecgtransfer.models.tiers import (
    SEED_PRESET,
    TIERS,
    TierConfig,
    build_optimizer,
    freeze_tiers,
    keep_frozen_bn_eval,
    param_groups,
    unfreeze_tiers,
)
from ecgtransfer.training.schedules import SCHEDULERS, build_scheduler


@pytest.fixture(scope="module")
def model() -> ResNet50:
    torch.manual_seed(0)
    return ResNet50(4)


def _names_by_id(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _check_partition(model: nn.Module, groups: list[dict]) -> None:
    names = _names_by_id(model)
    counted: dict[int, int] = {}
    for g in groups:
        assert g["tier"] in TIERS and isinstance(g["name"], str) and g["params"]
        for p in g["params"]:
            counted[id(p)] = counted.get(id(p), 0) + 1
            assert names[id(p)].startswith(g["tier"] + "."), (names[id(p)], g["name"])
    assert set(counted) == set(names), "every parameter in a group"
    assert set(counted.values()) == {1}, "no parameter in two groups"


@pytest.mark.parametrize(
    "cfg",
    [TierConfig(), TierConfig(no_decay_bn_bias=False), TierConfig(layer_decay=0.8), TierConfig(preset="seed"),
     TierConfig(optimizer="adamw", freeze=("features_1",))],
    ids=["default", "no-split", "layer-decay", "seed", "adamw-frozen"],
)
def test_every_parameter_in_exactly_one_group(model, cfg):
    _check_partition(model, param_groups(model, cfg))


def test_default_groups_lrs_and_weight_decay(model):
    opt = build_optimizer(model, TierConfig())
    assert isinstance(opt, torch.optim.SGD)
    assert [g["name"] for g in opt.param_groups] == [
        "features_1", "features_1/no_decay", "features_2", "features_2/no_decay", "classifier", "classifier/no_decay",
    ]
    lrs = dict(zip(TIERS, (1e-5, 1e-4, 1e-3)))
    names = _names_by_id(model)
    for g in opt.param_groups:
        assert g["lr"] == lrs[g["tier"]]
        assert g["momentum"] == 0.9
        decays = g["name"].endswith("/no_decay")
        assert g["weight_decay"] == (0.0 if decays else 1e-4)
        for p in g["params"]:
            is_bn_or_bias = ".bn" in names[id(p)] or names[id(p)].endswith(".bias")
            assert is_bn_or_bias == decays, names[id(p)]


def test_adamw_and_spread(model):
    cfg = TierConfig(optimizer="adamw", spread=(1e-5, 1e-3), weight_decay=0.05)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    got = {g["tier"]: g["lr"] for g in opt.param_groups}
    assert got["features_1"] == pytest.approx(1e-5)
    assert got["features_2"] == pytest.approx(1e-4)
    assert got["classifier"] == pytest.approx(1e-3)
    assert not any("momentum" in g for g in opt.param_groups)  # AdamW uses betas
    assert all(g["betas"] == (0.9, 0.999) for g in opt.param_groups)
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.05}


def test_layer_decay_inside_tiers(model):
    groups = param_groups(model, TierConfig(layer_decay=0.5, no_decay_bn_bias=False))
    by_name = {g["name"]: g["lr"] for g in groups}
    # features_1 units: stem + 3 + 4 + 6 blocks = 14; the last gets the tier LR
    assert by_name["features_1.stage3.block5"] == pytest.approx(1e-5)
    assert by_name["features_1.stage3.block4"] == pytest.approx(0.5e-5)
    assert by_name["features_1.stem"] == pytest.approx(1e-5 * 0.5**13)
    assert by_name["features_2.stage4.block2"] == pytest.approx(1e-4)
    assert by_name["features_2.stage4.block0"] == pytest.approx(0.25e-4)
    assert by_name["classifier.fc"] == pytest.approx(1e-3)
    assert len(groups) == 14 + 3 + 1


# Every model's tiers and block units, pinned as they were before the models declared them (group_matcher):
# per tier the parameter count and the layer-decay units in order; each unit's parameters are exactly those
# whose names start with it.
_RESNET_F1 = ["stem"] + [f"stage{s}.block{b}" for s, n in ((1, 3), (2, 4), (3, 6)) for b in range(n)]
_RESNET_F2 = [f"stage4.block{b}" for b in range(3)]
TIER_LAYOUTS = {
    "resnet50": (lambda: ResNet50(4), {"features_1": (129, _RESNET_F1), "features_2": (30, _RESNET_F2),
                                       "classifier": (2, ["fc"])}),
    "resnet50-rr": (lambda: ResNet50(4, rr_dim=6), {"features_1": (129, _RESNET_F1), "features_2": (30, _RESNET_F2),
                                                    "classifier": (6, ["rr", "fc"])}),
    "cnn1d": (lambda: BeatCNN(3), {"features_1": (21, ["stem", "block1", "block2"]), "features_2": (9, ["block3"]),
                                   "classifier": (2, ["fc"])}),
    "cnn1d-rr": (lambda: BeatCNN(5, in_channels=2, rr_dim=6),
                 {"features_1": (21, ["stem", "block1", "block2"]), "features_2": (9, ["block3"]),
                  "classifier": (6, ["rr", "fc"])}),
    "features-rr": (lambda: BeatFeatureModel(5, 1, 128, 360.0, 48, rr_dim=6),
                    {"features_1": (0, []), "features_2": (0, []), "classifier": (2, ["fc"])}),
}


@pytest.mark.parametrize("kind", sorted(TIER_LAYOUTS))
def test_tiers_and_units_of_every_model(kind):
    build, want = TIER_LAYOUTS[kind]
    model = build()
    names = _names_by_id(model)
    _check_partition(model, param_groups(model, TierConfig()))
    groups = param_groups(model, TierConfig(layer_decay=0.5))
    _check_partition(model, groups)
    got: dict[str, list[str]] = {t: [] for t in TIERS}
    counts = dict.fromkeys(TIERS, 0)
    for g in groups:
        no_decay = g["name"].endswith("/no_decay")
        unit = g["name"].removesuffix("/no_decay")
        if unit not in got[g["tier"]]:
            got[g["tier"]].append(unit)
        assert {names[id(p)] for p in g["params"]} == {
            n for n, p in model.named_parameters() if n.startswith(unit + ".") and (p.ndim <= 1) == no_decay}, g["name"]
        counts[g["tier"]] += len(g["params"])
    assert got == {t: [f"{t}.{u}" for u in units] for t, (_, units) in want.items()}
    assert counts == {t: n for t, (n, _) in want.items()}
    base = dict(zip(TIERS, TierConfig().tier_lrs()))
    for g in groups:
        units = got[g["tier"]]
        depth = len(units) - 1 - units.index(g["name"].removesuffix("/no_decay"))
        assert g["lr"] == pytest.approx(base[g["tier"]] * 0.5**depth)
    default = [(g["name"], len(g["params"])) for g in param_groups(model, TierConfig(no_decay_bn_bias=False))]
    assert default == [(t, n) for t, (n, _) in want.items() if n]


@pytest.mark.parametrize("kind", sorted(TIER_LAYOUTS))
def test_group_matcher_puts_every_parameter_in_exactly_one_tier(kind):
    model = TIER_LAYOUTS[kind][0]()
    where = match_tiers(model)
    assert list(where) == [n for n, _ in model.named_parameters()]
    for name, at in where.items():
        assert name.startswith(at.unit + ".") and at.unit.startswith(at.tier + "."), (name, at)
        claims = [t for t, patterns in model.group_matcher().items()
                  if any(re.match(f"(?:{p})(?=\\.|$)", name) for p in patterns)]
        assert claims == [at.tier], name


class TorchvisionTiered(TieredModel):
    """torchvision's resnet18 under its own names, in three tiers by declaration only (no tier child modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def group_matcher(self) -> dict[str, tuple[str, ...]]:
        return {"features_1": (r"net\.conv1", r"net\.bn1", r"net\.layer[1-3]\.\d+"),
                "features_2": (r"net\.layer4\.\d+",), "classifier": (r"net\.fc",)}


def test_tiers_follow_the_declaration_not_module_names():
    """A model with other names (torchvision's) gets its groups, freezing and frozen batch norms from its
    group_matcher alone."""
    model = TorchvisionTiered()
    groups = param_groups(model, TierConfig(layer_decay=0.5, no_decay_bn_bias=False))
    names = _names_by_id(model)
    assert [g["name"] for g in groups] == (
        ["net.conv1", "net.bn1"] + [f"net.layer{s}.{b}" for s in (1, 2, 3) for b in (0, 1)]
        + ["net.layer4.0", "net.layer4.1", "net.fc"])
    assert sum(len(g["params"]) for g in groups) == len(names)
    assert {names[id(p)] for g in groups if g["tier"] == "features_2" for p in g["params"]} == {
        n for n in names.values() if n.startswith("net.layer4.")}
    assert groups[0]["lr"] == pytest.approx(1e-5 * 0.5**7) and groups[-1]["lr"] == pytest.approx(1e-3)

    freeze_tiers(model, "features_1")
    model.train()
    early = [model.net.bn1] + [m for s in (1, 2, 3) for m in getattr(model.net, f"layer{s}").modules()
                               if isinstance(m, nn.BatchNorm2d)]
    late = [m for m in model.net.layer4.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(m.training for m in early) and all(m.training for m in late)
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith(("net.layer4", "net.fc")))
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith(("net.layer4", "net.fc")))
    unfreeze_tiers(model, ["features_1"])
    assert all(m.training for m in early) and all(p.requires_grad for p in model.parameters())


class _Declared(TieredModel):
    def __init__(self, matcher: dict) -> None:
        super().__init__()
        self.features_1 = nn.Sequential(OrderedDict(block1=nn.Linear(2, 2), block10=nn.Linear(2, 2)))
        self.features_2 = nn.Linear(2, 2)
        self.classifier = nn.Linear(2, 1)
        self._matcher = matcher

    def group_matcher(self) -> dict:
        return self._matcher


@pytest.mark.parametrize(
    "matcher, message",
    [({"features_1": (r"features_1\.block1",), "features_2": (r"features_2",), "classifier": (r"classifier",)},
      r"outside the tiers .*features_1\.block10\.weight"),  # a pattern ends at a name boundary: block1 != block10
     ({"features_1": (r"features_1\.block\d+",), "features_2": (r"features_2", r"features_1\.block10"),
       "classifier": (r"classifier",)}, "in two tiers"),
     ({"features_1": (r"features_1",), "features_2": (r"features_2",), "head": (r"classifier",)},
      "unknown tier"),
     ({"features_1": (r"features_1\.(",), "features_2": (r"features_2",), "classifier": (r"classifier",)},
      "invalid regular expression")],
    ids=["a-parameter-in-no-tier", "a-parameter-in-two-tiers", "an-unknown-tier", "a-bad-pattern"],
)
def test_a_wrong_declaration_is_one_clear_error(matcher, message):
    model = _Declared(matcher)
    with pytest.raises(ConfigError, match=message):
        param_groups(model)
    with pytest.raises(ConfigError, match=message):
        freeze_tiers(model, "features_1")


def test_seed_preset_values(model):
    cfg = TierConfig(preset="seed")
    assert cfg.optimizer == "sgd" and cfg.lrs == (1e-5, 1e-4, 1e-3)
    assert cfg.tier_momenta() == (0.1, 0.9, 0.9)
    assert cfg.weight_decay == 0.0
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.SGD)
    assert [(g["tier"], g["lr"], g["momentum"], g["weight_decay"]) for g in opt.param_groups] == [
        ("features_1", 1e-5, 0.1, 0.0),
        ("features_2", 1e-4, 0.9, 0.0),
        ("classifier", 1e-3, 0.9, 0.0),
    ]
    assert TierConfig(preset="seed", lrs=[1e-5, 1e-4, 1e-3]) == cfg  # same values: fine, lists -> tuples
    assert SEED_PRESET["tier_momentum"] == (0.1, 0.9, 0.9)
    with pytest.raises(ConfigError, match="preset"):
        TierConfig(preset="seed", lrs=(1e-4, 1e-3, 1e-2))
    with pytest.raises(ConfigError, match="preset"):
        TierConfig(preset="seed", optimizer="adamw")
    with pytest.raises(ConfigError, match="unknown tier preset"):
        TierConfig(preset="blog")


@pytest.mark.parametrize(
    "kwargs",
    [dict(lrs=(1e-5, 1e-4)), dict(lrs=(0, 1e-4, 1e-3)), dict(optimizer="adam"), dict(freeze=("layer4",)),
     dict(momentum=1.0), dict(weight_decay=-1), dict(layer_decay=0), dict(spread=(1e-5,)),
     dict(optimizer="adamw", tier_momentum=(0.1, 0.9, 0.9))],
)
def test_invalid_configs_raise(kwargs):
    with pytest.raises(ConfigError):
        TierConfig(**kwargs)


def test_toml_style_lists_become_tuples():
    cfg = TierConfig(lrs=[1e-4, 1e-3, 1e-2], freeze=["features_1"], spread=[1e-5, 1e-3])
    assert cfg.lrs == (1e-4, 1e-3, 1e-2) and cfg.freeze == ("features_1",) and cfg.spread == (1e-5, 1e-3)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_frozen_tier_does_not_move(optimizer):
    torch.manual_seed(1)
    model = ResNet50(3)
    cfg = TierConfig(optimizer=optimizer, lrs=(1e-2, 1e-2, 1e-2), freeze=("features_1",))
    opt = build_optimizer(model, cfg)
    model.train()  # ResNet50.train keeps the frozen tier's batch norms in eval mode
    bns = [m for m in model.features_1.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert all(m.training for m in model.features_2.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any(p.requires_grad for p in model.features_1.parameters())
    before = {t: _snapshot(getattr(model, t)) for t in TIERS}
    x = torch.randn(4, 3, 64, 64)
    y = torch.tensor([0, 1, 2, 0])
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    after = {t: _snapshot(getattr(model, t)) for t in TIERS}
    assert all(torch.equal(before["features_1"][k], v) for k, v in after["features_1"].items()), "frozen tier moved"
    for t in ("features_2", "classifier"):
        moved = [k for k, v in after[t].items() if v.is_floating_point() and not torch.equal(before[t][k], v)]
        assert moved, f"{t} did not move"
    assert not torch.equal(before["classifier"]["fc.weight"], after["classifier"]["fc.weight"])
    assert not torch.equal(
        before["features_2"]["stage4.block2.conv3.weight"], after["features_2"]["stage4.block2.conv3.weight"]
    )

    unfreeze_tiers(model, "features_1")
    assert all(p.requires_grad for p in model.features_1.parameters())
    assert all(m.training for m in bns)


def test_freeze_without_bn_eval_and_the_helper_for_other_modules():
    model = ResNet50(2)
    freeze_tiers(model, ["features_2"], bn_eval=False)
    model.train()
    assert all(m.training for m in model.features_2.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any(p.requires_grad for p in model.features_2.parameters())

    class Wrapper(nn.Module):  # like DistributedDataParallel: the tiers live in .module
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.module = inner

    wrapped = Wrapper(ResNet50(2))
    freeze_tiers(wrapped, ["classifier", "features_1"])
    nn.Module.train(wrapped.module)  # plain nn.Module.train turns every BN back on ...
    assert any(m.training for m in wrapped.module.features_1.modules() if isinstance(m, nn.BatchNorm2d))
    keep_frozen_bn_eval(wrapped)  # ... the helper puts the frozen tiers' BNs back in eval
    assert not any(m.training for m in wrapped.module.features_1.modules() if isinstance(m, nn.BatchNorm2d))
    _check_partition(wrapped.module, param_groups(wrapped))
    with pytest.raises(ConfigError, match="unknown tier"):
        freeze_tiers(wrapped, ["layer4"])
    with pytest.raises(ConfigError, match="no tier module"):
        param_groups(nn.Linear(2, 2))


def test_groups_and_freezing_through_torch_compile():
    inner = BeatCNN(3)
    compiled = torch.compile(inner)  # an OptimizedModule: the model is its _orig_mod
    assert [g["name"] for g in param_groups(compiled)] == [g["name"] for g in param_groups(inner)]
    freeze_tiers(compiled, "features_1")
    assert inner.frozen_bn_tiers == {"features_1"}
    assert not any(p.requires_grad for p in inner.features_1.parameters())
    assert all(p.requires_grad for p in inner.features_2.parameters())


def _tiny_optimizer(cfg: TierConfig) -> torch.optim.Optimizer:
    """An optimizer over a tiny three-tier model (schedules only look at param groups)."""
    tiny = nn.Module()
    tiny.features_1 = nn.Linear(2, 2)
    tiny.features_2 = nn.Linear(2, 2)
    tiny.classifier = nn.Linear(2, 1)
    return build_optimizer(tiny, cfg)


@pytest.mark.parametrize("kind", SCHEDULERS)
def test_schedulers_keep_group_ratios(kind):
    opt = _tiny_optimizer(TierConfig(layer_decay=None, lrs=(1e-5, 3e-4, 1e-2)))
    base = [g["lr"] for g in opt.param_groups]
    sched = build_scheduler(opt, kind, total_steps=40, warmup_steps=5)
    seen = []
    for _ in range(40):
        lrs = [g["lr"] for g in opt.param_groups]
        seen.append(lrs[0] / base[0])
        for lr, b in zip(lrs, base):
            assert lr / b == pytest.approx(lrs[0] / base[0], rel=1e-12)
        opt.step()
        sched.step()
    if kind != "constant":
        assert max(seen) == pytest.approx(1.0) and seen[-1] < 0.05 and seen[0] < 0.5
    else:
        assert seen[0] == pytest.approx(1 / 5) and seen[5:] == [1.0] * 35


def test_cosine_shape():
    opt = _tiny_optimizer(TierConfig())
    sched = build_scheduler(opt, "cosine", total_steps=10, warmup_steps=2, final_lr_ratio=0.1)
    factors = []
    for _ in range(11):
        factors.append(opt.param_groups[0]["lr"] / 1e-5)
        opt.step()
        sched.step()
    assert factors[:2] == pytest.approx([0.5, 1.0])
    assert factors[2] == pytest.approx(1.0)
    assert factors[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert factors[10] == pytest.approx(0.1)


@pytest.mark.parametrize("warmup", [0, 12])
def test_onecycle_matches_torch_onecycle(warmup):
    """Single group: our one-cycle shape equals torch's OneCycleLR (without momentum cycling)."""
    total = 50
    p = nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        ref_opt, max_lr=0.1, total_steps=total, pct_start=(warmup / total if warmup else 0.3), cycle_momentum=False
    )
    ours_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    ours = build_scheduler(ours_opt, "onecycle", total_steps=total, warmup_steps=warmup)
    for _ in range(total):
        assert ours_opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        ref_opt.step(), ours_opt.step()
        ref.step(), ours.step()


def test_onecycle_keeps_per_tier_momentum():
    opt = _tiny_optimizer(TierConfig(preset="seed"))
    sched = build_scheduler(opt, "onecycle", total_steps=20)
    for _ in range(10):
        opt.step()
        sched.step()
    assert [g["momentum"] for g in opt.param_groups] == [0.1, 0.9, 0.9]


def test_bad_schedule_arguments():
    opt = _tiny_optimizer(TierConfig())
    with pytest.raises(ConfigError):
        build_scheduler(opt, "linear", total_steps=10)
    with pytest.raises(ConfigError):
        build_scheduler(opt, "cosine", total_steps=0)
    with pytest.raises(ConfigError):
        build_scheduler(opt, "cosine", total_steps=10, warmup_steps=10)

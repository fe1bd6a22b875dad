"""Per-record templates (the record's median beat) and the beat inputs built from them: equal to a direct numpy
computation, from the record alone, the same at predict time as in training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.errors import ConfigError
from ecgtransfer.signals import template as T
from ecgtransfer.training import TrainConfig, fine_tune, predict


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory):
    """Two real mitdb records (both leads), beats resampled to 250 Hz, with RR context."""
    from ecgtransfer.conversion import convert

    return convert("mitdb", data=physionet_root, out=tmp_path_factory.mktemp("conv") / "s", records=["119", "209"],
                   fs=250.0, before=40, after=60, lead="all", rr_context=True, progress=False, jobs=1)


def test_template_is_the_median_of_its_own_record(store) -> None:
    templates, index = T.store_templates(store)
    rid = np.asarray(store.record_ids).astype(str)
    assert templates.shape == (2, *store.shape[1:]) and index.shape == (len(store),)
    for r in ("119", "209"):
        members = np.flatnonzero(rid == r)
        want = np.median(np.asarray(store.segments[members], dtype=np.float64), axis=0)  # every beat of r only
        assert len(set(index[members].tolist())) == 1  # one template per record
        np.testing.assert_allclose(templates[index[members[0]]], want, rtol=0, atol=1e-5)
    assert index[rid == "119"][0] != index[rid == "209"][0]


def test_long_records_use_beats_spread_over_the_whole_record() -> None:
    sub = T.template_subset(100_000, 4096)
    assert len(sub) == 4096 and sub[0] == 0 and sub[-1] == 99_999 and np.all(np.diff(sub) > 0)
    assert np.ptp(np.diff(sub)) <= 1  # evenly spaced
    np.testing.assert_array_equal(T.template_subset(50, 4096), np.arange(50))
    beats = np.random.default_rng(0).normal(size=(30, 2, 7)).astype(np.float32)
    np.testing.assert_allclose(T.record_template(beats, max_beats=10), np.median(beats[T.template_subset(30, 10)],
                                                                                 axis=0), atol=1e-6)
    with pytest.raises(ConfigError, match="beats"):
        T.record_template(np.zeros((0, 1, 5)))


def test_compose_input_channels() -> None:
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(4, 2, 9)), rng.normal(size=(4, 2, 9))
    np.testing.assert_array_equal(T.compose_input(x, None, "leads"), x.astype(np.float32))
    both = T.compose_input(x, t, "template")
    assert both.shape == (4, 4, 9) == (4, T.input_channels("template", 2), 9)
    np.testing.assert_allclose(both[:, 2:], (x - t).astype(np.float32), atol=1e-6)
    rgb = T.compose_input(x, t, "template-rgb")
    assert rgb.shape == (4, 3, 9)
    np.testing.assert_allclose(rgb[:, 0], x[:, 0], atol=1e-6)
    np.testing.assert_allclose(rgb[:, 1], x[:, 0] - t[:, 0], atol=1e-6)
    np.testing.assert_allclose(rgb[:, 2], x[:, 1], atol=1e-6)
    one = T.compose_input(x[:, :1], t[:, :1], "template-rgb")  # one lead: its template is the third channel
    np.testing.assert_allclose(one[:, 2], t[:, 0], atol=1e-6)
    with pytest.raises(ConfigError, match="beat input"):
        T.compose_input(x, None, "template")
    with pytest.raises(ConfigError, match="beat_input"):
        TrainConfig(beat_input="median")


@pytest.mark.parametrize("model,mode", [("resnet50", "template-rgb"), ("cnn1d", "template"), ("features", "template")])
def test_predict_builds_the_template_from_the_recording_as_the_store_does(store, physionet_root, tmp_path,
                                                                          monkeypatch, model, mode) -> None:
    """A run trained with templates: predict on the WFDB record (its own first pass for the template, 2-minute
    chunks) gives the probabilities of the store's beats composed with the store's templates."""
    import torch

    from ecgtransfer.training import prediction
    from ecgtransfer.training.evaluation import load_run
    from ecgtransfer.training.runtime import infer

    rid = np.asarray(store.record_ids).astype(str)
    train = np.flatnonzero(rid == "209")[::20]
    val = np.flatnonzero(rid == "119")[::40]
    out = tmp_path / "run"
    fine_tune(store, out=out, split_indices={"train": train, "val": val, "test": np.zeros(0, dtype=np.int64)},
              model=model, init="scratch", image_size=32, batch_size=16, epochs=1, num_threads=1, progress=False,
              amp="off", beat_input=mode)
    run = load_run(out)
    n_in = T.input_channels(mode, store.shape[1])
    assert run.spec.in_channels == n_in  # image channels (lead="stack") or 1-D channels
    monkeypatch.setattr(prediction, "CHUNK_S", 120.0)
    table = predict(out, [physionet_root / "mitdb" / "1.0.0" / "119"], r_peaks="atr", progress=False)
    sel = np.flatnonzero(rid == "119")
    assert list(table["position"]) == list(store.positions[sel])
    templates, index = T.store_templates(store)
    x = T.compose_input(store.batch(sel), templates[index[sel]], mode)
    batch = (torch.from_numpy(x), None, sel,
             torch.from_numpy(np.ascontiguousarray(store.extra("rr")[sel, :run.rr_dim], dtype=np.float32)))
    want = infer(run.model, run.encoder, [batch], run.device, dtype=None, channels_last=False)["probs"]
    cols = [c for c in table if c.startswith("p_")]
    np.testing.assert_allclose(table[cols].to_numpy(), want, atol=1e-4)

"""PTB-XL end to end on the real records of the shared mirror: download (over HTTP on 127.0.0.1), labels at every
level of the benchmark, the store, ``info`` and the protocol split.

Oracles: the mirror's bytes and ``hashlib``; the labels from a few independent lines of pandas over the two csv
files (the rule of helme/ecg_ptbxl_benchmarking: every key of ``scp_codes``, whatever its likelihood); wfdb's reading
of the records.
"""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.cli import main as cli_main
from ecgtransfer.errors import CatalogError, ConfigError, DownloadError
from ecgtransfer.physionet import ptbxl
from ecgtransfer.physionet.download import download

FAST = {"progress": False, "backoff": 0.0, "jobs": 3}
VERSION = "1.0.3"


@pytest.fixture(scope="module")
def ptbxl_root() -> Path:
    from tests.conftest import PHYSIONET

    root = PHYSIONET / "ptb-xl" / VERSION
    if not (root / "ptbxl_database.csv").is_file():
        pytest.skip(f"PTB-XL records not found at {root}")
    return root


@pytest.fixture(scope="module")
def store_all(ptbxl_root, tmp_path_factory):
    """The 400 shared records at 100 Hz, level ``all`` (every record has a statement), 12 leads x 10 s."""
    from ecgtransfer.conversion import convert

    out = tmp_path_factory.mktemp("ptbxl") / "all"
    return convert("ptb-xl", data=ptbxl_root.parents[1], out=out, task="multilabel", level="all", jobs=1,
                   progress=False)


def _pandas_levels(root: Path) -> dict[str, dict[str, set[str]]]:
    """level -> ecg_id -> labels, computed directly with pandas from the two csv files."""
    pd = pytest.importorskip("pandas")
    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    st = pd.read_csv(root / "scp_statements.csv", index_col=0)
    codes = db.scp_codes.apply(ast.literal_eval)
    diag = st[st.diagnostic == 1.0]
    out: dict[str, dict[str, set[str]]] = {level: {} for level in ptbxl.LEVELS}
    for ecg_id, keys in codes.items():
        rid = str(ecg_id)
        out["all"][rid] = set(keys)
        out["diagnostic"][rid] = {k for k in keys if k in diag.index}
        out["subdiagnostic"][rid] = {diag.loc[k, "diagnostic_subclass"] for k in keys if k in diag.index
                                     and pd.notna(diag.loc[k, "diagnostic_subclass"])}
        out["superdiagnostic"][rid] = {diag.loc[k, "diagnostic_class"] for k in keys if k in diag.index
                                       and pd.notna(diag.loc[k, "diagnostic_class"])}
        out["form"][rid] = {k for k in keys if k in st.index and st.loc[k, "form"] == 1.0}
        out["rhythm"][rid] = {k for k in keys if k in st.index and st.loc[k, "rhythm"] == 1.0}
    return out


# ------------------------------------------------------------------------------------------------------- download
def test_http_download_by_ecg_id_both_rates_matches_mirror_and_sums(http_mirror, ptbxl_root, tmp_path):
    result = download("ptb-xl", records=["1", "2", "records100/00000/00150_lr"], rate="both", out=tmp_path,
                      mirror=http_mirror.url, **FAST)
    got = tmp_path / "ptb-xl" / VERSION
    files = {p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()}
    expected = {"SHA256SUMS.txt", "ptbxl_database.csv", "scp_statements.csv"} | {
        f"{d}/00000/{i:05d}_{s}.{e}" for d, s, ids in (("records100", "lr", (1, 2, 150)), ("records500", "hr", (1, 2)))
        for i in ids for e in ("hea", "dat")}
    assert files == expected
    sums = dict(reversed(line.split(" ", 1)) for line in (ptbxl_root / "SHA256SUMS.txt").read_text().splitlines())
    for rel in files - {"SHA256SUMS.txt"}:
        assert hashlib.sha256((got / rel).read_bytes()).hexdigest() == sums[rel], rel
    assert result.records == ["records100/00000/00001_lr", "records500/00000/00001_hr", "records100/00000/00002_lr",
                              "records500/00000/00002_hr", "records100/00000/00150_lr"]
    # no RECORDS file was asked for: the index is ptbxl_database.csv
    assert not any(path.endswith("/RECORDS") for _, path, _ in http_mirror.log)


def test_default_rate_is_100_and_a_rerun_fetches_nothing_and_resumes(http_mirror, ptbxl_root, tmp_path):
    ids = [str(i) for i in range(1, 31)]
    download("ptb-xl", records=ids, out=tmp_path, mirror=http_mirror.url, **FAST)
    got = tmp_path / "ptb-xl" / VERSION
    assert not (got / "records500").exists() and len(list((got / "records100").rglob("*.dat"))) == 30
    dat = got / "records100/00000/00007_lr.dat"
    full = dat.read_bytes()
    dat.unlink()
    dat.with_name(dat.name + ".part").write_bytes(full[:1000])  # an interrupted transfer
    http_mirror.log.clear()
    result = download("ptb-xl", records=ids, out=tmp_path, mirror=http_mirror.url, **FAST)
    assert result.fetched == 1 and result.resumed == 1 and dat.read_bytes() == full
    assert [e for e in http_mirror.log if e[1].endswith(".dat")] == [
        ("GET", f"/ptb-xl/{VERSION}/records100/00000/00007_lr.dat", "bytes=1000-")]


def test_download_errors_are_one_line(http_mirror, tmp_path, capsys):
    with pytest.raises(CatalogError, match="99999"):
        download("ptb-xl", records=["99999"], out=tmp_path, mirror=http_mirror.url, **FAST)
    with pytest.raises(ConfigError, match="100, 500, both"):
        download("ptb-xl", rate="250", out=tmp_path, mirror=http_mirror.url, **FAST)
    with pytest.raises(ConfigError, match="ptb-xl only"):
        download("mitdb", rate="100", out=tmp_path, mirror=http_mirror.url, **FAST)
    # the mirror holds 500 Hz files for ecg_id 1-100 only: 150 at 500 Hz is named, nothing is half-written
    with pytest.raises(DownloadError, match="00150_hr"):
        download("ptb-xl", records=["150"], rate="500", out=tmp_path / "x", mirror=http_mirror.url, **FAST)
    assert cli_main(["download", "ptb-xl", "--rate", "both", "--records", "3", "--out", str(tmp_path / "cli"),
                     "--mirror", http_mirror.url]) == 0
    assert (tmp_path / "cli/ptb-xl" / VERSION / "records500/00000/00003_hr.dat").is_file()


def test_malformed_index_is_refused_naming_the_file():
    with pytest.raises(DownloadError, match="strat_fold"):
        ptbxl.parse_index("ecg_id,patient_id,scp_codes,strat_fold,filename_lr,filename_hr\n"
                          "1,2.0,\"{'NORM': 100.0}\",11,records100/a,records500/b\n", 100)
    with pytest.raises(DownloadError, match="unsafe"):
        ptbxl.parse_index("ecg_id,patient_id,scp_codes,strat_fold,filename_lr,filename_hr\n"
                          "1,2.0,\"{'NORM': 100.0}\",1,../x,records500/b\n", 100)
    with pytest.raises(DownloadError, match="scp_codes"):
        ptbxl.parse_index("ecg_id,patient_id,scp_codes,strat_fold,filename_lr,filename_hr\n"
                          "1,2.0,__import__('os'),1,a,b\n", 100)
    with pytest.raises(DownloadError, match="filename_hr"):
        ptbxl.parse_index("ecg_id,patient_id,scp_codes,strat_fold,filename_lr\n", 100)


# ------------------------------------------------------------------------------------------------ labels and store
def test_labels_at_every_level_equal_pandas_over_the_csv_files(store_all, ptbxl_root):
    oracle = _pandas_levels(ptbxl_root)
    levels = store_all.manifest["multilabel"]["levels"]
    assert [len(levels[k]) for k in ptbxl.LEVELS] == [71, 44, 23, 5, 19, 12]  # the benchmark's label counts
    assert levels["superdiagnostic"] == list(ptbxl.SUPERCLASSES)
    rids = store_all.record_ids.tolist()
    assert rids == [str(i) for i in range(1, 401)]
    for level in ptbxl.LEVELS:
        hot = np.asarray(store_all.extra(f"targets_{level}"))
        got = {rid: {levels[level][j] for j in np.flatnonzero(row)} for rid, row in zip(rids, hot)}
        assert got == oracle[level], level
    assert np.array_equal(store_all.targets, store_all.extra("targets_all"))
    assert store_all.class_names == levels["all"]


def test_records_without_a_label_at_the_level_are_left_out(ptbxl_root, tmp_path):
    from ecgtransfer.conversion import convert

    oracle = _pandas_levels(ptbxl_root)["superdiagnostic"]
    store = convert("ptb-xl", data=ptbxl_root.parents[1], out=tmp_path / "s", task="multilabel",
                    records=[str(i) for i in range(1, 41)], jobs=1, progress=False)
    kept = [str(i) for i in range(1, 41) if oracle[str(i)]]
    assert store.record_ids.tolist() == kept and len(kept) < 40
    assert store.manifest["summary"]["unlabelled_records"] == [str(i) for i in range(1, 41) if not oracle[str(i)]]
    for rid, row in zip(kept, store.targets):
        assert {ptbxl.SUPERCLASSES[j] for j in np.flatnonzero(row)} == oracle[rid]
    assert store.class_names[int(store.labels[0])] == sorted(oracle[kept[0]], key=ptbxl.SUPERCLASSES.index)[0]


def test_patients_and_folds_come_from_the_database_csv(store_all, ptbxl_root):
    pd = pytest.importorskip("pandas")
    db = pd.read_csv(ptbxl_root / "ptbxl_database.csv", index_col="ecg_id")
    assert store_all.patient_ids.tolist() == [str(int(p)) for p in db.patient_id]
    assert np.asarray(store_all.extra("strat_fold")).tolist() == db.strat_fold.tolist()
    assert store_all.patients_known and len(set(store_all.patient_ids)) == db.patient_id.nunique()


@pytest.mark.parametrize("rate,name", [(100, "00012_lr"), (500, "00012_hr")])
def test_a_record_read_equals_wfdb(ptbxl_root, tmp_path, rate, name):
    wfdb = pytest.importorskip("wfdb")
    from ecgtransfer.conversion import convert

    store = convert("ptb-xl", data=ptbxl_root.parents[1], out=tmp_path / "s", task="multilabel", rate=rate,
                    level="all", records=["12"], filter="none", jobs=1, progress=False)
    signal, fields = wfdb.rdsamp(str(ptbxl_root / f"records{rate}/00000/{name}"))
    assert store.shape == (1, 12, 10 * rate) and store.fs == rate
    assert [n.upper() for n in store.lead_names] == [n.upper() for n in fields["sig_name"]]
    np.testing.assert_allclose(store.segments[0], signal.T.astype(np.float32), rtol=0, atol=1e-6)


def test_info_json_counts_per_level_and_fold(store_all, ptbxl_root, capsys):
    oracle = _pandas_levels(ptbxl_root)
    pd = pytest.importorskip("pandas")
    folds = pd.read_csv(ptbxl_root / "ptbxl_database.csv", index_col="ecg_id").strat_fold
    assert cli_main(["info", str(store_all.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for level in ptbxl.LEVELS:
        for label, row in info["levels"][level].items():
            assert row["all"] == sum(label in labels for labels in oracle[level].values())
            for fold in range(1, 11):
                assert row.get(str(fold), 0) == sum(label in oracle[level][str(e)] for e in folds.index
                                                    if folds[e] == fold)
    assert info["classes"]["NORM"] == sum("NORM" in v for v in oracle["all"].values())
    assert cli_main(["info", str(store_all.path)]) == 0
    text = capsys.readouterr().out
    assert "level superdiagnostic: positives per strat_fold" in text and "level all (the targets)" in text


# ------------------------------------------------------------------------------------------------------ the split
def test_protocol_split_keeps_folds_and_patients_apart(store_all, ptbxl_root):
    from ecgtransfer.signals.split import split

    s = split(store_all, "ptbxl")
    folds = np.asarray(store_all.extra("strat_fold"))
    assert set(folds[s.train]) <= set(range(1, 9)) and set(folds[s.val]) == {9} and set(folds[s.test]) == {10}
    assert len(s.train) + len(s.val) + len(s.test) == len(store_all)
    pids = store_all.patient_ids
    parts = [set(pids[ix]) for ix in (s.train, s.val, s.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_protocol_split_refuses_a_patient_in_two_folds_and_other_stores(store_all):
    from ecgtransfer.signals.split import split

    class Edited:  # the same store with one patient's records moved across folds
        manifest = store_all.manifest
        labels, record_ids, num_classes = store_all.labels, store_all.record_ids, store_all.num_classes
        patient_ids = store_all.patient_ids.copy()

        def extra(self, name):
            return store_all.extra(name)

    folds = np.asarray(store_all.extra("strat_fold"))
    edited = Edited()
    edited.patient_ids[np.flatnonzero(folds == 10)[0]] = edited.patient_ids[np.flatnonzero(folds == 1)[0]]
    with pytest.raises(ConfigError, match="two|train and test|folds"):
        split(edited, "ptbxl")

    class NoFolds:
        manifest = {"extras": ["rr"]}
        labels, record_ids, num_classes = np.zeros(2, np.int64), np.array(["a", "b"]), 1
        patient_ids = np.array(["a", "b"])

    with pytest.raises(ConfigError, match="strat_fold"):
        split(NoFolds(), "ptbxl")


# ------------------------------------------------------------------------------------------- 12 leads, one image
def test_grid_image_has_the_documented_layout_and_equals_scipy_tiles(store_all):
    import scipy.signal as ss
    import torch

    from ecgtransfer.imaging import ImageEncoder, encode, grid_layout, grid_tiles, resize_image

    x = torch.from_numpy(store_all.batch([0, 5]))  # [2, 12, 1000] at 100 Hz
    assert grid_layout(12, 224) == (3, 4, 74, 56)
    img = encode(x, "spectrogram", 224, fs=100.0, lead="grid", normalize=False)
    assert img.shape == (2, 3, 224, 224) and torch.equal(img[:, 0], img[:, 1]) and torch.equal(img[:, 1], img[:, 2])
    # the reference: each lead's dB spectrogram by scipy.signal (0.5-50 Hz, floored 80 dB below its peak), low
    # frequencies at the bottom, resized to its 74 x 56 tile, placed at row k % 3, column k // 3; one min-max scale
    ref = np.empty((2, 224, 224))
    tiles = []
    for k in range(12):
        f, _, p = ss.spectrogram(x[:, k].double().numpy(), 100.0, window="hann", nperseg=64, noverlap=60, nfft=256,
                                 detrend="constant", scaling="density", mode="psd")
        db = 10 * np.log10(np.maximum(p[:, (f >= 0.5) & (f <= 50.0)], 1e-10))
        db = np.maximum(db, db.max(axis=(1, 2), keepdims=True) - 80.0)[:, ::-1]
        tiles.append(resize_image(torch.from_numpy(db.copy()), (74, 56)).numpy())
    ref[:] = np.min([t.min(axis=(1, 2)) for t in tiles], axis=0)[:, None, None]
    for k, t in enumerate(tiles):
        ref[:, (k % 3) * 74:(k % 3 + 1) * 74, (k // 3) * 56:(k // 3 + 1) * 56] = t
    lo, hi = ref.min(axis=(1, 2), keepdims=True), ref.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(img[:, 0].numpy(), (ref - lo) / (hi - lo), atol=2e-4)
    # lead order I II III | aVR aVL aVF | V1 V2 V3 | V4 V5 V6 down the columns; grid_tiles undoes it
    assert [n.upper() for n in store_all.lead_names] == ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3",
                                                         "V4", "V5", "V6"]
    back = grid_tiles(img, 12)
    assert back.shape == (2, 12, 74, 56)
    torch.testing.assert_close(back[:, 7], img[:, 0, 74:148, 112:168])  # V2: row 1, column 2
    # the module renders the same on the training device, ImageNet-normalised
    enc = ImageEncoder("spectrogram", 224, fs=100.0, lead="grid")
    assert enc.out_channels(12) == 3
    torch.testing.assert_close(enc(x), encode(x, "spectrogram", 224, fs=100.0, lead="grid"))
    with pytest.raises(ConfigError, match="grid"):
        encode(x, "stack", 224, fs=100.0, lead="grid")


# ------------------------------------------------------------------------------- multi-label metrics and training
def test_macro_and_label_auc_equal_scikit_learn_and_fmax_by_hand():
    from sklearn.metrics import roc_auc_score

    from ecgtransfer.training.multilabel_metrics import fmax, label_auc, multilabel_metrics

    rng = np.random.default_rng(7)
    y = (rng.random((60, 5)) < [0.5, 0.2, 0.1, 0.3, 0.05]).astype(int)
    y[:, 4] = 0  # a label without positives: undefined, left out of the macro mean
    p = np.round(np.clip(0.3 * y + rng.random((60, 5)) * 0.7, 0, 1), 2)  # rounded: ties count one half
    auc = label_auc(y, p)
    for k in range(4):
        assert auc[k] == pytest.approx(roc_auc_score(y[:, k], p[:, k]), abs=1e-12)
    assert np.isnan(auc[4])
    m = multilabel_metrics(y, p, list("ABCDE"))
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y[:, :4], p[:, :4], average="macro"), abs=1e-12)
    assert m["undefined"] == ["E"] and m["positives"]["A"] == int(y[:, 0].sum())
    # Fmax by hand on three records: at t = 0.5 record 1 predicts {0} (its one label), record 2 {0, 1} (its label 1
    # and a wrong 0), record 3 nothing; precision over the two that predict (1 + 0.5) / 2, recall (1 + 1 + 0) / 3
    y3 = np.array([[1, 0], [0, 1], [1, 1]])
    p3 = np.array([[0.9, 0.1], [0.6, 0.7], [0.2, 0.3]])
    f, t = fmax(y3, p3, thresholds=np.array([0.5]))
    pr, rc = 0.75, 2 / 3
    assert (f, t) == (pytest.approx(2 * pr * rc / (pr + rc)), 0.5)


def test_bootstrap_resamples_patients_and_is_seeded():
    from ecgtransfer.training.multilabel_metrics import bootstrap_intervals

    rng = np.random.default_rng(0)
    y = (rng.random((40, 3)) < 0.4).astype(int)
    p = rng.random((40, 3))
    patients = np.repeat([f"p{i}" for i in range(10)], 4)
    a = bootstrap_intervals(y, p, patients, ["a", "b", "c"], replicates=200, seed=3)
    b = bootstrap_intervals(y, p, patients, ["a", "b", "c"], replicates=200, seed=3)
    assert a == b and a["n_patients"] == 10 and a["unit"] == "patient"
    lo, hi = a["macro_auc"]
    assert lo < hi and 0.0 <= lo and hi <= 1.0


def test_multilabel_training_evaluate_and_predict_on_real_records(store_all, ptbxl_root, tmp_path, capsys):
    import torch
    from sklearn.metrics import roc_auc_score

    from ecgtransfer.training import fine_tune

    run = tmp_path / "run"
    result = fine_tune(store_all, out=run, model="cnn1d", init="scratch", split="ptbxl", epochs=2, max_steps=6,
                       batch_size=16, num_threads=1, optimizer="adamw", tiers=(1e-3, 1e-3, 1e-3), amp="bf16")
    assert result.best_epoch is not None and (run / "best.pt").is_file() and not (run / "last.pt").exists()
    test = result.test_metrics
    assert set(test["intervals"]) >= {"macro_auc", "fmax", "auc"} and test["intervals"]["unit"] == "patient"
    # the run's own test probabilities, recomputed from its checkpoint: macro AUC as scikit-learn has it
    from ecgtransfer.training.multilabel import _probs, load_multilabel

    model, encoder, _, dev = load_multilabel(run)
    with np.load(run / "split.npz") as z:
        idx = z["test"]
    # AMP as the single-label engine has it: bf16 autocast of the model's forward, recorded in run.json
    assert json.loads((run / "run.json").read_text())["amp"] == "bfloat16"
    probs = _probs(model, encoder, store_all, idx, dev, 32, dtype=torch.bfloat16)
    assert not np.allclose(probs, _probs(model, encoder, store_all, idx, dev, 32), atol=1e-6)  # autocast did act
    y = np.asarray(store_all.targets)[idx]
    ok = (y.sum(0) > 0) & (y.sum(0) < len(y))
    assert test["macro_auc"] == pytest.approx(roc_auc_score(y[:, ok], probs[:, ok], average="macro"), abs=1e-6)
    assert cli_main(["evaluate", str(run), str(store_all.path), "--split", "test", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["macro_auc"] == pytest.approx(test["macro_auc"], abs=1e-9) and m["task"] == "multilabel"
    out = tmp_path / "pred.csv"
    assert cli_main(["predict", str(run), str(ptbxl_root / "records100/00000/00001_lr"), "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns) == ["record"] + [f"p_{n}" for n in store_all.class_names]
    row = np.asarray(store_all.record_ids.tolist()) == "1"
    direct = _probs(model, encoder, store_all, np.flatnonzero(row), dev, 1, dtype=torch.bfloat16)[0]
    np.testing.assert_allclose(table.iloc[0, 1:].to_numpy(dtype=float), direct, atol=1e-5)
    # the same recording as a CSV export (leads found by name, in another order) and as an .npy: the same row
    import wfdb

    sig = wfdb.rdrecord(str(ptbxl_root / "records100/00000/00001_lr"))
    pd.DataFrame({name: sig.p_signal[:, k] for k, name in reversed(list(enumerate(sig.sig_name)))}).to_csv(
        tmp_path / "export.csv", index=False)
    np.save(tmp_path / "export.npy", sig.p_signal)
    out2 = tmp_path / "pred2.csv"
    assert cli_main(["predict", str(run), str(tmp_path / "export.csv"), str(tmp_path / "export.npy"), "--fs", "100",
                     "--out", str(out2)]) == 0
    other = pd.read_csv(out2)
    assert len(other) == 2
    for k in range(2):
        np.testing.assert_allclose(other.iloc[k, 1:].to_numpy(dtype=float), direct, atol=1e-5)

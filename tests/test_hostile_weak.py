"""Issue 20's "weak answers": inputs that got a misleading or no answer now get the clear one (one RecordError line
naming the file and what was expected). Real samples of mitdb 119, read with wfdb, written as a user's export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.errors import RecordError
from ecgtransfer.signals.readers import open_recording


@pytest.fixture(scope="module")
def lead(physionet_root) -> np.ndarray:
    """Ten seconds of mitdb 119, both leads, mV ``[n, 2]``."""
    import wfdb

    return wfdb.rdrecord(str(physionet_root / "mitdb" / "1.0.0" / "119"), sampto=3600).p_signal


def _csv(path: Path, x: np.ndarray, sep: str = ",") -> Path:
    rows = [sep.join(["time", "MLII", "V1"])] + [sep.join([f"{i / 360:.6f}", *(f"{v:.4f}" for v in r)]) for i, r in enumerate(x)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("sep", [";", "\t"])
def test_csv_with_another_separator_is_named(lead, tmp_path, sep) -> None:
    """A ';'-separated export was one column 'time;MLII;V1' without a time column: told "pass --fs"."""
    f = _csv(tmp_path / "export.csv", lead, sep)
    with pytest.raises(RecordError) as err:
        open_recording(f)
    msg = str(err.value)
    assert str(f) in msg and f"separated by {sep!r}" in msg and "comma-separated" in msg and "--fs" not in msg
    assert open_recording(_csv(tmp_path / "ok.csv", lead)).fs == pytest.approx(360.0, rel=1e-3)


def test_transposed_npy_is_named(lead, tmp_path) -> None:
    """A [leads, n] array was read as n leads of 2 samples, then "found 0 R peaks"."""
    f = tmp_path / "rec.npy"
    np.save(f, lead.T)
    with pytest.raises(RecordError, match=r"more leads \(3600\) than samples \(2\).*transposed.*\(3600, 2\)"):
        open_recording(f, fs=360)
    np.save(f, lead)
    assert open_recording(f, fs=360).lead_names == ("0", "1")


@pytest.mark.parametrize("bad", ["inf", "-inf", "nan"])
def test_inf_in_a_csv_is_refused_like_nan(lead, tmp_path, bad) -> None:
    """'inf' parsed as a float and was interpolated over while 'nan' was refused; both are refused, cell named."""
    f = _csv(tmp_path / "x.csv", lead)
    lines = f.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + f",{bad}"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"row 6, column 'V1' is .*(inf|nan).*not a"):
        open_recording(f)


@pytest.mark.parametrize("given,truth", [("uV", "mV"), ("V", "mV"), ("mV", "uV"), ("mV", "V"), (None, "uV")])
def test_units_hint_points_to_the_unit_that_fits(lead, tmp_path, given, truth) -> None:
    """The hint was "uV" for any span too large and "V" for any too small, whatever --units said: --units uV on a
    file in mV was told to try V. Now the hint is the unit in which the values, as written, span an ECG."""
    from ecgtransfer.signals.readers import UNIT_TO_MV
    from ecgtransfer.training.prediction import _check_amplitude

    f = tmp_path / "rec.npy"
    np.save(f, lead[:, :1] / UNIT_TO_MV[truth.lower()])  # the file's values are in `truth`
    rec = open_recording(f, fs=360, units=given)
    x = rec.read([0])[0]
    span = float(np.subtract(*np.percentile(x, [99.9, 0.1])))
    with pytest.raises(RecordError) as err:
        _check_amplitude(rec, span)
    assert f"are the values in {truth}? (--units {truth})" in str(err.value), str(err.value)
    ok = open_recording(f, fs=360, units=truth)
    x = ok.read([0])[0]
    _check_amplitude(ok, float(np.subtract(*np.percentile(x, [99.9, 0.1]))))


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_new_stores_and_tables_follow_the_umask(physionet_root, tmp_path, umask) -> None:
    """Issue 20: stores, runs and CSVs were 0600 / 0700 whatever the umask (mkstemp / mkdtemp modes kept under
    the final name); they get what a plain open / mkdir gives."""
    import os
    import stat

    from ecgtransfer._atomic import atomic_write_text
    from training_helpers import make_store

    old = os.umask(umask)
    try:
        store = make_store(physionet_root, tmp_path / "s", {"119": 4})
        atomic_write_text(tmp_path / "table.csv", "a,b\n1,2\n")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(store.path) == 0o777 & ~umask
    for f in (store.path / "manifest.json", store.path / "labels.npy", store.path / "segments.npy",
              tmp_path / "table.csv"):
        assert mode(f) == 0o666 & ~umask, f

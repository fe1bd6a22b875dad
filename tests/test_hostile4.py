"""Regression tests of the rest of issue 20 (the hostile pass): stale detector stores, the weak answers, relative
paths in reports, and the shared helpers they led to."""
from __future__ import annotations

import os

import pytest

from ecgtransfer._validate import file_kind


def test_file_kind_names_what_a_path_is_instead_of_a_regular_file(tmp_path):
    """The one test of what a path is before it is opened (store arrays, run files, _outdir's look at a folder)."""
    (tmp_path / "f").write_bytes(b"x")
    os.mkfifo(tmp_path / "p")
    os.symlink(tmp_path / "f", tmp_path / "link")
    assert file_kind(tmp_path / "f")[1] is None and file_kind(tmp_path / "link")[1] is None
    assert file_kind(tmp_path / "f")[0].st_size == 1
    assert file_kind(tmp_path / "p")[1] == "a FIFO" and file_kind(tmp_path)[1] == "a folder"
    assert file_kind("/dev/null")[1] == "a device"
    with pytest.raises(FileNotFoundError):
        file_kind(tmp_path / "missing")

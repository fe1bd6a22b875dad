"""Issue 20 (second hostile pass), group 6: ``convert --overwrite`` onto a store that cannot be moved aside (a
read-only store: renaming it fails) fails with one line and leaves nothing beside it: no ``.NAME.old-*`` folder
(it used to), no partial folder, the store as it was.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from ecgtransfer.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import _convert, one_error_line, tree  # noqa: E402


def test_overwrite_of_a_store_that_cannot_be_moved_leaves_no_old_folder(physionet_root, tmp_path, monkeypatch,
                                                                        capsys) -> None:
    out = tmp_path / "s"
    assert main(_convert(physionet_root, out)) == 0
    before = tree(out)
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):  # what a read-only store does to the rename that moves it aside
        if Path(src) == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr("ecgtransfer.store.os.replace", replace)
    assert main(_convert(physionet_root, out, "--after", "0.4", "--overwrite")) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "Permission denied" in line
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no .s.old-*, no .s.partial-*, no lock

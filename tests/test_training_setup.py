"""The engine's setup (``training.run_setup``): a failure to join the torchrun process group is reported as itself."""
from __future__ import annotations

import numpy as np
import pytest

from ecgtransfer.store import write_store


def test_a_failed_process_group_join_surfaces_its_own_error(tmp_path, monkeypatch) -> None:
    """Before the split into builders, the trainer marked the process group as its own before joining it, and a
    failed join then raised AttributeError (``trainer.dist``) from ``fine_tune``'s cleanup instead of the error."""
    from ecgtransfer.training import distributed as D
    from ecgtransfer.training import fine_tune

    n = 8
    store = write_store(tmp_path / "s", np.zeros((n, 1, 32), np.float32), np.arange(n) % 2,
                        record_ids=[str(i) for i in range(n)], patient_ids=[str(i) for i in range(n)],
                        positions=np.arange(n), class_names=["A", "B"], fs=100.0, lead_names=["I"])

    def no_rendezvous(device_type: str):
        raise RuntimeError("rendezvous failed")

    monkeypatch.setattr(D, "launched_by_torchrun", lambda: True)
    monkeypatch.setattr(D, "init_distributed", no_rendezvous)
    with pytest.raises(RuntimeError, match="rendezvous failed"):
        fine_tune(store, out=tmp_path / "run", model="cnn1d", init="scratch", device="cpu", num_threads=1)

"""The one scoring path with sigmoid outputs (multilabel runs): ``score_part(..., activation="sigmoid")``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ecgtransfer.store import write_store
from ecgtransfer.training.scoring import score_part


class _MeanLogits(nn.Module):
    """Logits ``[B, 3]``: a fixed linear map of each segment's mean and standard deviation per lead."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        torch.manual_seed(0)
        nn.init.normal_(self.lin.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.cat([x.mean(-1), x.std(-1)], dim=1))


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    n = 11
    return write_store(tmp_path / "s", rng.normal(size=(n, 2, 32)).astype(np.float32), np.arange(n) % 2,
                       record_ids=[str(i) for i in range(n)], patient_ids=[str(i) for i in range(n)],
                       positions=np.arange(n), class_names=["A", "B"], fs=100.0, lead_names=["I", "II"])


def test_sigmoid_scores_equal_the_sigmoid_of_the_logits_in_the_callers_order(store) -> None:
    model = _MeanLogits().eval()
    idx = np.array([7, 2, 9, 0, 5, 2], dtype=np.int64)  # unsorted, with a repeat
    part = score_part(model, None, store, idx, label_map=None, rr_dim=0, beat_input="leads", batch_size=4,
                      device=torch.device("cpu"), dtype=None, channels_last=False, activation="sigmoid")
    with torch.no_grad():
        want = torch.sigmoid(model(torch.from_numpy(store.batch(idx)))).numpy()
    np.testing.assert_array_equal(part.indices, np.sort(idx))
    np.testing.assert_allclose(part.probs_in_order_of(idx), want, rtol=0, atol=1e-6)
    assert part.loss_sum == 0.0 and part.weight_sum == 0.0  # no class loss for sigmoid outputs
    soft = score_part(model, None, store, idx, label_map=None, rr_dim=0, beat_input="leads", batch_size=4,
                      device=torch.device("cpu"), dtype=None, channels_last=False)
    np.testing.assert_allclose(soft.probs.sum(1), 1.0, atol=1e-6)  # the single-label default is unchanged
    assert soft.weight_sum == len(idx)

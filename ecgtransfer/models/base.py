"""What every model of ecgtransfer shares: three learning-rate tiers and batch norms that stay frozen."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from ecgtransfer.models.weights import LoadReport

#: The three learning-rate tiers, from input to output: every model has these three child modules.
TIERS: tuple[str, ...] = ("features_1", "features_2", "classifier")


class TieredModel(nn.Module):
    """A model made of the modules :data:`TIERS` (``features_1``, ``features_2``, ``classifier``).

    Attributes:
        frozen_bn_tiers: tiers whose batch-norm layers :meth:`train` keeps in eval mode
            (set by :func:`ecgtransfer.models.tiers.freeze_tiers`).
        load_report: the :class:`~ecgtransfer.models.weights.LoadReport` of loaded weights, or ``None``.
        rr_dim: RR-context columns the model reads (0: none).
    """

    def __init__(self) -> None:
        super().__init__()
        self.frozen_bn_tiers: set[str] = set()
        self.load_report: Optional["LoadReport"] = None
        self.rr_dim = 0

    def train(self, mode: bool = True) -> "TieredModel":
        """Like :meth:`nn.Module.train`, but batch norms of tiers in ``frozen_bn_tiers`` stay in eval mode."""
        super().train(mode)
        if mode and self.frozen_bn_tiers:
            from ecgtransfer.models.tiers import keep_frozen_bn_eval

            keep_frozen_bn_eval(self)
        return self

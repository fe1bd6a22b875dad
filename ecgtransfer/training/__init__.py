"""ecgtransfer.training: fine-tuning loop, metrics, checkpoints, evaluation, prediction, torchrun.

``fine_tune(store, config=None, **overrides) -> TrainResult`` is the entry point; see ``docs/training.md``.
"""
from __future__ import annotations

from ecgtransfer.training.config import TrainConfig
from ecgtransfer.training.engine import TrainResult, fine_tune
from ecgtransfer.training.evaluation import evaluate, load_run
from ecgtransfer.training.prediction import predict

__all__ = ["TrainConfig", "TrainResult", "fine_tune", "evaluate", "predict", "load_run"]


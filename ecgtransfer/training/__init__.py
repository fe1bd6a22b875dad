"""ecgtransfer.training: fine-tuning loop, metrics, checkpoints, evaluation, prediction, torchrun.

``fine_tune(store, config=None, **overrides) -> TrainResult`` is the entry point; see ``docs/training.md``.
"""
from __future__ import annotations

from ecgtransfer.training.config import TrainConfig
from ecgtransfer.training.engine import TrainResult, fine_tune

__all__ = ["TrainConfig", "TrainResult", "fine_tune", "evaluate", "predict"]


def __getattr__(name: str):
    if name == "evaluate":
        from ecgtransfer.training.evaluate import evaluate

        return evaluate
    if name == "predict":
        from ecgtransfer.training.predict import predict

        return predict
    raise AttributeError(f"module 'ecgtransfer.training' has no attribute {name!r}")

"""ResNet50's layout: blocks and widths per stage, the numbers both the architecture
(:mod:`ecgtransfer.models.resnet`) and the torchvision name map (:mod:`ecgtransfer.models.weights`) are built from.

A module of its own so that the name map needs no import of the model (whose builder imports the weights):
the import graph of ``ecgtransfer.models`` stays acyclic (``tests/test_import_graph.py``).
"""
from __future__ import annotations

#: Bottleneck blocks per stage (ResNet50).
STAGE_BLOCKS: tuple[int, ...] = (3, 4, 6, 3)
#: Middle ("bottleneck") channels per stage; outputs are ``EXPANSION`` times as wide.
STAGE_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
EXPANSION = 4
STEM_CHANNELS = 64
FEATURE_DIM = STAGE_WIDTHS[-1] * EXPANSION  # 2048

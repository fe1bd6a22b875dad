"""The layers of ecgtransfer, bottom to top: a module imports from its own layer and the layers below, never above.

This is data, read by the test that enforces it (``tests/test_import_graph.py``: no upward import, no import cycle
in the package, no ``_private`` name imported from another package) and drawn in ``docs/architecture.md``. A new
module belongs to the layer of its package; a new top-level module must be added here (the test fails until it is).

Within a layer, imports go either way as long as they make no cycle (``conversion`` and ``combine`` use ``store``;
``models`` and ``imaging`` are independent of each other).
"""
from __future__ import annotations

#: (layer, its modules or packages), bottom to top. ``"ecgtransfer"`` is the package's own ``__init__`` (the version
#: and the lazy top-level names, which import nothing at import time); every other entry covers its submodules too.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shared", ("ecgtransfer", "ecgtransfer._atomic", "ecgtransfer._document", "ecgtransfer._formats",
                "ecgtransfer._hashing", "ecgtransfer._layers", "ecgtransfer._lock", "ecgtransfer._npy", "ecgtransfer._outdir",
                "ecgtransfer._toml", "ecgtransfer._validate", "ecgtransfer.errors")),
    ("physionet", ("ecgtransfer.physionet",)),
    ("signals", ("ecgtransfer.signals",)),
    ("store", ("ecgtransfer.store", "ecgtransfer.combine", "ecgtransfer.conversion")),
    ("imaging/models", ("ecgtransfer.imaging", "ecgtransfer.models")),
    ("training", ("ecgtransfer.training",)),
    ("bench", ("ecgtransfer.bench",)),
    ("cli", ("ecgtransfer.cli", "ecgtransfer.__main__")),
)

PACKAGE = "ecgtransfer"


def layer_of(module: str, layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> int | None:
    """The index (0 = bottom) of the layer of ``module`` (a dotted name), or None when no layer names it."""
    for index, (_, members) in enumerate(layers):
        for member in members:
            if module == member or (member != PACKAGE and module.startswith(member + ".")):
                return index
    return None


__all__ = ["LAYERS", "layer_of"]

"""Every output folder's layout, for the command line's checks of where a verb writes.

:mod:`ecgtransfer._outdir` holds the rule and a registry that each owner fills when its module is imported; which
owners a verb happened to import is no guarantee (``train`` never imports the bench). The command line sits above
every owner, so it imports them all here and passes the complete list to each check: ``train --out`` inside a
bench folder is refused whatever the verb imported. Adding an output folder: declare its
:class:`~ecgtransfer._outdir.FolderLayout` next to the code that writes it and import that module here.
"""
from __future__ import annotations

from ecgtransfer._outdir import FolderLayout


def every_layout() -> tuple[FolderLayout, ...]:
    """The layouts of every ecgtransfer output folder (store, image folder, run, beat report, evaluation folder,
    bench folder), in the order :func:`~ecgtransfer._outdir.enclosing_output` tries them."""
    from ecgtransfer.bench.cells import BENCH_LAYOUT
    from ecgtransfer.imaging.export import IMAGES_LAYOUT
    from ecgtransfer.store import STORE_LAYOUT
    from ecgtransfer.training.beat_report import REPORT_LAYOUT
    from ecgtransfer.training.evaluation import EVAL_LAYOUT
    from ecgtransfer.training.run_files import RUN_LAYOUT

    layouts = (STORE_LAYOUT, IMAGES_LAYOUT, RUN_LAYOUT, REPORT_LAYOUT, EVAL_LAYOUT, BENCH_LAYOUT)
    return tuple(sorted(layouts, key=lambda lay: lay.precedence))


__all__ = ["every_layout"]

"""The format names ecgtransfer writes into its output files, defined once, below everything that reads or writes them.

The segment store (:mod:`ecgtransfer.store`) writes :data:`STORE_FORMAT` into ``manifest.json``, the bench
(:mod:`ecgtransfer.bench.assemble`) writes :data:`RESULTS_FORMAT` into ``results.json``; :mod:`ecgtransfer._outdir`
recognises a store or a bench folder by them. Keeping them here lets the low output-folder rule read them without
importing the store or the bench (which import it).
"""
from __future__ import annotations

#: ``manifest["format"]`` of a segment store
STORE_FORMAT = "ecgtransfer-store"
STORE_FORMAT_VERSION = 1
#: ``results["format"]`` of a bench's ``results.json``
RESULTS_FORMAT = "ecgtransfer-bench-results"
RESULTS_FORMAT_VERSION = 1

__all__ = ["STORE_FORMAT", "STORE_FORMAT_VERSION", "RESULTS_FORMAT", "RESULTS_FORMAT_VERSION"]

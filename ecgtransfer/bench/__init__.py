"""The benchmark: does transfer help? Arms x encodings x data fractions x seeds -> results.json -> reports.

``ecgtransfer.bench.run(config, out)`` (or ``ecgtransfer bench CONFIG.toml --out DIR``) trains every cell,
resumably, and writes ``results.json``, ``report.md`` and a self-contained ``report.html`` into ``out``.
See ``docs/bench.md``.
"""
from __future__ import annotations

from typing import Any

from ecgtransfer.bench.arms import ArmConfig
from ecgtransfer.bench.config import BenchConfig, SourceConfig, TaskConfig
from ecgtransfer.bench.config_toml import load_config

__all__ = ["run", "load_config", "write_report", "BenchConfig", "ArmConfig", "TaskConfig", "SourceConfig",
           "BenchResult", "BenchResults", "CellResult", "read_results"]


def __getattr__(name: str) -> Any:  # the runner imports torch: load it on first use
    if name in ("run", "BenchResult", "write_report"):
        from ecgtransfer.bench import runner

        return getattr(runner, name)
    if name in ("BenchResults", "CellResult", "read_results"):  # the schema of results.json
        from ecgtransfer.bench import results

        return getattr(results, name)
    raise AttributeError(f"module 'ecgtransfer.bench' has no attribute {name!r}")

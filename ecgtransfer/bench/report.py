"""``report.md`` and a self-contained ``report.html`` from a bench's results.

Both documents carry the same content, in this order: the headline ("did transfer help?"), the setup
(task, split, budget, image size, hardware), the arms (with skipped arms and their reasons), the main
table (macro-F1 with 95% CI per arm and fraction, paired difference against the baseline), the
data-efficiency curve, learning curves, per-class Se/+P with their spread over seeds, confusion matrices,
time to the target validation macro-F1, throughput and hardware, every cell, the exact config and the
store manifests. The HTML embeds its figures as base64 PNGs; the Markdown links the same PNGs written
to ``figures/``.

Each section is one function from the resolved inputs (:class:`~ecgtransfer.bench.report_sections.ReportInputs`)
to its part of the document (a ``Doc``), in :mod:`ecgtransfer.bench.report_sections`; their words (formatting, the
headline) are :mod:`ecgtransfer.bench.report_text`. This module joins the parts in the order of
:data:`~ecgtransfer.bench.report_sections.SECTIONS` (:func:`build`) and writes the two files (:func:`write_reports`,
the page itself by :mod:`ecgtransfer._document`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ecgtransfer._atomic import atomic_write_bytes, atomic_write_text
from ecgtransfer._document import Doc, absolute_paths, html_page, relative_paths
from ecgtransfer.bench.report_sections import SECTIONS, ReportInputs
from ecgtransfer.bench.results import BenchResults


def build(results: BenchResults | Mapping[str, Any]) -> Doc:
    """The report of a bench's ``results`` (``results.json``) as a two-format document: the parts of
    ``SECTIONS``, in order (``.md`` and ``.html`` hold the same content; ``.figures`` maps file names to
    PNG bytes)."""
    inputs = ReportInputs.of(BenchResults.of(results))
    doc = Doc()
    for section in SECTIONS:
        doc.extend(section(inputs))
    return doc


def write_reports(results: BenchResults | Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out``; returns their paths."""
    out = Path(out)
    results = BenchResults.of(results)
    doc = build(results)
    for name, png in doc.figures.items():
        atomic_write_bytes(out / "figures" / name, png)
    # paths relative to the report's folder, not this machine's layout (a report goes into papers and repositories)
    where = absolute_paths(results.to_dict()) | {str(out.resolve())}
    md = relative_paths("\n".join(doc.md) + "\n", where, out)
    page = relative_paths(html_page(f"ecgtransfer bench: {results.config['name']}", doc), where, out)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", page)
    return {"md": out / "report.md", "html": out / "report.html", "figures": out / "figures"}

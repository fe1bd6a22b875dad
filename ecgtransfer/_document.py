"""A tiny two-format document: the same content as Markdown and as HTML, with PNG figures.

The bench's report (:mod:`ecgtransfer.bench.report`) and predict's beat report
(:mod:`ecgtransfer.training.beat_report`) are both written with it: :class:`Doc` collects headings, paragraphs,
lists, tables, figures and folded code blocks in both formats, :func:`html_page` makes a self-contained HTML page
of one (styled by :data:`CSS`, figures embedded as base64).
"""
from __future__ import annotations

import base64
import html
import os
import shlex
from typing import Any, Iterable, Sequence


class Doc:
    def __init__(self) -> None:
        self.md: list[str] = []
        self.html: list[str] = []
        self.figures: dict[str, bytes] = {}

    def extend(self, part: Doc) -> None:
        """Append another document's content (a report section) after this one's."""
        self.md.extend(part.md)
        self.html.extend(part.html)
        self.figures.update(part.figures)

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        a = f' id="{anchor}"' if anchor else ""
        self.html.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")

    def p(self, text: str, *, strong: bool = False, cls: str | None = None) -> None:
        self.md.append((f"**{text}**" if strong else text) + "\n")
        body = html.escape(text)
        if strong:
            body = f"<strong>{body}</strong>"
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{body}</p>")

    def bullets(self, items: Sequence[str]) -> None:
        self.md.append("\n".join(f"- {i}" for i in items) + "\n")
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        def cell(v: Any) -> str:
            return str(v).replace("|", "\\|").replace("\n", " ")

        self.md.append("| " + " | ".join(cell(h) for h in header) + " |")
        self.md.append("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            self.md.append("| " + " | ".join(cell(v) for v in r) + " |")
        self.md.append("")
        th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
        self.html.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")

    def figure(self, name: str, png: bytes, caption: str) -> None:
        self.figures[name] = png
        self.md.append(f"![{caption}](figures/{name})\n")
        b64 = base64.b64encode(png).decode("ascii")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def code(self, text: str, summary: str, lang: str = "") -> None:
        self.md.append(f"<details><summary>{summary}</summary>\n\n```{lang}\n{text}\n```\n\n</details>\n")
        self.html.append(f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>")


#: the style sheet of every HTML page (inlined: a report is one self-contained file)
CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.headline{font-size:1.15em;background:#eef6ee;border-left:5px solid #3a3;padding:.6em 1em}
.warn{background:#fff4e0;border-left:5px solid #e90;padding:.5em 1em}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
img{max-width:100%}"""


def html_page(title: str, doc: Doc) -> str:
    """The self-contained HTML page of ``doc``, titled ``title`` (plain text, escaped here)."""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(doc.html) + "\n</body></html>\n")


def absolute_paths(value: Any) -> set[str]:
    """Every absolute path held by ``value`` (nested dicts, lists and strings: a string that is an absolute path, or
    an absolute path among the words of a command line, also as ``--option=/path``)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for v in value.values():
            found |= absolute_paths(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            found |= absolute_paths(v)
    elif isinstance(value, str) and "/" in value:
        if os.path.isabs(value) and "\n" not in value:
            if not any(c.isspace() for c in value):
                found.add(os.path.normpath(value))
                return found
        try:
            words = shlex.split(value)
        except ValueError:
            words = value.split()
        for w in words:
            w = w.split("=", 1)[1] if w.startswith("--") and "=" in w else w
            if os.path.isabs(w) and len(w) > 1:
                found.add(os.path.normpath(w))
    return found


def relative_paths(text: str, paths: Iterable[str], folder: str | os.PathLike) -> str:
    """``text`` with each of ``paths`` (absolute) written relative to ``folder`` (the folder the document is in),
    longest first, also where HTML escaping changed it: a report names files portably, not by this machine's
    layout."""
    folder = os.path.abspath(os.fspath(folder))
    for p in sorted({str(p) for p in paths if os.path.isabs(str(p)) and len(str(p)) > 1}, key=len, reverse=True):
        rel = os.path.relpath(p, folder)
        text = text.replace(p, rel)
        if html.escape(p) != p:
            text = text.replace(html.escape(p), html.escape(rel))
    return text


__all__ = ["CSS", "Doc", "absolute_paths", "html_page", "relative_paths"]

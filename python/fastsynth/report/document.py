"""A report as one list of blocks, rendered as Markdown and as one self-contained HTML page.

Every job of the package (score, dedup, synth, plan, a whole run) builds a
:class:`Document` once and renders it twice, so the two files never disagree. Figures
are PNG files written beside the Markdown (which links them by name); the HTML page
embeds them as base64 ``data:`` URIs so it can be mailed or opened alone. The page loads
nothing from the network and runs no script.
"""
from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fastsynth.atomic import atomic_write_text

_CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:90%}"
        ".pending{color:#8a5a00}")


@dataclass
class Document:
    """A titled list of blocks: ``("h", text)``, ``("p", text)``, ``("table", (header, rows))``,
    ``("fig", (png_path, caption))``. Cells are rendered with ``str``; text is escaped in HTML
    and ``|`` is escaped in Markdown tables."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, text: str) -> None:
        self.blocks.append(("h", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", (list(header), [[str(c) for c in r] for r in rows])))

    def figure(self, path: Path, caption: str) -> None:
        """A PNG figure; ``path`` must exist when the document is rendered."""
        self.blocks.append(("fig", (Path(path), caption)))

    def markdown(self, base: str | Path | None = None) -> str:
        """Markdown; figures are linked relative to ``base`` (the folder the file will be
        written to), or by file name when ``base`` is None."""
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "h":
                out += [f"## {body}", ""]
            elif kind == "p":
                out += [body, ""]
            elif kind == "table":
                head, rows = body
                out.append("| " + " | ".join(c.replace("|", "\\|") for c in head) + " |")
                out.append("|" + "---|" * len(head))
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
                out.append("")
            else:
                path, caption = body
                link = path.name if base is None else os.path.relpath(path, base)
                out += [f"![{caption}]({link})", f"*{caption}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
               f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body>",
               f"<h1>{e(self.title)}</h1>"]
        for kind, body in self.blocks:
            if kind == "h":
                out.append(f"<h2>{e(body)}</h2>")
            elif kind == "p":
                out.append(f"<p>{e(body)}</p>")
            elif kind == "table":
                head, rows = body
                out.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in head) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</table>")
            else:
                path, caption = body
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(f"<figure><img src='data:image/png;base64,{data}' "
                           f"alt='{e(caption)}'><figcaption>{e(caption)}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        """Write ``<stem>.md`` and ``<stem>.html`` into ``out_dir`` (each atomically)."""
        out_dir = Path(out_dir)
        md, page = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
        atomic_write_text(md, self.markdown(base=out_dir))
        atomic_write_text(page, self.html())
        return {"markdown": md, "html": page}

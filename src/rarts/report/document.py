"""A tiny document model, rendered as Markdown and as one self-contained HTML page.

A report is a list of blocks (headings, paragraphs, tables, images, preformatted text, lists). The Markdown links
its images relative to the folder it lies in; the HTML embeds every image as a base64 data URI and holds its
styles inline, so the page is one file with no external reference.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Doc:
    """Blocks of a report, in order: ("h", level, text), ("p", text), ("table", headers, rows),
    ("img", path, alt), ("imgrow", [(path, alt), ...]), ("pre", text), ("list", items).
    Text may hold `code` spans in backticks."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", headers, rows))

    def img(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", Path(path), alt))

    def img_row(self, images: list[tuple[Path, str]]) -> None:
        """Images side by side (in HTML; one after the other in Markdown): [(path, alt), ...]."""
        self.blocks.append(("imgrow", [(Path(p), alt) for p, alt in images]))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def items(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("list", items))


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Doc, base: Path) -> str:
    """Markdown with images linked relative to `base` (the folder report.md lies in)."""
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            out += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            out += [block[1], ""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
        elif kind in ("img", "imgrow"):
            for path, alt in [block[1:]] if kind == "img" else block[1]:
                out += [f"![{alt}]({path.relative_to(base).as_posix()})", ""]
        elif kind == "pre":
            out += ["```", block[1].rstrip("\n"), "```", ""]
        elif kind == "list":
            out += [f"- {item}" for item in block[1]] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def _inline_html(text: str) -> str:
    """Escape text; `backtick` spans become <code>."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: keep it literal
        return html.escape(str(text))
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .35em .6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
td { white-space: nowrap; }
figure { margin: .8em 0; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
.row { display: flex; gap: 1em; align-items: flex-start; }
.row figure { flex: 1 1 0; min-width: 0; }
pre { background: #f6f8fa; padding: .8em; white-space: pre-wrap; word-break: break-word; font-size: 0.85em; }
code { background: #f0f0f0; padding: 0 .25em; border-radius: 3px; font-size: 0.92em; }
pre code { background: none; padding: 0; }
"""


def _figure_html(path: Path, alt: str) -> str:
    """A figure whose image is embedded as a base64 data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    alt = html.escape(alt, quote=True)
    return f'<figure><img src="data:{mime};base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def render_html(doc: Doc) -> str:
    """One self-contained HTML page: styles inline, every image embedded as a base64 data URI."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{_inline_html(block[2])}</h{block[1]}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "table":
            out.append("<table>")
            out.append("<thead><tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in block[1]) + "</tr></thead>")
            out.append("<tbody>")
            for row in block[2]:
                out.append("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "img":
            out.append(_figure_html(block[1], block[2]))
        elif kind == "imgrow":
            out.append('<div class="row">' + "".join(_figure_html(p, alt) for p, alt in block[1]) + "</div>")
        elif kind == "pre":
            out.append(f"<pre><code>{html.escape(block[1].rstrip(chr(10)))}</code></pre>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"

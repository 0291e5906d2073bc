"""The markdown subset the report writes (headings, paragraphs, tables, lists, images) as one self-contained
HTML page: figures are embedded as base64 data URIs, so the page needs no other file.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

CSS = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45;"
       "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;"
       "padding:0.25em 0.6em;text-align:left}th{background:#f2f2f2}img{max-width:100%}figure{margin:1em 0}"
       "figcaption{color:#555;font-size:0.9em}code{background:#f4f4f4;padding:0 0.2em}")


def render_html(markdown: str, base: Path, title: str = "report") -> str:
    """The markdown subset the report uses (headings, paragraphs, tables, lists, images) as one HTML page.

    Images are read from `base` and embedded as base64 data URIs, so the page needs no other file.
    """
    body = [_block_html(block, base) for block in re.split(r"\n\s*\n", markdown.strip()) if block.strip()]
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}"
            f"</title>\n<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _block_html(block: str, base: Path) -> str:
    lines = block.strip().splitlines()
    heading = re.match(r"^(#{1,6})\s+(.*)$", lines[0])
    if heading and len(lines) == 1:
        level = len(heading.group(1))
        return f"<h{level}>{_inline(heading.group(2))}</h{level}>"
    image = re.match(r"^!\[(.*?)\]\((.*?)\)$", block.strip())
    if image:
        return _image_html(image.group(1), base / image.group(2))
    if all(line.startswith("|") for line in lines):
        return _table_html(lines)
    if all(line.startswith("- ") for line in lines):
        return "<ul>\n" + "\n".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "\n</ul>"
    return f"<p>{_inline(' '.join(lines))}</p>"


def _table_html(lines: list[str]) -> str:
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    body = [r for r in cells[1:] if not all(re.fullmatch(r":?-{3,}:?", c) for c in r)]
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    rows = "\n".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"


def _image_html(alt: str, path: Path) -> str:
    if not path.is_file():
        return f"<p><em>(figure missing: {html.escape(alt)})</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(alt, quote=True)}\">"
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)

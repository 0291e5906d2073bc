"""The markdown subset the report writes (headings, paragraphs, tables, lists, images, links) as one self-contained
HTML page: figures are embedded as base64 data URIs, so the page needs no other file.

The page adds what a long page needs and the markdown does not: a table of contents after the answer and the
conclusion (every `##` section, its `###` sub-sections nested; the first screen is the answer's), an id on every
heading, verdict cells coloured by their verdict, and long tables folded in `<details>` (plain HTML, no script):
those of more than FOLD_ROWS rows and every table of the FOLDED sections (reference tables).
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

CSS = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45;"
       "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;"
       "padding:0.25em 0.6em;text-align:left}th{background:#f2f2f2}img{max-width:100%}figure{margin:1em 0}"
       "figcaption{color:#555;font-size:0.9em}code{background:#f4f4f4;padding:0 0.2em}"
       "nav.toc{background:#f8f8f8;border:1px solid #ddd;padding:0.5em 1em;margin:1em 0}nav.toc ol{margin:0.2em 0;"
       "padding-left:1.5em}nav.toc>ol{columns:2}nav.toc li{break-inside:avoid}details{margin:1em 0}"
       "summary{cursor:pointer;color:#245;font-weight:600}.wide{overflow-x:auto}"
       "td.gain{background:#d4e6f5}td.loss{background:#fbe1cc}td.same{background:#f0f0f0}td.untested{color:#666}")
# a verdict cell (report/verdict.py) opens with its verdict; its colour class (blue / orange: colour-blind safe)
VERDICT_CLASSES = {"**gain**": "gain", "**loss**": "loss", "**no difference**": "same", "not tested": "untested"}
CONTENTS_AFTER = 2  # the table of contents comes after this many sections: the answer and the conclusion
FOLD_ROWS = 12  # a table of more rows is folded: it would push the next section off the screen
FOLDED = ("Runs", "Configuration summary")  # sections whose tables are for looking things up, not reading


def render_html(markdown: str, base: Path, title: str = "report", folded: tuple[str, ...] = FOLDED,
                contents_after: int = CONTENTS_AFTER) -> str:
    """The markdown subset the report uses (headings, paragraphs, tables, lists, images) as one HTML page, with a
    table of contents after the first `contents_after` `##` sections and the long tables (and those of `folded`
    sections, at any level: a study's target holds them one level down) folded.

    Images are read from `base` and embedded as base64 data URIs, so the page needs no other file.
    """
    blocks = [block for block in re.split(r"\n\s*\n", markdown.strip()) if block.strip()]
    headings = _headings(blocks)
    body, section, contents = [], "", _contents(list(headings.values()))
    seen = 0  # level-2 sections so far
    for index, block in enumerate(blocks):
        if index in headings:
            level, text, anchor = headings[index]
            seen += level == 2
            if level == 2 and contents and seen > min(contents_after, _sections(headings) - 1):
                body.append(contents)
                contents = ""
            section = text
            body.append(f'<h{level} id="{anchor}">{_inline(text)}</h{level}>')
        else:
            body.append(_block_html(block, base, fold=section in folded))
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}"
            f"</title>\n<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _headings(blocks: list[str]) -> dict[int, tuple[int, str, str]]:
    """Block index -> (level, text, id) of every heading block; ids from the text, made unique by a number."""
    found, used = {}, set()
    for index, block in enumerate(blocks):
        lines = block.strip().splitlines()
        heading = re.match(r"^(#{1,6})\s+(.*)$", lines[0])
        if heading and len(lines) == 1:
            text = heading.group(2).strip()
            slug = re.sub(r"[^a-z0-9]+", "-", text.replace("`", "").lower()).strip("-") or "section"
            anchor, n = slug, 1
            while anchor in used:
                n += 1
                anchor = f"{slug}-{n}"
            used.add(anchor)
            found[index] = (len(heading.group(1)), text, anchor)
    return found


def _sections(headings: dict) -> int:
    return sum(level == 2 for level, _, _ in headings.values())


def _contents(headings: list[tuple[int, str, str]]) -> str:
    """The table of contents: every level-2 heading, the level-3 ones after it nested under it."""
    items = []  # (link, [sub-links])
    for level, text, anchor in headings:
        link = f'<a href="#{anchor}">{_inline(text)}</a>'
        if level == 2:
            items.append((link, []))
        elif level == 3 and items:
            items[-1][1].append(link)
    if not items:
        return ""
    lines = [f"<li>{link}" + ("\n<ol>\n" + "\n".join(f"<li>{s}</li>" for s in subs) + "\n</ol>\n" if subs
                               else "") + "</li>" for link, subs in items]
    return ('<nav class="toc" aria-label="Contents">\n<strong>Contents</strong>\n<ol>\n' + "\n".join(lines)
            + "\n</ol>\n</nav>")


def _block_html(block: str, base: Path, fold: bool = False) -> str:
    lines = block.strip().splitlines()
    image = re.match(r"^!\[(.*?)\]\((.*?)\)$", block.strip())
    if image:
        return _image_html(image.group(1), base / image.group(2))
    if all(line.startswith("|") for line in lines):
        return _table_html(lines, fold)
    if all(line.startswith("- ") for line in lines):
        return "<ul>\n" + "\n".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "\n</ul>"
    return f"<p>{_inline(' '.join(lines))}</p>"


def _table_html(lines: list[str], fold: bool = False) -> str:
    """A table; folded in <details> (its summary: the number of rows and the columns) when `fold` or longer than
    FOLD_ROWS."""
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    body = [r for r in cells[1:] if not all(re.fullmatch(r":?-{3,}:?", c) for c in r)]
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    rows = "\n".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in body)
    # in a box of its own width that scrolls sideways: a wide table (Runs) must not widen the whole page
    text = f'<div class="wide">\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n</div>'
    if not (fold or len(body) > FOLD_ROWS):
        return text
    columns = ", ".join(cells[0][:6]) + (", ..." if len(cells[0]) > 6 else "")
    summary = f"Table of {len(body)} row{'s' if len(body) != 1 else ''}: {columns}"  # the heading is just above
    return f"<details>\n<summary>{_inline(summary)}</summary>\n{text}\n</details>"


def _cell(text: str) -> str:
    verdict = next((name for start, name in VERDICT_CLASSES.items() if text.startswith(start)), None)
    return f'<td class="{verdict}">{_inline(text)}</td>' if verdict else f"<td>{_inline(text)}</td>"


def _image_html(alt: str, path: Path) -> str:
    if not path.is_file():
        return f"<p><em>(figure missing: {html.escape(alt)})</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(alt, quote=True)}\">"
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)  # a file beside the report
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)

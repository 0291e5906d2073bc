"""report.html: a table of contents linking every section, long tables folded, the markdown unchanged."""
import re

from audio2image.report import build_report
from audio2image.report.html import render_html
from test_report import make_experiment


def rows_table(head: str, n: int) -> str:
    return "\n".join([f"| {head} | b |", "| --- | --- |", *(f"| {k} | x |" for k in range(n))])


def folded(html: str, header: str) -> bool:
    """Whether the table whose first column is `header` sits inside a <details> element."""
    at = html.index(f"<thead><tr><th>{header}</th>")
    return html[:at].count("<details>") > html[:at].count("</details>")


def test_contents_link_every_section_and_nest_its_subsections(tmp_path):
    md = "\n\n".join(["# Title `x`", "Intro.", "## First part", "Text.", "### A detail", "More.", "### A detail",
                      "## Second & last", "End."])
    html = render_html(md, tmp_path)
    nav = html[html.index("<nav"):html.index("</nav>")]
    # after the answer and the conclusion (here: the last section, for want of a third), so that the first screen
    # is the answer's
    assert html.index('<h2 id="first-part"') < html.index("<nav") < html.index('<h2 id="second-last"')
    ids = re.findall(r'<h[1-6] id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) == 5  # every heading has its own id, repeated titles too
    links = re.findall(r'<a href="#([^"]+)">', nav)
    assert links == ids[1:] and set(links) <= set(ids)
    # the sub-sections are a list inside their section's item
    first = nav[nav.index('href="#first-part"'):nav.index('href="#second-last"')]
    assert first.count('href="#a-detail') == 2 and "<ol>" in first


def test_a_page_without_sections_has_no_contents(tmp_path):
    assert "<nav" not in render_html("# Title\n\nJust text.", tmp_path)


def test_long_tables_and_the_reference_sections_fold_short_ones_stay_open(tmp_path):
    md = "\n\n".join(["# T", "## Results", rows_table("short", 3), rows_table("long", 20), "## Runs",
                      rows_table("run", 2)])
    html = render_html(md, tmp_path)
    assert not folded(html, "short") and folded(html, "long") and folded(html, "run")
    assert "<summary>Table of 20 rows: long, b</summary>" in html
    assert "<summary>Table of 2 rows: run, b</summary>" in html


def test_the_report_page_folds_the_runs_and_keeps_the_markdown(tmp_path):
    exp = make_experiment(tmp_path)
    out = build_report(exp)
    md, html = out["markdown"].read_text(), out["html"].read_text()
    sections = re.findall(r"^## (.+)$", md, flags=re.M)
    nav = html[html.index("<nav"):html.index("</nav>")]
    ids = set(re.findall(r'<h[1-6] id="([^"]+)"', html))
    for section in sections:
        (anchor,) = re.findall(rf'<a href="#([^"]+)">{re.escape(section)}</a>', nav)
        assert anchor in ids
    assert folded(html, "run_id") and folded(html, "key")  # Runs, Configuration summary
    assert not folded(html, "side")  # the datasets: a short table
    assert "| run_id |" in md and "| side | dataset |" in md  # the markdown keeps every table as it is
    assert "<script" not in html


def test_a_link_to_a_file_beside_the_report_is_a_link(tmp_path):
    html = render_html("# T\n\nThe config: [config.yaml](config.yaml).", tmp_path)
    assert '<a href="config.yaml">config.yaml</a>' in html and "](" not in html


def test_a_wide_table_scrolls_in_its_own_box(tmp_path):
    html = render_html("# T\n\n" + rows_table("a", 2), tmp_path)
    assert '<div class="wide">\n<table>' in html and ".wide{overflow-x:auto}" in html


def test_the_contents_follow_the_answer_and_the_conclusion_and_verdict_cells_are_coloured(tmp_path):
    md = "\n\n".join(["# T", "## The answer", "| init | 10% |\n| --- | --- |\n| audio | **gain** +9.0 (+1 to +17) |\n"
                      "| control | **no difference** +1.0 (-3 to +5); could have detected ≥ 8.0 |",
                      "## Conclusion", "Short.", "## Inits", "- a", "## Runs", "x"])
    html = render_html(md, tmp_path)
    assert html.index('<h2 id="conclusion"') < html.index("<nav") < html.index('<h2 id="inits"')
    assert '<td class="gain"><strong>gain</strong> +9.0' in html and '<td class="same"><strong>no difference' in html

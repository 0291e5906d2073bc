"""What a prepared store left out, what it kept with a warning, and the labels its kept items cannot teach.

Checked once a store's splits are written (and when a store made by older rules is brought up to date), recorded
in its manifest, and named, the first few with their reasons and where the full list is, by every command that
makes or uses the store and by the report's Datasets section:

    >>> manifest["label_warnings"] = check_labels(out, manifest)
    >>> log("\\n".join(finding_lines(store_findings(manifest, out), manifest["modality"])))
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from audio2image.datasets.inspection import capped, row_place
from audio2image.prepare.store import MANIFEST, STORE_VERSION, discard_splits, write_manifest
from audio2image.util import DatasetError, log

EXAMPLES = 5  # items a command's output and the report name; the manifest lists them all
ITEMS = {"audio": "clips", "image": "images"}  # what a store of each modality holds, in words
# manifest key -> (what its entries are, how one entry reads)
LISTS = {
    "skipped": ("{items} skipped", lambda e: f"{e['item']} ({e['split']}): {e['reason']}"),
    "warned": ("{items} kept with a warning", lambda e: f"{e['item']} ({e['split']}): {e['reason']}"),
    "annotation_problems": ("annotation rows dropped", lambda e: f"{row_place(e)}: {e['reason']}"),
    "label_warnings": ("labels that never vary over the kept {items}", lambda e: f"{e['label']}: {e['reason']}"),
}


def check_labels(out: Path, manifest: dict) -> list[dict]:
    """The labels that never vary over the store's kept items ([{"label", "reason"}]): a class with no kept item;
    a tag in none or in every one of them. They are kept, so that the labels stay those the data declares (MTAT's
    canonical 50, a labels.csv's vocabulary); listing them says what they cost: macro ROC-AUC leaves such a tag
    out, but macro PR-AUC scores a tag present in every evaluated item as perfectly ranked.

    Refused (a DatasetError; the store's splits and manifest discarded, so that the same command prepares it
    anew once mended): a classification store whose kept items hold fewer than two classes, a tagging store in
    which no tag varies. Either would train to a loss of zero and teach nothing.
    """
    labels, items = manifest["labels"], ITEMS.get(manifest["modality"], "items")
    y = np.concatenate([np.load(Path(out) / f"{name}.y.npy") for name in manifest["splits"]])
    if manifest["task"] == "classification":
        counts = np.bincount(y, minlength=len(labels))
        varies = counts > 0
        if varies.sum() < 2:
            only = f"the label {labels[int(np.argmax(counts))]!r}" if varies.any() else "no label"
            _refuse(out, manifest, f"every kept {items[:-1]} has {only}, but classification needs at least two classes; "
                         f"add {items} of another class")
        return [{"label": labels[j], "reason": f"no kept {items[:-1]} (all skipped)"}
                for j in np.flatnonzero(~varies)]
    counts, total = y.sum(axis=0), len(y)
    warnings = [{"label": labels[j], "reason": f"in none of the {total} kept {items}" if counts[j] == 0
                 else f"in every one of the {total} kept {items}"}
                for j in np.flatnonzero((counts == 0) | (counts == total))]
    if len(warnings) == len(labels):
        _refuse(out, manifest, f"no tag varies over the {total} kept {items} (" + "; ".join(
            f"{w['label']}: {w['reason']}" for w in warnings[:EXAMPLES]) + "), so tagging has nothing to learn; "
            f"add {items} that differ in their tags")
    return warnings


def _refuse(out: Path, manifest: dict, why: str) -> None:
    discard_splits(out, manifest["splits"])
    (Path(out) / MANIFEST).unlink(missing_ok=True)
    raise DatasetError(f"prepare {out}: {why}; then run the same command again")


def upgrade_manifest(out: Path, manifest: dict, signatures: dict, warned: list[dict]) -> dict:
    """The manifest of a store made by older rules whose rows the current rules would make alike, brought up to date
    and written: the current version and signatures, the items kept with a warning (`warned`, found by the
    modality's writer), the labels checked (`check_labels`, which may refuse the store)."""
    manifest = {**manifest, "store_version": STORE_VERSION, "signatures": signatures, "warned": warned}
    manifest["label_warnings"] = check_labels(out, manifest)
    write_manifest(out, manifest)
    found = finding_lines(store_findings(manifest, out), manifest["modality"])
    log("\n".join([f"store {out}: brought up to date with store version {STORE_VERSION} (its rows are unchanged)",
                   *found]))
    return manifest


def store_findings(manifest: dict, path: Path) -> dict:
    """Per list of LISTS that is not empty: {"count", "examples": the first EXAMPLES}; and "manifest": where the
    full lists are. {} when the store left nothing out and warned of nothing."""
    found = {key: capped(manifest.get(key) or [], EXAMPLES) for key in LISTS if manifest.get(key)}
    return {**found, "manifest": str(Path(path) / MANIFEST)} if found else {}


def finding_lines(findings: dict, modality: str) -> list[str]:
    """`store_findings` as text: per list 'what: count', its examples one a line, indented, and where they all are."""
    lines = []
    for key, words, listed in listed_findings(findings, modality):
        lines.append(f"{words}: {listed['count']}")
        lines += [f"  {entry}" for entry in listed["examples"]]
        if listed["count"] > len(listed["examples"]):
            lines.append(f"  ... and {listed['count'] - len(listed['examples'])} more")
    if lines:
        lines.append(f"all of them are listed in {findings['manifest']}")
    return lines


def listed_findings(findings: dict, modality: str) -> list[tuple[str, str, dict]]:
    """(manifest key, what its entries are, {"count", "examples": each as one line of text}) per list there is."""
    items = ITEMS.get(modality, "items")
    return [(key, words.format(items=items), {"count": findings[key]["count"],
                                              "examples": [one_line(show(e)) for e in findings[key]["examples"]]})
            for key, (words, show) in LISTS.items() if findings.get(key)]


def one_line(text: str) -> str:
    """A reason as one line: a decoder's message may hold line breaks."""
    return " ".join(str(text).split())

"""The report's pretraining section: every pretraining run of every pretrained side (the source, the control),
how transfer seeds pair with them, and the source's published anchors.

    >>> pretraining_section(exp, config, facts, rows, fig_dir, made)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from audio2image.config import PRETRAINED_SIDES
from audio2image.datasets.registry import DATASETS
from audio2image.report import figures, stats
from audio2image.report.read import pretrain_dirs, read_jsonl
from audio2image.report.text import finite, num, says_something, table, truthy
from audio2image.training.taskkinds import TASK_KINDS
from audio2image.util import read_json_or_none

SIDE_WORDS = {"source": "source", "control": "control (the positive control)"}


def side_words(fact: dict) -> str:
    """'mtat (audio tagging)': a side's dataset with its own modality and task."""
    return f"{fact['dataset']} ({fact['modality']} {fact['task']})"


def pretraining_section(exp: Path, config: dict, facts: dict, rows: list[dict], fig_dir: Path, made: dict) -> str:
    runs = {side: pretrain_dirs(exp, side) for side in PRETRAINED_SIDES if side in facts}
    parts = ["## Pretraining"]
    if not any(runs.values()):
        return "\n\n".join(parts + ["No pretraining result (pretrain/<side>-seed<S>/result.json) yet."])
    results = {side: [(d, read_json_or_none(d / "result.json")) for d in dirs] for side, dirs in runs.items()}
    parts.append(_runs_table(results, facts))
    parts.append(pairing_text(rows))
    for side, found in results.items():
        done = [(d, r) for d, r in found if r is not None]
        if not done:
            continue
        first_dir, first = done[0]
        anchors = getattr(DATASETS.get(facts[side]["dataset"]), "anchors", None)
        parts.append(_run_text(first, facts[side], config, anchors, side, len(done)))
        if anchors is not None:
            parts.append(_anchor_table(done, config, anchors))
        metrics = read_jsonl(first_dir / "metrics.jsonl")
        if metrics:
            name = f"pretrain_curves_{side}"
            made[name] = figures.pretrain_curves(metrics, fig_dir / f"{name}.png", first.get("best_epoch"))
            parts.append(f"![Pretraining on the {side} ({first_dir.name}): loss and validation metrics per "
                         f"epoch](figures/{name}.png)")
    return "\n\n".join(parts)


def _runs_table(results: dict, facts: dict) -> str:
    """One row per pretraining run: side, dataset, seed, status, epochs, best epoch, validation and test metrics."""
    body = []
    for side, found in results.items():
        keys = _metric_names(facts[side]["task"], facts[side].get("labels"))
        for run_dir, result in found:
            result = result or {}
            val, test = result.get("val") or {}, result.get("test") or {}
            selection = result.get("selection_metric", "")
            body.append([SIDE_WORDS[side], facts[side]["dataset"], run_dir.name.rpartition("-seed")[2],
                         result.get("status", "not finished"), str(result.get("epochs_run", "-")),
                         str(result.get("best_epoch", "-")),
                         f"{stats.metric_name(selection)} {num(val.get(selection.removeprefix('val_')))}"
                         if selection else "-",
                         ", ".join(f"{stats.metric_name('test_' + k)} {num(test.get(k))}" for k in keys) or "-"])
    return table(["side", "dataset", "seed", "status", "epochs", "best epoch", "validation (best epoch)", "test"],
                 body)


def pairing_text(rows: list[dict]) -> str:
    """How transfer seeds used the pretraining runs, read from results.csv's pretrain_seed column."""
    pairs = sorted({(r["seed"], r["pretrain_seed"]) for r in rows
                    if r.get("pretrain_seed") is not None and r.get("seed") is not None})
    if not pairs:
        return "No transfer run has loaded this experiment's pretraining yet."
    used = sorted({p for _, p in pairs})
    words = ", ".join(f"{s} -> {p}" for s, p in pairs)
    text = (f"Transfer seed number i loads pretraining run i mod n (n = {len(used)} pretraining "
            f"run{'s' if len(used) != 1 else ''} per side here; transfer seed -> pretraining seed: {words}). Gains "
            "are paired by transfer seed, so each paired difference carries its own pretraining run: the intervals "
            "over seeds include the spread between pretraining runs.")
    if len(used) == 1:
        return text.replace("include the spread between pretraining runs.", "hold one pretraining run: its luck "
                            "is shared by every seed and invisible in the intervals (set pretrain_seeds to several).")
    if len(pairs) > len(used):
        text += (" Seeds that share a pretraining run are not independent in it, so with fewer pretraining runs "
                 "than seeds the intervals understate that part of the spread.")
    return text


def _run_text(result: dict, fact: dict, config: dict, anchors, side: str, runs: int) -> str:
    if result.get("status") != "completed":
        return (f"Pretraining on the {side} did not complete (status {result.get('status')}): "
                f"{result.get('message', '')} It ran {result.get('epochs_run')} epochs.")
    task = result.get("task") or fact["task"]
    keys = _metric_names(task, fact.get("labels"))
    test = result.get("test") or {}
    text = (f"Pretraining on {side_words(fact)} ({SIDE_WORDS[side]}, {runs} run{'s' if runs != 1 else ''}; "
            f"the first shown): on the test split " + ", ".join(f"{stats.metric_name('test_' + k)} "
                                                              f"{num(test.get(k))}" for k in keys) + ".")
    if side != "source":
        return text
    if anchors is None:
        return text + f" No published results are recorded for {fact['dataset']} to compare with."
    if truthy(config.get("synthetic")) and not config.get(f"{side}_root"):  # with its folder, it was not synthesised
        return text + (" This experiment ran on synthetic data (config `synthetic: true`): its numbers check the "
                       "pipeline and are not comparable with the published ones below.")
    differing = [f"`{k}: {config.get(k)}`" for k, v in anchors.protocol.items() if config.get(k, v) != v]
    if differing:
        return text + (f" It used {', '.join(differing)}, not the protocol of the published numbers below "
                       f"({', '.join(f'{k}: {v}' for k, v in anchors.protocol.items())}), so the comparison is "
                       "approximate.")
    column, (model, _, values) = anchors.columns[0], anchors.rows[0]
    ours = _scores(result).get(column)
    if finite(ours) and finite(values[0]):
        text += f" That is {100 * (ours - values[0]):+.1f} points of {stats.metric_name(column)} from {model}."
    return text


def _metric_names(task: str, labels=None) -> tuple[str, ...]:
    """A source task's metrics of a pretraining run (result.json's val / test), the first one primary; none for a
    task not known yet; top-5 not where it says nothing (`labels`: the side's number of labels, where known)."""
    return tuple(m for m in getattr(TASK_KINDS.get(task), "metric_names", ()) if says_something(m, labels))


def _scores(result: dict) -> dict:
    return {**{f"test_{k}": v for k, v in (result.get("test") or {}).items()},
            **{f"val_{k}": v for k, v in (result.get("val") or {}).items()}}


def _anchor_table(done: list, config: dict, anchors) -> str:
    """This experiment's pretraining runs (mean over them where several) against the published numbers."""
    scores = [_scores(result) for _, result in done if result.get("status") == "completed"]
    mean = {c: float(np.mean([s[c] for s in scores if finite(s.get(c))])) if any(finite(s.get(c)) for s in scores)
            else None for c in anchors.columns}
    protocol = ", ".join(f"{k} {config.get(k, '?')}" for k in anchors.protocol) or "this config"
    label = "this experiment" + (f" (mean of {len(scores)} runs)" if len(scores) > 1 else "")
    rows = [[label, protocol, *(num(mean[c]) for c in anchors.columns)]]
    rows += [[model, data, *(num(v) if v is not None else "-" for v in values)]
             for model, data, values in anchors.rows]
    return table(["model", "data / evaluation", *(stats.metric_name(c) for c in anchors.columns)], rows)

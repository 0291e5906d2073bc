"""The experiment report, built from the run files alone: report.md, a self-contained report.html, figures/*.png.

It reads what the sweep wrote into the experiment folder E (config.yaml, results.csv, pretrain/ and transfer/
run folders) and nothing else, so it works on a finished sweep, on a partial one (missing runs are listed) and on
one with no results yet.

    >>> build_report(Path("runs/demo"))["markdown"]
    PosixPath('runs/demo/report.md')
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from pathlib import Path

import numpy as np
import yaml

from audio2image.report import figures, stats

# the target's task decides the primary metric and the validation curve; a tagging target only needs its columns
TASK_OF = {"caltech256": "classification", "mtat": "tagging"}
PRIMARY_METRIC = {"classification": "test_top1", "tagging": "test_roc_auc"}
VALIDATION_METRIC = {"classification": "val_top1", "tagging": "val_roc_auc"}
MODALITY_OF = {"mtat": "audio", "caltech256": "image"}
BASELINE = "random"

# published MTAT tagging results (Won et al. 2020, clean standard split, 16 crops per clip): test ROC-AUC, PR-AUC
ANCHORS = [("short-chunk ResNet (Won et al. 2020)", 0.9129, 0.4614),
           ("Harmonic CNN (Won et al. 2020)", 0.9127, 0.4611),
           ("musicnn (Won et al. 2020)", 0.9106, 0.4493),
           ("FCN (Won et al. 2020)", 0.9005, 0.4295)]
SEED_VAL_ROC_AUC = 0.824  # the seed experiment's best validation ROC-AUC (its own split; no test number given)
IMAGENET_HUB_FILE = "checkpoints/resnet18-f37072fd.pth"

RUN_COLUMNS = ["run_id", "fraction", "init", "seed", "freeze", "status", "best_epoch", "epochs_run", "val_top1",
               "test_top1", "test_top5", "test_mean_class_acc", "test_roc_auc", "wall_seconds"]
INT_COLUMNS = ("seed", "best_epoch", "epochs_run")
TEXT_COLUMNS = ("run_id", "stage", "dataset", "init", "freeze", "status")


def build_report(experiment_dir: Path) -> dict:
    """Write E/report.md, E/report.html and E/figures/*.png; return their paths and the number of missing runs."""
    exp = Path(experiment_dir)
    config = read_config(exp / "config.yaml")
    rows = read_results(exp / "results.csv")
    task = TASK_OF.get(config.get("target", "caltech256"), "classification")
    metric = PRIMARY_METRIC[task]
    grid = {k: config.get(k) for k in ("fractions", "inits", "seeds", "freezes")}
    cells = stats.cell_table(rows, metric, grid)
    gains = stats.gain_table(rows, metric, BASELINE)
    inits = stats.grid_of(rows, grid)["inits"]
    pretrained = [i for i in inits if i != BASELINE]
    efficiency = [e for init in pretrained for e in stats.data_efficiency(rows, init, metric, BASELINE)]
    order = {init: k for k, init in enumerate(inits)}
    missing = sorted(missing_runs(cells), key=lambda m: (m[0], m[3], order.get(m[1], len(order)), m[2]))

    fig_dir = exp / "figures"
    made = {}
    sections = [
        _title(config, rows),
        _conclusion(rows, gains, efficiency, missing),
        _configuration(config),
        _pretraining(exp, config, fig_dir, made),
        _transfer(cells, metric, fig_dir, made),
        _gains(gains, fig_dir, made),
        _efficiency(efficiency, gains, pretrained),
        _validation(exp, rows, inits, task, fig_dir, made),
        _seed_chart(rows, metric, fig_dir, made),
        _filters(exp, config, fig_dir, made),
        _runs(rows, missing, inits),
    ]
    markdown = "\n\n".join(s.strip() for s in sections) + "\n"
    md_path, html_path = exp / "report.md", exp / "report.html"
    _write(md_path, markdown)
    _write(html_path, render_html(markdown, exp, title=f"{config.get('name', exp.name)} report"))
    return {"markdown": md_path, "html": html_path, "figures": list(made.values()), "missing_cells": len(missing)}


# --- reading the run files -----------------------------------------------------------------------------------------

def read_config(path: Path) -> dict:
    """The resolved experiment config (a flat mapping), or {} when the file is absent."""
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def read_results(path: Path) -> list[dict]:
    """results.csv as typed rows: fraction float, seed/epochs int (None when empty), metrics float (nan when empty)."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = []
        for raw in csv.DictReader(handle):
            try:
                rows.append(_typed(raw))
            except (TypeError, ValueError):
                continue  # a torn or foreign line must not stop the report; the run shows up as missing
        return rows


def _typed(raw: dict) -> dict:
    row = {}
    for key, value in raw.items():
        if key is None:
            continue
        value = (value or "").strip()
        if key in TEXT_COLUMNS:
            row[key] = value
        elif key in INT_COLUMNS:
            row[key] = int(float(value)) if value else None
        else:
            row[key] = _maybe_float(value)
    row["freeze"] = row.get("freeze") or "none"
    if row.get("seed") is None or not math.isfinite(row.get("fraction", math.nan)):
        raise ValueError("a run row needs fraction and seed")
    return row


def _maybe_float(value: str):
    """Numbers as float (empty: nan); any other text (a column we do not know) stays as it is."""
    if not value:
        return math.nan
    try:
        return float(value)
    except ValueError:
        return value


def read_jsonl(path: Path) -> list[dict]:
    """One dict per line; a torn last line (a run killed mid-write) is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def transfer_curves(exp: Path, rows: list[dict], metric: str) -> list[dict]:
    """Per transfer run folder: its identity (result.json, else run.json, else results.csv) and validation curve."""
    by_id = {r.get("run_id"): r for r in rows}
    curves = []
    for run_dir in sorted((exp / "transfer").glob("*/")):
        ident = ((read_json(run_dir / "result.json") or {}).get("run") or read_json(run_dir / "run.json")
                 or by_id.get(run_dir.name))
        lines = [m for m in read_jsonl(run_dir / "metrics.jsonl") if m.get(metric) is not None]
        if not ident or not lines or ident.get("fraction") is None:
            continue
        init = ident.get("init_name", ident.get("init", "?"))  # "audio", as in results.csv, not "audio:RUN_DIR"
        curves.append({"fraction": float(ident["fraction"]), "init": str(init),
                       "freeze": str(ident.get("freeze") or "none"), "seed": ident.get("seed"),
                       "epochs": [m["epoch"] for m in lines], "values": [float(m[metric]) for m in lines]})
    return curves


def missing_runs(cells: list[dict]) -> list[tuple]:
    """(fraction, init, seed, freeze) of every grid point with no row in results.csv."""
    return [(c["fraction"], c["init"], s, c["freeze"]) for c in cells for s in c["seeds_missing"]]


def conv1_weights(exp: Path, config: dict) -> dict[str, np.ndarray]:
    """conv1 weights to show: a random torchvision ResNet-18, the pretrained checkpoint, ImageNet if on disk."""
    import torch
    import torchvision

    with torch.random.fork_rng(devices=[]):  # a fixed draw, without disturbing the caller's random state
        torch.manual_seed(0)
        filters = {"random init": torchvision.models.resnet18(weights=None).conv1.weight.detach().numpy()}
    source = config.get("source", "mtat")
    best = _state_dict(exp / "pretrain" / "best.pt")
    if best is not None and "conv1.weight" in best:
        filters[f"{MODALITY_OF.get(source, 'pretrained')} ({source}) pretrained"] = best["conv1.weight"].numpy()
    imagenet = _imagenet_path(config)
    state = _state_dict(imagenet) if imagenet else None
    if state is not None and "conv1.weight" in state:
        filters["imagenet"] = state["conv1.weight"].numpy()
    return filters


def _state_dict(path: Path):
    """A state dict from a checkpoint ({"model": ...}) or a bare one; None when absent or unreadable."""
    import torch

    if not path.is_file():
        return None
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a broken checkpoint only loses one panel of one figure
        return None
    return value.get("model", value) if isinstance(value, dict) else None


def _imagenet_path(config: dict) -> Path | None:
    """The config's imagenet_weights, else torch's hub cache; never a download."""
    import torch

    if config.get("imagenet_weights"):
        return Path(config["imagenet_weights"]).expanduser()
    cached = Path(torch.hub.get_dir()) / IMAGENET_HUB_FILE
    return cached if cached.is_file() else None


# --- sections ------------------------------------------------------------------------------------------------------

def _title(config: dict, rows: list[dict]) -> str:
    source, target = config.get("source", "mtat"), config.get("target", "caltech256")
    modality = MODALITY_OF.get(source, source)
    inits = ", ".join(config.get("inits") or sorted({r["init"] for r in rows})) or "none yet"
    fractions = ", ".join(_pct(f) for f in config.get("fractions") or [])
    seeds = len(config.get("seeds") or [])
    return (f"# {config.get('name', 'experiment')}: does {modality} pretraining help {target}?\n\n"
            f"Does a ResNet-18 pretrained on {source} ({modality} tagging) learn {target} "
            f"({MODALITY_OF.get(target, target)} classification) better than one started from random weights, and "
            f"does it need less data? Each transfer run trains on a fraction of the training split"
            f"{f' ({fractions})' if fractions else ''} from each init ({inits}), repeated over {seeds or 'several'} "
            f"seeds; every pretrained init is compared with the random init on the test set, paired by seed, with "
            f"the model chosen on validation.")


def _conclusion(rows, gains, efficiency, missing) -> str:
    if not rows:
        text = ("No transfer results yet: results.csv is missing or empty, so there is nothing to compare. "
                "The sections below show what exists so far.")
    else:
        text = stats.conclusion(gains, efficiency)
        if missing:
            text += f" The sweep is incomplete: {len(missing)} planned runs have no result yet (listed under Runs)."
    return "## Conclusion\n\n" + text


def _configuration(config: dict) -> str:
    if not config:
        return "## Configuration summary\n\nconfig.yaml is missing."
    table = _table(["key", "value"], [[f"`{k}`", _config_value(v)] for k, v in config.items()])
    return "## Configuration summary\n\n" + table


def _pretraining(exp: Path, config: dict, fig_dir: Path, made: dict) -> str:
    result = read_json(exp / "pretrain" / "result.json")
    metrics = read_jsonl(exp / "pretrain" / "metrics.jsonl")
    parts = ["## Pretraining"]
    if result is None:
        parts.append("No pretraining result (pretrain/result.json) yet.")
    else:
        parts.append(_pretrain_text(result, metrics, config))
        if config.get("source", "mtat") == "mtat":  # the published anchors are MTAT tagging numbers
            parts.append(_anchor_table(result, metrics, config))
    if metrics:
        best = (result or {}).get("best_epoch")
        made["pretrain_curves"] = figures.pretrain_curves(metrics, fig_dir / "pretrain_curves.png", best)
        parts.append("![Pretraining loss and validation metrics per epoch](figures/pretrain_curves.png)")
    return "\n\n".join(parts)


def _pretrain_text(result: dict, metrics: list[dict], config: dict) -> str:
    if result.get("status") != "completed":
        return (f"Pretraining did not complete (status {result.get('status')}): {result.get('message', '')} "
                f"It ran {result.get('epochs_run')} epochs.")
    test, val = result.get("test") or {}, result.get("val") or {}
    selected_by = stats.metric_name(result.get("selection_metric", "val_roc_auc"))
    text = (f"Pretraining ran {result.get('epochs_run')} epochs; the best epoch by {selected_by} was "
            f"{result.get('best_epoch')} (validation ROC-AUC {_num(val.get('roc_auc'))}). On the test split: "
            f"macro ROC-AUC {_num(test.get('roc_auc'))}, macro PR-AUC {_num(test.get('pr_auc'))}.")
    if _truthy(config.get("synthetic")):
        text += (" This experiment ran on synthetic data (config `synthetic: true`): its numbers check the "
                 "pipeline and are not comparable with the published ones below.")
    elif config.get("audio_split", "standard") != "standard":
        text += (f" It used the `{config.get('audio_split')}` split, not the standard clean split of the published "
                 "numbers, so the comparison is approximate.")
    elif _finite(test.get("roc_auc")):
        gap = 100 * (ANCHORS[0][1] - test["roc_auc"])
        text += f" That is {gap:+.1f} ROC-AUC points from the best published CNN (short-chunk ResNet)."
    return text


def _anchor_table(result: dict, metrics: list[dict], config: dict) -> str:
    test, val = result.get("test") or {}, result.get("val") or {}
    rows = [["this run", f"{config.get('audio_split', '?')} split, {config.get('audio_features', '?')} features",
             _num(test.get("roc_auc")), _num(test.get("pr_auc")), _num(val.get("roc_auc"))]]
    rows += [[name, "clean standard split, 16 crops", f"{roc:.4f}", f"{pr:.4f}", "-"] for name, roc, pr in ANCHORS]
    rows.append(["seed experiment", "its own split, whole clip, no log", "-", "-", f"{SEED_VAL_ROC_AUC:.3f}"])
    return _table(["model", "data / evaluation", "test ROC-AUC", "test PR-AUC", "best val ROC-AUC"], rows)


def _transfer(cells: list[dict], metric: str, fig_dir: Path, made: dict) -> str:
    label = figures.metric_label(metric)
    head = ["fraction", "init", "freeze", f"mean ± std, {label}", "95% CI", "n", "seeds not completed"]
    rows = [[_pct(c["fraction"]), c["init"], c["freeze"], _mean_std(c), _ci(c), str(c["n"]), _gaps(c)]
            for c in sorted(cells, key=lambda c: (c["fraction"], c["freeze"]))]
    parts = ["## Transfer results", f"The {stats.metric_name(metric)} of each cell, over the seeds that completed.",
             _table(head, rows) if rows else "No transfer runs planned or found."]
    if any(c["n"] for c in cells):
        made["accuracy_vs_fraction"] = figures.accuracy_vs_fraction(cells, fig_dir / "accuracy_vs_fraction.png")
        parts.append("![Test accuracy vs fraction of the training data](figures/accuracy_vs_fraction.png)")
    return "\n\n".join(parts)


def _gains(gains: list[dict], fig_dir: Path, made: dict) -> str:
    parts = ["## Gain over random init",
             "Difference init - random in points, paired by seed (seeds where both runs completed), 95% t-interval, "
             "two-sided paired t-test, Holm-adjusted across fractions per init."]
    if not gains:
        return "\n\n".join(parts + ["No pretrained init has results to compare yet."])
    rows = [[g["init"], g["freeze"], _pct(g["fraction"]), _points(g["mean"]),
             f"{_points(g['ci_low'])} to {_points(g['ci_high'])}", _p(g["p"]), _p(g["p_holm"]),
             _significant(g), str(g["n"])] for g in gains]
    parts.append(_table(["init", "freeze", "fraction", "difference (points)", "95% CI", "p", "Holm p",
                         "significant", "n pairs"], rows))
    if any(g["n"] for g in gains):
        made["gain_vs_fraction"] = figures.gain_vs_fraction(gains, fig_dir / "gain_vs_fraction.png")
        parts.append("![Gain over random init vs fraction](figures/gain_vs_fraction.png)")
    return "\n\n".join(parts)


def _efficiency(efficiency: list[dict], gains: list[dict], pretrained: list[str]) -> str:
    parts = ["## Data efficiency",
             "For each fraction f, the fraction f* at which the random init's mean curve (linear in log fraction "
             "between the grid's points) reaches the pretrained init's mean at f; the ratio f*/f says how many "
             "times the data random init needs. Interval: bootstrap over seeds (2000 resamples, 2.5/97.5 "
             "percentiles); with few seeds it has few distinct resamples and is too narrow, so the sentence "
             "below claims a gain only where the paired accuracy gain is also significant."]
    if not efficiency:
        return "\n\n".join(parts + ["Not enough results to compute it yet."])
    rows = [[e["init"], e["freeze"], _pct(e["fraction"]), _percent(e["value"]), _fraction_needed(e),
             _ratio(e), _ratio_ci(e), e["status"], str(e["n"])] for e in efficiency]
    parts.append(_table(["init", "freeze", "fraction f", "init mean (%)", "random needs f*", "f*/f", "95% CI",
                         "status", "n"], rows))
    for init in pretrained:
        for freeze in dict.fromkeys(e["freeze"] for e in efficiency if e["init"] == init):
            subset = [e for e in efficiency if e["init"] == init and e["freeze"] == freeze]
            significant = {g["fraction"] for g in gains if (g["init"], g["freeze"]) == (init, freeze)
                           and g["significant"]}
            parts.append(stats.efficiency_sentence(init, BASELINE, subset, significant))
    return "\n\n".join(parts)


def _validation(exp: Path, rows: list[dict], inits: list[str], task: str, fig_dir: Path, made: dict) -> str:
    metric = VALIDATION_METRIC[task]
    curves = transfer_curves(exp, rows, metric)
    order = {init: k for k, init in enumerate(inits)}  # the config's init order, so legends match other figures
    curves.sort(key=lambda c: (order.get(c["init"], len(order)), c["init"], c["freeze"], str(c["seed"])))
    if not curves:
        return "## Validation curves\n\nNo transfer metrics.jsonl files yet."
    made["validation_curves"] = figures.validation_curves(curves, fig_dir / "validation_curves.png", metric)
    return ("## Validation curves\n\nValidation metric per epoch of every transfer run (thin: one seed; thick: "
            "mean over seeds).\n\n![Validation curves](figures/validation_curves.png)")


def _seed_chart(rows: list[dict], metric: str, fig_dir: Path, made: dict) -> str:
    text = ("The seed experiment's chart, done right: one group per fraction, one bar per init with the mean over "
            "seeds, ± 1 sd, every seed as a dot and the value on the bar, on labelled axes.")
    if not any(r.get("status") == "completed" for r in rows):
        return f"## Seed-style chart\n\n{text}\n\nNo completed runs to draw yet."
    made["seed_style_bars"] = figures.seed_style_bars(rows, fig_dir / "seed_style_bars.png", metric)
    return f"## Seed-style chart\n\n{text}\n\n![Seed-style bar chart](figures/seed_style_bars.png)"


def _filters(exp: Path, config: dict, fig_dir: Path, made: dict) -> str:
    filters = conv1_weights(exp, config)
    made["conv1_filters"] = figures.conv1_filters(filters, fig_dir / "conv1_filters.png")
    note = ", ".join(filters)
    if "imagenet" not in filters:
        note += " (no ImageNet weights on disk: set imagenet_weights to show them)"
    return (f"## First-layer filters\n\nThe 64 conv1 filters of: {note}. Each filter is min-max scaled to RGB on "
            "its own.\n\n![First-layer filters](figures/conv1_filters.png)")


def _runs(rows: list[dict], missing: list[tuple], inits: list[str]) -> str:
    columns = [c for c in RUN_COLUMNS if any(c in r for r in rows)] or RUN_COLUMNS[:6]
    planned = [{"fraction": f, "init": i, "seed": s, "freeze": z, "status": "missing"} for f, i, s, z in missing]
    order = {init: k for k, init in enumerate(inits)}
    every = sorted(rows + planned, key=lambda r: (r["fraction"], r.get("freeze", "none"),
                                                   order.get(r["init"], len(order)), r["seed"]))
    parts = ["## Runs", "Every transfer run in results.csv with its status (metrics in %), plus the planned runs "
             "with no row (status missing).",
             _table(columns, [[_cell(r, c) for c in columns] for r in every]) if every else "No runs yet."]
    if missing:
        parts.append("Missing runs:\n\n" + "\n".join(f"- fraction {_pct(f)}, init {i}, seed {s}, freeze {z}"
                                                      for f, i, s, z in missing))
    failed = [r for r in rows if r.get("status") != "completed"]
    if failed:
        parts.append(f"{len(failed)} run(s) did not complete (status shown above); they count in no statistic.")
    return "\n\n".join(parts)


# --- markdown -> self-contained HTML -------------------------------------------------------------------------------

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


# --- formatting ----------------------------------------------------------------------------------------------------

def _table(head: list[str], rows: list[list[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in cells) + " |"
    return "\n".join([line(head), line(["---"] * len(head))] + [line(r) for r in rows])


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    if column == "fraction":
        return _pct(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if column.startswith(("val_", "test_")) and "loss" not in column:
            return f"{100 * value:.2f}"
        return f"{value:.1f}" if column == "wall_seconds" else f"{value:.4g}"
    return "" if value is None else str(value)


def _config_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(empty)"
    if value == "" or value is None:
        return "(empty)"
    return f"{value}"


def _mean_std(c: dict) -> str:
    if c["n"] == 0:
        return "missing"
    std = f" ± {100 * c['std']:.2f}" if _finite(c["std"]) else ""
    return f"{100 * c['mean']:.2f}{std}"


def _ci(c: dict) -> str:
    return f"{100 * c['ci_low']:.2f} to {100 * c['ci_high']:.2f}" if _finite(c["ci_low"]) else "-"


def _gaps(c: dict) -> str:
    words = [f"{s} (missing)" for s in c["seeds_missing"]] + [f"{s} (failed)" for s in c["seeds_failed"]]
    return ", ".join(words) or "-"


def _fraction_needed(e: dict) -> str:
    if e["status"] == "missing":
        return "-"
    if e["status"] == "beyond grid":
        return f"> {_pct(e['fraction'] * e['ratio_bound'])}"
    return _pct(e["fraction_needed"], digits=3)


def _ratio(e: dict) -> str:
    if e["status"] == "beyond grid":
        return f"> {e['ratio_bound']:.2f}x"
    return _times(e["ratio"])


def _ratio_ci(e: dict) -> str:
    low, high = _times(e["ci_low"]), _times(e["ci_high"])
    return low if low == high and not low[0].isdigit() else f"{low} to {high}"


def _significant(g: dict) -> str:
    return "-" if not _finite(g["p_holm"]) else ("yes" if g["significant"] else "no")


def _times(x) -> str:
    if not isinstance(x, float) or math.isnan(x):
        return "-"
    return "beyond grid" if math.isinf(x) else f"{x:.2f}x"


def _points(x) -> str:
    return f"{100 * x:+.2f}" if _finite(x) else "-"


def _percent(x) -> str:
    return f"{100 * x:.2f}" if _finite(x) else "-"


def _p(x) -> str:
    if not _finite(x):
        return "-"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def _num(x) -> str:
    return f"{x:.4f}" if _finite(x) else "-"


def _pct(fraction, digits: int = 4) -> str:
    return f"{100 * float(fraction):.{digits}g}%" if fraction is not None else ""


def _truthy(value) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _write(path: Path, text: str) -> None:
    # atomic: a reader (or a browser refresh) never sees half a report
    from audio2image.util import atomic_write_text

    atomic_write_text(path, text)

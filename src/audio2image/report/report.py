"""The experiment report, built from the run files alone: report.md, a self-contained report.html, figures/*.png.

It reads what the sweep wrote into the experiment folder E (config.yaml, datasets.json, results.csv, pretrain/
and transfer/ run folders) and nothing else, so it works on a finished sweep, on a partial one (missing runs are
listed) and on one with no results yet. Every direction reads right: the source's and the target's own modality
and task name the question, the target's task picks the metrics (top-1 for classification; macro ROC-AUC and
PR-AUC for tagging), and the source's task picks the pretraining metrics.

    >>> build_report(Path("runs/demo"))["markdown"]
    PosixPath('runs/demo/report.md')
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from audio2image.config import SIDES, Config
from audio2image.prepare.findings import EXAMPLES, listed_findings
from audio2image.report import figures, results, stats, verdict
from audio2image.report.fairness import control_inits, control_section, selection_section
from audio2image.report.html import render_html
from audio2image.report.pretraining import pretraining_section, side_words
from audio2image.report.read import (backbone_facts, experiment_facts, first_layer_weights, read_config,
                                     read_results, sweep_rows, transfer_curves)
from audio2image.report.text import config_value, pct, table
from audio2image.report.transfers import WhatTransfers
from audio2image.targets import TARGETS_DIR, is_study
from audio2image.training.initspec import describe_depth, parse_init
from audio2image.training.taskkinds import TASK_KINDS, TaskKind, kind_or_classification
from audio2image.util import atomic_write_text

BASELINE = "random"

__all__ = ["build_report", "read_results", "render_html", "transfer_curves"]


def build_report(experiment_dir: Path) -> dict:
    """Write E/report.md, E/report.html and E/figures/*.png; return their paths and the number of missing runs. A
    study of several targets: report/study.py (each target's figures in E/targets/<slug>/figures)."""
    exp = experiment_folder(experiment_dir)
    config = read_config(exp / "config.yaml")
    if is_study(config):
        from audio2image.report.study import study_report

        markdown, made, missing, contents_after = *study_report(exp, config), 1
    else:  # a study's target's folder alone: its runs are in the study's
        body = target_report(open_experiment(exp, study_of(exp)))
        markdown, made, missing, contents_after = "\n\n".join(body.sections.values()), body.made, body.missing, 2
    markdown = markdown.strip() + "\n"
    md_path, html_path = exp / "report.md", exp / "report.html"
    # atomic: a reader (or a browser refresh) never sees half a report
    atomic_write_text(md_path, markdown)
    atomic_write_text(html_path, render_html(markdown, exp, title=f"{config.get('name', exp.name)} report",
                                             contents_after=contents_after))
    return {"markdown": md_path, "html": html_path, "figures": list(made.values()), "missing_cells": missing}


def study_of(folder: Path) -> Path | None:
    """The study whose target's folder `folder` is (E for E/targets/<slug>), else None."""
    study = Path(folder).parent.parent
    return study if Path(folder).parent.name == TARGETS_DIR and is_study(read_config(study / "config.yaml")) else None


@dataclass
class TargetReport:
    """One target's report: its sections by name, in order (the whole report of a single-target experiment; a
    study's report takes them as one target's part), its figures, and what a study says across targets."""

    sections: dict[str, str]
    made: dict  # figure name -> its file
    missing: int  # planned runs with no result
    found: Experiment
    backbone: dict
    metric: str  # the primary test metric
    verdicts: list[dict]  # verdict_rows of that metric


def target_report(found: Experiment) -> TargetReport:
    """The report of an experiment (`open_experiment`). A study's target (its files in E/targets/<slug>, its runs
    in E) leaves out the configuration, the pretraining and the first layer's filters, which the study's report
    says once for every target. Figures go to its folder's figures/."""
    exp, runs, config, facts, rows = found.path, found.runs, found.config, found.facts, found.rows
    own = runs == exp  # not a target of a study
    backbone = backbone_facts(runs, config)
    kind, metrics = found.kind, found.kind.test_metrics  # the target's test metrics, the first one primary
    cells = {metric: stats.cell_table(rows, metric, found.grid) for metric in metrics}
    gains = {metric: stats.gain_table(rows, metric, BASELINE) for metric in metrics}
    inits, controls = found.inits, found.controls
    pretrained = [i for i in inits if i != BASELINE]
    efficiency = [e for init in pretrained for e in stats.data_efficiency(rows, init, metrics[0], BASELINE)]
    order = {init: k for k, init in enumerate(inits)}
    missing = sorted(missing_runs(cells[metrics[0]]), key=lambda m: (m[0], m[3], order.get(m[1], len(order)), m[2]))
    curves = sorted(transfer_curves(runs, rows, kind.validation_metric, shared=not own),
                    key=lambda c: (order.get(c["init"], len(order)), c["init"], c["freeze"], str(c["seed"])))
    transfers = WhatTransfers.of(exp, config, rows, curves, metrics[0], kind.validation_metric, backbone,
                                 facts["source"]["modality"])
    verdicts = verdict_rows(found, metrics[0], gains[metrics[0]])

    fig_dir, made = exp / "figures", {}
    figures.use_palette(inits)  # legends in the config's init order
    sections = {
        "title": _title(config, facts, backbone),
        "answer": verdict.answer_section(verdicts, metrics[0], verdict.control_words(verdicts, controls), fig_dir,
                                         made),
        "conclusion": _conclusion(rows, verdicts, controls, transfers.brief(), missing, found.partial),
        "inits": _inits(inits, facts, backbone),
        "datasets": _datasets(facts),
        **({"configuration": _configuration(config, backbone),
            "pretraining": pretraining_section(runs, config, facts, rows, fig_dir, made)} if own else {}),
        "selection": selection_section(exp, config),
        "transfer": results.transfer_section(cells, metrics, fig_dir, made),
        "gains": results.gains_section(gains, metrics, rows, fig_dir, made),
        "control": control_section(gains[metrics[0]], controls),
        "efficiency": results.efficiency_section(efficiency, pretrained),
        "transfers": transfers.section(fig_dir, made),
        "validation": results.validation_section(curves, kind.validation_metric, fig_dir, made),
        "seeds": results.seed_chart_section(rows, metrics[0], fig_dir, made),
        **({"filters": _filters(runs, config, facts["source"], backbone, fig_dir, made)} if own else {}),
        "runs": results.runs_section(rows, missing, inits, found.gone, labels=facts["target"].get("labels"),
                                     notes=found.partial),
    }
    return TargetReport({name: text.strip() for name, text in sections.items()}, made, len(missing), found,
                        backbone, metrics[0], verdicts)


@dataclasses.dataclass
class Experiment:
    """An experiment folder as the report reads it (`open_experiment`)."""

    path: Path  # its files: config.yaml, results.csv, selection.json, ... (a study's target: E/targets/<slug>)
    config: dict  # config.yaml
    facts: dict  # per side: dataset, modality, task, ... (read.py `experiment_facts`)
    rows: list[dict]  # the transfer runs' rows (read.py `sweep_rows`)
    gone: list[dict]  # rows of results.csv whose run folder holds no result any more
    partial: list[str]  # what was read beyond results.csv, in words
    kind: TaskKind  # the target's task kind: its metrics, the first test metric primary
    grid: dict  # fractions, inits, seeds, freezes as the config declares them
    inits: list[str]  # the config's inits joined with those the rows show, in the config's order
    controls: list[str]  # the positive controls among them
    runs: Path  # the folder of its run folders (pretrain/, transfer/): `path`, or a study's E

    @property
    def effect(self) -> float:
        """effect_of_interest as a fraction of the metric (5 points: 0.05)."""
        return float(self.config.get("effect_of_interest", Config.effect_of_interest)) / 100


def experiment_folder(experiment_dir) -> Path:
    """The folder as a Path, or FileNotFoundError naming it when it is not an experiment folder (no config.yaml)."""
    exp = Path(experiment_dir)
    if not (exp / "config.yaml").is_file():
        why = "no config.yaml" if exp.is_dir() else "it does not exist"
        raise FileNotFoundError(f"{exp} is not an experiment folder ({why}): give the folder a sweep wrote, "
                                "OUT_DIR/NAME (e.g. runs/demo)")
    return exp


def open_experiment(experiment_dir, runs: Path | None = None, config: dict | None = None) -> Experiment:
    """Read an experiment folder's config, datasets and transfer rows, as every part of the report sees them. A
    study's target: `experiment_dir` its folder (E/targets/<slug>), `runs` the study's folder, `config` its
    config's values where its folder has no config.yaml yet."""
    exp = Path(experiment_dir) if config is not None else experiment_folder(experiment_dir)
    runs = Path(runs or exp)
    config = read_config(exp / "config.yaml") if config is None else config
    facts = experiment_facts(exp, config, runs)
    rows, gone, partial = sweep_rows(exp, config, runs)  # results.csv, and the finished runs it does not list yet
    grid = {k: config.get(k) for k in ("fractions", "inits", "seeds", "freezes")}
    inits = stats.grid_of(rows, grid)["inits"]
    return Experiment(exp, config, facts, rows, gone, partial, kind_or_classification(facts["target"]["task"]),
                      grid, inits, control_inits(inits, facts), runs)


def verdict_rows(found: Experiment, metric: str, gains: list[dict] | None = None) -> list[dict]:
    """The rows of "## The answer" for `metric` (verdict.verdicts on its gain table, `gains` where computed
    already): per pretrained init, freeze and fraction, the paired gain over random with its test and power."""
    gains = stats.gain_table(found.rows, metric, BASELINE) if gains is None else gains
    return verdict.verdicts(gains, stats.completed_values(found.rows, metric), found.effect, found.controls)


def missing_runs(cells: list[dict]) -> list[tuple]:
    """(fraction, init, seed, freeze) of every grid point with no row in results.csv."""
    return [(c["fraction"], c["init"], s, c["freeze"]) for c in cells for s in c["seeds_missing"]]


# --- words for the datasets and inits --------------------------------------------------------------------------------

def init_words(init: str, source: dict, control: dict | None = None, backbone: str = "the backbone",
               described: dict | None = None) -> str:
    """What an init (as results name it) carries, for any source (and the control, where there is one).

    `described`: the backbone's description (read.py `backbone_facts`), whose stages count and name what a depth
    init (audio@2) carries.
    """
    try:
        spec = parse_init(init)
    except ValueError:  # a foreign name in results.csv: said as it is
        return f"the init {init}"
    if spec.depth is None and not spec.stats:
        return _full_init_words(spec, source, control, backbone)
    weights = _weights_words(spec, source, control, backbone)
    if spec.stats:
        return f"random draws with each tensor's mean and std from {weights} (norm layers reset)"
    stages = (described or {}).get("stages")
    which = (f"the first {spec.depth} of the {len(stages)} stages ({describe_depth(spec.depth, stages)})" if stages
             else f"the first {spec.depth} stages")
    return f"{which} of {weights}, the rest the seed's random init"


def _full_init_words(spec, source: dict, control: dict | None, backbone: str) -> str:
    if spec.base == "control" and control and not spec.path:
        return f"pretrained on {side_words(control)} in this experiment: the positive control (pretrain/control-*)"
    if spec.base == BASELINE:
        return "random weights (the same draw for every init of a seed)"
    if spec.base in ("imagenet", "checkpoint"):
        return _weights_words(spec, source, control, backbone)
    if spec.base == source["modality"] and not spec.path:
        return f"pretrained on {side_words(source)} in this experiment (pretrain/source-*)"
    return f"the {spec.base} pretraining in {spec.path}" if spec.path else f"a {spec.base} pretraining"


def _weights_words(spec, source: dict, control: dict | None, backbone: str) -> str:
    """The whole weights an init takes its part or its statistics from: 'the audio pretraining on mtat in this
    experiment', "resnet18's published weights (timm's; ImageNet for most)", 'the weights in PATH'."""
    if spec.base == "imagenet":
        return f"{backbone}'s published weights (timm's; ImageNet for most)"
    if spec.base == "checkpoint":
        return f"the weights in {spec.path}"
    if spec.path:
        return f"the {spec.base} pretraining in {spec.path}"
    if spec.base == "control" and control:
        return f"the control pretraining on {control['dataset']} in this experiment"
    if spec.base == source["modality"]:
        return f"the {spec.base} pretraining on {source['dataset']} in this experiment"
    return f"a {spec.base} pretraining"


# --- sections --------------------------------------------------------------------------------------------------------

def _title(config: dict, facts: dict, backbone: dict) -> str:
    return (f"# {config.get('name', 'experiment')}: does pretraining on {facts['source']['dataset']} help "
            f"{facts['target']['dataset']}?\n\n" + question(config, facts, backbone))


def question(config: dict, facts: dict, backbone: dict) -> str:
    """The question of an experiment (of one target of a study) in a paragraph."""
    source, target = facts["source"], facts["target"]
    fractions = ", ".join(pct(f) for f in config.get("fractions") or [])
    seeds = len(config.get("seeds") or [])
    return (f"Does a {backbone['backbone']} (timm) pretrained on {side_words(source)} learn {side_words(target)} "
            f"better than one started from random weights, and with less data? Trained on "
            f"{fractions or 'fractions'} of the training split, {seeds or 'several'} seeds each, compared on the "
            "test set, paired by seed.")


def _inits(inits: list[str], facts: dict, backbone: dict) -> str:
    words = [f"- `{init}`: "
             + init_words(init, facts["source"], facts.get("control"), backbone["backbone"], described=backbone)
             for init in inits]
    return "## Inits\n\n" + ("\n".join(words) if words else "None yet.")


def _conclusion(rows, verdicts: list[dict], controls: list[str], transfers: list[str], missing,
                partial: list[str] = ()) -> str:
    """One short sentence a finding: each pretrained init against random, the positive control, what transfers."""
    if not rows:
        return ("## Conclusion\n\nNo transfer results yet: no finished run of the grid, so there is nothing to "
                "compare. The sections below show what exists so far.")
    if partial:
        transfers = [*transfers, "A partial sweep: the verdicts are of the runs finished so far (see Runs)."]
    found = [verdict.finding(init, group) for (init, freeze), group in stats.groups(verdicts, ("init", "freeze"))
             .items() if init not in controls and freeze == "none"]
    found += [verdict.finding(f"{init} (freeze {freeze})", group) for (init, freeze), group
              in stats.groups(verdicts, ("init", "freeze")).items() if init not in controls and freeze != "none"]
    text = " ".join(found + [verdict.control_words(verdicts, controls, short=True)] + transfers)
    if missing:
        text += f" The sweep is incomplete: {len(missing)} planned runs have no result yet (listed under Runs)."
    return "## Conclusion\n\n" + text


def _datasets(facts: dict) -> str:
    rows = []
    for side, fact in facts.items():
        splits = fact.get("splits") or {}
        sizes = " / ".join(f"{splits.get(name, '?')}" for name in ("train", "valid", "test")) if splits else "-"
        noun = getattr(TASK_KINDS.get(fact["task"]), "label_noun", "labels")
        labels = f"{fact['labels']} {noun}" if fact.get("labels") else "-"
        rows.append([side, fact["dataset"], fact["modality"], fact["task"], labels, sizes, fact.get("root") or "-"])
    return "## Datasets\n\n" + table(["side", "dataset", "modality", "task", "labels", "train / valid / test",
                                      "folder"], rows) + _findings(facts)


def _findings(facts: dict) -> str:
    """Per side, what its store left out or kept with a warning: how many, the first few with their reasons, and
    the manifest that lists them all; "" when no store did (or the sweep recorded nothing of it)."""
    lines = []
    for side, fact in facts.items():
        found = fact.get("findings") or {}
        for _, words, listed in listed_findings(found, fact.get("modality", "")):
            more = listed["count"] - len(listed["examples"])
            shown = "; ".join(entry.replace("`", "'") for entry in listed["examples"])  # a backtick opens code
            lines.append(f"- {side} ({fact['dataset']}), {words}: {listed['count']}: {shown}"
                         + (f"; and {more} more" if more > 0 else "") + f" (all in `{found['manifest']}`)")
    if not lines:
        return ""
    return (f"\n\nWhat the stores left out or kept with a warning (the first {EXAMPLES} of each, with the reason; "
            "each store's manifest.json lists them all):\n\n" + "\n".join(lines))


def _configuration(config: dict, backbone: dict) -> str:
    """The network, the keys whose value is not Config's default (the full list would fill the first screen), and
    a link."""
    if not config:
        return "## Configuration summary\n\nconfig.yaml is missing."
    stages = backbone["stages"]
    network = (f"The network: timm's {backbone['backbone']}"
               + "".join(f", with {k}={v}" for k, v in (backbone.get("args") or {}).items())
               + f", in {len(stages)} stages ({'; '.join(stages)}), then its head ({', '.join(backbone['head'])}). ")
    link = network + "The full resolved config: [config.yaml](config.yaml)."  # the report sits next to it
    defaults = _config_defaults()
    differ = [k for k, v in config.items() if k not in defaults or not _same_value(v, defaults[k])]
    # with every side read from its folder, the synthesis keys shape nothing: listing them would only mislead
    unused = [k for k in differ if _synthesis_key(k)] if _every_side_has_its_folder(config) else []
    rows = [[f"`{k}`", config_value(config[k]), config_value(defaults[k]) if k in defaults
             else "(not a key of this version)"] for k in differ if k not in unused]
    left_out = (" (`synthetic` and the `synth_*` keys are left out: no side is synthesised, each is read from its "
                "`*_root`)") if unused else ""
    if not rows:
        return f"## Configuration summary\n\nEvery key has its default value{left_out}. {link}"
    return ("## Configuration summary\n\nThe keys whose value differs from the default; every other key has its "
            f"default value{left_out}.\n\n" + table(["key", "value", "default"], rows) + f"\n\n{link}")


def _synthesis_key(key: str) -> bool:
    return key == "synthetic" or key.startswith("synth_")


def _every_side_has_its_folder(config: dict) -> bool:
    """Whether every side of the experiment (the source, the target, the control where there is one) is read from
    its `<side>_root`, so that nothing is synthesised whatever `synthetic` says."""
    return all(config.get(f"{side}_root") for side in SIDES if side != "control" or config.get("control"))


def _config_defaults() -> dict:
    """Config's defaults as config.yaml holds them: through the same YAML round trip (tuples become lists)."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(Config)}
    return yaml.safe_load(yaml.safe_dump(defaults))


def _same_value(a, b) -> bool:
    """Equal as YAML values: 1 and 1.0 are, but a bool equals only a bool (in Python True == 1)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_value, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _filters(exp: Path, config: dict, source: dict, backbone: dict, fig_dir: Path, made: dict) -> str:
    filters = first_layer_weights(exp, config, source, backbone)
    layer = backbone["first_layer"].removesuffix(".weight")
    made["first_layer_filters"] = figures.first_layer_filters(filters, fig_dir / "first_layer_filters.png", layer)
    note = ", ".join(filters)
    if "imagenet" not in filters:
        note += f" (no published {backbone['backbone']} weights on disk: set imagenet_weights to show them)"
    count = next(iter(filters.values())).shape[0]
    shown = f"The first {figures.FILTERS_SHOWN}" if count > figures.FILTERS_SHOWN else f"The {count}"
    return (f"## First-layer filters\n\n{shown} filters of {backbone['backbone']}'s first layer ({layer}) of: "
            f"{note}. Each filter is min-max scaled to RGB on its own (grey: one input channel)."
            "\n\n![First-layer filters](figures/first_layer_filters.png)")

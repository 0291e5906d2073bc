"""The report of a study of several targets (targets.py), from its files alone.

First the question, the conclusion (report/across.py's sentences: where each pretrained init gained over random, and
whether the gain holds across the targets) and "Across targets" (each target's gain and the pooled one). Then each
target's own report, as a single-target experiment's would be, one
heading level down, its figures in its own folder (E/targets/<slug>/figures); a target of the other modality than
the control's says that it has no `control` runs. Last, what every target shares, said once: the configuration,
the pretraining runs, the first layer's filters (figures in E/figures).

    >>> markdown, made, missing = study_report(Path("runs/study"), read_config(Path("runs/study/config.yaml")))
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from audio2image.config import Config, from_dict
from audio2image.config_checks import parse_target
from audio2image.datasets.registry import DATASETS
from audio2image.report.across import across_section, across_sentences, pooled_gains
from audio2image.report.pretraining import pretraining_section, side_words
from audio2image.report.read import backbone_facts, read_config
from audio2image.report.report import (Experiment, TargetReport, _configuration, _filters, experiment_folder,
                                       open_experiment, question, target_report)
from audio2image.report.text import pct
from audio2image.targets import TARGETS_DIR, is_study, target_folder, target_name, target_views
from audio2image.training.initspec import parse_init

# the sections a study says once for every target, not in each target's part
SHARED = ("title", "configuration", "pretraining", "filters")


@dataclass
class Part:
    """One target of the study: its name (as `targets` writes it) and report (`report.found`: its files, config,
    rows)."""

    name: str
    report: TargetReport

    @property
    def folder(self) -> Path:
        return self.report.found.path

    @property
    def config(self) -> dict:
        return self.report.found.config


def open_targets(experiment_dir) -> dict[str, Experiment]:
    """Each target of an experiment as the report reads it (report.py `open_experiment`), by name: a study's
    (its files in E/targets/<slug>, its runs in E), or the one target of a single-target experiment."""
    exp = experiment_folder(experiment_dir)
    config = read_config(exp / "config.yaml")
    if not is_study(config):
        return {target_name(config.get("target") or Config.target, config.get("target_root") or ""):
                open_experiment(exp)}
    return dict(_target(exp, config, index) for index in range(len(config["targets"])))


def _target(exp: Path, config: dict, index: int) -> tuple[str, Experiment]:
    folder = target_folder(exp, config["targets"], index)
    values = read_config(folder / "config.yaml") or _view_values(config, index)  # a sweep stopped before it
    return target_name(*parse_target(config["targets"][index])), open_experiment(folder, exp, values)


def study_report(exp: Path, config: dict) -> tuple[str, dict, int]:
    """The study's report in markdown, its figures (name -> file) and how many planned runs have no result."""
    parts = [Part(name, target_report(found)) for name, found in
             (_target(exp, config, index) for index in range(len(config["targets"])))]
    made: dict = {}
    sections = [_title(config, parts), across(parts, exp / "figures", made),
                *(_target_section(part, config) for part in parts), *_shared(exp, config, parts, made)]
    for part in parts:
        made.update({f"{part.folder.name}/{name}": path for name, path in part.report.made.items()})
    return "\n\n".join(section.strip() for section in sections), made, sum(p.report.missing for p in parts)


def _view_values(config: dict, index: int) -> dict:
    """A target's config as the sweep writes it (targets.py: its view), from the study's config."""
    known = {field.name for field in dataclasses.fields(Config)}
    return target_views(from_dict({k: v for k, v in config.items() if k in known}))[index].config.to_dict()


# --- the first sections ------------------------------------------------------------------------------------------

def _title(config: dict, parts: list[Part]) -> str:
    source = parts[0].report.found.facts["source"]
    targets = "; ".join(f"{part.name} ({_kind(part)})" for part in parts)
    fractions = ", ".join(pct(f) for f in config.get("fractions") or [])
    return (f"# {config.get('name', 'study')}: does pretraining on {source['dataset']} help {len(parts)} targets?"
            f"\n\nDoes a {parts[0].report.backbone['backbone']} (timm) pretrained on {side_words(source)} learn each "
            f"of these targets better than one started from random weights, and with less data: {targets}? The "
            "pretraining runs once (per pretraining seed) and serves every target; each target's settings are "
            "chosen on its own validation split and its runs compared on its own test set, paired by seed, trained "
            f"on {fractions or 'fractions'} of its training split, {_count(len(config.get('seeds') or []), 'seed')} "
            "each.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _kind(part: Part) -> str:
    target = part.report.found.facts["target"]
    return f"{target['modality']} {target['task']}"


def across(parts: list[Part], fig_dir: Path, made: dict) -> str:
    """The conclusion (where each init gains, and whether the gain holds across targets) and '## Across targets'
    (report/across.py: each target's gain and the pooled one, per init and fraction; its figure in E/figures)."""
    targets = [{"name": part.name, "metric": part.report.metric, "modality": part.report.found.facts["target"][
        "modality"], "verdicts": part.report.verdicts} for part in parts]
    said = across_sentences(pooled_gains(targets))
    missing = sum(part.report.missing for part in parts)
    if missing:
        said.append(f"The study is incomplete: {missing} planned runs have no result yet (listed under each "
                    "target's Runs).")
    conclusion = "Conclusion: " + (" ".join(said) if said else "no transfer results yet on any target.")
    return conclusion + "\n\n" + across_section(targets, fig_dir, made)


# --- each target's part ------------------------------------------------------------------------------------------

def _target_section(part: Part, config: dict) -> str:
    """The target's report one heading level down, its links pointing into its folder."""
    report = part.report
    head = f"## {part.name}\n\n" + question(part.config, report.found.facts, report.backbone)
    note = control_note(config, part)
    body = "\n\n".join(text for name, text in report.sections.items() if name not in SHARED)
    return head + (f" {note}" if note else "") + "\n\n" + relocated(body, f"{TARGETS_DIR}/{part.folder.name}/")


def control_note(config: dict, part: Part) -> str:
    """One sentence for a target of the other modality than the control's: it has no `control` runs."""
    control = DATASETS.get(config.get("control") or "")
    target = part.report.found.facts["target"]["modality"]
    if control is None or control.modality == target:
        return ""
    inits = [parse_init(init).base for init in part.config.get("inits") or []]
    reference = "; `imagenet` is its reference" if "imagenet" in inits else ""
    return (f"This target has no positive control of its own: the control dataset ({control.name}) is "
            f"{control.modality} data, which serves the {control.modality} targets only, so the `control` init was "
            f"not run for this {target} target{reference}.")


def relocated(markdown: str, prefix: str) -> str:
    """Sections of a target's report as part of the study's: headings one level down, and the links to its files
    (figures/, config.yaml) made relative to the study's folder."""
    text = re.sub(r"^(#{1,5}) ", r"#\1 ", markdown, flags=re.MULTILINE)
    return re.sub(r"\]\((?![a-z]+:|/|#)([^)\s]+)\)", lambda m: f"]({prefix}{m.group(1)})", text)


# --- what the targets share --------------------------------------------------------------------------------------

def _shared(exp: Path, config: dict, parts: list[Part], made: dict) -> list[str]:
    """The configuration, the pretraining runs and the first layer's filters, once for every target."""
    facts = {side: fact for part in parts for side, fact in part.report.found.facts.items() if side != "target"}
    rows = [row for part in parts for row in part.report.found.rows]
    backbone = backbone_facts(exp, config)
    fig_dir = exp / "figures"
    return [_configuration(config, backbone), pretraining_section(exp, config, facts, rows, fig_dir, made),
            _filters(exp, config, facts["source"], backbone, fig_dir, made)]

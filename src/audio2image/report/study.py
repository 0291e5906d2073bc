"""The report of a study of several targets (targets.py), from its files alone.

First the question and the answer across targets: where each pretrained init gained over random, per target, and
whether the gain holds across them. Then each target's own report, as a single-target experiment's would be, one
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
from audio2image.report import verdict
from audio2image.report.pretraining import pretraining_section, side_words
from audio2image.report.read import backbone_facts, read_config
from audio2image.report.report import TargetReport, _configuration, _filters, question, target_report
from audio2image.report.stats import groups
from audio2image.report.text import pct, table
from audio2image.targets import TARGETS_DIR, target_folder, target_name, target_views
from audio2image.training.initspec import parse_init

# the sections a study says once for every target, not in each target's part
SHARED = ("title", "configuration", "pretraining", "filters")


@dataclass
class Part:
    """One target of the study: its name (as `targets` writes it), folder, config and report."""

    name: str
    folder: Path
    config: dict
    report: TargetReport


def study_report(exp: Path, config: dict) -> tuple[str, dict, int]:
    """The study's report in markdown, its figures (name -> file) and how many planned runs have no result."""
    parts = [_part(exp, config, index, entry) for index, entry in enumerate(config["targets"])]
    made: dict = {}
    sections = [_title(config, parts), across(parts, exp / "figures", made),
                *(_target_section(part, config) for part in parts), *_shared(exp, config, parts, made)]
    for part in parts:
        made.update({f"{part.folder.name}/{name}": path for name, path in part.report.made.items()})
    return "\n\n".join(section.strip() for section in sections), made, sum(p.report.missing for p in parts)


def _part(exp: Path, config: dict, index: int, entry: str) -> Part:
    folder = target_folder(exp, config["targets"], index)
    values = read_config(folder / "config.yaml") or _view_values(config, index)  # a sweep stopped before it
    return Part(target_name(*parse_target(entry)), folder, values, target_report(folder, values, exp))


def _view_values(config: dict, index: int) -> dict:
    """A target's config as the sweep writes it (targets.py: its view), from the study's config."""
    known = {field.name for field in dataclasses.fields(Config)}
    return target_views(from_dict({k: v for k, v in config.items() if k in known}))[index].config.to_dict()


# --- the first sections ------------------------------------------------------------------------------------------

def _title(config: dict, parts: list[Part]) -> str:
    source = parts[0].report.facts["source"]
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
    target = part.report.facts["target"]
    return f"{target['modality']} {target['task']}"


def across(parts: list[Part], fig_dir: Path, made: dict) -> str:
    """'## Across targets': where each pretrained init gained, per target, and a table of the verdicts."""
    inits = list(dict.fromkeys(v["init"] for part in parts for v in _compared(part)))
    if not inits:
        return "## Across targets\n\nNo pretrained init has paired results against random on any target yet."
    controls = {init for part in parts for init in part.report.controls}
    rows = [[f"`{init}`" + (" (positive control)" if init in controls else ""),
             *(_cell([v for v in _compared(part) if v["init"] == init]) for part in parts)] for init in inits]
    intro = ("Each pretrained init against random on each target's own primary metric (freeze none; a target's "
             "section has every fraction's numbers): the verdicts of its paired tests, Holm-corrected across "
             "fractions; not run: the init is not in that target's grid.")
    return "\n\n".join(["## Across targets", " ".join(where_gains(parts, inits)), intro,
                        table(["init", *(part.name for part in parts)], rows)])


def _compared(part: Part) -> list[dict]:
    return [v for v in part.report.verdicts if v["freeze"] == "none"]


def _cell(found: list[dict]) -> str:
    """'**gain** at 50%, 100%; no difference at 5%', or 'not run' for an init the target has not."""
    if not found:
        return "not run"
    said = {verdict_name[0]: ", ".join(pct(v["fraction"]) for v in group)
            for verdict_name, group in groups(found, ("verdict",)).items()}
    order = (verdict.GAIN, verdict.LOSS, verdict.SAME, verdict.UNTESTED)
    return "; ".join(f"**{name}** at {said[name]}" if name != verdict.UNTESTED else f"{name} at {said[name]}"
                     for name in order if name in said)


def where_gains(parts: list[Part], inits: list[str]) -> list[str]:
    """Per pretrained init that is no target's control: on which targets it gained over random, and where not."""
    sentences = []
    for init in inits:
        if any(init in part.report.controls for part in parts):
            continue
        found = {part.name: {v["verdict"] for v in _compared(part) if v["init"] == init} for part in parts}
        kinds = {"gained over random on": verdict.GAIN, "lost to random on": verdict.LOSS,
                 "showed no detectable difference on": verdict.SAME, "was not tested yet on": verdict.UNTESTED}
        placed: list[str] = []
        clauses = []
        for words, kind in kinds.items():  # a target is said once, by the first of these that it shows
            names = [name for name, verdicts in found.items() if kind in verdicts and name not in placed]
            placed += names
            clauses += [f"{words} {', '.join(names)}"] if names else []
        tested = sum(1 for verdicts in found.values() if verdicts - {verdict.UNTESTED})
        gained = sum(1 for verdicts in found.values() if verdict.GAIN in verdicts)
        sentences.append(f"`{init}` " + "; ".join(clauses or ["has no paired results yet"])
                         + (f" (a gain on {gained} of the {tested} targets tested)." if tested else "."))
    return sentences


# --- each target's part ------------------------------------------------------------------------------------------

def _target_section(part: Part, config: dict) -> str:
    """The target's report one heading level down, its links pointing into its folder."""
    report = part.report
    head = f"## {part.name}\n\n" + question(part.config, report.facts, report.backbone)
    note = control_note(config, part)
    body = "\n\n".join(text for name, text in report.sections.items() if name not in SHARED)
    return head + (f" {note}" if note else "") + "\n\n" + relocated(body, f"{TARGETS_DIR}/{part.folder.name}/")


def control_note(config: dict, part: Part) -> str:
    """One sentence for a target of the other modality than the control's: it has no `control` runs."""
    control = DATASETS.get(config.get("control") or "")
    target = part.report.facts["target"]["modality"]
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
    facts = {side: fact for part in parts for side, fact in part.report.facts.items() if side != "target"}
    rows = [row for part in parts for row in part.report.rows]
    backbone = backbone_facts(exp, config)
    fig_dir = exp / "figures"
    return [_configuration(config, backbone), pretraining_section(exp, config, facts, rows, fig_dir, made),
            _filters(exp, config, facts["source"], backbone, fig_dir, made)]

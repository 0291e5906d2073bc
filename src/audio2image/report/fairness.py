"""The report's fair-fight parts: the settings chosen per init on validation, and the positive control's verdict.

A "no difference" is informative only if the same experiment detects a gain where one exists: a positive control
(an init pretrained on data like the target's: the `control` init, or ImageNet weights for an image target)
answers that. Every report says whether its control gained detectably, or that it has none.

    >>> selection_section(exp, config)
    >>> control_verdict(gains, control_inits(inits, facts))
"""
from __future__ import annotations

import math
from pathlib import Path

from audio2image.config import SELECTION_FILE
from audio2image.report import stats
from audio2image.report.text import finite, pct, percent, points, table
from audio2image.training.initspec import parse_init
from audio2image.util import read_json_or_none


def selection_section(exp: Path, config: dict) -> str:
    parts = ["## Settings chosen on validation"]
    data = read_json_or_none(Path(exp) / SELECTION_FILE)
    if data is None:
        return "\n\n".join(parts + [f"No {SELECTION_FILE} yet: the sweep writes it once the tuning runs finish."])
    settings = [tuple(s) for s in data.get("settings", [])]
    if len(settings) <= 1:
        lr, wd = settings[0] if settings else (config.get("transfer_lr"), config.get("transfer_weight_decay"))
        return "\n\n".join(parts + [f"One setting for every init (learning rate {lr}, weight decay {wd}): nothing "
                                    "was chosen. Give several values in transfer_lrs (and transfer_weight_decays) "
                                    "to compare each init at its own best setting (Kornblith et al. 2019)."])
    cells = data.get("cells", [])
    metric = next((c["metric"] for c in cells if c.get("metric")), "")
    tune = ", ".join(map(str, data.get("tune_seeds", [])))
    parts.append(f"Each init gets its own learning rate and weight decay at each fraction (Kornblith et al. 2019): "
                 f"every setting of transfer_lrs x transfer_weight_decays is trained on the tuning seeds ({tune}), "
                 f"the one with the best mean {stats.metric_name(metric)} (each run's best epoch) is chosen, and "
                 "that setting's runs over every seed are the results in the sections below. Selection reads "
                 "validation metrics only; the other settings' test metrics are never read. Table: mean "
                 f"{stats.metric_name(metric)} (x 100) over the tuning seeds per setting; **bold**: chosen.")
    heads = [_setting_words(s) for s in settings]
    rows = [[c["init"], c["freeze"], pct(c["fraction"]), *_candidate_cells(c, settings), ", ".join(c["edges"]) or "-"]
            for c in cells]
    parts.append(table(["init", "freeze", "fraction", *heads, "at the grid's edge"], rows))
    pairs = [key for key, position in (("transfer_lrs", 0), ("transfer_weight_decays", 1))
             if len({s[position] for s in settings}) == 2]
    if pairs:
        parts.append(f"With two values in {' and '.join(pairs)}, every choice is an end of the list, so no choice "
                     "is flagged; a third value beyond the chosen one would show whether the best lies past it.")
    edged = [c for c in cells if c["edges"]]
    if edged:
        parts.append("Warning: " + "; ".join(f"{c['init']} at {pct(c['fraction'])} chose the "
                                             f"{' and '.join(c['edges'])}" for c in edged)
                     + ". The best setting may lie beyond the grid; extend transfer_lrs (or transfer_weight_decays) "
                     "past that end.")
    unchosen = [c for c in cells if not c.get("chosen")]
    if unchosen:
        parts.append("No setting finished for: " + "; ".join(f"{c['init']} at {pct(c['fraction'])}"
                                                             for c in unchosen) + " (those cells have no results).")
    return "\n\n".join(parts)


def _setting_words(setting: tuple) -> str:
    return f"lr {setting[0]:g}, wd {setting[1]:g}"


def _candidate_cells(cell: dict, settings: list[tuple]) -> list[str]:
    found = {(c["lr"], c["weight_decay"]): c for c in cell["candidates"]}
    chosen = tuple(cell["chosen"]) if cell.get("chosen") else None
    out = []
    for setting in settings:
        c = found.get(setting)
        if c is None or not c["values"]:
            out.append("-")
            continue
        text = "diverged" if c["mean"] == -math.inf else percent(c["mean"])
        out.append(f"**{text}**" if setting == chosen else text)
    return out


# --- the positive control ----------------------------------------------------------------------------------------

def control_inits(inits: list[str], facts: dict) -> list[str]:
    """The inits known to help the target: this experiment's control pretraining, and ImageNet for an image
    target (only whole inits: a depth or statistics variant answers another question)."""
    found = []
    for init in inits:
        try:
            spec = parse_init(init)
        except ValueError:  # an init this version does not know (an older results.csv): no control
            continue
        if spec.depth or spec.stats:
            continue
        if spec.base == "control" or (spec.base == "imagenet" and facts["target"].get("modality") == "image"):
            found.append(init)
    return found


def control_verdict(gains: list[dict], controls: list[str]) -> str:
    """Whether each positive control gained detectably (a Holm-significant positive gain at some fraction), and
    what it means for the experiment's other verdicts."""
    if not controls:
        return ("This experiment has no positive control (an init known to help: `control`, pretrained on a "
                "control dataset like the target, or imagenet for an image target), so a verdict of no difference "
                "cannot be told apart from a lack of power.")
    sentences = []
    for init in controls:
        group = [g for g in gains if g["init"] == init and g["freeze"] == "none" and g["n"] >= 1]
        if not group:
            sentences.append(f"The positive control ({init}) has no paired results yet.")
            continue
        detected = [g for g in group if _detected(g)]
        if detected:
            sentences.append(f"The positive control ({init}) showed a detectable gain over random at "
                             f"{_fractions(detected)} ({_gain_words(max(detected, key=lambda g: g['mean']))}): the "
                             "experiment can detect a gain of that size.")
            continue
        best = max(group, key=lambda g: g["mean"] if finite(g["mean"]) else -math.inf)
        sentences.append(f"The positive control ({init}) showed no detectable gain over random (largest: "
                         f"{_gain_words(best)} at {pct(best['fraction'])}): this experiment lacks the power to "
                         "detect a gain of that size, so its verdicts of no difference do not show that there is "
                         "none (more seeds, or more data per run, would).")
    return " ".join(sentences)


def _detected(gain: dict) -> bool:
    """A gain the experiment detected: positive and significant after Holm's correction across fractions."""
    return bool(gain["significant"] and gain["mean"] > 0)


def _fractions(group: list[dict]) -> str:
    return ", ".join(pct(g["fraction"]) for g in group)


def _gain_words(g: dict) -> str:
    return (f"{points(g['mean'])} points of {stats.metric_name(g['metric'])}, Holm-corrected p "
            f"{g['p_holm']:.3g}" if finite(g.get("p_holm")) else f"{points(g['mean'])} points")


def control_section(gains: list[dict], controls: list[str]) -> str:
    """The verdict, and the control's gains per fraction."""
    parts = ["## Positive control", control_verdict(gains, controls)]
    rows = [[g["init"], pct(g["fraction"]), points(g["mean"]), str(g["n"]),
             f"{g['p_holm']:.3g}" if finite(g.get("p_holm")) else "-", "yes" if _detected(g) else "no"]
            for g in gains if g["init"] in controls]
    if rows:
        parts.append(table(["control", "fraction", "gain (points)", "n", "p (Holm)", "gain detected"], rows))
    return "\n\n".join(parts)

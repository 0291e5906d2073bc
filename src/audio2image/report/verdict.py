"""The report's first screen: the answer at a glance.

Per pretrained init and fraction, its verdict against random (gain / loss / no difference / not tested), the
paired gain with its 95% interval, the probability that the init beats random over seeds, and for every "no
difference" what the experiment could have detected: the smallest gain its paired test finds with 80% power at
the observed spread, and the seeds that would find `effect_of_interest` and the positive control's gain. Then
the same as one forest figure, the positive control's verdict, and a conclusion of one short sentence a finding.

Power is taken at the strictest level of the comparison's Holm family (alpha / the number of fractions tested),
so that a gain said to be detectable would be detected after the correction too.

    >>> rows = verdicts(gains, values, effect=0.05, controls=["control"])
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from audio2image.report import figures
from audio2image.report.power import min_detectable_gain, probability_of_improvement, seeds_needed
from audio2image.report.stats import ALPHA, gain_range, groups, metric_name, tested
from audio2image.report.text import bounded, pct, table

GAIN, LOSS, SAME, UNTESTED = "gain", "loss", "no difference", "not tested"


def verdicts(gains: list[dict], values: dict, effect: float, controls: list[str]) -> list[dict]:
    """Each gain (stats.gain_table) with its verdict, probability of improvement and power.

    `values`: stats.completed_values of the same metric, {(fraction, init, freeze): {seed: value}};
    `effect`: effect_of_interest as a fraction of the metric (5 points: 0.05); `controls`: the positive controls.
    """
    control_gain = {(g["fraction"], g["freeze"]): g["mean"] for g in gains if g["init"] in controls}
    out = []
    for (init, freeze), family in groups(gains, ("init", "freeze")).items():
        alpha = ALPHA / max(1, len(tested(family)))
        for g in family:
            ours, base = values.get((g["fraction"], init, freeze), {}), values.get((g["fraction"], g["baseline"],
                                                                                    freeze), {})
            improvement = probability_of_improvement(list(ours.values()), list(base.values()))
            control = control_gain.get((g["fraction"], freeze), math.nan)
            control = control if init not in controls and control > 0 else math.nan  # others' yardstick
            out.append({**g, "verdict": _verdict(g), "improvement": improvement, "alpha": alpha,
                        "detectable": min_detectable_gain(g["std"], g["n"], alpha),
                        "seeds_for_effect": seeds_needed(effect, g["std"], alpha), "effect": effect,
                        "control": control, "seeds_for_control": seeds_needed(control, g["std"], alpha)})
    return out


def _verdict(g: dict) -> str:
    if g["untested"]:
        return UNTESTED
    if g["significant"]:
        return GAIN if g["mean"] > 0 else LOSS
    return SAME


# --- words -----------------------------------------------------------------------------------------------------------

def cell_words(v: dict) -> str:
    """A verdict table cell: '**gain** +12.0 (+3.1 to +20.9)', or for no difference also what could have been seen."""
    if v["verdict"] == UNTESTED:
        return f"not tested: {v['untested']}" if v["n"] else "no paired runs"
    words = f"**{v['verdict']}** {_points(v['mean'])} ({_interval(v)})"
    return words + ("; " + power_words(v) if v["verdict"] == SAME else "")


def power_words(v: dict) -> str:
    """'could have detected >= 14.2; 12 seeds would detect 5.0, 20 the control's 3.3' (points)."""
    parts = []
    if math.isfinite(v["detectable"]):
        parts.append(f"could have detected ≥ {100 * v['detectable']:.1f}")
    seeds = f"{_seeds(v['seeds_for_effect'])} would detect {100 * v['effect']:.1f}"
    if math.isfinite(v["control"]):
        seeds += f", {_seeds(v['seeds_for_control']).removesuffix(' seeds')} the control's {100 * v['control']:.1f}"
    return "; ".join([*parts, seeds])


def _seeds(n: float) -> str:
    if math.isnan(n):
        return "no number of seeds"
    return "more than 1000 seeds" if math.isinf(n) else f"{int(n)} seeds"


def _points(x: float) -> str:
    return f"{100 * x:+.1f}" if math.isfinite(x) else "-"


def _interval(v: dict) -> str:
    if not (math.isfinite(v["ci_low"]) and math.isfinite(v["ci_high"])):
        return "no interval"
    bounds = gain_range(v["metric"])
    shown = [bounded(x, bounds, _points) for x in (v["ci_low"], v["ci_high"])]
    return f"{shown[0]} to {shown[1]}"


def _improvement_words(v: dict) -> str:
    p = v["improvement"]
    if not math.isfinite(p["p"]):
        return "-"
    return f"{p['p']:.2f} ({p['ci_low']:.2f} to {p['ci_high']:.2f})"


# --- the section -----------------------------------------------------------------------------------------------------

def answer_section(rows: list[dict], metric: str, control_text: str, fig_dir: Path, made: dict) -> str:
    """'## The answer': the verdict table, the forest figure, the control's verdict, and the details table."""
    if not rows:
        return "## The answer\n\nNo pretrained init has paired results against random yet."
    fractions = sorted({v["fraction"] for v in rows})
    lines = []
    for (init, freeze), group in groups(rows, ("init", "freeze")).items():
        by = {v["fraction"]: v for v in group}
        label = init + (f" (freeze {freeze})" if freeze != "none" else "")
        lines.append([label, *(cell_words(by[f]) if f in by else "-" for f in fractions)])
    made["verdicts"] = forest(rows, fig_dir / "verdicts.png", metric)
    intro = (f"Each pretrained init against random on {metric_name(metric)}, in points: the gain paired by seed, "
             "its 95% interval and the verdict (paired t-test, Holm-corrected across fractions). Under \"no "
             "difference\": the smallest gain the test could have detected (80% power), and the seeds that would "
             "detect the effect of interest and the control's gain.")
    return "\n\n".join(["## The answer", intro, table(["init", *map(pct, fractions)], lines),
                        "![Gain over random init, every init and fraction](figures/verdicts.png)", control_text,
                        details_table(rows)])


def details_table(rows: list[dict]) -> str:
    """Every comparison's numbers: the test, the probability of improvement, the power."""
    head = ["init", "freeze", "fraction", "gain (points)", "95% CI", "Holm p", "P(init > random) (95% CI)",
            "n pairs", "detectable at 80% power", "seeds for the effect of interest"]
    body = [[v["init"], v["freeze"], pct(v["fraction"]), _points(v["mean"]), _interval(v),
             f"{v['p_holm']:.3g}" if math.isfinite(v["p_holm"]) else "-", _improvement_words(v), str(v["n"]),
             f"{100 * v['detectable']:.1f}" if math.isfinite(v["detectable"]) else "-", _seeds(v["seeds_for_effect"])]
            for v in rows]
    return ("The details: P(init > random) is the chance that a seed of the init beats a seed of random (ties half), "
            "with a stratified bootstrap interval (rliable); power at the Holm family's strictest level.\n\n"
            + table(head, body))


def forest(rows: list[dict], path: Path, metric: str) -> Path:
    """One row per init and fraction: the paired gain in points with its 95% interval; filled where the verdict
    is a gain or a loss, hollow for no difference, a cross where nothing was tested."""
    fig = Figure(figsize=(7.5, 0.9 + 0.32 * len(rows)))
    ax = fig.add_subplot()
    ax.axvline(0, color="black", lw=0.8)
    labels = []
    for y, v in enumerate(reversed(rows)):
        color = figures.init_color(v["init"])
        x = 100 * v["mean"] if math.isfinite(v["mean"]) else 0.0
        if math.isfinite(v["ci_low"]) and math.isfinite(v["ci_high"]):
            ax.plot([100 * v["ci_low"], 100 * v["ci_high"]], [y, y], color=color, lw=2)
        style = {GAIN: dict(marker="D", color=color, mec="black"), LOSS: dict(marker="D", color=color, mec="black"),
                 SAME: dict(marker="o", mfc="white", mec=color, mew=1.8), UNTESTED: dict(marker="x", color=color)}
        ax.plot([x], [y], ls="", ms=8, **style[v["verdict"]])
        labels.append(f"{v['init']}{'' if v['freeze'] == 'none' else ' / ' + v['freeze']}, {pct(v['fraction'])}")
    ax.set_yticks(np.arange(len(rows)), labels)
    edge = 100 * gain_range(metric)[1]
    ax.set_xlim(max(ax.get_xlim()[0], -edge), min(ax.get_xlim()[1], edge))
    ax.set_xlabel(f"gain over random in {metric_name(metric)} (points, 95% CI)")
    ax.grid(axis="x", alpha=0.3)
    marks = [Line2D([], [], marker="D", color="gray", mec="black", ls="", label="gain or loss (Holm p < 0.05)"),
             Line2D([], [], marker="o", mfc="white", mec="gray", ls="", label="no difference"),
             Line2D([], [], marker="x", color="gray", ls="", label="not tested")]
    ax.legend(handles=marks, frameon=False, fontsize=9, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3)
    return figures._save(fig, path)


# --- the conclusion: a short sentence per finding --------------------------------------------------------------

def finding(init: str, group: list[dict]) -> str:
    """'audio: no difference at 10%, 100% (-2.7, -1.3 points; detectable >= 47.4, >= 41.5; 49, 34 seeds for
    5.0).'"""
    clauses = []
    for verdict, same in groups(group, ("verdict",)).items():
        where = ", ".join(pct(v["fraction"]) for v in same)
        if verdict[0] == UNTESTED:
            clauses.append(f"not tested at {where} ({same[0]['untested'] or 'no paired runs'})")
            continue
        numbers = ", ".join(_points(v["mean"]) for v in same) + " points"
        if verdict[0] == SAME:
            numbers += "; " + "; ".join(_power_summary(same))
        clauses.append(f"{verdict[0]} at {where} ({numbers})")
    return f"{init} against random: " + "; ".join(clauses) + "."


def _power_summary(same: list[dict]) -> list[str]:
    detectable = [f"≥ {100 * v['detectable']:.1f}" for v in same if math.isfinite(v["detectable"])]
    seeds = [_seeds(v["seeds_for_effect"]).removesuffix(" seeds") for v in same]
    return ([f"detectable {', '.join(detectable)}"] if detectable else []) + \
        [f"{', '.join(seeds)} seeds for {100 * same[0]['effect']:.1f}"]


def control_words(rows: list[dict], controls: list[str], short: bool = False) -> str:
    """The positive control's verdict in a sentence or two, and what the experiment could detect (`short`: the
    conclusion's one clause)."""
    if not controls:
        return ("No positive control (an init known to help, e.g. `control` pretrained on data like the target's, "
                "or `imagenet` for an image target): a \"no difference\" here cannot be told from a lack of power.")
    out = []
    for init in controls:
        group = [v for v in rows if v["init"] == init and v["freeze"] == "none" and v["n"]]
        if not group:
            out.append(f"The positive control ({init}) has no paired results yet.")
            continue
        hits = [v for v in group if v["verdict"] == GAIN]
        if hits:
            best = max(hits, key=lambda v: v["mean"])
            out.append(f"The positive control ({init}) is detected: {_points(best['mean'])} points at "
                       f"{pct(best['fraction'])} (Holm p {best['p_holm']:.2g})" + ("." if short else
                                                                                  ", so this experiment can see a "
                                                                                  "gain of that size."))
            continue
        best = max(group, key=lambda v: v["mean"] if math.isfinite(v["mean"]) else -math.inf)
        power = [f"its test there could detect ≥ {100 * best['detectable']:.1f} points"] if math.isfinite(
            best["detectable"]) else []
        if best["mean"] > 0:
            power.append(f"{_seeds(seeds_needed(best['mean'], best['std'], best['alpha']))} would detect "
                         f"{_points(best['mean'])}")
        head = (f"The positive control ({init}) is not detected (largest gain {_points(best['mean'])} points at "
                f"{pct(best['fraction'])}" + (f"; {'; '.join(power)}" if power else "") + ")")
        out.append(head + (": this experiment lacks the power for a gain that size." if short else
                           ": this experiment lacks the power to show a gain of that size, so its \"no "
                           "difference\" verdicts do not show that there is none."))
    return " ".join(out)

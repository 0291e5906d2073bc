"""The report's "Across targets" section: each pretrained init's gain over random on every target of a study, and
pooled over them (report/pooled.py), as a table per freeze, a heatmap and short sentences for the conclusion.

    >>> made = {}
    >>> text = across_section(targets, Path("runs/study/figures"), made)  # made["across_targets"]: the heatmap
    >>> across_sentences(pooled_gains(targets))
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from audio2image.report import figures
from audio2image.report.pooled import GAIN, HETEROGENEOUS, LOSS, SAME, UNTESTED, pooled_gains
from audio2image.report.stats import ALPHA, gain_range, groups, metric_name
from audio2image.report.text import bounded, clipped_note, finite, pct, table

__all__ = ["across_heatmap", "across_section", "across_sentences", "pooled_gains"]

FIGURE = "across_targets"
MARKS = {GAIN: "▲", LOSS: "▼", SAME: "○", UNTESTED: "×"}
# Okabe and Ito's vermillion and blue through white: colour-blind safe, and the HTML report's loss and gain cells
GAIN_MAP = LinearSegmentedColormap.from_list("gain", ["#D55E00", "#ffffff", "#0072B2"])
NO_VALUE = "#dcdcdc"  # a cell with nothing tested or no runs: grey, never a colour that reads as a gain or a loss


def across_section(targets: list[dict], fig_dir: Path, made: dict, alpha: float = ALPHA) -> str:
    """'## Across targets': the method in words, a table per freeze (init x fraction: each target's gain and
    verdict, the pooled gain, I^2 and verdict), the heatmap, what was not pooled and why, the sentences."""
    pooled = pooled_gains(targets, alpha)
    if not pooled:
        return "## Across targets\n\nNo target has paired results of a pretrained init against random yet."
    level = f"{100 * (1 - alpha):g}%"
    parts = ["## Across targets", _method(targets, pooled, level)]
    freezes = groups(pooled, ("freeze",))
    for (freeze,), group in freezes.items():
        if len(freezes) > 1 or freeze != "none":
            parts.append(f"Freeze {freeze}:")
        parts.append(_table(targets, group, level))
    names = [t["name"] for t in targets]
    made[FIGURE] = across_heatmap(pooled, names, {t["name"]: t["metric"] for t in targets},
                                  Path(fig_dir) / f"{FIGURE}.png", alpha)
    parts.append(f"![Gain over random on each target and pooled](figures/{FIGURE}.png)")
    reasons = [_reason_line(e) for e in pooled if e["left_out"] or e["dominant"]]
    if reasons:
        parts.append("Not pooled, pooled without some targets, or carried by one:\n\n" + "\n".join(reasons))
    note = clipped_note(*parts)
    return "\n\n".join(parts + ([note] if note else []))


def across_sentences(pooled: list[dict]) -> list[str]:
    """A short sentence per init and fraction tested on some target (one per init for the fractions tested on
    none): where it gains, the pooled gain and its verdict, and the targets' disagreement when I^2 >= 50%.

    A pooled gain "holds across targets" only where its Holm-adjusted p is below alpha (its interval then
    excludes 0); a new target's gain is said to be uncertain where the prediction interval reaches across 0.
    """
    out = []
    for (init, freeze), family in groups(pooled, ("init", "freeze")).items():
        label = init + (f" (freeze {freeze})" if freeze != "none" else "")
        idle = []
        for entry in family:
            if all(t["verdict"] == UNTESTED for t in entry["targets"].values()):
                idle.append(pct(entry["fraction"]))
                continue
            out.append(f"{label} at {pct(entry['fraction'])}: {_targets_clause(entry)}; {_pooled_clause(entry)}.")
        if idle:
            out.append(f"{label}: not tested on any target at {', '.join(idle)}.")
    mixed = list(dict.fromkeys(t["metric"] for e in pooled if e["mixed_metrics"] for n, t in e["targets"].items()
                               if n in e["pooled"]))
    if mixed:
        out.append(f"The pooled gains mix points of {' and '.join(map(_short, mixed))}: read them as a summary of "
                   "direction.")
    note = clipped_note(*out)
    return out + ([note] if note else [])


# --- the words -------------------------------------------------------------------------------------------------------

def _method(targets: list[dict], pooled: list[dict], level: str) -> str:
    text = ("Each pretrained init's gain over random, paired by seed on each target in points of that target's "
            "primary metric, is pooled over the targets where it was tested by a random-effects meta-analysis: "
            "transfer is known to depend on the target (Kornblith et al. 2019), so each target is taken to have a "
            "gain of its own around a common mean (DerSimonian-Laird's between-target variance tau²). With a "
            "handful of targets the usual normal interval of that mean is far too narrow (IntHout et al. 2014), so "
            f"the {level} interval and the test are Hartung-Knapp-Sidik-Jonkman's (t with k - 1 degrees of "
            "freedom for k targets, scale at least 1), Holm-corrected across fractions per init. I² is the share "
            "of the spread between targets beyond chance; with 3 or more targets the prediction interval is where "
            "a new target's gain would lie (Higgins et al. 2009).")
    if any(e["mixed_metrics"] for e in pooled):
        named = "; ".join(f"{t['name']}: {metric_name(t['metric'])}" for t in targets)
        text += (f" The targets' primary metrics differ ({named}): a pooled value mixes points of different "
                 "metrics and reads as a summary of direction, not as a size in either.")
    return text


def _table(targets: list[dict], group: list[dict], level: str) -> str:
    predicted = any(e["k"] >= 3 for e in group)
    head = ["init", "fraction", *(f"{t['name']} ({_short(t['metric'])})" for t in targets), "k",
            f"pooled gain [{level} CI]", "I²", *([f"a new target [{level} PI]"] if predicted else []), "Holm p",
            "pooled verdict"]
    rows = []
    for e in group:
        bounds = _bounds(e)
        cells = [_target_cell(e["targets"].get(t["name"])) for t in targets]
        pooled = (f"{_points(e['mean'])} {_bracket(e['ci_low'], e['ci_high'], bounds)}" if e["k"] >= 2 else "-")
        new = [_bracket(e["pi_low"], e["pi_high"], bounds)] if predicted else []
        rows.append([e["init"], pct(e["fraction"]), *cells, str(e["k"]), pooled, _share(e["i2"]), *new,
                     f"{e['p_holm']:.3g}" if finite(e["p_holm"]) else "-",
                     _verdict_cell(e)])
    return table(head, rows)


def _verdict_cell(e: dict) -> str:
    """'**gain**', or '**gain** (mostly caltech256)' where one target carries the weight; 'not tested'."""
    if e["verdict"] == UNTESTED:
        return UNTESTED
    return f"**{e['verdict']}**" + (f" (mostly {e['dominant']})" if e["dominant"] else "")


def _target_cell(t: dict | None) -> str:
    """As the answer table opens its cells: '**gain** +6.1'; 'not tested +2.0' (no test, the mean still shown)."""
    if t is None:
        return "-"
    if t["verdict"] == UNTESTED:
        return UNTESTED + (f" {_points(t['mean'])}" if finite(t["mean"]) else "")
    return f"**{t['verdict']}** {_points(t['mean'])}"


def _reason_line(e: dict) -> str:
    where = f"- {_label(e)} at {pct(e['fraction'])}: "
    if e["reason"]:
        return where + e["reason"]
    left = "; ".join(f"{name} ({why})" for name, why in e["left_out"].items())
    said = [f"pooled over {e['k']} targets, without {left}"] if left else []
    if e["dominant"]:
        said.append(f"{e['dominant']} carries {_share(e['weights'][e['dominant']])} of the weight (the paired gains "
                    "of its seeds vary least), so the pooled value is mostly its own")
    return where + "; ".join(said)


def _targets_clause(e: dict) -> str:
    """'a gain on caltech256 (+6.1 points) but not on esc50 (-0.4); not tested on fma'; points named once."""
    by = {verdict: [(name, t) for name, t in e["targets"].items() if t["verdict"] == verdict]
          for verdict in (GAIN, LOSS, SAME, UNTESTED)}
    first = [True]

    def listing(items) -> str:
        shown = []
        for name, t in items:
            shown.append(f"{name} ({_points(t['mean'])}{' points' if first[0] else ''})")
            first[0] = False
        return ", ".join(shown)

    clauses = []
    if by[GAIN]:
        clauses.append(f"a gain on {listing(by[GAIN])}" + (f" but not on {listing(by[SAME])}" if by[SAME] else ""))
    elif by[SAME]:
        clauses.append(f"no difference on {listing(by[SAME])}")
    if by[LOSS]:
        clauses.append(f"a loss on {listing(by[LOSS])}")
    if by[UNTESTED]:
        clauses.append(f"not tested on {', '.join(name for name, _ in by[UNTESTED])}")
    return "; ".join(clauses)


def _pooled_clause(e: dict) -> str:
    """'pooled +2.9 [-30.1, +35.8] across 2 targets, not significant (I² 71%: the targets differ)'."""
    if e["k"] < 2:
        return e["reason"].split(" (")[0]
    text = f"pooled {_points(e['mean'])} {_bracket(e['ci_low'], e['ci_high'], _bounds(e))} across {e['k']} targets, "
    differ = e["i2"] >= HETEROGENEOUS
    if e["verdict"] == SAME:
        return text + "not significant" + (f" (I² {_share(e['i2'])}: the targets differ)" if differ else "")
    word = "holds across targets" if e["verdict"] == GAIN else "a loss across targets"
    if e["dominant"]:  # a lucky small spread over a few seeds is no evidence that the gain holds elsewhere
        word = (f"significant but carried by {e['dominant']} ({_share(e['weights'][e['dominant']])} of the weight), "
                "not shown across targets")
    text += f"{word} (Holm p {e['p_holm']:.2g})" + (f", though the targets differ (I² {_share(e['i2'])})"
                                                    if differ else "")
    if finite(e["pi_low"]) and e["pi_low"] < 0 < e["pi_high"]:
        predicted = _bracket(e["pi_low"], e["pi_high"], _bounds(e))
        text += f"; a new target's could lie either side of 0 (prediction interval {predicted})"
    return text


def _label(e: dict) -> str:
    return e["init"] + (f" (freeze {e['freeze']})" if e["freeze"] != "none" else "")


def _short(metric: str) -> str:
    """'top-1 accuracy' for test_top1: the split goes without saying in a table of test gains."""
    return metric_name(metric).removeprefix("test ").removeprefix("validation ")


def _bounds(e: dict) -> tuple[float, float]:
    """The range a gain of the pooled targets' metrics can take (the widest of them), for the dagger."""
    ranges = [gain_range(t["metric"]) for name, t in e["targets"].items() if name in e["pooled"]] or [(-1.0, 1.0)]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _points(x: float) -> str:
    return f"{100 * x:+.1f}" if finite(x) else "-"


def _bracket(low: float, high: float, bounds: tuple[float, float]) -> str:
    if not (finite(low) and finite(high)):
        return "-"
    return f"[{bounded(low, bounds, _points)}, {bounded(high, bounds, _points)}]"


def _share(x: float) -> str:
    return f"{100 * x:.0f}%" if finite(x) else "-"


# --- the figure ------------------------------------------------------------------------------------------------------

def across_heatmap(pooled: list[dict], names: list[str], metrics: dict, path: Path, alpha: float = ALPHA) -> Path:
    """Gain over random in points, a row per init (and freeze) and fraction, a column per target and a last
    "pooled" column; a diverging colour-blind-safe map centred on 0 (the same scale both ways), each cell with
    its gain and verdict mark, the pooled cells with I². Grey: not tested, not pooled or no runs."""
    values, texts = _grid(pooled, names)
    shown = np.ma.masked_invalid(values)
    limit = max(1.0, float(np.nanmax(np.abs(values)))) if np.isfinite(values).any() else 1.0
    fig = Figure(figsize=(2.6 + 1.25 * (len(names) + 1), 1.9 + 0.42 * len(pooled)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor(NO_VALUE)  # masked cells show it
    image = ax.imshow(shown, cmap=GAIN_MAP, vmin=-limit, vmax=limit, aspect="auto")
    for (i, j), text in np.ndenumerate(texts):
        dark = finite(values[i, j]) and abs(values[i, j]) > 0.6 * limit
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.axvline(len(names) - 0.5, color="black", lw=2)  # the pooled column stands apart
    starts = [i for i in range(1, len(pooled)) if _label(pooled[i]) != _label(pooled[i - 1])]
    for i in starts:
        ax.axhline(i - 0.5, color="black", lw=1)
    ax.set_xticks(range(len(names) + 1), [f"{n}\n{_short(metrics.get(n, ''))}" for n in names] + ["pooled"])
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(pooled)), [f"{_label(e)}, {pct(e['fraction'])}" for e in pooled])
    ax.tick_params(length=0)
    fig.colorbar(image, ax=ax, shrink=0.9, label="gain over random (points)")
    ax.set_xlabel(f"▲ gain, ▼ loss (Holm p < {alpha:g}), ○ no difference, × not tested; grey: not tested, not "
                  "pooled or no runs", fontsize=8)
    fig.suptitle("Gain over random init on each target, and pooled (random effects, HKSJ)")
    return figures._save(fig, path, tight=False)


def _grid(pooled: list[dict], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """[rows, targets + 1] gains in points (nan: a grey cell) and each cell's words."""
    values = np.full((len(pooled), len(names) + 1), math.nan)
    texts = np.full(values.shape, "", dtype=object)
    for i, e in enumerate(pooled):
        for j, name in enumerate(names):
            t = e["targets"].get(name)
            if t is None:
                texts[i, j] = "no runs"
                continue
            if t["verdict"] != UNTESTED:
                values[i, j] = 100 * t["mean"]
            texts[i, j] = f"{_points(t['mean'])} {MARKS[t['verdict']]}" if finite(t["mean"]) else MARKS[UNTESTED]
        if e["k"] >= 2:
            values[i, -1] = 100 * e["mean"]
            texts[i, -1] = f"{_points(e['mean'])} {MARKS[e['verdict']]}\nI² {_share(e['i2'])}"
        else:
            texts[i, -1] = f"{MARKS[UNTESTED]} {e['k'] or 'no'} target{'s' if e['k'] != 1 else ''}"
    return values, texts

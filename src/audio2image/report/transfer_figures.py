"""The figures of the report's "What transfers" section: gain by transfer depth, CKA per stage, convergence speed.

Same conventions as figures.py (object API on Agg, fixed colour per init, values in [0, 1] drawn as points).

    >>> cka_by_stage(summaries, Path("figures/cka_by_stage.png"))
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from audio2image.report.figures import _fraction_axis, _legend, _save, _series_points, _yerr, init_color
from audio2image.report.stats import gain_range, metric_name



def gain_by_depth(points: list[dict], path: Path, metric: str, stages: list[str]) -> Path:
    """Gain over random (points, 95% CI) against the number of pretrained stages carried, a line per fraction.

    `points`: {"fraction", "depth" (0 = random ... N = the full init), "mean", "ci_low", "ci_high", "n"};
    `stages`: the backbone's N stages in words, the ticks' labels.
    """
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.add_subplot()
    ax.axhline(0, color="black", lw=0.8)
    fractions = sorted({p["fraction"] for p in points})
    for i, fraction in enumerate(fractions):
        line = sorted((p for p in points if p["fraction"] == fraction), key=lambda p: p["depth"])
        x = np.array([p["depth"] for p in line]) + (i - (len(fractions) - 1) / 2) * 0.06
        mean, low, high = (np.array([100 * p[k] for p in line]) for k in ("mean", "ci_low", "ci_high"))
        edge = 100 * gain_range(metric)[1]  # as the tables show a gain's interval: within +-100 points
        low, high = np.clip(low, -edge, edge), np.clip(high, -edge, edge)
        ax.errorbar(x, mean, yerr=_yerr(mean, low, high), marker="o", capsize=4, lw=1.5,
                    label=f"{100 * fraction:g}% of the training split")
    ax.set_xticks(range(len(stages) + 1), ["0\n(random)", *_stage_ticks(stages)])
    ax.set_xlabel("pretrained stages carried (the rest: the seed's random init)" if len(stages) <= 6 else
                  f"pretrained stages carried, of {len(stages)} (the rest: the seed's random init)\n"
                  f"1: {stages[0]}; {len(stages)}: {stages[-1]}")
    ax.set_ylabel(f"difference in {metric_name(metric)}\n(points, init - random)")
    ax.set_title("Gain over random init by transfer depth, paired by seed (95% CI)")
    ax.grid(alpha=0.3)
    _legend(ax, [])
    return _save(fig, path)


def _stage_ticks(stages: list[str]) -> list[str]:
    """'K\n+words' under each depth; a long list of stages (a ViT's blocks) only by number (the axis label names
    the first and the last)."""
    if len(stages) <= 6:
        return [f"{k}\n{'+' if k > 1 else ''}{word.split(' + ')[0]}" for k, word in enumerate(stages, 1)]
    return [str(k) for k in range(1, len(stages) + 1)]


KIND_TITLES = {"init vs random": "each init's network against random's (same seed)",
               "before vs after": "each network before against after fine-tuning",
               "random vs random": "two random inits' networks (the seed-to-seed baseline)"}


def cka_by_stage(summaries: list[dict], path: Path, outputs: list[str]) -> Path:
    """Mean CKA per output, one panel per kind of comparison, a line per init; bars: the range over seeds. The
    seed-to-seed baseline is drawn in every panel (grey band), so each line reads against it.

    `summaries`: {"kind", "init", "stage", "mean", "low", "high", "n"} at one fraction; `outputs`: the compared
    outputs in the network's order.
    """
    kinds = [k for k in KIND_TITLES if any(s["kind"] == k for s in summaries)]
    fig = Figure(figsize=(7.5, 0.8 + 2.3 * len(kinds)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(kinds), 1, sharex=True, sharey=True, squeeze=False)).ravel()
    x = np.arange(len(outputs))
    band = _curve(summaries, "random vs random", None, outputs)
    for ax, kind in zip(axes, kinds):
        if band is not None:
            ax.fill_between(x, band[1], band[2], color="gray", alpha=0.2, lw=0, label="random vs random (range)")
        inits = list(dict.fromkeys(s["init"] for s in summaries if s["kind"] == kind))
        for i, init in enumerate(inits):
            mean, low, high = _curve(summaries, kind, init, outputs)
            shift = (i - (len(inits) - 1) / 2) * 0.06
            ax.errorbar(x + shift, mean, yerr=_yerr(mean, low, high), marker="o", ms=4, capsize=2,
                        color=init_color(init), lw=1.5, label=init)
        ax.set_title(KIND_TITLES[kind], fontsize=10, loc="left")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8, loc="lower left", ncols=min(4, len(inits) + 1))
    axes[-1].set_xticks(x, outputs, rotation=45 if len(outputs) > 7 else 0,
                        ha="right" if len(outputs) > 7 else "center")
    axes[-1].set_xlabel("network output (flattened; pooled: what the head sees)")
    fig.supylabel("linear CKA (unbiased, minibatch)", fontsize=10)
    return _save(fig, path, tight=False)


def _curve(summaries: list[dict], kind: str, init: str | None, outputs: list[str]):
    """(mean, low, high) over `outputs` of one kind's line (init None: the kind's only one); None if absent."""
    by = {s["stage"]: s for s in summaries if s["kind"] == kind and (init is None or s["init"] == init)}
    if not by:
        return None
    return tuple(np.array([by[o][k] if o in by else np.nan for o in outputs]) for k in ("mean", "low", "high"))


def convergence_epochs(cells: list[dict], path: Path, share: float) -> Path:
    """Mean first epoch at the threshold vs fraction, a line per init; hollow: some runs never reached it."""
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.add_subplot()
    for p in _series_points(cells):
        epochs = np.array([c["mean"] for c in p.group])
        low, high = (np.array([c[k] for c in p.group]) for k in ("ci_low", "ci_high"))
        ax.errorbar(p.x, epochs, yerr=_yerr(epochs, low, high), fmt=p.style, marker="o", color=p.color, capsize=4,
                    lw=1.5, label=p.label)
        short = np.array([c["reached"] < c["n"] for c in p.group])
        ax.scatter(p.x[short], epochs[short], s=90, facecolor="white", edgecolor=p.color, zorder=3, lw=1.5)
    _fraction_axis(ax, [c["fraction"] for c in cells])
    ax.set_ylim(bottom=0)  # small-n intervals must not suggest epochs before the first
    ax.set_ylabel("first epoch at the threshold (mean over\nthe seeds that reached it)")
    ax.set_title(f"Convergence: epochs to {100 * share:g}% of the random init's best validation value")
    extra = [Line2D([], [], color="gray", marker="o", mfc="white", ls="", ms=9, label="some runs never reached it")]
    _legend(ax, extra)
    return _save(fig, path)

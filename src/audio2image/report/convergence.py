"""Convergence speed of transfer runs: the first epoch a validation curve reaches a threshold, paired by seed.

Pretraining may mainly speed convergence rather than raise final accuracy (He, Girshick, Dollar 2019), so the
report measures speed apart from the accuracy gains. The threshold per (fraction, freeze) is `share` of the
baseline init's mean best validation value; each other init's crossing epochs are compared with the baseline's,
paired by seed, with the same paired t-test and Holm correction across fractions as `report.stats.gain_table`.
Pure Python and numpy; a "curve" is one run as `report.read.transfer_curves` gives it.

    >>> table = convergence_table(transfer_curves(exp, rows, "val_top1"), share=0.9)
    >>> print(convergence_sentence(table["pairs"], table["share"]))
"""
from __future__ import annotations

import math

import numpy as np

from audio2image.report.sentences import comparison_clauses, paired_words
from audio2image.report.stats import (ALPHA, grid_of, groups, holm, metric_name, paired_difference, summarize,
                                      tested)
from audio2image.report.text import finite


def crossing_epoch(epochs: list[int], values: list[float], threshold: float) -> int | None:
    """The first epoch whose value is >= threshold; None when none is. Non-finite values never cross.

    >>> crossing_epoch([1, 2, 3], [0.2, 0.5, 0.7], 0.5)
    2
    """
    crossed = [int(e) for e, v in zip(epochs, values) if finite(v) and v >= threshold]
    # min, not the first in list order: a resumed run's lines are in epoch order, but nothing here relies on it
    return min(crossed) if crossed else None


def thresholds(curves: list[dict], share: float = 0.9, baseline: str = "random") -> dict[tuple[float, str], float]:
    """{(fraction, freeze): share * mean over the baseline's seeds of each run's best validation value}.

    A (fraction, freeze) without a baseline run with a finite value gets no entry.
    """
    bests: dict[tuple[float, str], list[float]] = {}
    for (fraction, init, freeze), by_seed in _indexed(curves).items():
        if init != baseline:
            continue
        for curve in by_seed.values():
            finite_values = [v for v in curve["values"] if finite(v)]
            if finite_values:
                bests.setdefault((fraction, freeze), []).append(max(finite_values))
    return {key: share * float(np.mean(values)) for key, values in bests.items()}


def convergence_table(curves: list[dict], share: float = 0.9, baseline: str = "random",
                      grid: dict | None = None) -> dict:
    """Thresholds, each run's crossing epoch, per-cell summaries and paired differences against the baseline.

    runs: every curve at a (fraction, freeze) that has a threshold; `epoch` is None when it never crossed,
    `epochs_run` its last epoch. Runs at a (fraction, freeze) without baseline runs have no threshold and are
    left out (they are not "never reached": nothing was measured).
    cells: per (fraction, init, freeze), n runs, how many reached, and summarize + median of the epochs of those
    that reached (a never-reaching run has no epoch to average, but stays counted in n).
    pairs: per non-baseline init, freeze and fraction, epoch(init) - epoch(baseline) over the seeds both have
    (negative: the init converges sooner). A run that never reached the threshold enters as `epochs_run + 1`:
    it had not crossed by its last epoch, so its true crossing epoch is at least that. The difference is then a
    bound, which keeps the test conservative in that run's direction: a censored init run makes the init look
    no slower than it is, a censored baseline run makes it look no sooner. Such pairs are counted in
    `censored`, not dropped. Holm runs across one (init, freeze)'s fractions, as in gain_table, and
    pairs come in gain_table's order: freezes, inits (first seen, or as `grid` declares), fractions ascending.
    """
    limits = thresholds(curves, share, baseline)
    index = _indexed(curves)
    runs = [{"fraction": fraction, "init": init, "freeze": freeze, "seed": seed,
             "epoch": crossing_epoch(c["epochs"], c["values"], limits[(fraction, freeze)]),
             "epochs_run": _last_epoch(c)}
            for (fraction, init, freeze), by_seed in index.items() if (fraction, freeze) in limits
            for seed, c in sorted(by_seed.items(), key=lambda item: (item[0] is None, item[0] or 0))]
    cells = [_cell(key, group) for key, group in groups(runs, ("fraction", "init", "freeze")).items()]
    return {"share": share,
            "thresholds": [{"fraction": f, "freeze": z, "threshold": t} for (f, z), t in sorted(limits.items())],
            "runs": runs, "cells": cells, "pairs": _pairs(runs, index, baseline, grid)}


def _cell(key: tuple, group: list[dict]) -> dict:
    reached = [r["epoch"] for r in group if r["epoch"] is not None]
    summary = summarize(reached)
    return {"fraction": key[0], "init": key[1], "freeze": key[2], "n": len(group), "reached": len(reached),
            **{k: summary[k] for k in ("mean", "std", "ci_low", "ci_high")},
            "median": float(np.median(reached)) if reached else math.nan}


def _pairs(runs: list[dict], index: dict, baseline: str, grid: dict | None) -> list[dict]:
    """Paired differences in crossing epoch, Holm-adjusted per (init, freeze) across fractions."""
    by_cell: dict = {}
    for r in runs:
        if r["seed"] is not None:  # a run without a seed has no partner
            by_cell.setdefault((r["fraction"], r["init"], r["freeze"]), {})[r["seed"]] = r
    order = grid_of([{"fraction": f, "init": i, "freeze": z} for f, i, z in index], grid)
    pairs = []
    for freeze in order["freezes"]:
        for init in order["inits"]:
            if init == baseline:
                continue
            family = []
            for fraction in order["fractions"]:
                if (fraction, init, freeze) not in index and (fraction, baseline, freeze) not in index:
                    continue
                mine = by_cell.get((fraction, init, freeze), {})
                theirs = by_cell.get((fraction, baseline, freeze), {})
                seeds = sorted(set(mine) & set(theirs))
                ours, base = [mine[s] for s in seeds], [theirs[s] for s in seeds]
                diff = paired_difference([_bounded(r) for r in ours], [_bounded(r) for r in base])
                family.append({"init": init, "freeze": freeze, "fraction": fraction, "baseline": baseline,
                               "seeds": seeds, **diff,
                               "reached": sum(r["epoch"] is not None for r in ours),
                               "baseline_reached": sum(r["epoch"] is not None for r in base),
                               "censored": sum(a["epoch"] is None or b["epoch"] is None
                                               for a, b in zip(ours, base))})
            for pair, adjusted in zip(family, holm([p["p"] for p in family])):
                pair["p_holm"] = adjusted
                pair["significant"] = bool(finite(adjusted) and adjusted < ALPHA)
            pairs.extend(family)
    return pairs


def convergence_sentence(pairs: list[dict], share: float, baseline: str = "random",
                         metric: str | None = None) -> str:
    """One sentence per init (and freeze): where it reaches the threshold significantly sooner, later, or
    indistinguishably from `baseline`, by how many epochs (95% CI), and how many runs never reached it.
    `metric` (e.g. "val_top1") names the validation metric; without it the sentence says "validation value".
    """
    if not tested(pairs):
        return ("No convergence comparison yet: no fraction has the seeds a paired test needs (at least three, "
                f"with some spread) with validation curves for both a pretrained init and the {baseline} init.")
    value = metric_name(metric) if metric else "validation value"
    parts = []
    for (init, freeze), group in groups(pairs, ("init", "freeze")).items():
        count = len(tested(group))
        head = (f"Convergence of the {init} init against the {baseline} init (first epoch at {100 * share:.4g}% "
                f"of the {baseline} init's mean best {value}, {paired_words(count)}"
                + (f", freeze {freeze}" if freeze != "none" else "") + "):")
        parts.append(head + " " + "; ".join(_clauses(group, init, baseline)) + ".")
    return " ".join(parts)


def _clauses(group: list[dict], init: str, baseline: str) -> list[str]:
    clauses = comparison_clauses(group, 1, "epochs", ((-1, "sooner"), (1, "later")))
    n = sum(p["n"] for p in group)
    ours, base = n - sum(p["reached"] for p in group), n - sum(p["baseline_reached"] for p in group)
    if ours or base:
        # counted as one epoch past their last, so these differences are bounds, not estimates
        clauses.append(f"{ours} of {n} paired {init} runs and {base} of {n} {baseline} runs never reached the "
                       "threshold (each counted as reaching it one epoch after its last)")
    return clauses


def _bounded(run: dict) -> int:
    """The crossing epoch, or epochs_run + 1 for a run that never crossed (a lower bound on its true one)."""
    return run["epoch"] if run["epoch"] is not None else run["epochs_run"] + 1


def _last_epoch(curve: dict) -> int:
    return int(max(curve["epochs"])) if curve["epochs"] else 0


def _indexed(curves: list[dict]) -> dict:
    """{(fraction, init, freeze): {seed: curve}}; a later curve of the same run replaces an earlier one."""
    index: dict = {}
    for c in curves:
        key = (float(c["fraction"]), str(c["init"]), str(c.get("freeze") or "none"))
        seed = int(c["seed"]) if c.get("seed") is not None else None
        index.setdefault(key, {})[seed] = c
    return index

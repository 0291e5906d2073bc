"""The report's results sections: transfer results, gains over random, data efficiency, validation curves, the
seed-style chart and the runs, each from the statistics (report/stats.py) and figures (report/figures.py).

    >>> gains_section(gains, ("test_top1",), rows, Path("figures"), made={})
"""
from __future__ import annotations

import math
from pathlib import Path

from audio2image.report import figures, sentences, stats
from audio2image.report.power import MIN_PAIRS, probability_of_improvement
from audio2image.report.text import (capitalised, clipped_note, finite, interval, p_value, pct, percent, points,
                                     says_something, table, times)

BASELINE = "random"
RUN_COLUMNS = ["run_id", "fraction", "init", "seed", "freeze", "status", "best_epoch", "epochs_run", "val_top1",
               "val_roc_auc", "test_top1", "test_top5", "test_mean_class_acc", "test_roc_auc", "test_pr_auc",
               "wall_seconds"]


def transfer_section(cells: dict, metrics, fig_dir: Path, made: dict) -> str:
    parts = ["## Transfer results"]
    for metric in metrics:
        head = ["fraction", "init", "freeze", f"mean ± std, {figures.metric_label(metric)}", "95% CI", "n",
                "seeds not completed"]
        rows = [[pct(c["fraction"]), c["init"], c["freeze"], _mean_std(c), _ci(c), str(c["n"]), _gaps(c)]
                for c in sorted(cells[metric], key=lambda c: (c["fraction"], c["freeze"]))]
        parts += [f"The {stats.metric_name(metric)} of each cell, over the seeds that completed.",
                  table(head, rows) if rows else "No transfer runs planned or found."]
    method = ("Mean ± std over the seeds that completed; the 95% CI is the Student-t interval of the mean over "
              "seeds (n = 1: no interval; with 2 seeds it has one degree of freedom and is very wide).")
    parts.insert(1, " ".join(filter(None, (method, clipped_note(*parts)))))
    if any(c["n"] for c in cells[metrics[0]]):
        made["accuracy_vs_fraction"] = figures.accuracy_vs_fraction(cells[metrics[0]],
                                                                    fig_dir / "accuracy_vs_fraction.png")
        parts.append(f"![{capitalised(stats.metric_name(metrics[0]))} vs fraction of the training data]"
                     "(figures/accuracy_vs_fraction.png)")
    return "\n\n".join(parts)


def gains_section(gains: dict, metrics, runs: list[dict], fig_dir: Path, made: dict) -> str:
    parts = ["## Gain over random init",
             "Difference init - random in points, paired by seed (seeds where both runs completed), 95% t-interval, "
             f"two-sided paired t-test (on {MIN_PAIRS} or more pairs with some spread), Holm-adjusted across "
             "fractions per init; P(init > random): the chance that a seed of the init beats a seed of random (ties "
             "half), with a stratified bootstrap interval."]
    if not any(gains.values()):
        return "\n\n".join(parts + ["No pretrained init has results to compare yet."])
    for metric in metrics:
        values = stats.completed_values(runs, metric)
        rows = [[g["init"], g["freeze"], pct(g["fraction"]), points(g["mean"]), _gain_ci(g), p_value(g["p"]),
                 p_value(g["p_holm"]), _significant(g), _improvement(values, g), str(g["n"])] for g in gains[metric]]
        parts += [f"{capitalised(stats.metric_name(metric))}:",
                  table(["init", "freeze", "fraction", "difference (points)", "95% CI", "p", "Holm p", "significant",
                         "P(init > random) (95% CI)", "n pairs"], rows)]
    parts.append("In words: " + " ".join(sentences.gain_sentence(*key, group) for key, group
                                         in stats.groups(gains[metrics[0]], ("init", "freeze", "baseline")).items()))
    parts[1] = " ".join(filter(None, (parts[1], clipped_note(*parts))))
    if any(g["n"] for g in gains[metrics[0]]):
        made["gain_vs_fraction"] = figures.gain_vs_fraction(gains[metrics[0]], fig_dir / "gain_vs_fraction.png")
        parts.append("![Gain over random init vs fraction](figures/gain_vs_fraction.png)")
    return "\n\n".join(parts)


def efficiency_section(efficiency: list[dict], pretrained: list[str]) -> str:
    """The table and one sentence per init, both in the words of each entry's verdict (stats.efficiency_verdict,
    which already weighed the paired gains: `gains` is no longer read here)."""
    parts = ["## Data efficiency",
             "For each fraction f, the fraction f* at which the random init's mean curve (linear in log fraction "
             "between the grid's points) reaches the pretrained init's mean at f; the ratio f*/f says how many "
             "times the data random init needs. Interval: bootstrap over seeds (2000 resamples, 2.5/97.5 "
             "percentiles); with few seeds it has few distinct resamples and is too narrow to carry a claim alone. "
             f"The verdict, in the table and in the sentences: {stats.VERDICT_RULE}."]
    if not efficiency:
        return "\n\n".join(parts + ["Not enough results to compute it yet."])
    rows = [[e["init"], e["freeze"], pct(e["fraction"]), percent(e["value"]), _fraction_needed(e),
             _ratio(e), _ratio_ci(e), e["verdict"], str(e["n"])] for e in efficiency]
    parts.append(table(["init", "freeze", "fraction f", "init mean (%)", "random needs f*", "f*/f", "95% CI",
                         "verdict", "n"], rows))
    for init in pretrained:
        for freeze in dict.fromkeys(e["freeze"] for e in efficiency if e["init"] == init):
            subset = [e for e in efficiency if e["init"] == init and e["freeze"] == freeze]
            parts.append(sentences.efficiency_sentence(init, BASELINE, subset))
    return "\n\n".join(parts)


def validation_section(curves: list[dict], metric: str, fig_dir: Path, made: dict) -> str:
    if not curves:
        return "## Validation curves\n\nNo transfer metrics.jsonl files yet."
    made["validation_curves"] = figures.validation_curves(curves, fig_dir / "validation_curves.png", metric)
    return ("## Validation curves\n\nValidation metric per epoch of every transfer run (thin: one seed; thick: "
            "mean over seeds).\n\n![Validation curves](figures/validation_curves.png)")


def seed_chart_section(rows: list[dict], metric: str, fig_dir: Path, made: dict) -> str:
    text = ("The seed experiment's chart, done right: one group per fraction, one bar per init with the mean over "
            "seeds, ± 1 sd, every seed as a dot and the value on the bar, on labelled axes.")
    if not any(r.get("status") == "completed" for r in rows):
        return f"## Seed-style chart\n\n{text}\n\nNo completed runs to draw yet."
    made["seed_style_bars"] = figures.seed_style_bars(rows, fig_dir / "seed_style_bars.png", metric)
    return f"## Seed-style chart\n\n{text}\n\n![Seed-style bar chart](figures/seed_style_bars.png)"


def runs_section(rows: list[dict], missing: list[tuple], inits: list[str], gone: list[dict] = (), labels=None,
          notes: list[str] = ()) -> str:
    """`labels`: the target's number of labels, where known (top-5 of 5 or fewer says nothing: left out); `notes`:
    what was read beyond results.csv (read.py `sweep_rows`)."""
    columns = [c for c in RUN_COLUMNS if any(c in r for r in rows) and says_something(c, labels)] or RUN_COLUMNS[:6]
    planned = [{"fraction": f, "init": i, "seed": s, "freeze": z, "status": "missing"} for f, i, s, z in missing]
    order = {init: k for k, init in enumerate(inits)}
    every = sorted(rows + planned, key=lambda r: (r["fraction"], r.get("freeze", "none"),
                                                   order.get(r["init"], len(order)), r["seed"]))
    parts = ["## Runs", *notes, "Every finished transfer run with its status (metrics in %; areas under curves x 100), "
             "plus the planned runs with no result (status missing).",
             table(columns, [[_cell(r, c) for c in columns] for r in every]) if every else "No runs yet."]
    if missing:
        parts.append("Missing runs:\n\n" + "\n".join(f"- fraction {pct(f)}, init {i}, seed {s}, freeze {z}"
                                                      for f, i, s, z in missing))
    if gone:
        parts.append(f"{len(gone)} row(s) of results.csv name a run whose folder holds no result any more (deleted "
                     "or damaged since): counted as missing; run the sweep again to redo them ("
                     + ", ".join(str(r["run_id"]) for r in gone) + ").")
    failed = [r for r in rows if r.get("status") != "completed"]
    if failed:
        parts.append(f"{len(failed)} run(s) did not complete (status shown above); they count in no statistic.")
    for key, words in (("threads", "CPU thread counts"), ("precision", "precisions")):
        found = sorted({str(r[key]) for r in rows if r.get(key) not in (None, "") and not _nan(r[key])})
        if len(found) > 1:
            parts.append(f"The runs used different {words} ({', '.join(found)}): results on the CPU depend on them "
                         "(summation order, rounding), so runs that differ only in them may differ slightly.")
    return "\n\n".join(parts)


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --- cells ---------------------------------------------------------------------------------------------------------

def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    if column == "fraction":
        return pct(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if column.startswith(("val_", "test_")) and "loss" not in column:
            return f"{100 * value:.2f}"
        return f"{value:.1f}" if column == "wall_seconds" else f"{value:.4g}"
    return "" if value is None else str(value)


def _mean_std(c: dict) -> str:
    if c["n"] == 0:
        return "missing"
    std = f" ± {100 * c['std']:.2f}" if finite(c["std"]) else ""
    return f"{100 * c['mean']:.2f}{std}"


def _ci(c: dict) -> str:
    """A cell's t interval in %, clipped to its metric's range (the stored numbers stay as computed)."""
    return interval(c["ci_low"], c["ci_high"], stats.metric_range(c["metric"]), percent)


def _gain_ci(g: dict) -> str:
    """A paired gain's t interval in points, clipped to the range of a difference of its metric."""
    return interval(g["ci_low"], g["ci_high"], stats.gain_range(g["metric"]), points)


def _gaps(c: dict) -> str:
    words = [f"{s} (missing)" for s in c["seeds_missing"]] + [f"{s} (failed)" for s in c["seeds_failed"]]
    return ", ".join(words) or "-"


def _fraction_needed(e: dict) -> str:
    if e["status"] == "missing":
        return "-"
    if e["status"] == "beyond grid":
        return f"> {pct(e['fraction'] * e['ratio_bound'])}"
    return pct(e["fraction_needed"], digits=3)


def _ratio(e: dict) -> str:
    if e["status"] == "beyond grid":
        return f"> {e['ratio_bound']:.2f}x"
    return times(e["ratio"])


def _ratio_ci(e: dict) -> str:
    low, high = times(e["ci_low"]), times(e["ci_high"])
    return low if low == high and not low[0].isdigit() else f"{low} to {high}"


def _significant(g: dict) -> str:
    if g.get("untested"):
        return f"not tested ({g['untested']})"
    return "-" if not finite(g["p_holm"]) else ("yes" if g["significant"] else "no")


def _improvement(values: dict, g: dict) -> str:
    """P(init > baseline) over the cell's seeds (all completed ones), with its bootstrap interval."""
    ours = values.get((g["fraction"], g["init"], g["freeze"]), {})
    theirs = values.get((g["fraction"], g["baseline"], g["freeze"]), {})
    p = probability_of_improvement(list(ours.values()), list(theirs.values()))
    return f"{p['p']:.2f} ({p['ci_low']:.2f} to {p['ci_high']:.2f})" if finite(p["p"]) else "-"

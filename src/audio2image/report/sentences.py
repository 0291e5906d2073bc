"""The report's sentences on the statistics (report/stats.py): the conclusion, and one sentence per init on its
paired gains and its data efficiency, in the words of the tables' verdicts.

    >>> print(conclusion(stats.gain_table(rows), stats.data_efficiency(rows, "audio")))
"""
from __future__ import annotations

import math

from audio2image.report.stats import GAIN, LOSS, MISSING, NO_CLEAR, gain_range, groups, metric_name, tested
from audio2image.report.text import bounded, clipped_note, pct


def conclusion(gains: list[dict], efficiency: list[dict], secondary: tuple[list[dict], ...] = ()) -> str:
    """A paragraph in plain words: where each pretrained init is better / worse / indistinguishable, and by how much.

    `secondary`: gain tables of further metrics of the same runs (a tagging target's PR-AUC), a sentence each.
    """
    if not tested(gains):
        return ("No conclusion yet: no fraction has the seeds a paired test needs (at least three, with some "
                "spread in their differences) for both a pretrained init and the random init.")
    parts = []
    for (init, freeze, baseline), group in groups(gains, ("init", "freeze", "baseline")).items():
        parts.append(gain_sentence(init, freeze, baseline, group))
        eff = [e for e in efficiency if e["init"] == init and e["freeze"] == freeze]
        parts.append(efficiency_sentence(init, baseline, eff))
    for table in secondary:
        parts += [gain_sentence(*key, group) for key, group in groups(table, ("init", "freeze", "baseline")).items()]
    n_min = min(g["n"] for g in tested(gains))
    if n_min < 3:
        parts.append(f"With only {n_min} seeds in some cells the 95% intervals are wide and the tests have little "
                     "power: \"indistinguishable\" means no difference was shown, not that there is none.")
    text = " ".join(parts)
    return " ".join(filter(None, (text, clipped_note(text))))


def gain_sentence(init, freeze, baseline, group) -> str:
    """One sentence on one init's paired gains (one metric) over the fractions of `group`."""
    count = len(tested(group))
    metric = metric_name(group[0]["metric"])
    head = (f"The {init} init against the {baseline} init ({metric}, {paired_words(count)}"
            + (f", freeze {freeze}" if freeze != "none" else "") + "):")
    clauses = comparison_clauses(group, 100, "points", ((1, "better"), (-1, "worse")),
                                 gain_range(group[0]["metric"]))
    return head + " " + "; ".join(clauses) + "."


def paired_words(tested_fractions: int) -> str:
    """How the differences were tested: paired by seed, and Holm-corrected where more than one fraction was."""
    if tested_fractions < 2:
        return "paired by seed"
    return f"paired by seed, Holm-corrected across {tested_fractions} fractions"


def comparison_clauses(group: list[dict], scale: float, unit: str, words: tuple[tuple[int, str], ...],
                       bounds: tuple[float, float] = (-math.inf, math.inf)) -> list[str]:
    """The clauses of paired differences over fractions (gains, convergence): per (sign, word) in `words`, where
    the difference is significant with that sign; then where it is indistinguishable (with the range of the
    differences) and where it is not testable. Differences are shown times `scale`, in `unit`; an interval's end
    beyond `bounds` (unscaled) is clipped and marked (text.bounded)."""
    def shown(x):
        return bounded(x, bounds, lambda v: f"{scale * v:+.1f}")

    clauses = []
    for sign, word in words:
        hits = [g for g in tested(group) if g["significant"] and sign * g["mean"] > 0]
        if hits:
            clauses.append(f"significantly {word} at " + ", ".join(
                f"{pct(g['fraction'])} ({scale * g['mean']:+.1f} {unit}, 95% CI {shown(g['ci_low'])} to "
                f"{shown(g['ci_high'])})" for g in hits))
    same = [g for g in tested(group) if not g["significant"]]
    if same:
        diffs = [scale * g["mean"] for g in same]
        clauses.append(f"indistinguishable at {_fractions_words(same)} (differences {min(diffs):+.1f} to "
                       f"{max(diffs):+.1f} {unit})")
    for reason, untested in groups([g for g in group if g["untested"]], ("untested",)).items():
        clauses.append(f"not tested at {_fractions_words(untested)} ({reason[0]})")
    return clauses


def efficiency_sentence(init, baseline, eff) -> str:
    """One sentence on one init's data efficiency, in the words of its verdicts (efficiency_verdict), the same
    words as the report's table: gain (with how much more data the baseline needs), no clear difference, loss."""
    by = {verdict: group for (verdict,), group in groups(eff, ("verdict",)).items()}
    if not eff:
        return f"Data efficiency of the {init} init against the {baseline} init: no runs of the {init} init yet."
    clauses = []
    if by.get(GAIN):
        clauses.append(f"{GAIN} at " + "; ".join(_gain_words(e, init, baseline) for e in by[GAIN]))
    clauses += [f"{verdict} at {_fractions_words(by[verdict])}" for verdict in (NO_CLEAR, LOSS) if by.get(verdict)]
    if by.get(MISSING):
        clauses.append(f"not enough runs at {_fractions_words(by[MISSING])}")
    text = f"Data efficiency of the {init} init against the {baseline} init: " + "; ".join(clauses) + "."
    if by.get(GAIN):
        return text
    hint = [e["ratio"] for e in eff if e["status"] == "gain"]
    more = (f" (point estimates up to {max(hint):.1f}x, not backed by both a significant paired gain and a "
            "bootstrap interval above 1x)" if hint else "")
    return text + (f" No clear gain: at no fraction does the {baseline} init clearly need more data to match "
                   f"the {init} init{more}.")


def _gain_words(e: dict, init: str, baseline: str) -> str:
    if e["status"] == "beyond grid":
        return (f"{pct(e['fraction'])} (the {baseline} init never reaches the {init} init's level anywhere on the "
                "grid: it would need more data than the grid has)")
    return (f"{pct(e['fraction'])} (the {baseline} init needs about {e['ratio']:.1f}x the training data, 95% CI "
            f"{e['ci_low']:.1f}x to {_times(e['ci_high'])})")


def _fractions_words(group) -> str:
    return ", ".join(pct(g["fraction"]) for g in group)


def _times(x: float) -> str:
    return "beyond the grid" if math.isinf(x) else f"{x:.1f}x"

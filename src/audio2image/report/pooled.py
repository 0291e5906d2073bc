"""Each pretrained init's paired gain over random, pooled over several targets: a random-effects meta-analysis.

Every target brings its own paired gain at one (init, freeze, fraction), a row of report/verdict.py's `verdicts`
(mean, std and n of the per-seed differences): the effect y_i is the mean gain, its variance v_i = std_i^2 / n_i
the squared standard error of a paired mean. Transfer is known to depend on the target (Kornblith et al. 2019), so
each target is taken to have a true gain of its own, spread around a mean with variance tau^2 (random effects,
tau^2 by DerSimonian and Laird 1986's moment estimate). With the 2-10 targets a study has, the normal interval
around that mean is far too narrow (IntHout et al. 2014); the interval and test here are Hartung-Knapp-Sidik-
Jonkman's: the weighted spread of the y_i about the mean rescales its variance, and a t with k-1 degrees of
freedom replaces the normal. The scale is taken as at least 1 (Knapp and Hartung 2003's correction, recommended
for few studies by Roever et al. 2015): without it, targets whose gains happen to agree give an interval narrower
than the DerSimonian-Laird one, of no width at all when they agree exactly. A new target's gain is predicted by
mean +- t(k-2) sqrt(tau^2 + SE^2) (Higgins et al. 2009), with the interval's own SE, so that it is never narrower
than the interval of the mean.

Pure numpy/scipy, like stats.py.

    >>> random_effects([0.061, -0.004], [0.0004, 0.0001])["ci_low"]
    >>> pooled_gains([{"name": "caltech256", "metric": "test_top1", "modality": "image", "verdicts": rows}, ...])
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from audio2image.errors import UserError
from audio2image.report.power import MIN_PAIRS
from audio2image.report.stats import ALPHA, holm
from audio2image.report.text import finite
from audio2image.report.verdict import GAIN, LOSS, SAME, UNTESTED
METHOD = "random effects (DerSimonian-Laird tau^2), Hartung-Knapp-Sidik-Jonkman t interval (scale at least 1)"
MODALITIES = ("image", "audio")
ONE_TARGET, NO_TARGET = "one target: nothing to pool", "no target tested: nothing to pool"
HETEROGENEOUS = 0.5  # I^2 from which the gain is said to differ between targets (Higgins et al. 2003: "substantial")
# A target with this share of the weights or more carries the pooled value: with 3-5 seeds a target's sd is itself
# uncertain (from 4 seeds it falls below a third of the true sd one time in twenty), and a lucky small sd weighs
# as if it were known, so the words then name that target rather than claim the gain holds across targets.
DOMINANT = 0.75
_ROW_KEYS = ("init", "freeze", "fraction", "mean", "std", "n", "ci_low", "ci_high", "untested", "verdict")
_NOT_POOLED = {"mean": math.nan, "se": math.nan, "se_dl": math.nan, "scale": math.nan, "tau2": math.nan,
               "i2": math.nan, "q": math.nan, "q_p": math.nan, "ci_low": math.nan, "ci_high": math.nan,
               "p": math.nan, "pi_low": math.nan, "pi_high": math.nan}


def random_effects(effects, variances, alpha: float = ALPHA) -> dict:
    """The random-effects mean of `effects` (k >= 2) with known within-study `variances`.

    Returns k, mean, se (HKSJ, scale at least 1), se_dl (DerSimonian-Laird's), scale (HKSJ's, before the floor),
    tau2, i2 (Higgins and Thompson 2002, 0-1), q (Cochran's) and q_p (its chi^2 p), ci_low / ci_high (1 - alpha,
    t with k-1 df), p (two-sided), pi_low / pi_high (a new study's 1 - alpha prediction interval, k >= 3, else nan)
    and weights (each effect's share of the random-effects weights, in their order).
    """
    y, v = np.asarray(effects, dtype=float), np.asarray(variances, dtype=float)
    k = len(y)
    if k < 2 or v.shape != y.shape or not (np.all(np.isfinite(y)) and np.all(v > 0) and np.all(np.isfinite(v))):
        raise ValueError(f"random_effects needs 2 or more finite effects with positive variances, got {k}: "
                         f"{y.tolist()} / {v.tolist()}")
    w = 1 / v
    fixed = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - fixed) ** 2))
    df = k - 1
    tau2 = max(0.0, (q - df) / float(np.sum(w) - np.sum(w ** 2) / np.sum(w)))
    w_re = 1 / (v + tau2)
    mean = float(np.sum(w_re * y) / np.sum(w_re))
    se_dl = math.sqrt(1 / np.sum(w_re))
    scale = float(np.sum(w_re * (y - mean) ** 2)) / df
    se = se_dl * math.sqrt(max(1.0, scale))
    half = float(sps.t.ppf(1 - alpha / 2, df)) * se
    out = {"k": k, "mean": mean, "se": se, "se_dl": se_dl, "scale": scale, "tau2": tau2,
           "i2": max(0.0, (q - df) / q) if q > 0 else 0.0, "q": q, "q_p": float(sps.chi2.sf(q, df)),
           "ci_low": mean - half, "ci_high": mean + half, "p": float(2 * sps.t.sf(abs(mean) / se, df)),
           "pi_low": math.nan, "pi_high": math.nan, "weights": (w_re / np.sum(w_re)).tolist()}
    if k >= 3:
        spread = float(sps.t.ppf(1 - alpha / 2, k - 2)) * math.sqrt(tau2 + se ** 2)
        out.update(pi_low=mean - spread, pi_high=mean + spread)
    return out


def pooled_gains(targets: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Per (init, freeze, fraction) in any target: each target's gain and the pooled gain over those tested.

    `targets`: [{"name", "metric", "modality": "image"|"audio", "verdicts": verdict.verdicts(...)'s rows}].
    Each entry: init, freeze, fraction; targets ({name: mean, ci_low, ci_high, verdict, n, metric, modality,
    untested, p_holm}); pooled (the names pooled, k of them) and left_out ({name: why}); metric (the pooled
    targets' common metric, or "mixed") and mixed_metrics; random_effects' numbers (nan when k < 2); p_holm
    (Holm across the fractions of one init and freeze, as stats.gain_table does per target), verdict (GAIN or
    LOSS where p_holm < alpha: then the interval excludes 0; SAME; UNTESTED when k < 2), holds_on (the targets
    whose own verdict is a gain), weights ({name: share of the weights}) and dominant (the target with DOMINANT of
    them or more, else ""), method, and reason (why nothing was pooled; "" when it was).
    """
    check_targets(targets)
    cells: dict = {}  # (init, freeze) -> fraction -> {name: row}, in first-seen order
    for target in targets:
        for row in target["verdicts"]:
            cells.setdefault((row["init"], row["freeze"]), {}).setdefault(float(row["fraction"]), {})[
                target["name"]] = {**row, "metric": target["metric"], "modality": target["modality"]}
    out = []
    for (init, freeze), fractions in cells.items():
        family = [_pooled_cell(init, freeze, fraction, fractions[fraction], targets, alpha)
                  for fraction in sorted(fractions)]
        for entry, adjusted in zip(family, holm([e["p"] for e in family])):
            entry.update(p_holm=adjusted, verdict=_verdict(entry["k"], entry["mean"], adjusted, alpha))
        out.extend(family)
    return out


def check_targets(targets: list[dict]) -> None:
    """A one-line error for a malformed target list: what is wrong, where, and what is allowed."""
    if not isinstance(targets, list):
        raise ValueError(f"targets: a list of dicts (name, metric, modality, verdicts), got {type(targets).__name__}")
    seen = set()
    for i, target in enumerate(targets):
        missing = [k for k in ("name", "metric", "modality", "verdicts") if k not in target]
        if missing:
            raise ValueError(f"targets[{i}] lacks {', '.join(missing)}: each target has name, metric, modality "
                             "and verdicts")
        name = target["name"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"targets[{i}]: name {name!r} is not a non-empty string")
        if name in seen:
            raise UserError(f"targets: two targets are named {name!r}; give each target a name of its own")
        seen.add(name)
        if target["modality"] not in MODALITIES:
            raise ValueError(f"targets[{i}] ({name}): modality {target['modality']!r} is not one of "
                             f"{', '.join(MODALITIES)}")
        cells = set()
        for j, row in enumerate(target["verdicts"]):
            lacks = [k for k in _ROW_KEYS if k not in row]
            if lacks:
                raise ValueError(f"targets[{i}] ({name}): verdicts[{j}] lacks {', '.join(lacks)} (each is a row "
                                 "of report.verdict.verdicts)")
            if row.get("metric", target["metric"]) != target["metric"]:
                raise ValueError(f"targets[{i}] ({name}): verdicts[{j}] are of {row['metric']}, not of the target's "
                                 f"metric {target['metric']}")
            cell = (row["init"], row["freeze"], float(row["fraction"]))
            if cell in cells:
                raise ValueError(f"targets[{i}] ({name}): verdicts[{j}] repeats init {cell[0]}, freeze {cell[1]}, "
                                 f"fraction {cell[2]:g}; one row per cell")
            cells.add(cell)


def testable(row: dict) -> str:
    """Why a target's paired gain cannot be pooled ("" when it can): the paired test's own reason (fewer than
    MIN_PAIRS seeds, no spread), or a variance that is not there."""
    if row["untested"]:
        return row["untested"]
    if not (finite(row["mean"]) and finite(row["std"]) and row["std"] > 0 and row["n"] >= MIN_PAIRS):
        return f"no spread over {row['n']} seeds to weigh it by"
    return ""


def _pooled_cell(init: str, freeze: str, fraction: float, rows: dict, targets: list[dict], alpha: float) -> dict:
    per = {name: {k: row.get(k) for k in ("mean", "ci_low", "ci_high", "verdict", "n", "metric", "modality",
                                          "untested", "p_holm")} for name, row in rows.items()}
    left_out = {t["name"]: testable(rows[t["name"]]) if t["name"] in rows else "no paired runs" for t in targets}
    left_out = {name: why for name, why in left_out.items() if why}
    pooled = [t["name"] for t in targets if t["name"] not in left_out]
    metrics = list(dict.fromkeys(rows[name]["metric"] for name in pooled or rows))
    entry = {"init": init, "freeze": freeze, "fraction": fraction, "targets": per, "pooled": pooled,
             "left_out": left_out, "metric": metrics[0] if len(metrics) == 1 else "mixed",
             "mixed_metrics": len(metrics) > 1, "holds_on": [n for n, row in per.items() if row["verdict"] == GAIN],
             "method": METHOD, "k": len(pooled), **_NOT_POOLED, "weights": {}, "dominant": "", "reason": ""}
    if len(pooled) >= 2:
        effects = [rows[name]["mean"] for name in pooled]
        variances = [rows[name]["std"] ** 2 / rows[name]["n"] for name in pooled]
        entry.update(random_effects(effects, variances, alpha))
        entry["weights"] = dict(zip(pooled, entry["weights"]))
        heaviest = max(pooled, key=entry["weights"].get)
        entry["dominant"] = heaviest if entry["weights"][heaviest] >= DOMINANT else ""
    else:
        named = "; ".join(f"{name}: {why}" for name, why in left_out.items())
        entry["reason"] = (ONE_TARGET if pooled else NO_TARGET) + (f" ({named})" if named else "")
    return entry


def _verdict(k: int, mean: float, p_holm: float, alpha: float) -> str:
    if k < 2 or not finite(p_holm):
        return UNTESTED
    if p_holm < alpha:
        return GAIN if mean > 0 else LOSS
    return SAME

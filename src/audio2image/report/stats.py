"""Statistics over transfer runs: per-cell summaries, paired gains over the random init, data efficiency.

Pure numpy/scipy. A "row" is one transfer run as a mapping with at least fraction, init, seed, freeze, status
and the metric column (results.csv, parsed or not). Only rows with status "completed" and a finite metric count.
Higher metric values are better (accuracy, ROC-AUC). Nothing here knows which pretrained init exists: every init
other than `baseline` is compared with it.

    >>> gains = gain_table(rows)              # paired by seed, Holm-adjusted across fractions
    >>> eff = data_efficiency(rows, "audio")  # how much more data random init needs to match "audio"
    >>> print(sentences.conclusion(gains, eff))  # the words: report/sentences.py
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy import stats as sps

from audio2image.report.power import MIN_PAIRS
from audio2image.report.text import finite

ALPHA = 0.05
CONFIDENCE = 0.95
# metric column -> (what it is, unit once scaled by 100); the one place for every label in words, tables and axes
METRICS = {
    "test_top1": ("test top-1 accuracy", "%"),
    "test_top5": ("test top-5 accuracy", "%"),
    "test_mean_class_acc": ("test mean per-class accuracy", "%"),
    "test_roc_auc": ("test macro ROC-AUC", "x 100"),
    "test_pr_auc": ("test macro PR-AUC", "x 100"),
    "val_top1": ("validation top-1 accuracy", "%"),
    "val_top5": ("validation top-5 accuracy", "%"),
    "val_roc_auc": ("validation macro ROC-AUC", "x 100"),
    "val_pr_auc": ("validation macro PR-AUC", "x 100"),
}
# metric column -> the values it can take; the report clips an interval's display to them (a metric not listed:
# unbounded). Every metric above is a share (accuracy, area under a curve); a loss has no upper end.
RANGES = {**{metric: (0.0, 1.0) for metric in (*METRICS, "val_mean_class_acc")},
          **{f"{split}_loss": (0.0, math.inf) for split in ("train", "val", "test")}}
# a std this small relative to the mean is rounding noise in a constant difference, not spread
_ZERO_SPREAD = 1e-12


def metric_name(metric: str) -> str:
    """'test top-1 accuracy' for 'test_top1'; unknown columns read as their name."""
    return METRICS.get(metric, (metric.replace("_", " "),))[0]


def metric_range(metric: str) -> tuple[float, float]:
    """(0, 1) for 'test_top1', (0, inf) for 'test_loss'; (-inf, inf) for a metric not in RANGES."""
    return RANGES.get(metric, (-math.inf, math.inf))


def gain_range(metric: str) -> tuple[float, float]:
    """The range of a difference of two values of `metric`: (-1, 1) for 'test_top1', unbounded for a loss."""
    low, high = metric_range(metric)
    return low - high, high - low


# --- elementary statistics -----------------------------------------------------------------------------------------

def summarize(values) -> dict:
    """n, mean, std (ddof=1) and the 95% t-interval of the mean; with n < 2, std and interval are nan."""
    x = np.asarray([v for v in values if finite(v)], dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def paired_difference(a, b) -> dict:
    """a - b for values paired by position (seed): mean, std, 95% t-interval, two-sided paired t-test p, n, and
    `untested`: why no test was made ("" when one was).

    No test, and so never "significant", with fewer than MIN_PAIRS pairs (a t-test with one degree of freedom)
    or when every pair differs by the same amount: no spread to judge the difference by (two seeds both +25 points,
    2 of 8 test images, are no evidence), and then no interval either.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    result = {**summarize(a - b), "p": math.nan, "untested": ""}
    if result["n"] < MIN_PAIRS:
        result["untested"] = f"{result['n']} seed{'s' if result['n'] != 1 else ''} paired; a test needs {MIN_PAIRS}"
    elif result["std"] <= _ZERO_SPREAD * max(1.0, abs(result["mean"])):
        result.update(untested="the same difference on every seed: no spread to test it by", ci_low=math.nan,
                      ci_high=math.nan)
    else:
        result["p"] = float(sps.ttest_rel(a, b).pvalue)
    return result


def tested(comparisons) -> list[dict]:
    """The comparisons (paired differences) that were tested: enough seeds and some spread."""
    return [c for c in comparisons if not c["untested"]]


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order; nan stays nan and does not count as a test."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        # step-down: the k-th smallest is multiplied by (m - k + 1); the running max keeps the order monotone
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


# --- grouping of runs ----------------------------------------------------------------------------------------------

def completed_values(rows, metric: str) -> dict:
    """{(fraction, init, freeze): {seed: value}} over the completed runs with a finite metric."""
    table: dict = defaultdict(dict)
    for row in rows:
        value = _float(row.get(metric))
        if row.get("status") == "completed" and finite(value):
            table[_key(row)][int(row["seed"])] = value
    return table


def grid_of(rows, grid: dict | None = None) -> dict:
    """The sweep grid (fractions, inits, seeds, freezes): `grid` (e.g. the config) joined with what the rows show."""
    grid = grid or {}
    out = {}
    for name, column, cast in (("fractions", "fraction", float), ("inits", "init", str),
                               ("seeds", "seed", int), ("freezes", "freeze", str)):
        declared = [cast(v) for v in grid.get(name) or []]
        seen = [cast(row[column]) for row in rows if row.get(column) not in (None, "")]
        merged = list(dict.fromkeys(declared + seen))
        out[name] = sorted(merged) if cast is not str else merged  # inits keep their declared order
    return out


def cell_table(rows, metric: str = "test_top1", grid: dict | None = None) -> list[dict]:
    """Per (fraction, init, freeze): summarize over seeds (completed runs only), and which seeds are missing.

    `seeds_failed` ran but did not complete (e.g. diverged); `seeds_missing` have no row at all.
    """
    grid = grid_of(rows, grid)
    values = completed_values(rows, metric)
    present = defaultdict(set)
    for row in rows:
        present[_key(row)].add(int(row["seed"]))
    cells = []
    for freeze in grid["freezes"]:
        for init in grid["inits"]:
            for fraction in grid["fractions"]:
                key = (fraction, init, freeze)
                done = values.get(key, {})
                seeds = sorted(done)
                cells.append({"fraction": fraction, "init": init, "freeze": freeze, "metric": metric,
                              **summarize([done[s] for s in seeds]), "seeds": seeds,
                              "values": [done[s] for s in seeds],
                              "seeds_failed": sorted(present[key] - set(done)),
                              "seeds_missing": sorted(set(grid["seeds"]) - present[key])})
    return cells


def gain_table(rows, metric: str = "test_top1", baseline: str = "random") -> list[dict]:
    """Per non-baseline init, freeze and fraction: init - baseline paired by seed, Holm-adjusted across fractions.

    Only seeds where both runs completed are paired. The Holm family is one init/freeze's set of fractions.
    """
    values = completed_values(rows, metric)
    grid = grid_of(rows)
    gains = []
    for freeze in grid["freezes"]:
        for init in grid["inits"]:
            if init == baseline:
                continue
            family = []
            for fraction in grid["fractions"]:
                ours, base = values.get((fraction, init, freeze)), values.get((fraction, baseline, freeze))
                if ours is None and base is None:
                    continue
                ours, base = ours or {}, base or {}
                seeds = sorted(set(ours) & set(base))
                diff = paired_difference([ours[s] for s in seeds], [base[s] for s in seeds])
                family.append({"init": init, "baseline": baseline, "freeze": freeze, "fraction": fraction,
                               "metric": metric, "seeds": seeds, **diff})
            for gain, adjusted in zip(family, holm([g["p"] for g in family])):
                gain["p_holm"] = adjusted
                gain["significant"] = bool(finite(adjusted) and adjusted < ALPHA)
            gains.extend(family)
    return gains


# --- data efficiency -----------------------------------------------------------------------------------------------

def data_efficiency(rows, init: str, metric: str = "test_top1", baseline: str = "random", n_boot: int = 2000,
                    seed: int = 0) -> list[dict]:
    """How many times the data the baseline needs to match `init`, per fraction (and freeze).

    For each fraction f, A(f) is `init`'s mean. The baseline's mean curve over the grid's fractions is read as
    piecewise-linear in log fraction; f* is the smallest fraction where it reaches A(f) and `ratio` = f*/f.
    status, where the point estimate lies: "gain" (ratio > 1), "no gain" (ratio <= 1; when A(f) is below the
    baseline's first point, f* is taken as that first fraction, an upper bound), "beyond grid" (A(f) exceeds the
    baseline's best: ratio is inf and `ratio_bound` = largest fraction / f is a lower bound) or "missing" (not
    enough runs). verdict, what the report claims: `efficiency_verdict`, which also needs the paired gain at f.
    The interval resamples seeds with replacement and recomputes both curves (percentiles 2.5 / 97.5).
    """
    values = completed_values(rows, metric)
    grid = grid_of(rows)
    paired = {(g["freeze"], g["fraction"]): g for g in gain_table(rows, metric, baseline) if g["init"] == init}
    out = []
    for freeze in grid["freezes"]:
        ours = {f: values.get((f, init, freeze), {}) for f in grid["fractions"]}
        base = {f: values.get((f, baseline, freeze), {}) for f in grid["fractions"]}
        if not any(ours.values()):
            continue
        seeds = sorted({s for d in (*ours.values(), *base.values()) for s in d})
        point = _efficiency(ours, base, seeds)
        boot = _bootstrap(ours, base, seeds, n_boot, seed)
        for i, fraction in enumerate(grid["fractions"]):
            ratio, status, target, f_star = point[i]
            # one seed of `init` at f gives no spread to resample: no interval, so no "measurable" claim either
            enough = status != "missing" and len(ours[fraction]) >= 2
            low, high = _interval(boot[:, i]) if enough else (math.nan, math.nan)
            entry = {"init": init, "baseline": baseline, "freeze": freeze, "fraction": fraction,
                     "metric": metric, "value": target, "fraction_needed": f_star, "ratio": ratio,
                     "ratio_bound": max(grid["fractions"]) / fraction, "ci_low": low, "ci_high": high,
                     "status": status, "n": len(ours[fraction])}
            out.append({**entry, "verdict": efficiency_verdict(entry, paired.get((freeze, fraction)))})
    return out


# the data-efficiency verdicts, in these words in the report's table and in every sentence about data efficiency
GAIN, NO_CLEAR, LOSS, MISSING = "gain", "no clear difference", "loss", "missing"
VERDICT_RULE = (f"{GAIN} where the paired gain at f is significant (Holm-adjusted, as in the gain table) and the "
                f"bootstrap interval of f*/f lies above 1x; {LOSS} where the paired gain is significantly negative "
                f"and that interval does not reach above 1x; {NO_CLEAR} otherwise")


def efficiency_verdict(entry: dict, gain: dict | None) -> str:
    """The verdict (VERDICT_RULE) of one data_efficiency entry, given the paired gain at its fraction (or None).

    Both intervals must agree. With few seeds a percentile bootstrap has only a handful of distinct resamples and
    is too narrow to carry a claim on its own; a significant accuracy gain alone does not show that the baseline
    needs more data (its mean curve need not rise). Holm, not the raw t-interval, so that the verdict never claims
    a gain where the conclusion calls the accuracies indistinguishable.
    """
    if entry["status"] == MISSING:
        return MISSING
    significant = gain is not None and gain["significant"]
    if significant and gain["mean"] > 0 and entry["ci_low"] > 1:
        return GAIN
    if significant and gain["mean"] < 0 and entry["ci_high"] <= 1:
        return LOSS  # <= 1: at the grid's smallest fraction f* is clamped to f, so the ratio cannot fall below 1
    return NO_CLEAR


def baseline_reach(fractions, means, target: float) -> float:
    """Smallest fraction at which the curve (linear in log fraction) reaches `target`; inf if it never does.

    Returns fractions[0] when the first point already reaches it (the curve is not extrapolated below the grid).
    """
    logs = np.log(np.asarray(fractions, dtype=float))
    means = np.asarray(means, dtype=float)
    if means[0] >= target:
        return float(fractions[0])
    for i in range(1, len(means)):
        if means[i] >= target:
            t = (target - means[i - 1]) / (means[i] - means[i - 1])
            return float(np.exp(logs[i - 1] + t * (logs[i] - logs[i - 1])))
    return math.inf


def _efficiency(ours: dict, base: dict, seeds) -> list[tuple]:
    """(ratio, status, A(f), f*) per fraction for the seeds given (repeats allowed, as in a bootstrap sample)."""
    curve = [(f, _mean_over(base[f], seeds)) for f in base]
    curve = [(f, m) for f, m in curve if finite(m)]
    result = []
    for f in ours:
        target = _mean_over(ours[f], seeds)
        if not finite(target) or len(curve) < 2:
            result.append((math.nan, "missing", target, math.nan))
            continue
        f_star = baseline_reach([c[0] for c in curve], [c[1] for c in curve], target)
        ratio = f_star / f
        status = "beyond grid" if math.isinf(ratio) else ("gain" if ratio > 1 else "no gain")
        result.append((ratio, status, target, f_star))
    return result


def _bootstrap(ours: dict, base: dict, seeds, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, fractions] ratios from seed resamples; nan where a resample leaves a curve undefined."""
    rng = np.random.default_rng(seed)
    ratios = np.full((n_boot, len(ours)), math.nan)
    if not seeds:
        return ratios
    for b in range(n_boot):
        sample = list(rng.choice(seeds, size=len(seeds), replace=True))
        ratios[b] = [r for r, *_ in _efficiency(ours, base, sample)]
    return ratios


def _interval(samples: np.ndarray) -> tuple[float, float]:
    """2.5/97.5 percentiles ignoring nan; inverted_cdf picks actual samples, so inf ("beyond grid") is kept."""
    finite = samples[~np.isnan(samples)]
    if not len(finite):
        return math.nan, math.nan
    low, high = np.quantile(finite, [0.025, 0.975], method="inverted_cdf")
    return float(low), float(high)


def _mean_over(by_seed: dict, seeds) -> float:
    picked = [by_seed[s] for s in seeds if s in by_seed]
    return float(np.mean(picked)) if picked else math.nan


def groups(items, keys) -> dict:
    """{(item[k] for k in keys): [items]}, in first-seen order."""
    out: dict = {}
    for item in items:
        out.setdefault(tuple(item[k] for k in keys), []).append(item)
    return out


# --- small helpers -------------------------------------------------------------------------------------------------

def _key(row) -> tuple:
    return float(row["fraction"]), str(row["init"]), str(row.get("freeze") or "none")


def _float(value) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan

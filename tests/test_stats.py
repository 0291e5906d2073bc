"""The report's statistics against scipy and against cases whose answer is known by construction."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from audio2image.report import sentences, stats
from audio2image.report.text import CLIPPED_NOTE


def rows_for(curves: dict, seeds_offsets: dict, metric="test_top1", freeze="none"):
    """Rows for {init: {fraction: mean}}, each seed shifted by its offset (the same shift for every init)."""
    return [{"fraction": f, "init": init, "seed": s, "freeze": freeze, "status": "completed", metric: m + off}
            for init, curve in curves.items() for f, m in curve.items() for s, off in seeds_offsets.items()]


# --- summarize / paired_difference / holm --------------------------------------------------------------------------

def test_summarize_matches_scipy_t_interval():
    x = [0.31, 0.35, 0.29, 0.40, 0.33]
    out = stats.summarize(x)
    low, high = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert out["n"] == 5
    assert out["mean"] == pytest.approx(np.mean(x))
    assert out["std"] == pytest.approx(np.std(x, ddof=1))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((low, high))


@pytest.mark.parametrize("values", [[0.4], []])
def test_summarize_small_n_has_no_spread(values):
    out = stats.summarize(values)
    assert out["n"] == len(values)
    assert all(math.isnan(out[k]) for k in ("std", "ci_low", "ci_high"))


def test_summarize_ignores_nan():
    assert stats.summarize([0.1, math.nan, 0.3])["n"] == 2


def test_paired_difference_matches_ttest_rel():
    a = np.array([0.42, 0.45, 0.39, 0.47])
    b = np.array([0.40, 0.41, 0.40, 0.43])
    out = stats.paired_difference(a, b)
    d = a - b
    low, high = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert out["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert out["mean"] == pytest.approx(d.mean())
    assert out["std"] == pytest.approx(d.std(ddof=1))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((low, high))
    assert out["n"] == 4


def test_paired_difference_single_pair_has_no_p():
    out = stats.paired_difference([0.5], [0.4])
    assert out["n"] == 1 and math.isnan(out["p"]) and out["mean"] == pytest.approx(0.1)


def test_zero_spread_and_two_pairs_are_never_significant():
    """The case a user met: two seeds both +25 points (2 of 8 test images) were called significant, p < 0.001."""
    two = stats.paired_difference([0.75, 0.5], [0.5, 0.25])
    assert math.isnan(two["p"]) and two["untested"] == "2 seeds paired; a test needs 3"
    flat = stats.paired_difference([0.75, 0.5, 0.625], [0.5, 0.25, 0.375])
    assert math.isnan(flat["p"]) and "no spread" in flat["untested"] and math.isnan(flat["ci_low"])
    assert stats.paired_difference([0.5, 0.6, 0.7], [0.4, 0.5, 0.5])["untested"] == ""
    rows = [{"fraction": 1.0, "init": init, "seed": seed, "freeze": "none", "status": "completed",
             "test_top1": value} for init, values in (("random", (0.5, 0.25)), ("audio", (0.75, 0.5)))
            for seed, value in enumerate(values)]
    (gain,) = stats.gain_table(rows)
    assert not gain["significant"] and math.isnan(gain["p_holm"])
    sentence = sentences.gain_sentence("audio", "none", "random", [gain])
    assert "not tested at 100% (2 seeds paired; a test needs 3)" in sentence and "significantly" not in sentence


def test_paired_difference_needs_pairs():
    with pytest.raises(ValueError):
        stats.paired_difference([0.1, 0.2], [0.1])


def test_holm_hand_computed():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_nan_passes_through_and_caps_at_one():
    out = stats.holm([0.01, math.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]
    assert stats.holm([]) == []


# --- tables --------------------------------------------------------------------------------------------------------

def test_cell_table_counts_completed_and_marks_missing():
    rows = rows_for({"random": {0.1: 0.2, 1.0: 0.5}}, {0: 0.0, 1: 0.02})
    rows.append({"fraction": 0.1, "init": "audio", "seed": 0, "freeze": "none", "status": "diverged",
                 "test_top1": ""})
    grid = {"fractions": [0.1, 1.0], "inits": ["random", "audio"], "seeds": [0, 1, 2], "freezes": ["none"]}
    cells = {(c["fraction"], c["init"]): c for c in stats.cell_table(rows, grid=grid)}
    assert len(cells) == 4
    assert cells[(0.1, "random")]["n"] == 2 and cells[(0.1, "random")]["mean"] == pytest.approx(0.21)
    assert cells[(0.1, "random")]["seeds_missing"] == [2]
    assert cells[(0.1, "audio")]["n"] == 0
    assert cells[(0.1, "audio")]["seeds_failed"] == [0] and cells[(0.1, "audio")]["seeds_missing"] == [1, 2]
    assert cells[(1.0, "audio")]["seeds_missing"] == [0, 1, 2]


def test_gain_table_pairs_by_seed_and_adjusts_per_init():
    offsets = {0: 0.0, 1: 0.03, 2: -0.02}
    rows = rows_for({"random": {0.1: 0.20, 0.5: 0.40}, "audio": {0.1: 0.25, 0.5: 0.40},
                     "imagenet": {0.1: 0.50, 0.5: 0.60}}, offsets)
    rows[-1]["imagenet_noise"] = 0  # extra columns are ignored
    for row in rows:  # break the exact pairing so the t-test has variance
        if row["init"] != "random":
            row["test_top1"] += 0.004 * row["seed"]
    gains = stats.gain_table(rows)
    assert {g["init"] for g in gains} == {"audio", "imagenet"}
    audio = [g for g in gains if g["init"] == "audio"]
    a = [r["test_top1"] for r in rows if (r["init"], r["fraction"]) == ("audio", 0.1)]
    b = [r["test_top1"] for r in rows if (r["init"], r["fraction"]) == ("random", 0.1)]
    assert audio[0]["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert [g["p_holm"] for g in audio] == pytest.approx(stats.holm([g["p"] for g in audio]))
    assert audio[0]["mean"] == pytest.approx(0.05 + 0.004)
    assert audio[0]["significant"] and not audio[1]["significant"]


def test_gain_table_uses_only_seeds_both_completed():
    rows = rows_for({"random": {0.1: 0.2}, "audio": {0.1: 0.3}}, {0: 0.0, 1: 0.01, 2: 0.02})
    rows = [r for r in rows if not (r["init"] == "audio" and r["seed"] == 2)]
    (gain,) = stats.gain_table(rows)
    assert gain["seeds"] == [0, 1] and gain["n"] == 2


# --- data efficiency -----------------------------------------------------------------------------------------------

FRACTIONS = [0.125, 0.25, 0.5, 1.0]


def baseline_curve(f):
    return 0.5 + 0.1 * math.log2(f)  # linear in log fraction: 0.2, 0.3, 0.4, 0.5


def test_data_efficiency_exact_multiple():
    # audio at f equals random at 2f: random needs exactly 2x the data (until it runs off the grid)
    curves = {"random": {f: baseline_curve(f) for f in FRACTIONS},
              "audio": {f: baseline_curve(2 * f) for f in FRACTIONS}}
    rows = rows_for(curves, {0: 0.0, 1: 0.02, 2: -0.01})
    out = stats.data_efficiency(rows, "audio", n_boot=200)
    assert [e["status"] for e in out] == ["gain", "gain", "gain", "beyond grid"]
    for e in out[:3]:
        assert e["ratio"] == pytest.approx(2.0)
        # every seed moves both curves equally, so every resample gives 2x too
        assert (e["ci_low"], e["ci_high"]) == pytest.approx((2.0, 2.0))
    assert math.isinf(out[3]["ratio"]) and out[3]["ratio_bound"] == pytest.approx(1.0)


def test_data_efficiency_fractional_multiple_and_no_gain():
    shift = 0.1 * math.log2(1.5)  # = the baseline's gain from 1.5x the data
    curves = {"random": {f: baseline_curve(f) for f in FRACTIONS},
              "audio": {f: baseline_curve(f) + shift for f in FRACTIONS},
              "worse": {f: baseline_curve(f) - 0.05 for f in FRACTIONS}}
    rows = rows_for(curves, {0: 0.0, 1: 0.01})
    audio = stats.data_efficiency(rows, "audio", n_boot=50)
    assert [e["ratio"] for e in audio[:3]] == pytest.approx([1.5, 1.5, 1.5])
    worse = stats.data_efficiency(rows, "worse", n_boot=50)
    assert all(e["status"] == "no gain" for e in worse)
    assert worse[1]["ratio"] == pytest.approx(2 ** -0.5)


def test_data_efficiency_bootstrap_is_seeded_and_brackets():
    rng = np.random.default_rng(3)
    rows = [{"fraction": f, "init": init, "seed": s, "freeze": "none", "status": "completed",
             "test_top1": baseline_curve(2 * f if init == "audio" else f) + rng.normal(0, 0.01)}
            for f in FRACTIONS[:3] for init in ("random", "audio") for s in range(4)]
    rows += [{"fraction": 1.0, "init": "random", "seed": s, "freeze": "none", "status": "completed",
              "test_top1": 0.5} for s in range(4)]
    first = stats.data_efficiency(rows, "audio", n_boot=300, seed=7)
    again = stats.data_efficiency(rows, "audio", n_boot=300, seed=7)
    assert first == again
    for e in first[:3]:
        assert e["ci_low"] <= e["ratio"] <= e["ci_high"]
    assert first[3]["status"] == "missing"


def test_baseline_reach_takes_first_crossing():
    assert stats.baseline_reach([0.1, 0.2, 0.4], [0.3, 0.5, 0.4], 0.45) == pytest.approx(0.1 * 2 ** 0.75)
    assert stats.baseline_reach([0.1, 0.2], [0.3, 0.5], 0.2) == 0.1
    assert math.isinf(stats.baseline_reach([0.1, 0.2], [0.3, 0.5], 0.6))


# --- conclusion ----------------------------------------------------------------------------------------------------

def test_conclusion_words():
    curves = {"random": {f: baseline_curve(f) for f in FRACTIONS},
              "audio": {f: baseline_curve(2 * f) for f in FRACTIONS}}
    rows = rows_for(curves, {0: 0.0, 1: 0.02, 2: 0.01})
    for row in rows:
        if row["init"] == "audio" and row["seed"] >= 1:
            row["test_top1"] += 0.002 * row["seed"]  # a little pair-to-pair variance
    gains = stats.gain_table(rows)
    text = sentences.conclusion(gains, stats.data_efficiency(rows, "audio", n_boot=100))
    assert "audio init" in text and "points" in text
    assert "2.0x" in text


def test_conclusion_without_pairs():
    text = sentences.conclusion([], [])
    assert text.startswith("No conclusion yet")


def test_conclusion_indistinguishable_and_no_gain():
    rows = rows_for({"random": {0.1: 0.3, 1.0: 0.5}, "audio": {0.1: 0.3, 1.0: 0.5}}, {0: 0.0, 1: 0.01, 2: 0.03})
    for row in rows:
        if row["init"] == "audio":
            row["test_top1"] += (-0.01, 0.012, -0.004)[row["seed"]]
    text = sentences.conclusion(stats.gain_table(rows), stats.data_efficiency(rows, "audio", n_boot=100))
    assert "indistinguishable at 10%, 100%" in text
    assert "no clear difference at 10%, 100%" in text and "No clear gain" in text
    assert "only" not in text  # three seeds: no small-n warning


def test_efficiency_claims_need_a_significant_gain():
    entry = {"init": "audio", "freeze": "none", "fraction": 0.25, "status": "gain", "ratio": 1.4, "ci_low": 1.2,
             "ci_high": 1.6, "ratio_bound": 4.0}
    significant, not_significant = {"significant": True, "mean": 0.05}, {"significant": False, "mean": 0.05}
    assert stats.efficiency_verdict(entry, significant) == "gain"
    assert stats.efficiency_verdict(entry, not_significant) == "no clear difference"
    assert stats.efficiency_verdict(entry, None) == "no clear difference"  # no pairs at this fraction
    assert stats.efficiency_verdict({**entry, "ci_low": 0.9}, significant) == "no clear difference"
    worse = {**entry, "status": "no gain", "ratio": 0.7, "ci_low": 0.6, "ci_high": 0.8}
    assert stats.efficiency_verdict(worse, {"significant": True, "mean": -0.05}) == "loss"
    assert stats.efficiency_verdict({**entry, "status": "missing"}, significant) == "missing"
    claimed = sentences.efficiency_sentence("audio", "random", [{**entry, "verdict": "gain"}])
    assert "gain at 25% (the random init needs about 1.4x" in claimed
    gated = sentences.efficiency_sentence("audio", "random", [{**entry, "verdict": "no clear difference"}])
    assert "no clear difference at 25%" in gated and "No clear gain" in gated and "up to 1.4x" in gated


def efficiency_rows(extra: tuple[float, ...]):
    """random on baseline_curve; audio 0.05 above it (about 1.4x the data) plus extra[seed] on each seed's pair."""
    curves = {"random": {f: baseline_curve(f) for f in FRACTIONS},
              "audio": {f: baseline_curve(f) + 0.05 for f in FRACTIONS}}
    rows = rows_for(curves, {s: 0.01 * s for s in range(len(extra))})
    for row in rows:
        if row["init"] == "audio":
            row["test_top1"] += extra[row["seed"]]
    return rows


@pytest.mark.parametrize("extra, verdict", [
    # every seed's gain is positive, so the bootstrap of f*/f lies above 1x, but the paired t-interval of the
    # gain still holds zero: the point estimate favours audio, the verdict must not
    ((-0.04, 0.0, 0.04), "no clear difference"),
    # gains of 0.045 to 0.055: the t-interval excludes zero, even after Holm over the four fractions
    ((-0.005, 0.0, 0.005), "gain"),
])
def test_efficiency_table_and_sentences_share_one_verdict(extra, verdict):
    rows = efficiency_rows(extra)
    gains = stats.gain_table(rows)
    eff = stats.data_efficiency(rows, "audio", n_boot=200)
    within = [e for e in eff if e["status"] == "gain"]  # the point estimate says audio saves data
    assert within and all(e["ratio"] > 1 for e in within)
    assert [e["verdict"] for e in eff] == [verdict] * len(FRACTIONS)  # the table's column
    assert all(g["significant"] == (verdict == "gain") for g in gains)
    assert all(e["ci_low"] > 1 for e in within)  # the bootstrap alone would have claimed a gain
    for text in (sentences.efficiency_sentence("audio", "random", eff), sentences.conclusion(gains, eff)):
        if verdict == "gain":
            assert "Data efficiency of the audio init against the random init: gain at 12.5%" in text
            assert "no clear difference" not in text and "No clear gain" not in text
        else:
            assert "no clear difference at 12.5%, 25%, 50%, 100%" in text and "No clear gain" in text
            assert "gain at" not in text


def test_freezes_are_separate_comparisons():
    rows = rows_for({"random": {0.1: 0.2}, "audio": {0.1: 0.3}}, {0: 0.0, 1: 0.01})
    rows += rows_for({"random": {0.1: 0.1}, "audio": {0.1: 0.15}}, {0: 0.0, 1: 0.01}, freeze="layer1")
    gains = {g["freeze"]: g for g in stats.gain_table(rows)}
    assert gains["none"]["mean"] == pytest.approx(0.1) and gains["layer1"]["mean"] == pytest.approx(0.05)
    assert {e["freeze"] for e in stats.data_efficiency(rows, "audio", n_boot=10)} == {"none", "layer1"}


def test_conclusion_clips_a_gain_interval_and_says_so():
    rows = [{"fraction": 1.0, "init": init, "seed": s, "freeze": "none", "status": "completed", "test_top1": v}
            for init, values in (("random", (0.0, 0.0, 0.0)), ("audio", (0.9, 0.95, 1.0)))
            for s, v in enumerate(values)]
    gains = stats.gain_table(rows)
    assert gains[0]["significant"] and gains[0]["ci_high"] > 1  # stored unclipped
    text = sentences.conclusion(gains, stats.data_efficiency(rows, "audio", n_boot=20))
    assert "95% CI +82.6 to +100.0†)" in text
    assert text.count(CLIPPED_NOTE) == 1 and text.endswith(CLIPPED_NOTE)


def test_metric_ranges():
    assert stats.metric_range("test_top1") == (0.0, 1.0) and stats.metric_range("val_roc_auc") == (0.0, 1.0)
    assert stats.metric_range("test_loss") == (0.0, math.inf)
    assert stats.metric_range("something_new") == (-math.inf, math.inf)
    assert stats.gain_range("test_pr_auc") == (-1.0, 1.0)
    assert stats.gain_range("test_loss") == (-math.inf, math.inf)

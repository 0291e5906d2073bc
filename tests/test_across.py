"""The pooled verdict across targets: the random-effects numbers against a published example and statsmodels, what is
left out and why, Holm across fractions, and the section, figure and sentences."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from audio2image.errors import UserError
from audio2image.report import stats, verdict
from audio2image.report.across import across_section, across_sentences, pooled_gains


def row(init, fraction, mean, std, n, metric="test_top1", freeze="none"):
    """A row as verdict.verdicts gives it, from a paired gain's mean, sd and seeds (untested below 3 or no spread)."""
    untested = "" if n >= 3 and std > 0 else (f"{n} seeds paired; a test needs 3" if n < 3 else "no spread")
    half = sps.t.ppf(0.975, n - 1) * std / math.sqrt(n) if n >= 2 and std > 0 else math.nan
    p = 2 * sps.t.sf(abs(mean) * math.sqrt(n) / std, n - 1) if not untested else math.nan
    word = verdict.UNTESTED if untested else (verdict.SAME if p >= 0.05 else verdict.GAIN if mean > 0 else verdict.LOSS)
    return {"init": init, "freeze": freeze, "fraction": fraction, "metric": metric, "mean": mean, "std": std, "n": n,
            "ci_low": mean - half, "ci_high": mean + half, "p": p, "p_holm": p, "untested": untested, "verdict": word}


def target(name, rows, metric="test_top1", modality="image"):
    return {"name": name, "metric": metric, "modality": modality, "verdicts": rows}


def one_cell(effects, variances, n=5):
    """Targets with one cell each whose gain has mean y_i and squared standard error v_i (sd = sqrt(n v_i))."""
    return [target(f"t{i}", [row("audio", 0.1, y, math.sqrt(n * v), n)]) for i, (y, v) in
            enumerate(zip(effects, variances))]


# --- the numbers ---------------------------------------------------------------------------------------------------

# BCG vaccine trials (Colditz et al. 1994, JAMA 271:698): per trial, TB cases / no TB among the vaccinated, then
# among the controls; the log risk ratio and its variance are the usual ones for a 2x2 table.
BCG = [(4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619), (33, 5036, 47, 5761),
       (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892), (29, 7470, 45, 7232),
       (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338), (27, 16886, 29, 17825)]


def test_dersimonian_laird_matches_the_published_bcg_example():
    """The DerSimonian-Laird analysis of the BCG trials' log risk ratios as printed by Stata's metan and metafor
    (Viechtbauer 2010, J Stat Softw 36(3); metafor's test 'test_misc_metan_vs_rma.uni_with_dat.bcg.r'): Q 152.2330,
    tau^2 0.3088, I^2 92.1173%, pooled -0.7141 with the normal 95% interval -1.0644 to -0.3638 (z -3.9952)."""
    a, b, c, d = np.array(BCG, dtype=float).T
    y = np.log(a / (a + b)) - np.log(c / (c + d))
    v = 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)
    (entry,) = pooled_gains(one_cell(y, v))
    assert entry["k"] == 13
    assert entry["q"] == pytest.approx(152.2330, abs=5e-5)
    assert entry["tau2"] == pytest.approx(0.3088, abs=5e-5)
    assert 100 * entry["i2"] == pytest.approx(92.1173, abs=5e-5)
    assert entry["mean"] == pytest.approx(-0.7141, abs=5e-5)
    assert entry["mean"] / entry["se_dl"] == pytest.approx(-3.9952, abs=5e-5)
    z = sps.norm.ppf(0.975)
    assert entry["mean"] - z * entry["se_dl"] == pytest.approx(-1.0644, abs=5e-5)
    assert entry["mean"] + z * entry["se_dl"] == pytest.approx(-0.3638, abs=5e-5)
    assert entry["verdict"] == verdict.LOSS and entry["method"].startswith("random effects")


@pytest.mark.parametrize("effects, variances", [
    ([0.061, -0.004], [0.0004, 0.0001]),  # k = 2: DL's HKSJ scale is 1
    ([0.05, 0.01, 0.12, 0.03], [0.0002, 0.0003, 0.0004, 0.0001]),  # scale 1.44: the HKSJ interval is wider
    ([0.02, 0.08, 0.05], [0.0001, 0.0016, 0.0004]),  # scale 0.96: floored at 1, the DL variance with t
])
def test_random_effects_and_hksj_match_statsmodels(effects, variances):
    meta = pytest.importorskip("statsmodels.stats.meta_analysis")
    ref = meta.combine_effects(np.array(effects), np.array(variances), method_re="dl", use_t=True)
    (entry,) = pooled_gains(one_cell(effects, variances))
    assert entry["mean"] == pytest.approx(ref.mean_effect_re)
    assert entry["tau2"] == pytest.approx(ref.tau2) and ref.tau2 > 0  # statsmodels does not floor tau^2 at 0
    assert entry["i2"] == pytest.approx(ref.i2) and entry["q"] == pytest.approx(ref.q)
    assert entry["q_p"] == pytest.approx(ref.test_homogeneity().pvalue)
    assert entry["se_dl"] == pytest.approx(ref.sd_eff_w_re) and entry["scale"] == pytest.approx(ref.scale_hksj_re)
    hksj = ref.scale_hksj_re >= 1
    se = ref.sd_eff_w_re_hksj if hksj else ref.sd_eff_w_re
    low, high = ref.conf_int(use_t=True)[3 if hksj else 1]
    assert entry["se"] == pytest.approx(se)
    assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((low, high))
    assert entry["p"] == pytest.approx(2 * sps.t.sf(abs(ref.mean_effect_re) / se, len(effects) - 1))
    assert list(entry["weights"].values()) == pytest.approx(list(ref.weights_rel_re))


def test_identical_gains_have_no_heterogeneity_and_still_an_interval():
    """Without the floor on the HKSJ scale, gains that agree exactly would give an interval of no width."""
    (entry,) = pooled_gains(one_cell([0.05, 0.05, 0.05], [1e-5, 2e-5, 1e-5]))
    assert entry["tau2"] == 0 and entry["i2"] == 0 and entry["q"] == pytest.approx(0, abs=1e-12)
    assert entry["se"] == pytest.approx(entry["se_dl"]) and entry["ci_high"] - entry["ci_low"] > 0.01
    assert entry["pi_low"] < entry["ci_low"] < 0.05 < entry["ci_high"] < entry["pi_high"]
    assert entry["verdict"] == verdict.GAIN and entry["holds_on"] == ["t0", "t1", "t2"]


# --- what is pooled ------------------------------------------------------------------------------------------------

def test_one_target_is_not_pooled():
    (entry,) = pooled_gains([target("caltech256", [row("audio", 0.1, 0.06, 0.02, 5)])])
    assert entry["k"] == 1 and entry["verdict"] == verdict.UNTESTED and math.isnan(entry["mean"])
    assert entry["reason"] == "one target: nothing to pool" and entry["holds_on"] == ["caltech256"]
    assert entry["targets"]["caltech256"]["mean"] == 0.06


def test_an_untested_target_is_left_out_and_named():
    targets = [target("caltech256", [row("audio", 0.1, 0.06, 0.02, 5), row("audio", 1.0, 0.02, 0.02, 5)]),
               target("esc50", [row("audio", 0.1, 0.01, 0.02, 2, "test_pr_auc"),
                                row("audio", 1.0, 0.01, 0.02, 5, "test_pr_auc")], "test_pr_auc", "audio"),
               target("pets", [row("audio", 1.0, 0.03, 0.02, 5)])]
    low, high = pooled_gains(targets)
    assert low["fraction"] == 0.1 and low["pooled"] == ["caltech256"] and low["verdict"] == verdict.UNTESTED
    assert low["left_out"] == {"pets": "no paired runs", "esc50": "2 seeds paired; a test needs 3"}
    assert low["reason"] == ("one target: nothing to pool (esc50: 2 seeds paired; a test needs 3; pets: no paired "
                             "runs)")
    assert high["k"] == 3 and high["left_out"] == {} and high["reason"] == ""
    assert math.isfinite(high["pi_low"]) and high["mixed_metrics"] and high["metric"] == "mixed"


def test_holm_runs_across_the_fractions_of_each_init():
    cells = [(0.1, 0.005), (0.5, 0.08), (1.0, 0.029)]
    targets = [target(name, [row("audio", f, g + shift, 0.02, 5) for f, g in cells]
                      + [row("control", 1.0, 0.029 + shift, 0.02, 5)])
               for name, shift in (("a", 0.0), ("b", 0.004), ("c", -0.004))]
    pooled = pooled_gains(targets)
    audio = [e for e in pooled if e["init"] == "audio"]
    (control,) = [e for e in pooled if e["init"] == "control"]
    assert [e["fraction"] for e in audio] == [0.1, 0.5, 1.0]
    assert [e["p_holm"] for e in audio] == pytest.approx(stats.holm([e["p"] for e in audio]))
    assert control["p_holm"] == pytest.approx(control["p"])  # a family of one
    # the same gain at 100%: significant alone, not after Holm over audio's three fractions
    assert control["verdict"] == verdict.GAIN and audio[2]["p"] < 0.05 <= audio[2]["p_holm"]
    assert audio[2]["verdict"] == verdict.SAME
    assert all((e["verdict"] == verdict.GAIN) == (e["p_holm"] < 0.05 and e["ci_low"] > 0) for e in pooled)


def test_a_target_that_carries_the_weight_is_named_not_generalised(tmp_path):
    """The case met on synthetic runs: 4 seeds of one target differ by chance far less than its gain's true spread,
    so it gets nearly all the weight and makes the pooled test significant, though no other target shows a loss."""
    cells = {"a": (-0.006, 0.0006), "b": (0.004, 0.015), "c": (-0.001, 0.009), "d": (-0.004, 0.013)}
    targets = [target(name, [row("control", 0.1, mean, sd, 4)]) for name, (mean, sd) in cells.items()]
    (entry,) = pooled_gains(targets)
    assert entry["verdict"] == verdict.LOSS and entry["dominant"] == "a" and entry["weights"]["a"] > 0.95
    (words,) = across_sentences([entry])
    assert "significant but carried by a (9" in words and "not shown across targets" in words
    assert "a loss across targets" not in words
    text = across_section(targets, tmp_path, {})
    assert "- control at 10%: a carries 9" in text and "so the pooled value is mostly its own" in text
    assert "| **loss** (mostly a) |" in text
    even = [target(name, [row("control", 0.1, mean, 0.01, 4)]) for name, (mean, _) in cells.items()]
    assert pooled_gains(even)[0]["dominant"] == ""


def test_bad_targets_are_one_line_naming_what_is_wrong():
    with pytest.raises(UserError, match="two targets are named 'esc50'"):
        pooled_gains([target("esc50", []), target("esc50", [])])
    with pytest.raises(ValueError, match=r"targets\[0\] \(esc50\): modality 'video' is not one of image, audio"):
        pooled_gains([target("esc50", [], modality="video")])
    with pytest.raises(ValueError, match=r"verdicts\[0\] are of test_top1, not of the target's metric test_pr_auc"):
        pooled_gains([target("esc50", [row("audio", 0.1, 0.0, 0.1, 3)], "test_pr_auc")])
    with pytest.raises(ValueError, match=r"verdicts\[0\] lacks std"):
        pooled_gains([target("esc50", [{k: v for k, v in row("audio", 0.1, 0.0, 0.1, 3).items() if k != "std"}])])


# --- the section, the figure, the sentences ------------------------------------------------------------------------

def study(count, seed=0):
    """`count` targets (every other one a tagging target) with verdicts made as the report makes them, from runs:
    audio gains 6 points on every target at 100%, control gains on the first target only, random has 4 seeds."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(count):
        metric = "test_pr_auc" if t % 2 else "test_top1"
        gains = {"audio": {0.1: 0.01 * (t - 1), 1.0: 0.06}, "control": {0.1: 0.0, 1.0: 0.08 if t == 0 else 0.0}}
        runs = []
        for s in range(4):
            base = {f: 0.4 + f / 4 + rng.normal(0, 0.01) for f in (0.1, 1.0)}
            runs += [{"fraction": f, "init": "random", "seed": s, "freeze": "none", "status": "completed",
                      metric: base[f]} for f in base]
            runs += [{"fraction": f, "init": init, "seed": s, "freeze": "none", "status": "completed",
                      metric: base[f] + g + rng.normal(0, 0.01)} for init, by in gains.items() for f, g in by.items()
                     if s < 2 or not (t == 1 and f == 0.1)]  # the second target's 10% has two seeds: not tested
        rows = verdict.verdicts(stats.gain_table(runs, metric), stats.completed_values(runs, metric), 0.05, [])
        out.append(target(f"target{t}", rows, metric, "audio" if t % 2 else "image"))
    return out


@pytest.mark.parametrize("count", [2, 5])
def test_the_section_renders_with_its_figure(tmp_path, count):
    targets = study(count)
    made = {}
    text = across_section(targets, tmp_path / "figures", made)
    assert text.startswith("## Across targets\n\n") and "Hartung-Knapp-Sidik-Jonkman" in text
    assert "Kornblith et al. 2019" in text and "IntHout et al. 2014" in text
    assert made["across_targets"] == tmp_path / "figures" / "across_targets.png"
    assert made["across_targets"].stat().st_size > 10_000
    assert "![Gain over random on each target and pooled](figures/across_targets.png)" in text
    header = next(line for line in text.splitlines() if line.startswith("| init | fraction |"))
    assert all(f"target{t} (" in header for t in range(count))
    assert ("a new target [95% PI]" in header) == (count >= 3)  # a prediction interval needs 3 targets
    assert ("one target: nothing to pool (target1: 2 seeds paired; a test needs 3)" if count == 2 else
            "audio at 10%: pooled over 4 targets, without target1 (2 seeds paired; a test needs 3)") in text
    assert "metrics differ (target0: test top-1 accuracy; target1: test macro PR-AUC" in text
    audio = next(line for line in text.splitlines() if line.startswith("| audio | 100% |"))
    assert audio.count("**gain** +") == count and audio.endswith("| **gain** |")  # every target, and pooled


def test_sentences_claim_only_what_holds():
    pooled = pooled_gains(study(5))
    words = across_sentences(pooled)
    audio = next(s for s in words if s.startswith("audio at 100%:"))
    assert "holds across targets (Holm p" in audio and "across 5 targets" in audio and "differ" not in audio
    control = next(s for s in words if s.startswith("control at 100%:"))
    assert control.startswith("control at 100%: a gain on target0 (+")
    assert "but not on target1 (" in control and "holds" not in control and "the targets differ" in control
    assert words[-1] == ("The pooled gains mix points of top-1 accuracy and macro PR-AUC: read them as a summary of "
                         "direction.")
    same = across_sentences(pooled_gains([t for t in study(5) if t["metric"] == "test_top1"]))
    assert not any("mix points" in s for s in same)
    one = across_sentences(pooled_gains(study(1)))
    assert one[0].endswith("; one target: nothing to pool.") and len(one) == 4

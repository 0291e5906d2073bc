"""Convergence speed on synthetic validation curves whose crossing epochs are known by construction."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from audio2image.report.convergence import convergence_sentence, convergence_table, crossing_epoch, thresholds
from audio2image.report import stats

EPOCHS = 8


def curve(init, fraction, seed, cross, top=1.0, freeze="none"):
    """A run at 0.5 until epoch `cross`, then at `top`; cross=None never leaves 0.5 (never reaches 0.9)."""
    epochs = list(range(1, EPOCHS + 1))
    values = [top if cross is not None and e >= cross else 0.5 for e in epochs]
    return {"fraction": fraction, "init": init, "freeze": freeze, "seed": seed, "epochs": epochs, "values": values}


# baseline best 1.0 everywhere, so the threshold is 0.9 and a run jumping to 1.0 crosses at its jump
DESIGN = {  # fraction -> init -> crossing epoch per seed 0..3
    0.1: {"random": [5, 5, 5, 5], "audio": [2, 3, 2, 3], "audio-stats": [4, 6, 5, None]},
    0.5: {"random": [4, 4, 4, 4], "audio": [1, 2, 2, 1], "audio-stats": [3, 5, 4, 4]},
}


def design_curves():
    return [curve(init, fraction, seed, cross) for fraction, inits in DESIGN.items()
            for init, crosses in inits.items() for seed, cross in enumerate(crosses)]


def bounded(cross):
    return EPOCHS + 1 if cross is None else cross


# --- crossing_epoch ------------------------------------------------------------------------------------------------

def test_crossing_epoch_known_crossing():
    assert crossing_epoch([1, 2, 3, 4], [0.1, 0.4, 0.8, 0.9], 0.7) == 3


def test_crossing_epoch_equality_counts():
    assert crossing_epoch([1, 2, 3], [0.1, 0.5, 0.9], 0.5) == 2


def test_crossing_epoch_never():
    assert crossing_epoch([1, 2, 3], [0.1, 0.2, 0.3], 0.5) is None
    assert crossing_epoch([], [], 0.5) is None


def test_crossing_epoch_skips_nan():
    assert crossing_epoch([1, 2, 3], [math.nan, math.inf, 0.6], 0.5) == 3
    assert crossing_epoch([1, 2], [math.nan, math.nan], -1.0) is None


def test_crossing_epoch_epochs_not_from_one():
    assert crossing_epoch([3, 4, 5, 6], [0.1, 0.2, 0.6, 0.7], 0.5) == 5


# --- thresholds ----------------------------------------------------------------------------------------------------

def test_thresholds_share_of_mean_best():
    curves = [
        {"fraction": 0.1, "init": "random", "freeze": "none", "seed": 0, "epochs": [1, 2, 3],
         "values": [0.2, 0.8, 0.7]},
        {"fraction": 0.1, "init": "random", "freeze": "none", "seed": 1, "epochs": [1, 2, 3],
         "values": [0.3, math.nan, 0.6]},
        {"fraction": 0.1, "init": "audio", "freeze": "none", "seed": 0, "epochs": [1], "values": [0.99]},
        {"fraction": 0.1, "init": "random", "freeze": "linear", "seed": 0, "epochs": [1], "values": [0.5]},
        {"fraction": 0.2, "init": "audio", "freeze": "none", "seed": 0, "epochs": [1], "values": [0.9]},
    ]
    out = thresholds(curves, share=0.9)
    assert out[(0.1, "none")] == pytest.approx(0.9 * (0.8 + 0.6) / 2)
    assert out[(0.1, "linear")] == pytest.approx(0.45)
    assert (0.2, "none") not in out  # no baseline run at 20%
    assert thresholds(curves, share=0.5, baseline="audio")[(0.2, "none")] == pytest.approx(0.45)


# --- convergence_table ---------------------------------------------------------------------------------------------

def test_runs_epochs_as_designed_and_never_reaching_is_kept():
    table = convergence_table(design_curves())
    assert table["share"] == 0.9
    assert [t["threshold"] for t in table["thresholds"]] == pytest.approx([0.9, 0.9])
    got = {(r["fraction"], r["init"], r["seed"]): r["epoch"] for r in table["runs"]}
    want = {(f, i, s): c for f, inits in DESIGN.items() for i, cs in inits.items() for s, c in enumerate(cs)}
    assert got == want
    never = [r for r in table["runs"] if r["epoch"] is None]
    assert len(never) == 1 and never[0]["init"] == "audio-stats" and never[0]["epochs_run"] == EPOCHS


def test_cells_count_runs_that_never_reached():
    cells = {(c["fraction"], c["init"]): c for c in convergence_table(design_curves())["cells"]}
    stalled = cells[(0.1, "audio-stats")]
    assert (stalled["n"], stalled["reached"]) == (4, 3)
    assert stalled["mean"] == pytest.approx(5.0) and stalled["median"] == 5.0  # over 4, 6, 5
    audio = cells[(0.1, "audio")]
    assert (audio["n"], audio["reached"], audio["mean"]) == (4, 4, pytest.approx(2.5))
    assert audio["std"] == pytest.approx(np.std([2, 3, 2, 3], ddof=1))
    assert cells[(0.5, "random")]["std"] == 0.0


def test_pairs_match_ttest_rel_and_holm():
    pairs = convergence_table(design_curves())["pairs"]
    assert [(p["init"], p["fraction"]) for p in pairs] == [
        ("audio", 0.1), ("audio", 0.5), ("audio-stats", 0.1), ("audio-stats", 0.5)]
    by = {(p["init"], p["fraction"]): p for p in pairs}
    for init in ("audio", "audio-stats"):
        ps = []
        for fraction in (0.1, 0.5):
            ours = [bounded(c) for c in DESIGN[fraction][init]]
            base = [bounded(c) for c in DESIGN[fraction]["random"]]
            pair = by[(init, fraction)]
            assert pair["n"] == 4 and pair["seeds"] == [0, 1, 2, 3]
            assert pair["mean"] == pytest.approx(np.mean(np.subtract(ours, base)))
            assert pair["p"] == pytest.approx(sps.ttest_rel(ours, base).pvalue)
            ps.append(pair["p"])
        adjusted = stats.holm(ps)
        assert [by[(init, f)]["p_holm"] for f in (0.1, 0.5)] == pytest.approx(adjusted)
        assert adjusted == pytest.approx([min(1.0, 2 * min(ps)), max(min(1.0, 2 * min(ps)), max(ps))])
    assert by[("audio", 0.1)]["mean"] == pytest.approx(-2.5) and by[("audio", 0.1)]["significant"]


def test_censored_pair_enters_as_epochs_run_plus_one():
    pair = {(p["init"], p["fraction"]): p for p in convergence_table(design_curves())["pairs"]}[("audio-stats", 0.1)]
    # differences -1, +1, 0 and (8 + 1) - 5 = +4 for the seed that never reached 0.9
    assert pair["mean"] == pytest.approx(1.0)
    assert (pair["censored"], pair["reached"], pair["baseline_reached"]) == (1, 3, 4)
    assert not pair["significant"]


def test_fraction_without_baseline_is_not_measured():
    curves = design_curves() + [curve("audio", 1.0, s, 2) for s in range(3)]
    table = convergence_table(curves)
    assert not [r for r in table["runs"] if r["fraction"] == 1.0]  # no threshold: not "never reached"
    lone = [p for p in table["pairs"] if p["fraction"] == 1.0]
    assert len(lone) == 1 and lone[0]["n"] == 0 and math.isnan(lone[0]["p_holm"])
    # an untested fraction does not enter the Holm family of the others
    alone = [p["p_holm"] for p in convergence_table(design_curves())["pairs"] if p["init"] == "audio"]
    assert [p["p_holm"] for p in table["pairs"] if p["init"] == "audio" and p["fraction"] < 1] == pytest.approx(alone)


# --- convergence_sentence ------------------------------------------------------------------------------------------

def test_sentence_names_sooner_interval_and_never_reached():
    table = convergence_table(design_curves())
    text = convergence_sentence(table["pairs"], table["share"], metric="val_top1")
    audio = text.split("Convergence of the audio-stats")[0]
    assert "audio init against the random init" in audio and "significantly sooner at 10%" in audio
    assert "-2.5 epochs, 95% CI" in audio and "never reached" not in audio
    assert "90% of the random init's mean best validation top-1 accuracy" in text
    rest = text.split("Convergence of the audio-stats")[1]
    assert "indistinguishable at 10%, 50%" in rest
    assert "1 of 8 paired audio-stats runs and 0 of 8 random runs never reached" in rest


def test_sentence_without_pairs():
    single = [curve("random", 0.1, 0, 3), curve("audio", 0.1, 0, 2)]
    pairs = convergence_table(single)["pairs"]
    assert pairs[0]["n"] == 1
    assert convergence_sentence(pairs, 0.9).startswith("No convergence comparison yet")
    assert convergence_sentence([], 0.9).startswith("No convergence comparison yet")

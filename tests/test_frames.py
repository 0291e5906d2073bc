"""The Python API: audio2image.load_results, load_curves and load_gains on an experiment folder as the sweep writes
it (test_report's fake one: no training), their shapes, columns and types, and the report's own numbers."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

import audio2image
from audio2image.report import build_report
from audio2image.report.text import pct
from test_report import make_experiment, section_of

INITS = ("random", "audio", "control")
SKIPPED = (1.0, "audio", 2)  # a run the fixture leaves out: missing


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two fractions x three inits x three seeds, one run missing, and its report."""
    root = tmp_path_factory.mktemp("frames")
    exp = make_experiment(root, inits=INITS, seeds=(0, 1, 2), skip=(SKIPPED,), extra={"control": "caltech256"})
    with pytest.MonkeyPatch.context() as patch:  # the ImageNet panel never from this machine's hub cache
        patch.setattr(torch.hub, "get_dir", lambda: str(root / "hub"))
        report = build_report(exp)["markdown"].read_text()
    return exp, report


def test_importing_the_package_does_not_load_pandas():
    code = "import sys, audio2image; print('pandas' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    with pytest.raises(AttributeError, match="load_everything"):
        audio2image.load_everything


def test_results_have_a_typed_row_per_run(experiment):
    exp, _ = experiment
    runs = audio2image.load_results(str(exp))  # a str as well as a Path
    assert len(runs) == 1 + 2 * 3 * 3 and runs["stage"].tolist() == ["pretrain"] + ["transfer"] * 18
    assert list(runs.columns[:11]) == ["stage", "side", "run_id", "dataset", "fraction", "init", "seed", "freeze",
                                       "lr", "weight_decay", "pretrain_seed"]
    assert runs.columns[-1] == "run_dir"
    types = runs.dtypes.astype(str).to_dict()
    assert {types[c] for c in ("seed", "pretrain_seed", "best_epoch", "epochs_run")} == {"Int64"}
    assert {types[c] for c in ("fraction", "lr", "test_top1", "val_top1", "test_roc_auc", "wall_seconds")} == {"float64"}
    assert {types[c] for c in ("stage", "init", "freeze", "status", "run_dir")} == {"string"}

    pretraining = runs.iloc[0]
    assert (pretraining["side"], pretraining["seed"], pretraining["status"]) == ("source", 0, "completed")
    assert pretraining["test_roc_auc"] == 0.85 and pretraining["run_dir"] == str(exp / "pretrain" / "source-seed0")
    transfers = runs[runs["stage"] == "transfer"]
    assert set(transfers["side"]) == {"target"} and set(transfers["init"]) == set(INITS)
    missing = transfers[transfers["status"] == "missing"]
    assert [tuple(missing.iloc[0][["fraction", "init", "seed"]])] == [SKIPPED]
    assert missing["run_dir"].isna().all() and missing["test_top1"].isna().all()
    done = transfers[transfers["status"] == "completed"]
    assert len(done) == 17 and done["test_top1"].notna().all()
    first = done.iloc[0]
    result = json.loads((exp / "transfer" / first["run_id"] / "result.json").read_text())
    assert first["test_top1"] == result["test"]["top1"] and first["run_dir"] == str(exp / "transfer" / first["run_id"])


def test_curves_are_one_row_per_run_epoch_and_metric(experiment):
    exp, _ = experiment
    curves = audio2image.load_curves(exp)
    # 17 transfer runs x 4 epochs x 8 values (lr, train loss and top-1, validation loss, top-1, top-5, mean
    # per-class accuracy, seconds), and the pretraining's 4 epochs x 6 values
    assert curves.shape == (17 * 4 * 8 + 4 * 6, 12)
    types = curves.dtypes.astype(str).to_dict()
    assert (types["epoch"], types["value"], types["fraction"], types["metric"]) == ("Int64", "float64", "float64",
                                                                                   "string")
    one = curves[(curves["run_id"] == "f0.25-audio-s1-none") & (curves["metric"] == "val_top1")]
    lines = [json.loads(line) for line in (exp / "transfer" / "f0.25-audio-s1-none" / "metrics.jsonl").open()]
    assert one["epoch"].tolist() == [1, 2, 3, 4] and one["value"].tolist() == [line["val_top1"] for line in lines]
    assert set(one["init"]) == {"audio"} and set(one["seed"]) == {1} and set(one["stage"]) == {"transfer"}
    assert set(curves.loc[curves["stage"] == "pretrain", "metric"]) == {"lr", "train_loss", "val_loss", "val_roc_auc",
                                                                       "val_pr_auc", "seconds"}


def test_gains_are_the_reports_answer(experiment):
    """Every number of the report's details table under "## The answer", and each verdict of its first table."""
    exp, report = experiment
    gains = audio2image.load_gains(exp)
    assert len(gains) == 4 and set(gains["init"]) == {"audio", "control"} and set(gains["metric"]) == {"test_top1"}
    assert gains.dtypes.astype(str)[["gain", "ci_low", "p_holm", "detectable", "n", "significant"]].tolist() == [
        "float64", "float64", "float64", "float64", "int64", "bool"]
    answer = section_of(report, "## The answer")
    details = {tuple(cells[:3]): cells for cells in _table(answer, "| init | freeze | fraction | gain (points) |")}
    verdicts = {cells[0]: cells[1:] for cells in _table(answer, "| init | 25% | 100% |")}
    for g in gains.itertuples():
        cells = details[(g.init, g.freeze, pct(g.fraction))]
        interval = (f"{100 * g.ci_low:+.1f} to {100 * g.ci_high:+.1f}" if g.ci_low == g.ci_low else "no interval")
        assert cells[3:6] == [f"{100 * g.gain:+.1f}", interval, f"{g.p_holm:.3g}" if g.p_holm == g.p_holm else "-"]
        assert cells[6] == f"{g.p_improvement:.2f} ({g.p_improvement_low:.2f} to {g.p_improvement_high:.2f})"
        assert cells[7] == str(g.n) and cells[8] == (f"{100 * g.detectable:.1f}" if g.detectable == g.detectable
                                                     else "-")
        word = verdicts[g.init][[0.25, 1.0].index(g.fraction)]
        assert word.startswith(f"**{g.verdict}**" if g.verdict != "not tested" else f"not tested: {g.untested}")
    assert gains.set_index(["init", "fraction"]).loc[("audio", 1.0), "verdict"] == "not tested"  # 2 pairs


def _table(section: str, head: str) -> list[list[str]]:
    """The body rows of the markdown table whose header starts with `head`, as lists of cells."""
    lines = section[section.index(head):].split("\n\n")[0].splitlines()[2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_gains_of_another_metric_and_a_metric_the_target_lacks(experiment):
    exp, _ = experiment
    assert set(audio2image.load_gains(exp, metric="test_top5")["metric"]) == {"test_top5"}
    with pytest.raises(ValueError, match="'test_roc_auc' is not a test metric of .*; use one of test_top1, "
                                         "test_mean_class_acc, test_top5$"):
        audio2image.load_gains(exp, metric="test_roc_auc")


@pytest.mark.parametrize("load", ["load_results", "load_curves", "load_gains"])
def test_a_folder_that_is_not_an_experiment_is_named(tmp_path, load):
    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(FileNotFoundError, match=re.escape(f"{folder} is not an experiment folder")):
            getattr(audio2image, load)(folder)

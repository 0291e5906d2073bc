"""End to end through the command line, on the tiny config: data -> stores -> pretraining -> sweep -> report."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from audio2image.cli import main
from audio2image.errors import UserError
from stores import children


def audio2image(*args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "audio2image", *map(str, args)], capture_output=True,
                            text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"audio2image {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result


def rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    args = ["run", "tiny", f"out_dir={root / 'runs'}", f"data_dir={root / 'data'}"]
    first = audio2image(*args)
    return root, args, first


def test_run_writes_the_whole_experiment(tiny_run):
    root, _, result = tiny_run
    experiment = root / "runs" / "tiny"
    summary = json.loads(result.stdout)
    assert summary["runs"] == summary["finished"] == 8  # 2 fractions x 2 inits x 2 seeds
    table = rows(experiment / "results.csv")
    assert len(table) == 8 and {r["status"] for r in table} == {"completed"}
    assert {(r["fraction"], r["init"], r["seed"]) for r in table} == {
        (f, i, s) for f in ("0.5", "1.0") for i in ("random", "audio") for s in ("0", "1")}
    for row in table:
        run = experiment / "transfer" / row["run_id"]
        assert (run / "result.json").is_file() and (run / "metrics.jsonl").is_file()
        assert (run / "config.yaml").is_file()
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((experiment / "pretrain" / "source-seed0" / "result.json").read_text())["status"] == "completed"
    report = (experiment / "report.md").read_text()
    assert "Conclusion" in report and "ROC-AUC" in report
    # tiny's 8 validation images are fewer than the default CKA sample: said in one line, the rest still written
    assert "validation split has 8 items, fewer than cka_items=1000; set cka_items=8 or less" in report
    assert "### Convergence speed" in report
    assert (experiment / "report.html").read_text().count("data:image/png;base64") >= 5
    figures = list((experiment / "figures").glob("*.png"))
    assert len(figures) >= 5
    for figure in figures:
        with Image.open(figure) as image:
            assert image.format == "PNG" and image.width > 300
    assert "epoch 1/2" in result.stderr  # progress is visible while it runs


def test_running_again_reuses_every_result(tiny_run):
    root, args, _ = tiny_run
    experiment = root / "runs" / "tiny"
    before = rows(experiment / "results.csv")
    again = audio2image(*args)
    assert "8 already finished, 0 to run" in again.stderr
    assert rows(experiment / "results.csv") == before


def test_the_python_api_reads_what_the_sweep_wrote(tiny_run):
    """load_results, load_curves and load_gains on a real experiment: its results.csv, pretraining, curves."""
    import audio2image

    root, _, _ = tiny_run
    experiment = root / "runs" / "tiny"
    runs = audio2image.load_results(experiment)
    pretraining, transfers = runs[runs["stage"] == "pretrain"], runs[runs["stage"] == "transfer"]
    listed = {row["run_id"]: row for row in csv.DictReader(open(experiment / "results.csv"))}
    assert set(transfers["run_id"]) == set(listed) and set(transfers["status"]) == {"completed"}
    for run in transfers.itertuples():
        assert run.test_top1 == float(listed[run.run_id]["test_top1"]) and run.lr == 0.05  # tiny's one setting
    audio = transfers["init"] == "audio"
    assert transfers.loc[audio, "pretrain_seed"].eq(0).all() and transfers.loc[~audio, "pretrain_seed"].isna().all()
    assert pretraining[["side", "seed", "status"]].values.tolist() == [["source", 0, "completed"]]
    identity = json.loads((experiment / "pretrain" / "source-seed0" / "run.json").read_text())
    assert pretraining["run_id"].iloc[0] == identity["run_id"] and pretraining["test_roc_auc"].notna().all()
    curves = audio2image.load_curves(experiment)
    epochs = curves.groupby("stage")["epoch"].max().to_dict()
    assert epochs == {"pretrain": 1, "transfer": 2} and set(curves["run_id"]) >= set(listed)
    gains = audio2image.load_gains(experiment)
    assert len(gains) == 2 and set(gains["verdict"]) == {"not tested"}  # two seeds: no test


def test_missing_data_folder_is_a_one_line_error(tmp_path):
    result = audio2image("run", "tiny", "synthetic=false", f"source_root={tmp_path / 'nowhere'}",
                         f"target_root={tmp_path / 'nowhere'}", f"out_dir={tmp_path}", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audio2image: error:") and "nowhere" in lines[0]


def test_help_explains_every_command():
    top = audio2image("--help").stdout
    for command in ("synth", "download", "inspect", "prepare", "pretrain", "transfer", "sweep", "report", "run"):
        assert command in top
        assert "usage: audio2image " + command in audio2image(command, "--help").stdout


class UnheardOf(UserError):
    """A user's problem of a class the command line has never been told about."""


def _prepare_caltech256_raising(monkeypatch, tmp_path, error: Exception) -> None:
    """`prepare caltech256` with `error` raised below the command, by the scan of the dataset's folder."""
    def scan(*args, **kwargs):
        raise error

    monkeypatch.setattr("audio2image.datasets.caltech256.scan_caltech256", scan)
    main(["prepare", "caltech256", str(tmp_path), str(tmp_path / "store")])


def test_a_user_error_from_deep_inside_a_command_is_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as code:
        _prepare_caltech256_raising(monkeypatch, tmp_path, UnheardOf("the folder has no images; give another"))
    assert code.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["audio2image: error: the folder has no images; give another"]


@pytest.mark.parametrize("bug", [KeyError("labels"), RuntimeError("a bug"),
                                 ValueError("config key 'x': a plain ValueError, whatever its words")])
def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys, bug):
    with pytest.raises(type(bug)) as raised:
        _prepare_caltech256_raising(monkeypatch, tmp_path, bug)
    assert raised.value is bug and "audio2image: error" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "nosuch=1"], "unknown config key 'nosuch'; `audio2image keys` lists every key"),
    (["sweep", "tiny", "target=imagefolder", "target_root=/nonexistent"],
     "imagefolder data folder /nonexistent does not exist (config key 'target_root')"),
    (["plan", "tiny", "targets=caltech256,imagefolder:/nonexistent"],
     "imagefolder data folder /nonexistent does not exist (config key 'targets', entry 'imagefolder:/nonexistent')"),
])
def test_a_user_error_is_reported_without_importing_torch(argv, message):
    code = (f"import sys\nfrom audio2image.cli import main\ntry:\n    main({argv!r})\n"
            "except SystemExit as end:\n    assert end.code == 2 and 'torch' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip() == f"audio2image: error: {message}"


@pytest.mark.slow
def test_a_run_on_two_torchrun_processes_survives_sigterm_to_one(tmp_path):
    """DDP on the CPU: two gloo processes share every batch, process 0 writes the run's files. SIGTERM may reach
    one DDP process only (or one first): both must stop at the same point, process 0 writing the checkpoint,
    instead of one waiting forever in an all-reduce; the same command then resumes the run to its end."""
    import os
    import signal
    import time

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "audio2image",
               "transfer", "--config", "tiny", f"out_dir={tmp_path}", f"data_dir={tmp_path / 'data'}",
               "transfer_epochs=6", "checkpoint_seconds=1e9", "--run-dir", str(tmp_path / "run")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 300
    while not metrics.exists() and time.time() < deadline:
        time.sleep(0.01)
    (worker,) = [pid for pid in descendants(process.pid) if "RANK=1" in environment(pid)]
    os.kill(worker, signal.SIGTERM)
    _, err = process.communicate(timeout=120)  # a hang here is the bug
    assert process.returncode != 0 and "SIGTERM" in err, err[-3000:]
    assert (tmp_path / "run" / "checkpoint.pt").exists(), err[-5000:]
    assert not (tmp_path / "run" / "result.json").exists()
    assert len(metrics.read_text().splitlines()) < 6
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == list(range(1, 7))  # resumed after the checkpoint's epoch, each epoch written once: one writer
    outcome = json.loads((tmp_path / "run" / "result.json").read_text())
    assert outcome["status"] == "completed" and outcome["test"]["top1"] > 0.25  # 4 classes


def descendants(pid: int) -> list[int]:
    return [d for child in children(pid) for d in (child, *descendants(child))]


def environment(pid: int) -> list[str]:
    return open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace").split("\0")

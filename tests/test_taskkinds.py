"""The task kinds, one object each: the names they give are the ones a run writes and the report reads."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from audio2image.config import load_config
from audio2image.prepare.store import Store
from audio2image.sweep.results import result_row
from audio2image.training.run import RunSpec, train_run
from audio2image.training.taskkinds import TASK_KINDS
from stores import make_audio_store, make_image_store


def test_the_task_kinds_import_without_torch():
    code = "import sys, audio2image.training.taskkinds\nassert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("make", [make_image_store, make_audio_store])  # classification, tagging
def test_a_run_writes_the_names_its_kind_gives(tmp_path, make):
    store = make(tmp_path / "store")
    config = load_config("configs/tiny.yaml", ["transfer_epochs=1", "audio_crop_seconds=1", "progress=false"])
    result = train_run(config, RunSpec("transfer", store), tmp_path / "run")
    kind = TASK_KINDS[Store(store).task]
    assert result["status"] == "completed" and result["task"] == kind.name
    assert result["selection_metric"] == kind.validation_metric  # what the sweep chooses on, the report's curve
    assert set(kind.metric_names) <= set(result["val"]) & set(result["test"])
    (line,) = [json.loads(text) for text in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert kind.validation_metric in line
    counted = [key for key in line if key.startswith("train_") and key != "train_loss"]
    assert counted == ([f"train_{kind.train_accuracy}"] if kind.train_accuracy else [])
    row = result_row(tmp_path / "run")  # results.csv, which the report reads
    assert kind.validation_metric in row and all(metric in row for metric in kind.test_metrics)
    assert kind.test_metrics[0] == f"test_{kind.selection_metric}"  # the report's primary metric

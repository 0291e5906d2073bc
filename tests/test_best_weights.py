"""A finished transfer run keeps its best weights at half the size (weight matrices in float16), read back as
float32 by everything that loads them; pretraining runs and the checkpoints of unfinished runs stay float32."""
from __future__ import annotations

import pytest
import torch

from audio2image.config import load_config
from audio2image.training.files import read_checkpoint
from audio2image.training.inits import initialise
from audio2image.training.model import build_model
from audio2image.training.run import RunSpec, train_run
from audio2image.training.saving import HALF_MAX, half_weights
from stores import kill_at_validation, make_audio_store, make_image_store

CLASSES = 4


def config(*overrides):
    return load_config("configs/tiny.yaml", ["transfer_epochs=2", "pretrain_epochs=1", "audio_crop_seconds=1",
                                             "audio_eval_crops=2", "progress=false", *overrides])


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return {"image": make_image_store(root / "image", classes=CLASSES), "audio": make_audio_store(root / "audio")}


def dtypes(path) -> dict:
    return {key: value.dtype for key, value in torch.load(path, weights_only=True)["model"].items()}


def test_matrices_are_halved_and_vectors_and_values_beyond_float16_kept():
    state = {"conv.weight": torch.randn(8, 3, 3, 3), "fc.weight": torch.randn(4, 8), "fc.bias": torch.randn(4),
             "bn.running_var": torch.full((8,), 1e6), "big.weight": torch.tensor([[1.0, 2 * HALF_MAX]]),
             "bn.num_batches_tracked": torch.tensor(7)}
    halved = half_weights(state)
    assert {k: v.dtype for k, v in halved.items()} == {
        "conv.weight": torch.float16, "fc.weight": torch.float16, "fc.bias": torch.float32,
        "bn.running_var": torch.float32, "big.weight": torch.float32, "bn.num_batches_tracked": torch.int64}
    assert torch.equal(halved["big.weight"], state["big.weight"])  # kept whole: float16 would make it inf
    relative = (halved["conv.weight"].float() - state["conv.weight"]).abs() / state["conv.weight"].abs()
    assert relative.max() < 1e-3  # float16 keeps 11 significant bits


def test_a_finished_transfer_run_keeps_half_weights_read_back_as_float32(stores, tmp_path):
    result = train_run(config(), RunSpec("transfer", stores["image"]), tmp_path / "run")
    assert result["status"] == "completed"
    kinds = dtypes(tmp_path / "run" / "best.pt")
    assert kinds["conv1.weight"] == kinds["fc.weight"] == torch.float16 and kinds["bn1.running_var"] == torch.float32
    loaded = read_checkpoint(tmp_path / "run" / "best.pt")["model"]
    assert all(v.dtype == torch.float32 for v in loaded.values() if v.is_floating_point())
    model = build_model(CLASSES, 0)
    model.load_state_dict(loaded)  # every tensor where the model has it
    # used as an init (checkpoint:PATH): the backbone gets the stored weights
    model = build_model(10, 1)
    initialise(model, f"checkpoint:{tmp_path / 'run' / 'best.pt'}")
    assert torch.equal(model.conv1.weight, loaded["conv1.weight"])


def test_pretraining_and_unfinished_runs_keep_float32(stores, tmp_path, monkeypatch):
    train_run(config(), RunSpec("pretrain", stores["audio"]), tmp_path / "pretrain")
    assert set(dtypes(tmp_path / "pretrain" / "best.pt").values()) <= {torch.float32, torch.int64}
    kill_at_validation(monkeypatch, 2)  # epoch 1 checkpointed, epoch 2 lost
    with pytest.raises(KeyboardInterrupt):
        train_run(config("checkpoint_seconds=0"), RunSpec("transfer", stores["image"]), tmp_path / "run")
    for name in ("checkpoint.pt", "best.pt"):
        assert set(dtypes(tmp_path / "run" / name).values()) <= {torch.float32, torch.int64}, name
    monkeypatch.undo()
    resumed = train_run(config("checkpoint_seconds=0"), RunSpec("transfer", stores["image"]), tmp_path / "run")
    whole = train_run(config(), RunSpec("transfer", stores["image"]), tmp_path / "whole")
    assert resumed["test"] == whole["test"]  # tested on the float32 weights either way
    assert dtypes(tmp_path / "run" / "best.pt")["conv1.weight"] == torch.float16
    size = {name: (tmp_path / name / "best.pt").stat().st_size for name in ("pretrain", "run")}
    assert size["run"] < 0.55 * size["pretrain"]

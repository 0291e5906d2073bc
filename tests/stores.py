"""Tiny prepared stores written directly in the store format, with a signal a ResNet learns in a few steps.

Training tests use these instead of decoding media, so that they take seconds; the media paths are tested in
test_store.py and end to end in test_cli.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from audio2image.prepare.features import FEATURE_PRESETS

SPLITS = {"train": 48, "valid": 16, "test": 16}


def make_image_store(path: Path, classes: int = 4, size: int = 40, seed: int = 0) -> Path:
    """Each class is a colour: a learnable, deterministic image task."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (classes, 3))
    path.mkdir(parents=True, exist_ok=True)
    for split, n in SPLITS.items():
        labels = np.arange(n) % classes
        x = rng.integers(0, 60, (n, size, size, 3)) + palette[labels][:, None, None, :] * 0.75
        np.save(path / f"{split}.x.npy", x.clip(0, 255).astype(np.uint8))
        np.save(path / f"{split}.y.npy", labels.astype(np.int64))
        (path / f"{split}.ids.json").write_text(json.dumps([f"{split}/{i}.jpg" for i in range(n)]))
    manifest = {"modality": "image", "task": "classification", "dataset": "caltech256",
                "labels": [f"{i:03d}.class{i}" for i in range(1, classes + 1)], "splits": {}, "skipped": []}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def make_audio_store(path: Path, tags: int = 6, mels: int = 32, frames: int = 80, seed: int = 0) -> Path:
    """Each tag lights up its own band of mel bins: a learnable multi-label task."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    band = mels // tags
    for split, n in SPLITS.items():
        labels = (rng.random((n, tags)) < 0.4).astype(np.uint8)
        labels[labels.sum(1) == 0, rng.integers(0, tags)] = 1
        x = rng.normal(-40, 5, (n, mels, frames))
        for t in range(tags):
            x[labels[:, t] == 1, t * band:(t + 1) * band] += 25
        np.save(path / f"{split}.x.npy", x.astype(np.float16))
        np.save(path / f"{split}.y.npy", labels)
        (path / f"{split}.ids.json").write_text(json.dumps([f"{split}/{i}.mp3" for i in range(n)]))
    settings = dict(FEATURE_PRESETS["recipe"].to_dict(), n_mels=mels)
    manifest = {"modality": "audio", "task": "tagging", "dataset": "mtat", "features": "recipe",
                "labels": [f"tag{i}" for i in range(tags)], "feature_settings": settings, "splits": {},
                "skipped": [], "normalization": {"mean": [-30.0] * mels, "std": [12.0] * mels}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def kill_at_validation(monkeypatch, epoch: int) -> None:
    """Make the training loop die (KeyboardInterrupt, as a kill) in `epoch`'s validation: the epochs before it are
    done, that one is lost. monkeypatch.undo() (or the end of the test) restores evaluation."""
    from audio2image.training import engine

    real, calls = engine.evaluate, []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("audio2image.training.run.evaluate", evaluate_then_die)


def children(pid: int) -> list[int]:
    """The pids of a process's children (Linux: /proc/PID/task/PID/children)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

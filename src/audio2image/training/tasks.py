"""A task is a prepared store + a head + its loss + its metrics. Either store can be a source or a target.

    >>> task = build_task(Store(path), config, stage="transfer")
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audio2image.config import Config, renamed_value
from audio2image.datasets.splits import nested_fraction, nested_random_fraction
from audio2image.prepare.features import MelSettings
from audio2image.prepare.store import Store
from audio2image.training import metrics
from audio2image.training.engine import probabilities_loss
from audio2image.training.inputs import AudioInputs, ImageInputs

SELECTION = {"tagging": "roc_auc", "classification": "top1"}  # chosen on validation; higher is better


@dataclass
class Task:
    kind: str  # "tagging" (multi-label, BCE) or "classification" (multi-class, cross-entropy)
    store: Store
    inputs: AudioInputs | ImageInputs
    crop_frames: int = 0  # audio training crops; 0 = whole items
    label_smoothing: float = 0.0

    @property
    def num_outputs(self) -> int:
        return len(self.store.labels)

    @property
    def selection_metric(self) -> str:
        return SELECTION[self.kind]

    def train_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.kind == "tagging":
            return F.binary_cross_entropy_with_logits(logits, targets.float())
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.kind == "tagging" else torch.softmax(logits, dim=-1)

    def eval_loss(self, probabilities: torch.Tensor, targets: torch.Tensor) -> float:
        return probabilities_loss(self.kind, probabilities, targets)

    def metrics(self, probabilities: torch.Tensor, targets: torch.Tensor) -> dict:
        if self.kind == "tagging":
            return metrics.tagging_metrics(probabilities, targets)
        return metrics.classification_metrics(probabilities, targets, num_classes=self.num_outputs)


def build_task(store: Store, config: Config, stage: str) -> Task:
    if store.modality == "audio":
        settings = MelSettings(**store.manifest["feature_settings"])
        crop = 0
        if config.audio_crop_seconds > 0:
            crop = min(settings.frames(round(config.audio_crop_seconds * settings.sample_rate)),
                       store.split("train").x.shape[2])
        normalization = store.manifest["normalization"] if config.audio_normalize else None
        features = renamed_value("audio_features", store.manifest["features"], quiet=True)  # older stores: "seed"
        inputs = AudioInputs(crop, config.audio_eval_crops, normalization, config.audio_specaugment,
                             original_channels=features == "original")
    else:
        crop = 0
        inputs = ImageInputs(config.image_size, config.image_augment)
    # Each stage has its own smoothing key; only a classification task (cross-entropy) takes it.
    smoothing = getattr(config, f"{stage}_label_smoothing") if store.task == "classification" else 0.0
    return Task(store.task, store, inputs, crop, smoothing)


def fraction_rows(task: Task, fraction: float, seed: int) -> np.ndarray:
    """Training rows for a data fraction: nested (a smaller fraction's rows are inside a larger one's) and, for
    classification, stratified with at least one item per class. Depends only on the labels, fraction and seed."""
    labels = np.asarray(task.store.split("train").y)
    if task.kind == "classification":
        return nested_fraction(labels, fraction, seed)
    return nested_random_fraction(len(labels), fraction, seed)

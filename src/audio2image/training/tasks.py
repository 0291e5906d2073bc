"""A task is a prepared store + a head + its loss + its metrics. Either store can be a source or a target. Its kind
(taskkinds.py) names the loss and metrics; their functions are at the end of this module.

    >>> task = build_task(Store(path), config, stage="transfer")
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audio2image.config import Config, renamed_value
from audio2image.config_checks import parse_backbone_args
from audio2image.datasets.splits import nested_fraction, nested_random_fraction
from audio2image.prepare.features import MelSettings
from audio2image.prepare.store import Store
from audio2image.training import metrics
from audio2image.training.backbone import Backbone
from audio2image.training.inputs import AudioInputs, ImageInputs
from audio2image.training.taskkinds import TASK_KINDS, TaskKind


@dataclass
class Task:
    kind: TaskKind  # its loss, probabilities and metrics (taskkinds.py)
    store: Store
    inputs: AudioInputs | ImageInputs
    backbone: Backbone  # the network for these inputs: the configured architecture, their channels and size
    crop_frames: int = 0  # audio training crops; 0 = whole items
    label_smoothing: float = 0.0

    @property
    def num_outputs(self) -> int:
        return len(self.store.labels)

    @property
    def selection_metric(self) -> str:
        return self.kind.selection_metric

    def train_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.kind.train_loss(logits, targets, self.label_smoothing)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.kind.probabilities(logits)

    def eval_loss(self, probabilities: torch.Tensor, targets: torch.Tensor) -> float:
        return self.kind.eval_loss(probabilities, targets)

    def metrics(self, probabilities: torch.Tensor, targets: torch.Tensor) -> dict:
        return self.kind.metrics(probabilities, targets, self.num_outputs)


def build_task(store: Store, config: Config, stage: str) -> Task:
    item = {**store.manifest, "shape": store.split("train").x.shape[1:]}
    normalization = store.manifest.get("normalization") if config.audio_normalize else None
    inputs, backbone, crop = network_input(config, store.modality, item, normalization)
    kind = TASK_KINDS[store.task]
    # Each stage has its own smoothing key; only a kind whose loss takes it (cross-entropy) gets it.
    smoothing = getattr(config, f"{stage}_label_smoothing") if kind.smooths_labels else 0.0
    return Task(kind, store, inputs, backbone, crop, smoothing)


def network_input(config: Config, modality: str, item: dict, normalization: dict | None = None
                  ) -> tuple[AudioInputs | ImageInputs, Backbone, int]:
    """The inputs a store's items become, the backbone built for them and the audio training crop in frames (0:
    whole items), from the store's description alone: its item shape and an audio store's features (a store's
    manifest, or the registry's `item` for a store not prepared yet: a plan's calibration)."""
    args = parse_backbone_args(config.backbone_args)
    if modality != "audio":
        inputs = ImageInputs(config.image_size, config.image_augment)
        return inputs, Backbone(config.backbone, 3, (config.image_size, config.image_size), args=args), 0
    settings = MelSettings(**item["feature_settings"])
    mels, frames = item["shape"]
    crop = 0
    if config.audio_crop_seconds > 0:
        crop = min(settings.frames(round(config.audio_crop_seconds * settings.sample_rate)), frames)
    features = renamed_value("audio_features", item["features"], quiet=True)  # older stores: "seed"
    original_channels = features == "original"
    channels = 1 if config.audio_channels == "sum" and not original_channels else 3
    inputs = AudioInputs(crop, config.audio_eval_crops, normalization, config.audio_specaugment,
                         original_channels=original_channels, channels=channels)
    return inputs, Backbone(config.backbone, channels, (mels, crop or frames), config.audio_patch_stride, args), crop


def fraction_rows(task: Task, fraction: float, seed: int) -> np.ndarray:
    """Training rows for a data fraction: nested (a smaller fraction's rows are inside a larger one's) and, for
    classification, stratified with at least one item per class. Depends only on the labels, fraction and seed."""
    return task.kind.fraction_rows(np.asarray(task.store.split("train").y), fraction, seed)


# --- the functions of the task kinds (taskkinds.py names them) ---------------------------------------------------
def tagging_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets.float())  # multi-label: no smoothing


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def sigmoid(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits)


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=-1)


def _clamped(probabilities: torch.Tensor) -> torch.Tensor:
    return probabilities.double().clamp(1e-7, 1 - 1e-7)


def tagging_eval_loss(probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """The binary cross-entropy of probabilities averaged over crops."""
    return F.binary_cross_entropy(_clamped(probabilities), targets.double()).item()


def classification_eval_loss(probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """The negative log-likelihood of probabilities averaged over crops."""
    return F.nll_loss(_clamped(probabilities).log(), targets.long()).item()


def tagging_metrics(probabilities: torch.Tensor, targets: torch.Tensor, num_outputs: int) -> dict:
    return metrics.tagging_metrics(probabilities, targets)


def classification_metrics(probabilities: torch.Tensor, targets: torch.Tensor, num_outputs: int) -> dict:
    return metrics.classification_metrics(probabilities, targets, num_classes=num_outputs)


def top1_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == targets).sum()


def random_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    return nested_random_fraction(len(labels), fraction, seed)


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    return nested_fraction(labels, fraction, seed)

"""The kinds of task, one object each: its loss, its probabilities, its metrics and the metric it is chosen on.

A store's manifest and each run's result.json name the kind ("task"); everything else asks its object, never
its name. The names are plain data, so that the report reads them without torch; the functions are named by
module and attribute (tasks.py holds them) and imported when first called, as the dataset registry's are.

    >>> TASK_KINDS["tagging"].validation_metric
    'val_roc_auc'
"""
from __future__ import annotations

from dataclasses import dataclass

from audio2image.datasets.registry import Ref

FUNCTIONS = "audio2image.training.tasks"


@dataclass(frozen=True)
class TaskKind:
    name: str  # as manifests and result.json write it
    label_noun: str  # what its labels are called
    selection_metric: str  # chosen on validation, higher is better; the report's primary metric
    metric_names: tuple[str, ...]  # what `metrics` reports that results.csv and the report show
    report_metrics: tuple[str, ...]  # those the report compares on the test split, the selection metric first
    train_accuracy: str | None  # counted on the training batches as train_<this> by `train_hits`; None: nothing
    smooths_labels: bool  # whether its train loss takes the stage's label smoothing
    train_loss: Ref  # (logits, targets, label_smoothing) -> loss tensor
    probabilities: Ref  # logits -> probabilities
    eval_loss: Ref  # (probabilities averaged over crops, targets) -> float
    metrics: Ref  # (probabilities, targets, num_outputs) -> {metric: value}
    train_hits: Ref | None  # (logits, targets) -> how many are right
    fraction_rows: Ref  # (training labels, fraction, seed) -> the rows of a nested training fraction

    @property
    def validation_metric(self) -> str:
        """What result.json records as its selection metric, and the report's validation curve."""
        return f"val_{self.selection_metric}"

    @property
    def test_metrics(self) -> tuple[str, ...]:
        return tuple(f"test_{name}" for name in self.report_metrics)


def _function(name: str) -> Ref:
    return Ref(f"{FUNCTIONS}:{name}")


TAGGING = TaskKind(  # multi-label: sigmoid per tag, binary cross-entropy, macro ROC-AUC and PR-AUC
    name="tagging", label_noun="tags", selection_metric="roc_auc", metric_names=("roc_auc", "pr_auc"),
    report_metrics=("roc_auc", "pr_auc"), train_accuracy=None, smooths_labels=False,
    train_loss=_function("tagging_loss"), probabilities=_function("sigmoid"),
    eval_loss=_function("tagging_eval_loss"), metrics=_function("tagging_metrics"), train_hits=None,
    fraction_rows=_function("random_fraction"))

CLASSIFICATION = TaskKind(  # multi-class: softmax, cross-entropy (with label smoothing), top-1
    name="classification", label_noun="classes", selection_metric="top1",
    metric_names=("top1", "top5", "mean_class_acc"), report_metrics=("top1",), train_accuracy="top1",
    smooths_labels=True, train_loss=_function("classification_loss"), probabilities=_function("softmax"),
    eval_loss=_function("classification_eval_loss"), metrics=_function("classification_metrics"),
    train_hits=_function("top1_hits"), fraction_rows=_function("stratified_fraction"))

TASK_KINDS = {kind.name: kind for kind in (TAGGING, CLASSIFICATION)}


def kind_or_classification(name: str | None) -> TaskKind:
    """The kind named `name`; classification where the name is not a kind (no run has recorded one yet), so that a
    report of an experiment with no results still has metrics to name."""
    return TASK_KINDS.get(name, CLASSIFICATION)

"""Evaluation metrics for music auto-tagging and image classification, in vectorised torch.

Tagging (multi-label, ``scores`` and ``targets`` both ``[N, T]``):

* :func:`roc_auc_per_tag` and :func:`average_precision_per_tag` give one value per tag and
  agree with scikit-learn's ``roc_auc_score`` and ``average_precision_score`` to rounding
  (about 1e-15), ties included: tied scores form one threshold, as in sklearn.
* :func:`tagging_metrics` macro-averages them over the tags where each is defined.

Classification (multi-class, ``logits`` ``[N, C]``, integer ``targets`` ``[N]``):

* :func:`classification_metrics` gives top-1 (= sklearn ``accuracy_score`` of the argmax),
  top-k with k = min(5, C), and mean per-class recall (= sklearn ``balanced_accuracy_score``).

Inputs may be torch tensors (any device) or numpy arrays. The work runs on the device of
the scores/logits, in float64, so a validation pass on the GPU needs no copy to the host, and
no per-tag Python loop: every tag is handled at once by sorting each column.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "roc_auc_per_tag",
    "average_precision_per_tag",
    "tagging_metrics",
    "classification_metrics",
]


def _as_tensor(x, device: torch.device | None = None) -> torch.Tensor:
    """Return `x` as a tensor (no copy when it already is one on `device`)."""
    if isinstance(x, torch.Tensor):
        tensor = x.detach()
    else:
        tensor = torch.as_tensor(np.asarray(x))
    return tensor if device is None else tensor.to(device)


def _tagging_inputs(scores, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and convert to float64 `[N, T]` scores and 0/1 targets on the scores' device."""
    scores = _as_tensor(scores)
    targets = _as_tensor(targets, scores.device)
    if scores.ndim == 1:  # one tag given as a vector, as sklearn accepts
        scores = scores.unsqueeze(1)
    if targets.ndim == 1:
        targets = targets.unsqueeze(1)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must both be [N, T]; got {tuple(scores.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError("no samples")
    scores = scores.to(torch.float64)
    targets = targets.to(torch.float64)
    # NaN has no place in a ranking, so fail loudly rather than report a meaningless number.
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if not ((targets == 0) | (targets == 1)).all():
        raise ValueError("targets must be binary (0/1 or bool)")
    return scores, targets


def _tie_groups(sorted_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each position of column-wise sorted scores, the first and last index of its tie group.

    A run of equal scores is one threshold in sklearn's curves, so every quantity is read
    at the group's boundaries; cummax/cummin propagate those boundaries to each member.
    """
    n, t = sorted_scores.shape
    index = torch.arange(n, device=sorted_scores.device).unsqueeze(1).expand(n, t)
    differs = sorted_scores[1:] != sorted_scores[:-1]
    edge = torch.ones(1, t, dtype=torch.bool, device=sorted_scores.device)
    is_first = torch.cat([edge, differs])
    is_last = torch.cat([differs, edge])
    first = torch.where(is_first, index, -1).cummax(dim=0).values
    # The next group end at or after each position: a cummin run from the bottom.
    last = torch.where(is_last, index, n).flip(0).cummin(dim=0).values.flip(0)
    return first, last


def _ranked(scores: torch.Tensor, targets: torch.Tensor):
    """Sort every tag by descending score; return sorted labels, tie bounds, positives-so-far."""
    order = torch.argsort(scores, dim=0, descending=True)
    labels = targets.gather(0, order)
    first, last = _tie_groups(scores.gather(0, order))
    true_pos = labels.cumsum(dim=0)  # positives ranked at or above each position
    return labels, first, last, true_pos


def roc_auc_per_tag(scores, targets) -> torch.Tensor:
    """ROC AUC of each tag, `[T]` float64; nan for a tag whose targets are all 0 or all 1.

    Equals sklearn's trapezoid over distinct thresholds, which is the Mann-Whitney statistic:
    each negative earns one point per positive scored above it and half per positive tied
    with it. Counting that way keeps the sum exact in float64 until the final division.
    """
    scores, targets = _tagging_inputs(scores, targets)
    labels, first, last, true_pos = _ranked(scores, targets)
    pos_above = (true_pos - labels).gather(0, first)  # positives before the tie group
    pos_tied = true_pos.gather(0, last) - pos_above  # positives inside the tie group
    credit = ((1.0 - labels) * (pos_above + 0.5 * pos_tied)).sum(dim=0)
    n_pos = labels.sum(dim=0)
    n_neg = labels.shape[0] - n_pos
    auc = credit / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.nan)


def average_precision_per_tag(scores, targets) -> torch.Tensor:
    """Average precision of each tag, `[T]` float64; nan where a tag has no positive.

    sklearn's step-wise sum: over distinct thresholds, recall gained times precision there.
    Spread over samples, each positive adds 1/P times the precision at the end of its tie
    group (all samples scored at or above its threshold count as predicted positive).
    """
    scores, targets = _tagging_inputs(scores, targets)
    labels, _, last, true_pos = _ranked(scores, targets)
    precision_at_group = true_pos.gather(0, last) / (last + 1).to(torch.float64)
    n_pos = labels.sum(dim=0)
    ap = (labels * precision_at_group).sum(dim=0) / n_pos
    return torch.where(n_pos > 0, ap, torch.nan)


def _nanmean(values: torch.Tensor) -> tuple[float, int]:
    """Mean of the non-nan entries as a python float (nan if none) and how many there were."""
    defined = ~torch.isnan(values)
    count = int(defined.sum())
    return (float(values[defined].mean()) if count else math.nan), count


def tagging_metrics(scores, targets) -> dict:
    """Macro ROC AUC and PR AUC (average precision) over the tags where each is defined.

    sklearn's macro average raises when a tag lacks a class; an evaluation split often has a
    rare tag with no positive, so those tags are skipped instead. ``tags_scored`` counts the
    tags in the ROC AUC mean (both classes present). ``pr_auc`` averages the tags with at
    least one positive, which also admits a tag that is positive on every sample.
    """
    scores, targets = _tagging_inputs(scores, targets)
    roc_auc, tags_scored = _nanmean(roc_auc_per_tag(scores, targets))
    pr_auc, _ = _nanmean(average_precision_per_tag(scores, targets))
    return {"roc_auc": roc_auc, "pr_auc": pr_auc, "tags_scored": tags_scored}


def _classification_inputs(logits, targets, num_classes):
    """Validate and convert to float64 `[N, C]` logits and int64 `[N]` targets, same device."""
    logits = _as_tensor(logits)
    targets = _as_tensor(targets, logits.device)
    if logits.ndim != 2 or targets.ndim != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(
            f"need logits [N, C] and targets [N]; got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if logits.shape[0] == 0:
        raise ValueError("no samples")
    n_classes = logits.shape[1] if num_classes is None else int(num_classes)
    if n_classes != logits.shape[1]:
        raise ValueError(f"num_classes={n_classes} but logits have {logits.shape[1]} columns")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError("targets must be integer class indices")
    targets = targets.to(torch.int64)
    if targets.min() < 0 or targets.max() >= n_classes:
        raise ValueError(f"targets must lie in [0, {n_classes})")
    return logits.to(torch.float64), targets, n_classes


def _target_rank(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Zero-based rank of the true class when classes are ordered by logit, ties by index.

    Breaking ties by the lower index is what argmax does, so rank 0 is exactly "argmax is
    right", and top-k is deterministic where torch.topk would pick tied classes arbitrarily.
    """
    true_logit = logits.gather(1, targets.unsqueeze(1))
    class_index = torch.arange(logits.shape[1], device=logits.device)
    ahead = (logits > true_logit) | ((logits == true_logit) & (class_index < targets.unsqueeze(1)))
    return ahead.sum(dim=1)


def classification_metrics(logits, targets, num_classes: int | None = None) -> dict:
    """Top-1, top-k (k = min(5, C), reported as ``top5``) and mean per-class accuracy.

    ``mean_class_acc`` is the mean recall over the classes that occur in `targets`, the
    definition of sklearn's ``balanced_accuracy_score``; a class absent from the targets has
    no recall to average, so it is left out. All values are python floats in [0, 1].
    """
    logits, targets, n_classes = _classification_inputs(logits, targets, num_classes)
    rank = _target_rank(logits, targets)
    correct = (rank == 0).to(torch.float64)
    k = min(5, n_classes)
    support = torch.bincount(targets, minlength=n_classes).to(torch.float64)
    hits = torch.bincount(targets, weights=correct, minlength=n_classes)
    present = support > 0
    return {
        "top1": float(correct.mean()),
        "top5": float((rank < k).to(torch.float64).mean()),
        "mean_class_acc": float((hits[present] / support[present]).mean()),
    }

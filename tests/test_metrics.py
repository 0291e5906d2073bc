"""The torch metrics must equal scikit-learn's (to 1e-10) on every kind of input we meet."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    roc_auc_score,
)

from audio2image.training.metrics import (
    average_precision_per_tag,
    classification_metrics,
    roc_auc_per_tag,
    tagging_metrics,
)

TOL = 1e-10


def _sklearn_per_tag(scores: np.ndarray, targets: np.ndarray):
    """Per-tag sklearn ROC AUC and AP, nan where sklearn's metric is undefined."""
    roc, ap = [], []
    for t in range(targets.shape[1]):
        y, s = targets[:, t], scores[:, t]
        roc.append(roc_auc_score(y, s) if 0 < y.sum() < len(y) else math.nan)
        ap.append(average_precision_score(y, s) if y.sum() > 0 else math.nan)
    return np.array(roc), np.array(ap)


def _random_tagging(rng, n=400, t=12, decimals=None, integer=False):
    targets = (rng.random((n, t)) < rng.uniform(0.05, 0.6, size=t)).astype(np.int64)
    if integer:
        scores = rng.integers(-3, 4, size=(n, t)).astype(np.int64)
    else:
        # Scores mildly correlated with the labels so AUCs are not all near 0.5.
        scores = rng.normal(size=(n, t)) + targets
        if decimals is not None:
            scores = np.round(scores, decimals)
    return scores, targets


def _check_tagging(scores, targets):
    """Compare per-tag values and macro summaries with sklearn, for numpy and torch inputs."""
    roc_ref, ap_ref = _sklearn_per_tag(np.asarray(scores), np.asarray(targets))
    for as_input in (np.asarray, torch.as_tensor):
        s, y = as_input(scores), as_input(targets)
        roc = roc_auc_per_tag(s, y).cpu().numpy()
        ap = average_precision_per_tag(s, y).cpu().numpy()
        np.testing.assert_allclose(roc, roc_ref, rtol=0, atol=TOL, equal_nan=True)
        np.testing.assert_allclose(ap, ap_ref, rtol=0, atol=TOL, equal_nan=True)
        summary = tagging_metrics(s, y)
        assert summary["tags_scored"] == int(np.sum(~np.isnan(roc_ref)))
        assert summary["roc_auc"] == pytest.approx(np.nanmean(roc_ref), abs=TOL)
        assert summary["pr_auc"] == pytest.approx(np.nanmean(ap_ref), abs=TOL)
        assert all(isinstance(summary[key], float) for key in ("roc_auc", "pr_auc"))
        assert isinstance(summary["tags_scored"], int)


@pytest.mark.parametrize("seed", range(5))
def test_tagging_random_scores(seed):
    _check_tagging(*_random_tagging(np.random.default_rng(seed)))


@pytest.mark.parametrize("seed", range(5))
def test_tagging_heavy_ties(seed):
    # Rounded scores make many ties, where the threshold grouping decides the value.
    _check_tagging(*_random_tagging(np.random.default_rng(100 + seed), decimals=1))


def test_tagging_integer_scores():
    _check_tagging(*_random_tagging(np.random.default_rng(7), integer=True))


def test_tagging_all_tied_column():
    rng = np.random.default_rng(8)
    scores, targets = _random_tagging(rng)
    scores[:, 0] = 0.25  # one threshold: ROC AUC 0.5, AP = prevalence
    _check_tagging(scores, targets)
    assert roc_auc_per_tag(scores, targets)[0].item() == pytest.approx(0.5, abs=TOL)


def test_tagging_degenerate_tags_are_excluded():
    rng = np.random.default_rng(9)
    scores, targets = _random_tagging(rng, t=6)
    targets[:, 1] = 0  # no positive: neither metric defined
    targets[:, 4] = 1  # no negative: ROC AUC undefined, AP defined (= 1)
    _check_tagging(scores, targets)
    roc = roc_auc_per_tag(scores, targets)
    ap = average_precision_per_tag(scores, targets)
    assert torch.isnan(roc[[1, 4]]).all() and not torch.isnan(roc[[0, 2, 3, 5]]).any()
    assert torch.isnan(ap[1]) and ap[4].item() == pytest.approx(1.0)
    summary = tagging_metrics(scores, targets)
    assert summary["tags_scored"] == 4
    # Tags with both classes present also agree with sklearn's own macro average.
    keep = [0, 2, 3, 5]
    macro = roc_auc_score(targets[:, keep], scores[:, keep], average="macro")
    assert summary["roc_auc"] == pytest.approx(macro, abs=TOL)


def test_tagging_bool_targets_and_float32_scores():
    scores, targets = _random_tagging(np.random.default_rng(10), decimals=2)
    _check_tagging(scores.astype(np.float32), targets.astype(bool))


def test_tagging_no_scorable_tag_gives_nan():
    summary = tagging_metrics(np.random.default_rng(0).random((5, 3)), np.zeros((5, 3)))
    assert math.isnan(summary["roc_auc"]) and math.isnan(summary["pr_auc"])
    assert summary["tags_scored"] == 0


def test_tagging_rejects_bad_input():
    with pytest.raises(ValueError):
        roc_auc_per_tag(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError):
        roc_auc_per_tag(np.zeros((4, 2)), np.full((4, 2), 2))
    with pytest.raises(ValueError):
        average_precision_per_tag(np.full((4, 2), np.nan), np.ones((4, 2)))


def test_tagging_large_is_fast_and_exact():
    rng = np.random.default_rng(11)
    scores, targets = _random_tagging(rng, n=5000, t=50, decimals=2)
    s, y = torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(targets)
    tagging_metrics(s, y)  # warm-up: first calls pay torch's one-off dispatch costs
    elapsed = []
    for _ in range(3):
        start = time.perf_counter()
        tagging_metrics(s, y)
        elapsed.append(time.perf_counter() - start)
    # ~0.05 s on an idle 2-core machine; the bound leaves room for a loaded CI machine and still catches a
    # per-tag Python loop or a quadratic algorithm.
    assert min(elapsed) < 1.0, f"tagging_metrics took {min(elapsed):.3f} s"
    _check_tagging(s, y)


def _reference_topk(logits: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Top-k with ties broken toward the lower class index, as argmax breaks them."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(np.mean([t in row for t, row in zip(targets, order)]))


def _check_classification(logits, targets, num_classes=None):
    logits, targets = np.asarray(logits), np.asarray(targets)
    k = min(5, logits.shape[1])
    predictions = logits.argmax(axis=1)
    for as_input in (np.asarray, torch.as_tensor):
        result = classification_metrics(as_input(logits), as_input(targets), num_classes)
        assert result["top1"] == pytest.approx(accuracy_score(targets, predictions), abs=TOL)
        assert result["top5"] == pytest.approx(_reference_topk(logits, targets, k), abs=TOL)
        balanced = balanced_accuracy_score(targets, predictions)
        assert result["mean_class_acc"] == pytest.approx(balanced, abs=TOL)
        assert all(isinstance(value, float) for value in result.values())


@pytest.mark.parametrize("num_classes", [2, 3, 5, 10, 100])
def test_classification_random(num_classes):
    rng = np.random.default_rng(num_classes)
    targets = rng.integers(0, num_classes, size=600)
    logits = rng.normal(size=(600, num_classes))
    logits[np.arange(600), targets] += 1.0
    _check_classification(logits.astype(np.float32), targets, num_classes)


# sklearn warns that predictions name classes absent from y_true; that is the case under test.
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_classification_ties_and_missing_classes():
    rng = np.random.default_rng(1)
    targets = rng.choice([0, 2, 3, 7], size=300)  # classes 1, 4, 5, 6, 8, 9 never occur
    logits = np.round(rng.normal(size=(300, 10)), 0)  # many tied logits
    _check_classification(logits, targets)


def test_classification_small_known_values():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    targets = np.array([0, 2, 1, 0])
    result = classification_metrics(logits, targets)
    assert result["top1"] == 0.25  # only row 0; row 2's tie goes to class 0
    assert result["top5"] == 1.0  # k = min(5, 3) = 3 covers every class
    assert result["mean_class_acc"] == pytest.approx((1 / 2 + 0 + 0) / 3)


def test_classification_rejects_bad_input():
    with pytest.raises(ValueError):
        classification_metrics(np.zeros((4, 3)), np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError):
        classification_metrics(np.zeros((4, 3)), np.array([0, 1, 2, 0]), num_classes=4)
    with pytest.raises(ValueError):
        classification_metrics(np.zeros((4, 3)), np.zeros(4, dtype=np.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_match_cpu():
    rng = np.random.default_rng(12)
    scores, targets = _random_tagging(rng, n=2000, t=20, decimals=1)
    cpu = tagging_metrics(scores, targets)
    cuda = tagging_metrics(torch.as_tensor(scores).cuda(), torch.as_tensor(targets).cuda())
    assert cuda == pytest.approx(cpu, abs=TOL)
    assert roc_auc_per_tag(torch.as_tensor(scores).cuda(), targets).is_cuda
    logits, labels = rng.normal(size=(500, 10)), rng.integers(0, 10, size=500)
    cpu = classification_metrics(logits, labels)
    cuda = classification_metrics(torch.as_tensor(logits).cuda(), torch.as_tensor(labels).cuda())
    assert cuda == pytest.approx(cpu, abs=TOL)

"""Linear CKA and the unbiased HSIC: against direct formulas, its invariances, and its minibatch accumulation."""
from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from audio2image.analysis.cka import (MinibatchCKA, centred_gram, gram, hsic_biased, hsic_unbiased, linear_cka,
                                      minibatch_cka)

TOL = 1e-10


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _related(n: int, p: int, q: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x [n, p] and y = x W + noise [n, q]: a pair with a clearly non-trivial similarity."""
    r = _rng(seed)
    x = r.standard_normal((n, p))
    y = x @ r.standard_normal((p, q)) + noise * r.standard_normal((n, q))
    return x, y


def _cka_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019 on centred features, written out."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x, "fro") ** 2 / (np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro"))


def _hsic_u_loops(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012's closed form, every sum written as a loop over index pairs (O(n^3), slow)."""
    n = len(k)
    off = [(i, j) for i in range(n) for j in range(n) if i != j]
    trace_kl = sum(k[i, j] * l[j, i] for i, j in off)
    sum_k = sum(k[i, j] for i, j in off)
    sum_l = sum(l[i, j] for i, j in off)
    # 1^T K~ L~ 1 = sum_m (sum_{a != m} k_am)(sum_{b != m} l_mb)
    cross = sum(sum(k[a, m] for a in range(n) if a != m) * sum(l[m, b] for b in range(n) if b != m) for m in range(n))
    return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * cross / (n - 2)) / (n * (n - 3))


def _hsic_u_statistic(k: np.ndarray, l: np.ndarray) -> float:
    """The U-statistic itself: mean over ordered distinct (i, j, q, r) of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq."""
    terms = [
        k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
        for i, j, q, r in itertools.permutations(range(len(k)), 4)
    ]
    return float(np.mean(terms))


# --- linear_cka against the formula -----------------------------------------------------------------------------

@pytest.mark.parametrize("n,p,q", [(10, 3, 4), (30, 5, 50), (8, 40, 60), (50, 50, 50), (25, 1, 7), (6, 200, 2)])
def test_linear_cka_equals_direct_formula(n: int, p: int, q: int) -> None:
    r = _rng(n * 1000 + p + q)
    x, y = r.standard_normal((n, p)) + 3.0, r.standard_normal((n, q)) @ r.standard_normal((q, q))
    assert linear_cka(x, y) == pytest.approx(_cka_direct(x, y), abs=TOL)


def test_feature_and_gram_paths_agree_on_both_sides_of_the_switch() -> None:
    # p*q + p^2 + q^2 vs n*(p + q) picks the path; a related pair makes the value far from both 0 and 1.
    for n, p in [(40, 10), (40, 100)]:
        x, y = _related(n, p, p, noise=3.0, seed=p)
        k, l = gram(x - x.mean(0)), gram(y - y.mean(0))
        via_gram = np.vdot(k, l) / (np.linalg.norm(k) * np.linalg.norm(l))
        assert linear_cka(x, y) == pytest.approx(via_gram, abs=TOL)
        assert linear_cka(x, y) == pytest.approx(_cka_direct(x, y), abs=TOL)


def test_biased_cka_is_the_biased_hsic_ratio() -> None:
    x, y = _related(30, 8, 12, noise=2.0)
    k, l = gram(x), gram(y)  # uncentred: hsic_biased centres the Gram matrices itself
    ratio = hsic_biased(k, l) / math.sqrt(hsic_biased(k, k) * hsic_biased(l, l))
    assert linear_cka(x, y) == pytest.approx(ratio, abs=TOL)


def test_hsic_biased_equals_trace_formula() -> None:
    r = _rng(3)
    n = 12
    k, l = gram(r.standard_normal((n, 5))), gram(r.standard_normal((n, 7)))
    h = np.eye(n) - np.ones((n, n)) / n
    assert hsic_biased(k, l) == pytest.approx(np.trace(k @ h @ l @ h) / (n - 1) ** 2, rel=1e-12)


# --- properties ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one_and_cka_is_symmetric(debiased: bool) -> None:
    x, y = _related(40, 20, 30, noise=1.0)
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=TOL)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(linear_cka(y, x, debiased=debiased), abs=TOL)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(debiased: bool) -> None:
    x, y = _related(40, 15, 25, noise=2.0)
    base = linear_cka(x, y, debiased=debiased)
    assert 0.1 < base < 0.95  # non-trivial, so the invariances below say something
    q, _ = np.linalg.qr(_rng(7).standard_normal((15, 15)))
    assert linear_cka(x @ q, y, debiased=debiased) == pytest.approx(base, abs=TOL)
    assert linear_cka(x, 1e-3 * y, debiased=debiased) == pytest.approx(base, abs=TOL)
    assert linear_cka(250.0 * x, y, debiased=debiased) == pytest.approx(base, abs=TOL)


@pytest.mark.parametrize("debiased", [False, True])
def test_not_invariant_to_non_isotropic_scaling(debiased: bool) -> None:
    x, y = _related(40, 15, 25, noise=2.0)
    scaled = x * np.logspace(-2, 2, 15)  # stretches some feature directions far more than others
    assert abs(linear_cka(scaled, y, debiased=debiased) - linear_cka(x, y, debiased=debiased)) > 0.05


def test_independent_features_debiased_near_zero_biased_not() -> None:
    r = _rng(11)
    x, y = r.standard_normal((200, 500)), r.standard_normal((200, 500))
    # Measured ~0.715 for these shapes (the bias grows with width / n); debiased within ~0.01 of 0.
    assert linear_cka(x, y) > 0.6
    assert abs(linear_cka(x, y, debiased=True)) < 0.05


def test_constant_input_gives_nan() -> None:
    r = _rng(2)
    x, const = r.standard_normal((10, 4)), np.full((10, 3), 0.1)  # 0.1: its mean is not exact in binary
    for debiased in (False, True):
        assert math.isnan(linear_cka(x, const, debiased=debiased))
        assert math.isnan(linear_cka(const, x, debiased=debiased))


def test_cka_in_the_unit_interval_and_one_for_linearly_related() -> None:
    x = _rng(4).standard_normal((30, 6))
    assert linear_cka(x, 5.0 * x + 2.0) == pytest.approx(1.0, abs=TOL)
    x, y = _related(30, 6, 9, noise=5.0)
    assert 0.0 <= linear_cka(x, y) <= 1.0


# --- the unbiased HSIC --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [4, 5, 9])
def test_hsic_unbiased_matches_the_paper_formula_and_the_u_statistic(n: int) -> None:
    r = _rng(n)
    k, l = gram(r.standard_normal((n, 3))), gram(r.standard_normal((n, 2)) + 1.0)
    value = hsic_unbiased(k, l)
    assert value == pytest.approx(_hsic_u_loops(k, l), rel=1e-10, abs=1e-12)
    assert value == pytest.approx(_hsic_u_statistic(k, l), rel=1e-10, abs=1e-12)


def test_hsic_unbiased_is_invariant_to_shifting_features() -> None:
    # Why linear_cka may centre features before the debiased estimator without changing it.
    r = _rng(5)
    x, y = r.standard_normal((15, 4)), r.standard_normal((15, 6))
    shifted = x + r.standard_normal(4) * 10
    assert hsic_unbiased(gram(shifted), gram(y)) == pytest.approx(hsic_unbiased(gram(x), gram(y)), rel=1e-9)


def test_hsic_unbiased_has_zero_mean_for_independent_data() -> None:
    r = _rng(8)
    unbiased, biased = [], []
    for _ in range(400):
        k, l = gram(r.standard_normal((12, 3))), gram(r.standard_normal((12, 3)))
        unbiased.append(hsic_unbiased(k, l))
        biased.append(hsic_biased(k, l))
    sem = np.std(unbiased) / math.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 4 * sem
    # The biased estimator's positive bias is what the unbiased one removes; the test could see it.
    assert np.mean(biased) > 10 * np.std(biased) / math.sqrt(len(biased))


# --- MinibatchCKA -------------------------------------------------------------------------------------------------

def test_minibatch_one_batch_equals_debiased_linear_cka() -> None:
    x, y = _related(64, 20, 30, noise=2.0)
    cka = MinibatchCKA()
    assert cka.result() == {} and cka.batches == 0
    cka.update({"a": x}, {"a": y})
    assert cka.batches == 1
    assert cka.result()["a"] == pytest.approx(linear_cka(x, y, debiased=True), abs=TOL)


def test_minibatches_approach_the_full_batch_value() -> None:
    x, y = _related(1000, 30, 40, noise=4.0, seed=3)
    full = linear_cka(x, y, debiased=True)
    assert 0.2 < full < 0.95
    cka = MinibatchCKA()
    for start in range(0, 1000, 100):
        cka.update({"a": x[start:start + 100]}, {"a": y[start:start + 100]})
    assert cka.batches == 10
    assert cka.result()["a"] == pytest.approx(full, abs=0.03)


def test_minibatch_several_layers_each_returned() -> None:
    x, y = _related(50, 10, 12, noise=1.0)
    noise = _rng(9).standard_normal((50, 12))
    cka = MinibatchCKA()
    for sl in (slice(0, 25), slice(25, 50)):
        cka.update({"same": x[sl], "related": x[sl], "random": x[sl]},
                   {"same": x[sl], "related": y[sl], "random": noise[sl]})
    out = cka.result()
    assert set(out) == {"same", "related", "random"}
    assert out["same"] == pytest.approx(1.0, abs=TOL)
    assert abs(out["random"]) < out["related"] < 1.0


def test_minibatch_torch_tensors_equal_numpy_and_4d_is_flattened() -> None:
    torch = pytest.importorskip("torch")
    r = _rng(6)
    maps = r.standard_normal((16, 3, 4, 5))
    y = maps.reshape(16, -1) @ r.standard_normal((60, 8)) + r.standard_normal((16, 8))
    from_numpy, from_torch = MinibatchCKA(), MinibatchCKA()
    from_numpy.update({"conv": maps.reshape(16, -1)}, {"conv": y})
    from_torch.update({"conv": torch.tensor(maps, dtype=torch.float32, requires_grad=True)},
                      {"conv": torch.tensor(y, dtype=torch.float64)})
    # float32 input rounds the features, so agreement is to float32 precision, not TOL.
    assert from_torch.result()["conv"] == pytest.approx(from_numpy.result()["conv"], abs=1e-6)
    expected = linear_cka(maps.reshape(16, -1), y)
    assert linear_cka(torch.tensor(maps), torch.tensor(y)) == pytest.approx(expected, abs=TOL)


def test_linear_cka_flattens_feature_maps() -> None:
    maps = _rng(1).standard_normal((20, 2, 3, 3))
    y = _rng(2).standard_normal((20, 5))
    for debiased in (False, True):
        assert linear_cka(maps, y, debiased=debiased) == linear_cka(maps.reshape(20, 18), y, debiased=debiased)


def test_minibatch_constant_layer_is_nan() -> None:
    cka = MinibatchCKA()
    x = _rng(0).standard_normal((8, 3))
    cka.update({"dead": np.zeros((8, 4)), "ok": x}, {"dead": x, "ok": x})
    out = cka.result()
    assert math.isnan(out["dead"]) and out["ok"] == pytest.approx(1.0, abs=TOL)


# --- bad input ----------------------------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors() -> None:
    r = _rng(0)
    x = r.standard_normal((10, 3))
    with pytest.raises(ValueError, match="same examples.*n = 10 and n = 9"):
        linear_cka(x, x[:9])
    with pytest.raises(ValueError, match=r"must be \[n, features\].*shape \(10,\)"):
        linear_cka(x[:, 0], x)
    with pytest.raises(ValueError, match="at least 4 examples.*n = 3"):
        linear_cka(x[:3], x[:3], debiased=True)
    assert linear_cka(x[:3], x[:3]) == pytest.approx(1.0)  # the biased form is defined for n = 3
    with pytest.raises(ValueError, match="non-finite"):
        linear_cka(np.where(x > 1, np.nan, x), x)
    with pytest.raises(ValueError, match="at least 4"):
        hsic_unbiased(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="square"):
        hsic_unbiased(np.eye(4), np.eye(5))


def test_minibatch_bad_input_raises_and_keeps_state() -> None:
    x = _rng(0).standard_normal((8, 3))
    cka = MinibatchCKA()
    with pytest.raises(ValueError, match="same layers"):
        cka.update({"a": x}, {"b": x})
    with pytest.raises(ValueError, match="layer 'b'.*at least 4 examples"):
        cka.update({"a": x, "b": x[:3]}, {"a": x, "b": x[:3]})
    assert cka.batches == 0 and cka.result() == {}  # the failed update added nothing, not even layer 'a'
    cka.update({"a": x}, {"a": x})
    with pytest.raises(ValueError, match="every batch must name the same layers"):
        cka.update({"a": x, "c": x}, {"a": x, "c": x})
    with pytest.raises(ValueError, match="layer 'a'.*n = 8 and n = 7"):
        cka.update({"a": x}, {"a": x[:7]})
    assert cka.batches == 1


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, audio2image.analysis, audio2image.analysis.cka; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_minibatch_cka_from_grams_equals_the_accumulator():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(60, 30))
    y = x @ rng.normal(size=(30, 20)) + 0.5 * rng.normal(size=(60, 20))
    accumulator = MinibatchCKA()
    grams_x, grams_y = [], []
    for rows in np.array_split(np.arange(60), 3):
        accumulator.update({"a": x[rows]}, {"a": y[rows]})
        grams_x.append({"a": centred_gram(x[rows] + 5.0)})  # a shared offset: centring removes it
        grams_y.append({"a": centred_gram(y[rows])})
    assert minibatch_cka(grams_x, grams_y)["a"] == pytest.approx(accumulator.result()["a"], abs=1e-10)
    with pytest.raises(ValueError, match="same, non-zero number of batches"):
        minibatch_cka(grams_x, grams_y[:2])

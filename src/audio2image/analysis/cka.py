"""Linear centred kernel alignment (CKA) between two sets of features of the same examples.

Example: ``linear_cka(feats_a, feats_b)`` -> 0.87, for feats_a [n, p] and feats_b [n, q] taken on the same n inputs.

Two estimators:

- biased (``debiased=False``), Kornblith, Norouzi, Lee, Hinton 2019, on column-centred X, Y:
  CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), which equals
  HSIC_b(K, L) / sqrt(HSIC_b(K, K) HSIC_b(L, L)) with K = X X^T, L = Y Y^T, HSIC_b = tr(K H L H) / (n-1)^2.
  It is pushed towards 1 when the feature width is large against n, even for independent features.
- debiased (``debiased=True``), the unbiased HSIC estimator of Song et al. 2012 in place of HSIC_b, as used by
  Nguyen, Raghu, Kornblith 2021; near 0 for independent features at any width. `MinibatchCKA` accumulates it over
  minibatches so that memory stays bounded by one minibatch's b x b Gram matrices.

Inputs may be numpy arrays or torch tensors of any float dtype; everything is computed in float64 numpy on the CPU.
Features with more than two dimensions ([n, c, h, w] feature maps) are flattened to [n, c*h*w].
torch is never imported here: a tensor is recognised by its type's module and converted with its own methods.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# A numpy array, a torch tensor or anything np.asarray accepts, with examples on the first axis.
Features = Any


def _to_numpy(x: Features) -> np.ndarray:
    # Checked by module name so that numpy-only callers never import torch.
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_features(x: Features, name: str = "x") -> np.ndarray:
    """`x` as a float64 [n, features] matrix; more than two dims are flattened after the first."""
    a = _to_numpy(x)
    if a.ndim < 2:
        raise ValueError(
            f"{name} must be [n, features] (or [n, ...], flattened), got shape {a.shape}; "
            "pass a single feature per example as x[:, None]"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    # np.prod rather than -1 so that a [n, 0] input reshapes too (it is then constant, giving nan).
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:])))


def _pair(x: Features, y: Features, min_n: int, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as feature matrices over the same n >= min_n examples."""
    prefix = f"{what}: " if what else ""
    xa, ya = _as_features(x, f"{prefix}x"), _as_features(y, f"{prefix}y")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(
            f"{prefix}x and y must hold the same examples on their first axis, "
            f"got n = {xa.shape[0]} and n = {ya.shape[0]}"
        )
    if xa.shape[0] < min_n:
        raise ValueError(f"{prefix}need at least {min_n} examples for this estimator, got n = {xa.shape[0]}")
    return xa, ya


def _is_constant(a: np.ndarray) -> bool:
    # Exact test on the raw input: after centring, a constant input leaves rounding noise (~1e-17) rather than
    # zeros, and that noise would yield an arbitrary CKA instead of the nan it should be.
    return not np.any(a != a[:1])


def _ratio(xy: float, xx: float, yy: float) -> float:
    """xy / sqrt(xx yy), or nan when either self-similarity is not positive (constant input)."""
    if not (xx > 0 and yy > 0):
        return math.nan
    # Two square roots rather than sqrt(xx * yy): the product of two HSICs can overflow for large activations.
    return float(xy / (math.sqrt(xx) * math.sqrt(yy)))


def gram(x: Features) -> np.ndarray:
    """Linear Gram matrix K = X X^T, float64 [n, n], of x [n, ...] (flattened to [n, -1]). Not centred."""
    a = _as_features(x)
    return a @ a.T


def _square_pair(k: np.ndarray, l: np.ndarray, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    k, l = np.asarray(k, dtype=np.float64), np.asarray(l, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape != l.shape:
        raise ValueError(f"k and l must be square Gram matrices of the same size, got {k.shape} and {l.shape}")
    if k.shape[0] < min_n:
        raise ValueError(f"need at least {min_n} examples for this estimator, got n = {k.shape[0]}")
    return k, l


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Unbiased HSIC estimator of Song et al. 2012 for Gram matrices k, l [n, n], n >= 4.

    With K~, L~ the Gram matrices with their diagonals set to 0 and 1 the all-ones vector:
    HSIC_u = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)).
    It is a U-statistic, so it may be slightly negative; for linear kernels it does not change when a constant
    vector is added to every feature row.
    """
    k, l = _square_pair(k, l, min_n=4)
    n = k.shape[0]
    # Dropping the diagonal removes each example's similarity to itself, the source of the biased estimator's bias.
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    trace_kl = np.einsum("ij,ji->", kt, lt)
    # 1^T K~ L~ 1 as (1^T K~)(L~ 1): two O(n^2) sums instead of an O(n^3) matrix product.
    cross = kt.sum(axis=0) @ lt.sum(axis=1)
    total = trace_kl + kt.sum() * lt.sum() / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)
    return float(total / (n * (n - 3)))


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    """Biased HSIC estimator tr(K H L H) / (n-1)^2 for Gram matrices k, l [n, n], H = I - 11^T/n, n >= 2."""
    k, l = _square_pair(k, l, min_n=2)
    n = k.shape[0]
    # H K H without forming H: subtract row and column means, add back the grand mean.
    kc = k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()
    # tr(K H L H) = tr((H K H) L) by cyclicity and H H = H.
    return float(np.einsum("ij,ji->", kc, l) / (n - 1) ** 2)


def _biased_cka(xc: np.ndarray, yc: np.ndarray) -> float:
    """Biased linear CKA of column-centred xc [n, p], yc [n, q], by the cheaper of two equal formulas."""
    n, p = xc.shape
    q = yc.shape[1]
    # ||Y^T X||_F^2 = tr(X X^T Y Y^T) = <K, L>_F and ||X^T X||_F = ||X X^T||_F, so the feature (p x q, p x p,
    # q x q products) and Gram (n x n products) paths give the same number; take whichever costs fewer
    # multiply-adds, which is also the one with the smaller intermediates (wide layers: Gram; few features: features).
    if n * (p + q) < p * q + p * p + q * q:
        k, l = xc @ xc.T, yc @ yc.T
        return _ratio(np.vdot(k, l), np.vdot(k, k), np.vdot(l, l))
    xy, xx, yy = yc.T @ xc, xc.T @ xc, yc.T @ yc
    return _ratio(np.vdot(xy, xy), np.vdot(xx, xx), np.vdot(yy, yy))


def linear_cka(x: Features, y: Features, debiased: bool = False) -> float:
    """Linear CKA between features x [n, p] and y [n, q] of the same n examples, a float in [0, 1] (biased).

    debiased=False: Kornblith et al. 2019, ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X, Y (n >= 2).
    debiased=True: HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L)) with K = X X^T, L = Y Y^T and `hsic_unbiased`
    (Nguyen et al. 2021); needs n >= 4, can be slightly negative, and holds two n x n matrices in memory
    (use `MinibatchCKA` for many examples).

    Inputs with more than two dims are flattened to [n, -1]; numpy arrays or torch tensors of any float dtype.
    Returns nan when x or y is constant over the examples (zero variance: CKA is undefined), or, for the
    debiased form, when an unbiased self-HSIC comes out <= 0 (only with very few examples).
    Raises ValueError when x and y have different n, are 0-D/1-D, contain nan/inf, or have too few examples.

    Example: ``linear_cka(np.random.randn(100, 64), np.random.randn(100, 32), debiased=True)`` -> about 0.0
    """
    xa, ya = _pair(x, y, min_n=4 if debiased else 2)
    if _is_constant(xa) or _is_constant(ya):
        return math.nan
    # Centring is the definition for the biased form; the unbiased HSIC is exactly invariant to it, so there it
    # only guards against cancellation when activations have a large common mean (e.g. after a ReLU).
    xc, yc = xa - xa.mean(axis=0), ya - ya.mean(axis=0)
    if not debiased:
        return _biased_cka(xc, yc)
    k, l = xc @ xc.T, yc @ yc.T
    return _ratio(hsic_unbiased(k, l), hsic_unbiased(k, k), hsic_unbiased(l, l))


def _minibatch_hsics(xa: np.ndarray, ya: np.ndarray) -> np.ndarray:
    """[HSIC_u(K, L), HSIC_u(K, K), HSIC_u(L, L)] of one minibatch."""
    x_const, y_const = _is_constant(xa), _is_constant(ya)
    if x_const and y_const:
        return np.zeros(3)
    # A constant batch has zero covariance exactly; computing it would give rounding noise instead of 0.
    xc, yc = xa - xa.mean(axis=0), ya - ya.mean(axis=0)
    k, l = xc @ xc.T, yc @ yc.T
    return np.array([
        0.0 if x_const or y_const else hsic_unbiased(k, l),
        0.0 if x_const else hsic_unbiased(k, k),
        0.0 if y_const else hsic_unbiased(l, l),
    ])


class MinibatchCKA:
    """Linear CKA accumulated over minibatches (Nguyen et al. 2021), for several named layers at once.

    Each `update` adds, per layer, the unbiased HSICs of one minibatch; `result` returns
    mean HSIC_xy / sqrt(mean HSIC_xx * mean HSIC_yy), the mean over batches. Memory is one batch's b x b Gram
    matrices, whatever the number of examples. With a single batch this is ``linear_cka(x, y, debiased=True)``.
    Each HSIC is normalised by its batch (the 1/(b(b-3)) factor), so every batch counts equally even when
    the last one is smaller. Features with more than two dims are flattened to [b, -1].

    Example::

        cka = MinibatchCKA()
        for batch in loader:
            cka.update({"layer1": feats_a["layer1"]}, {"layer1": feats_b["layer1"]})
        cka.result()  # {"layer1": 0.91}
    """

    def __init__(self) -> None:
        self._sums: dict[str, np.ndarray] = {}  # layer -> summed [HSIC_xy, HSIC_xx, HSIC_yy]
        self._batches = 0

    @property
    def batches(self) -> int:
        """Number of minibatches accumulated so far."""
        return self._batches

    def update(self, xs: Mapping[str, Features], ys: Mapping[str, Features]) -> None:
        """Add one minibatch: per layer name, x [b, p, ...] and y [b, q, ...] for the same b >= 4 items."""
        if set(xs) != set(ys):
            raise ValueError(f"xs and ys must name the same layers, got {sorted(xs)} and {sorted(ys)}")
        if not xs:
            raise ValueError("update needs at least one layer")
        if self._sums and set(xs) != set(self._sums):
            # A mean over different batches per layer would silently compare layers on different examples.
            raise ValueError(f"every batch must name the same layers: first had {sorted(self._sums)}, got {sorted(xs)}")
        # Compute every layer before adding any, so that a bad layer leaves the accumulated state untouched.
        stats = {name: _minibatch_hsics(*_pair(xs[name], ys[name], min_n=4, what=f"layer {name!r}")) for name in xs}
        for name, s in stats.items():
            self._sums[name] = self._sums.get(name, np.zeros(3)) + s
        self._batches += 1

    def result(self) -> dict[str, float]:
        """Per layer, mean HSIC_xy / sqrt(mean HSIC_xx * mean HSIC_yy); nan for a layer constant in x or y.

        Empty before the first `update`.
        """
        return {name: _ratio(*(s / self._batches)) for name, s in self._sums.items()}


def centred_gram(x: Features) -> np.ndarray:
    """The linear Gram matrix of x [b, ...] (flattened) after centring its features: the form `minibatch_cka`
    takes. The unbiased HSIC does not change by centring; it keeps precision when activations share a large mean."""
    a = _as_features(x)
    a = a - a.mean(axis=0)
    return a @ a.T


def minibatch_cka(grams_x: list[Mapping[str, np.ndarray]], grams_y: list[Mapping[str, np.ndarray]]
                  ) -> dict[str, float]:
    """`MinibatchCKA`'s result from per-batch Gram matrices ({layer: [b, b]} per batch, the same batches on
    both sides): a network's Grams can be computed once and compared with many others'."""
    if len(grams_x) != len(grams_y) or not grams_x:
        raise ValueError(f"need the same, non-zero number of batches on both sides, got {len(grams_x)} and "
                         f"{len(grams_y)}")
    sums: dict[str, np.ndarray] = {}
    for kx, ky in zip(grams_x, grams_y):
        for name in kx:
            k, l = kx[name], ky[name]
            sums[name] = sums.get(name, np.zeros(3)) + [hsic_unbiased(k, l), hsic_unbiased(k, k), hsic_unbiased(l, l)]
    return {name: _ratio(*(s / len(grams_x))) for name, s in sums.items()}

"""Disentanglement metrics: how well single latent dimensions capture single factors of variation.

All take ``codes`` of shape (N, D) (e.g. posterior means, see :func:`pyvae.latent.encode_loader`)
and ground-truth ``factors`` of shape (N, F) (e.g. from :func:`pyvae.data.load_sprites`), as
tensors or arrays, and return plain Python floats. Factors are discrete: each distinct value of a
column is one class (continuous factors must be binned by the caller, e.g. with
:func:`discretize`).

* :func:`mig`: the Mutual Information Gap (Chen et al., 2018, https://arxiv.org/abs/1802.04942);
* :func:`sap`: the Separated Attribute Predictability score (Kumar et al., 2018,
  https://arxiv.org/abs/1711.00848);
* :func:`dci`: Disentanglement, Completeness and Informativeness (Eastwood and Williams, 2018,
  https://openreview.net/forum?id=By-7dz-AZ);
* :func:`factorvae_score`: the majority-vote score of Kim and Mnih (2018,
  https://arxiv.org/abs/1802.05983).

The estimators follow ``disentanglement_lib`` (Locatello et al., 2019,
https://arxiv.org/abs/1811.12359): codes are binned into ``num_bins`` equal-width bins for the
mutual information; scikit-learn computes the mutual information, the per-dimension classifiers and
the gradient-boosted trees.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

__all__ = [
    "dci",
    "dci_from_importance",
    "discrete_mutual_information",
    "discretize",
    "factorvae_score",
    "mig",
    "sap",
]


def _sklearn() -> Any:
    try:
        import sklearn.metrics
    except ImportError as exc:
        raise ImportError(
            "the disentanglement metrics need scikit-learn: pip install 'pyvae[viz]'"
        ) from exc
    return sklearn


def _as_array(name: str, value: Any) -> np.ndarray:
    """A 2-D float64 numpy copy of a tensor or array, with a clear error otherwise."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().to("cpu", torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: expected a 2-D tensor or array of numbers, got {type(value).__name__}"
        ) from None
    if array.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array of shape (N, columns), got shape {tuple(array.shape)}"
        )
    if array.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one column, got shape {tuple(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def _pair(codes: Any, factors: Any, *, min_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    c, f = _as_array("codes", codes), _as_array("factors", factors)
    if c.shape[0] != f.shape[0]:
        raise ValueError(
            f"codes and factors: expected the same number of rows, got {c.shape[0]} and "
            f"{f.shape[0]}"
        )
    if c.shape[0] < min_n:
        raise ValueError(f"codes: expected at least {min_n} rows, got {c.shape[0]}")
    return c, f


def _labels(factors: np.ndarray) -> np.ndarray:
    """Each factor column as integer class labels 0..K-1 (one per distinct value)."""
    return np.stack(
        [np.unique(factors[:, j], return_inverse=True)[1] for j in range(factors.shape[1])], 1
    )


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def discretize(values: Any, num_bins: int = 20) -> np.ndarray:
    """Bin each column of ``values`` (N, D) into ``num_bins`` equal-width bins over its range.

    Returns integer bin indices 0..num_bins-1 of shape (N, D), as ``disentanglement_lib`` does
    for MIG. A constant column falls into bin 0.

    Args:
        values: a tensor or array of shape (N, D).
        num_bins: the number of bins per column.
    """
    x = _as_array("values", values)
    num_bins = _check_positive_int("num_bins", num_bins)
    out = np.zeros(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        if x[:, j].min() == x[:, j].max():
            continue  # a constant column: bin 0
        edges = np.histogram_bin_edges(x[:, j], bins=num_bins)
        out[:, j] = np.clip(np.digitize(x[:, j], edges[1:-1]), 0, num_bins - 1)
    return out


def discrete_mutual_information(codes: Any, factors: Any) -> np.ndarray:
    """The mutual information I(c_i; v_j) in nats between discrete columns, shape (D, F).

    Both arguments are label arrays (any values; each distinct value is one class), of shapes
    (N, D) and (N, F); the plug-in estimate from the contingency table
    (``sklearn.metrics.mutual_info_score``).

    Args:
        codes: labels of shape (N, D), e.g. from :func:`discretize`.
        factors: labels of shape (N, F).
    """
    c, f = _pair(codes, factors)
    sk = _sklearn()
    return np.array(
        [
            [sk.metrics.mutual_info_score(c[:, i], f[:, j]) for j in range(f.shape[1])]
            for i in range(c.shape[1])
        ]
    )


def _entropies(labels: np.ndarray) -> np.ndarray:
    """The plug-in entropy in nats of each label column."""
    out = []
    for j in range(labels.shape[1]):
        p = np.bincount(labels[:, j]) / labels.shape[0]
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)


def mig(codes: Any, factors: Any, *, num_bins: int = 20) -> float:
    """The Mutual Information Gap (Chen et al., 2018), in [0, 1].

    For each factor v_j, the gap between the largest and the second largest mutual information
    I(c_i; v_j) over code dimensions, divided by the factor's entropy H(v_j); averaged over
    factors. The codes are binned (:func:`discretize`); 1 means each factor is captured by one
    dimension alone, 0 that no dimension is more informative about a factor than another.

    Args:
        codes: (N, D) latent codes, D >= 2.
        factors: (N, F) discrete ground-truth factors; none may be constant.
        num_bins: equal-width bins per code dimension for the mutual information.

    Raises:
        ValueError: fewer than two code dimensions, or a constant factor (zero entropy).
    """
    c, f = _pair(codes, factors)
    if c.shape[1] < 2:
        raise ValueError(f"codes: MIG needs at least 2 dimensions, got {c.shape[1]}")
    labels = _labels(f)
    entropy = _entropies(labels)
    constant = [j for j in range(len(entropy)) if entropy[j] <= 0]
    if constant:
        raise ValueError(f"factors: column {constant[0]} is constant (zero entropy)")
    mi = discrete_mutual_information(discretize(c, num_bins), labels)
    top = np.sort(mi, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / entropy))


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_fraction))
    if n - n_test < 1:
        raise ValueError(f"codes: too few rows ({n}) to split into training and test parts")
    return order[n_test:], order[:n_test]


def _sap_matrix(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    discrete: bool,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """The (D, F) score matrix of SAP (see :func:`sap`)."""
    sk = _sklearn()
    from sklearn.tree import DecisionTreeClassifier

    d, n_factors = codes.shape[1], factors.shape[1]
    scores = np.zeros((d, n_factors))
    if not discrete:
        for i in range(d):
            for j in range(n_factors):
                cov = np.cov(codes[:, i], factors[:, j])
                denom = cov[0, 0] * cov[1, 1]
                scores[i, j] = cov[0, 1] ** 2 / denom if denom > 0 else 0.0
        return scores
    labels = _labels(factors)
    train, test = _split(len(codes), test_fraction, seed)
    for j in range(n_factors):
        n_classes = int(labels[:, j].max()) + 1
        for i in range(d):
            tree = DecisionTreeClassifier(max_leaf_nodes=max(2, n_classes), random_state=seed)
            tree.fit(codes[train, i : i + 1], labels[train, j])
            scores[i, j] = sk.metrics.accuracy_score(
                labels[test, j], tree.predict(codes[test, i : i + 1])
            )
    return scores


def sap(
    codes: Any,
    factors: Any,
    *,
    discrete: bool = True,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> float:
    """The Separated Attribute Predictability score (Kumar et al., 2018).

    A score S[i, j] says how well code dimension i alone predicts factor j; SAP is the mean over
    factors of the gap between the best and the second best dimension. With
    ``discrete=True`` (the default), S is the held-out accuracy of a one-dimensional threshold
    classifier (a decision tree on that dimension with as many leaves as the factor has values,
    trained on ``1 - test_fraction`` of the rows); a perfect code then scores at most
    ``1 - (accuracy of guessing)``, e.g. about ``1 - 1/K`` for K balanced classes. With
    ``discrete=False``, S is the R² of a linear fit of the factor on the dimension (the squared
    correlation), and a perfect code scores about 1. Independent codes score about 0.

    Args:
        codes: (N, D) latent codes, D >= 2.
        factors: (N, F) ground-truth factors.
        discrete: classification accuracy (True) or R² (False) as the per-dimension score.
        test_fraction: the share of rows held out to score the classifiers (``discrete``).
        seed: the seed of the train/test split.
    """
    c, f = _pair(codes, factors, min_n=4)
    if c.shape[1] < 2:
        raise ValueError(f"codes: SAP needs at least 2 dimensions, got {c.shape[1]}")
    scores = _sap_matrix(c, f, discrete=discrete, test_fraction=test_fraction, seed=seed)
    top = np.sort(scores, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


def dci_from_importance(importance: Any) -> dict[str, float]:
    """Disentanglement and completeness from an importance matrix R of shape (D, F).

    With ``P[i, j] = R[i, j] / sum_j R[i, j]``, each code dimension's disentanglement is
    ``1 - H_F(P[i, :])`` (entropy with logarithm base F), weighted by its share of the total
    importance ``sum_j R[i, j] / sum R``; each factor's completeness is
    ``1 - H_D(R[:, j] / sum_i R[i, j])`` (base D), averaged over factors. Dimensions with no
    importance get zero weight.

    Args:
        importance: non-negative (D, F) importances, not all zero.

    Returns:
        ``{"disentanglement": ..., "completeness": ...}``, each in [0, 1].
    """
    r = _as_array("importance", importance)
    if (r < 0).any() or r.sum() <= 0:
        raise ValueError("importance: expected non-negative values, not all zero")
    d, f = r.shape

    def one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
        """1 - H(p) / log(base) per row; rows of zeros give 0 (they carry no weight)."""
        totals = p.sum(axis=1, keepdims=True)
        q = np.divide(p, totals, out=np.zeros_like(p), where=totals > 0)
        h = -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0), axis=1)
        return 1.0 - h / math.log(base) if base > 1 else np.ones(len(p))

    per_code = one_minus_entropy(r, f)
    weights = r.sum(axis=1) / r.sum()
    completeness = one_minus_entropy(r.T, d)
    nonzero = r.sum(axis=0) > 0
    return {
        "disentanglement": float(np.sum(weights * per_code)),
        "completeness": float(np.mean(completeness[nonzero])),
    }


def dci(
    codes: Any,
    factors: Any,
    *,
    estimator: Literal["gradient_boosting", "random_forest"] = "gradient_boosting",
    n_estimators: int = 50,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, float]:
    """Disentanglement, Completeness and Informativeness (Eastwood and Williams, 2018).

    One classifier per factor predicts it from all code dimensions (scikit-learn's
    gradient-boosted trees by default, as ``disentanglement_lib``; a random forest of bagged trees
    that consider every dimension at each split is faster for many classes);
    their feature importances form the matrix R of :func:`dci_from_importance`. Informativeness is
    the mean held-out accuracy of the classifiers (higher is better; the paper reports the error,
    ``1 - informativeness``).

    Args:
        codes: (N, D) latent codes.
        factors: (N, F) discrete ground-truth factors.
        estimator: ``"gradient_boosting"`` or ``"random_forest"``.
        n_estimators: trees per classifier.
        test_fraction: the share of rows held out to measure informativeness.
        seed: the seed of the split and of the classifiers.

    Returns:
        ``{"disentanglement", "completeness", "informativeness"}``, each in [0, 1], plus the
        importance matrix as nested lists under ``"importance"``.
    """
    c, f = _pair(codes, factors, min_n=4)
    n_estimators = _check_positive_int("n_estimators", n_estimators)
    _sklearn()
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    factories = {
        "gradient_boosting": lambda: GradientBoostingClassifier(
            n_estimators=n_estimators, random_state=seed
        ),
        "random_forest": lambda: RandomForestClassifier(
            n_estimators=n_estimators, max_features=None, random_state=seed, n_jobs=1
        ),
    }
    if estimator not in factories:
        raise ValueError(f"estimator: expected one of {sorted(factories)}, got {estimator!r}")
    labels = _labels(f)
    train, test = _split(len(c), test_fraction, seed)
    importance = np.zeros((c.shape[1], f.shape[1]))
    accuracy = []
    for j in range(f.shape[1]):
        if len(np.unique(labels[train, j])) < 2:
            raise ValueError(f"factors: column {j} takes one value in the training part")
        clf = factories[estimator]()
        clf.fit(c[train], labels[train, j])
        importance[:, j] = np.abs(clf.feature_importances_)
        accuracy.append(float(np.mean(clf.predict(c[test]) == labels[test, j])))
    result: dict[str, Any] = dict(dci_from_importance(importance))
    result["informativeness"] = float(np.mean(accuracy))
    result["importance"] = importance.tolist()
    return result


def factorvae_score(
    codes: Any,
    factors: Any,
    *,
    batch_size: int = 64,
    n_votes: int = 800,
    seed: int = 0,
    min_std: float = 0.05,
) -> float:
    """The FactorVAE score (Kim and Mnih, 2018): the accuracy of a majority-vote classifier.

    Each vote fixes one factor k at a random value, takes ``batch_size`` random rows that share
    that value, divides their codes by each dimension's standard deviation over all rows, and
    records (the dimension of least variance, k). Each dimension then predicts the factor it voted
    for most often; the score is the share of votes predicted correctly. Dimensions whose standard
    deviation is below ``min_std`` (collapsed) are ignored, as in the paper. Instead of rendering
    new images per vote, the votes draw from the encoded data set: ``codes`` must be encoded from
    images whose ``factors`` are known (e.g. :func:`pyvae.data.load_sprites`).

    Args:
        codes: (N, D) latent codes (e.g. posterior means).
        factors: (N, F) discrete factors; the votes fix only values that occur at least twice.
        batch_size: rows per vote.
        n_votes: the number of votes.
        seed: the seed of the votes.
        min_std: dimensions with a smaller standard deviation are not used.

    Returns:
        The accuracy in [0, 1]; chance is about ``1 / F`` and a perfect code scores 1.
    """
    c, f = _pair(codes, factors)
    batch_size = _check_positive_int("batch_size", batch_size, 2)
    n_votes = _check_positive_int("n_votes", n_votes)
    std = c.std(axis=0)
    active = np.flatnonzero(std >= min_std)
    if len(active) == 0:
        raise ValueError(f"codes: every dimension has a standard deviation below min_std={min_std}")
    labels = _labels(f)
    groups = []
    for j in range(f.shape[1]):
        values = [np.flatnonzero(labels[:, j] == v) for v in range(int(labels[:, j].max()) + 1)]
        values = [rows for rows in values if len(rows) >= 2]  # a vote needs two rows to share it
        if not values:
            raise ValueError(
                f"factors: no value of column {j} occurs twice; the FactorVAE score needs "
                f"discrete factors with repeated values"
            )
        groups.append(values)
    votes = _factorvae_votes(c[:, active] / std[active], groups, batch_size, n_votes, seed)
    return _majority_vote_accuracy(votes, len(active), f.shape[1])


def _factorvae_votes(
    scaled: np.ndarray,
    groups: list[list[np.ndarray]],
    batch_size: int,
    n_votes: int,
    seed: int,
) -> np.ndarray:
    """(n_votes, 2) pairs (argmin-variance dimension, fixed factor)."""
    rng = np.random.default_rng(seed)
    votes = np.zeros((n_votes, 2), dtype=np.int64)
    for v in range(n_votes):
        k = int(rng.integers(len(groups)))
        rows = groups[k][int(rng.integers(len(groups[k])))]
        batch = scaled[rng.choice(rows, size=batch_size, replace=True)]
        votes[v] = (int(np.argmin(batch.var(axis=0, ddof=1))), k)
    return votes


def _majority_vote_accuracy(votes: np.ndarray, n_dims: int, n_factors: int) -> float:
    table = np.zeros((n_dims, n_factors), dtype=np.int64)
    np.add.at(table, (votes[:, 0], votes[:, 1]), 1)
    return float(table.max(axis=1).sum() / len(votes))

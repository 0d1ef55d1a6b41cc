"""Disentanglement metrics: known answers on constructed codes, and second computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import pyvae.metrics as M

LEVELS = (3, 5, 8)  # values per factor


def make_factors(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(k, size=n) for k in LEVELS], axis=1).astype(float)


def perfect_code(factors: np.ndarray) -> np.ndarray:
    """A code that is a permutation of the factors (each rescaled), plus one dead dimension."""
    rng = np.random.default_rng(1)
    scaled = factors * np.array([2.0, -0.5, 3.0]) + np.array([1.0, 0.0, -4.0])
    return np.concatenate([scaled[:, [2, 0, 1]], 1e-3 * rng.normal(size=(len(factors), 1))], 1)


def noise_code(n: int, d: int = 4) -> np.ndarray:
    return np.random.default_rng(2).normal(size=(n, d))


def mig_by_hand(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> float:
    """MIG from contingency tables counted with numpy (no scikit-learn)."""

    def mi(a: np.ndarray, b: np.ndarray) -> float:
        _, ai = np.unique(a, return_inverse=True)
        _, bi = np.unique(b, return_inverse=True)
        joint = np.zeros((ai.max() + 1, bi.max() + 1))
        np.add.at(joint, (ai, bi), 1)
        joint /= joint.sum()
        outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
        nz = joint > 0
        return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())

    gaps = []
    for j in range(factors.shape[1]):
        binned = []
        for i in range(codes.shape[1]):
            lo, hi = codes[:, i].min(), codes[:, i].max()
            width = (hi - lo) / num_bins
            binned.append(np.minimum(((codes[:, i] - lo) / width).astype(int), num_bins - 1))
        mis = sorted((mi(b, factors[:, j]) for b in binned), reverse=True)
        gaps.append(
            (mis[0] - mis[1]) / scipy.stats.entropy(np.unique(factors[:, j], return_counts=True)[1])
        )
    return float(np.mean(gaps))


def test_mig_known_answers_and_second_computation() -> None:
    f = make_factors()
    perfect, noise = perfect_code(f), noise_code(len(f))
    assert M.mig(perfect, f) > 0.97
    assert M.mig(noise, f) < 0.03
    for codes in (perfect, noise, perfect + 0.5 * noise[:, :4]):
        assert M.mig(codes, f) == pytest.approx(mig_by_hand(codes, f), abs=1e-10)


def test_mig_is_invariant_to_permuting_and_rescaling_dimensions() -> None:
    f = make_factors()
    codes = perfect_code(f) + 0.8 * noise_code(len(f))
    moved = 3.0 * codes[:, [3, 1, 0, 2]] - 7.0
    assert M.mig(moved, f) == pytest.approx(M.mig(codes, f), abs=1e-12)


def test_sap_known_answers() -> None:
    f = make_factors()
    perfect, noise = perfect_code(f), noise_code(len(f))
    # discrete: the matching dimension classifies perfectly, the others about as well as chance
    best = np.mean([1 - 1 / k for k in LEVELS])
    assert M.sap(perfect, f) == pytest.approx(best, abs=0.05)
    assert M.sap(noise, f) < 0.05
    # continuous (R^2): a perfect (affine) code scores 1
    assert M.sap(perfect, f, discrete=False) == pytest.approx(1.0, abs=0.01)
    assert M.sap(noise, f, discrete=False) < 0.01


def test_sap_continuous_against_scipy_regressions() -> None:
    f = make_factors()
    codes = perfect_code(f) + noise_code(len(f))
    scores = np.array(
        [
            [scipy.stats.linregress(codes[:, i], f[:, j]).rvalue ** 2 for j in range(3)]
            for i in range(codes.shape[1])
        ]
    )
    top = np.sort(scores, axis=0)
    assert M.sap(codes, f, discrete=False) == pytest.approx(np.mean(top[-1] - top[-2]), abs=1e-10)


def dci_by_hand(r: np.ndarray) -> tuple[float, float]:
    d, k = r.shape
    dis = [1 - scipy.stats.entropy(r[i], base=k) if r[i].sum() > 0 else 0.0 for i in range(d)]
    weights = r.sum(1) / r.sum()
    com = [1 - scipy.stats.entropy(r[:, j], base=d) for j in range(k)]
    return float(np.dot(weights, dis)), float(np.mean(com))


@pytest.mark.parametrize(
    ("importance", "expected"),
    [
        (np.eye(3), (1.0, 1.0)),
        (np.ones((3, 3)), (0.0, 0.0)),
        (np.array([[1.0, 1.0], [0.0, 0.0]]), (0.0, 1.0)),  # one dimension explains both
        (
            np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]),
            (1.0, 1 - (math.log(2) / math.log(3)) / 2),
        ),
    ],
)
def test_dci_from_importance_known(importance: np.ndarray, expected: tuple[float, float]) -> None:
    result = M.dci_from_importance(importance)
    assert (result["disentanglement"], result["completeness"]) == pytest.approx(expected, abs=1e-12)


def test_dci_from_importance_against_scipy_entropy() -> None:
    r = np.random.default_rng(0).random((5, 4)) ** 3
    r[2] = 0  # a dimension with no importance
    result = M.dci_from_importance(r)
    assert (result["disentanglement"], result["completeness"]) == pytest.approx(
        dci_by_hand(r), abs=1e-12
    )


@pytest.mark.parametrize("estimator", ["gradient_boosting", "random_forest"])
def test_dci_known_answers(estimator: str) -> None:
    f = make_factors(600)
    perfect, noise = perfect_code(f), noise_code(len(f))
    good = M.dci(perfect, f, estimator=estimator, n_estimators=20)
    assert good["disentanglement"] > 0.9 and good["completeness"] > 0.9
    assert good["informativeness"] == pytest.approx(1.0)
    bad = M.dci(noise, f, estimator=estimator, n_estimators=20)
    assert bad["disentanglement"] < 0.25 and bad["completeness"] < 0.25
    assert bad["informativeness"] < 0.5
    assert np.array(good["importance"]).shape == (4, 3)


def test_factorvae_score_known_answers() -> None:
    f = make_factors()
    assert M.factorvae_score(perfect_code(f), f, n_votes=300) == 1.0
    assert M.factorvae_score(noise_code(len(f)), f, n_votes=300) < 0.6


def test_majority_vote_accuracy_by_hand() -> None:
    from pyvae.metrics.disentanglement import _majority_vote_accuracy

    votes = np.array([[0, 1], [0, 1], [0, 2], [1, 0], [1, 0], [2, 2]])
    # dimension 0 predicts factor 1 (2 of 3 right), 1 predicts 0 (2 of 2), 2 predicts 2 (1 of 1)
    assert _majority_vote_accuracy(votes, 3, 3) == pytest.approx(5 / 6)


def test_tensors_and_arrays_agree() -> None:
    f = make_factors(500)
    codes = perfect_code(f) + noise_code(500)
    assert M.mig(torch.tensor(codes), torch.tensor(f)) == M.mig(codes, f)
    assert M.sap(torch.tensor(codes).float(), f) == pytest.approx(M.sap(codes, f), abs=0.02)


def test_discretize_bins() -> None:
    values = np.array([[0.0], [0.49], [0.5], [1.0]])
    assert M.discretize(values, 2).ravel().tolist() == [0, 0, 1, 1]
    assert M.discretize(np.ones((3, 1)), 4).ravel().tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("codes", "factors", "match"),
    [
        (np.zeros((5, 2)), np.zeros((4, 1)), "same number of rows"),
        (np.zeros(5), np.zeros((5, 1)), "2-D"),
        (np.full((5, 2), np.nan), np.zeros((5, 1)), "NaN"),
        (np.random.default_rng(0).normal(size=(5, 2)), np.zeros((5, 1)), "constant"),
        (np.zeros((5, 1)), np.arange(5.0)[:, None], "at least 2 dimensions"),
        ("text", np.zeros((5, 1)), "codes"),
    ],
)
def test_bad_input_is_named(codes: object, factors: object, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        M.mig(codes, factors)


def test_factorvae_needs_repeated_values() -> None:
    f = np.arange(10.0)[:, None]
    with pytest.raises(ValueError, match="occurs twice"):
        M.factorvae_score(np.random.default_rng(0).normal(size=(10, 2)), f)

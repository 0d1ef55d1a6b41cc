"""The fused closed-form KL of a diagonal Gaussian against pyvae's Gaussian prior types: the same
values and gradients as torch's generic Independent/Normal route and as the textbook formula in
numpy (float64), found through torch's dispatch, and overridable there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributions.kl as torch_kl
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Independent, Laplace, Normal, kl_divergence

import pyvae.kl as pkl
from pyvae.kl import DiagonalNormal, StandardNormal, diagonal_normal_kl


def _params(seed: int, batch: int, dim: int) -> tuple[torch.Tensor, ...]:
    """(loc_q, scale_q, loc_p, scale_p) in float64: q of shape (batch, dim), p of shape (dim,)."""
    g = torch.Generator().manual_seed(seed)
    loc_q = 3 * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    scale_q = torch.exp(1.5 * torch.randn(batch, dim, generator=g, dtype=torch.float64))
    loc_p = 2 * torch.randn(dim, generator=g, dtype=torch.float64)
    scale_p = torch.exp(torch.randn(dim, generator=g, dtype=torch.float64))
    return loc_q, scale_q, loc_p, scale_p


def _numpy_kl(mq: np.ndarray, sq: np.ndarray, mp: np.ndarray, sp: np.ndarray) -> np.ndarray:
    return (np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(-1)


def _torch_generic(q_loc, q_scale, p_loc, p_scale) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """torch's own route: Independent/Independent -> Normal/Normal, summed."""
    q = Independent(Normal(q_loc, q_scale), 1)
    p = Independent(Normal(p_loc, p_scale), 1)
    return torch_kl._kl_independent_independent(q, p)


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 5), dim=st.integers(1, 9))
def test_standard_normal_matches_numpy_and_torch(seed: int, batch: int, dim: int) -> None:
    mq, sq, _, _ = _params(seed, batch, dim)
    zeros, ones = torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64)
    prior = StandardNormal(zeros, ones)
    expected = _numpy_kl(mq.numpy(), sq.numpy(), np.zeros(dim), np.ones(dim))
    for q in (
        Independent(Normal(mq, sq), 1),  # a user's encoder: torch's own type
        DiagonalNormal(mq, sq),
        DiagonalNormal(mq, sq, log_scale=sq.log()),  # the log-scale is used, not recomputed
    ):
        kl = kl_divergence(q, prior)
        assert kl.shape == (batch,)
        np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(kl, _torch_generic(mq, sq, zeros, ones))


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 5), dim=st.integers(1, 9))
def test_learned_normal_matches_numpy_and_torch(seed: int, batch: int, dim: int) -> None:
    mq, sq, mp, sp = _params(seed, batch, dim)
    expected = _numpy_kl(mq.numpy(), sq.numpy(), mp.numpy(), sp.numpy())
    for prior in (DiagonalNormal(mp, sp), DiagonalNormal(mp, sp, log_scale=sp.log())):
        for q in (Independent(Normal(mq, sq), 1), DiagonalNormal(mq, sq, log_scale=sq.log())):
            kl = kl_divergence(q, prior)
            np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(kl, _torch_generic(mq, sq, mp, sp))


@pytest.mark.parametrize("standard", [True, False])
def test_gradients_match_torchs_route(standard: bool) -> None:
    mq, sq, mp, sp = _params(3, 4, 6)
    if standard:
        mp, sp = torch.zeros_like(mp), torch.ones_like(sp)
    leaves = [t.clone().requires_grad_(True) for t in (mq, sq.log(), mp, sp.log())]

    def grads(fused: bool) -> list[torch.Tensor]:
        lq, log_sq, lp, log_sp = leaves
        if fused:
            q = DiagonalNormal(lq, log_sq.exp(), log_scale=log_sq)
            p = (
                StandardNormal(lp, log_sp.exp())
                if standard
                else DiagonalNormal(lp, log_sp.exp(), log_scale=log_sp)
            )
            kl = kl_divergence(q, p)
        else:
            kl = _torch_generic(lq, log_sq.exp(), lp, log_sp.exp())
        weights = torch.arange(1.0, 5.0, dtype=torch.float64)  # a non-uniform upstream gradient
        found = torch.autograd.grad((kl * weights).sum(), leaves, allow_unused=True)
        return [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, found, strict=True)]

    for fused, generic in zip(grads(True)[:2], grads(False)[:2], strict=True):  # q's gradients
        torch.testing.assert_close(fused, generic)
    if not standard:  # the learned prior's gradients too
        for fused, generic in zip(grads(True)[2:], grads(False)[2:], strict=True):
            torch.testing.assert_close(fused, generic)


def test_dispatch_finds_the_fused_forms() -> None:
    zeros, ones = torch.zeros(2), torch.ones(2)
    pairs = {
        (Independent, StandardNormal): pkl._kl_to_standard_normal,
        (DiagonalNormal, StandardNormal): pkl._kl_to_standard_normal,
        (Independent, DiagonalNormal): pkl._kl_to_diagonal_normal,
        (DiagonalNormal, DiagonalNormal): pkl._kl_to_diagonal_normal,
    }
    for (type_q, type_p), fn in pairs.items():
        assert torch_kl._dispatch_kl(type_q, type_p) is fn
    # pyvae's types are Independent(Normal): torch's own pairs still apply the other way round
    q = DiagonalNormal(zeros, ones)
    assert isinstance(q, Independent) and isinstance(q.base_dist, Normal)
    torch.testing.assert_close(
        kl_divergence(StandardNormal(zeros, ones), Independent(Normal(zeros, 2 * ones), 1)),
        _torch_generic(zeros, ones, zeros, 2 * ones),
    )


def test_other_posteriors_fall_back_to_torchs_rule() -> None:
    """A non-Gaussian ``Independent`` against pyvae's prior types gets torch's generic value."""
    loc, scale = torch.randn(3, 4), torch.rand(3, 4) + 0.5
    q = Independent(Laplace(loc, scale), 1)
    zeros, ones = torch.zeros(4), torch.ones(4)
    expected = torch_kl._kl_independent_independent(q, Independent(Normal(zeros, ones), 1))
    torch.testing.assert_close(kl_divergence(q, StandardNormal(zeros, ones)), expected)
    # event dimensions that do not match: torch's rule raises, as it does for its own types
    q2 = Independent(Normal(torch.zeros(3, 2, 4), torch.ones(3, 2, 4)), 2)
    with pytest.raises(NotImplementedError):
        kl_divergence(q2, StandardNormal(zeros, ones))


def test_a_users_registration_for_a_more_specific_type_wins() -> None:
    class MyPosterior(Independent):
        pass

    @torch_kl.register_kl(MyPosterior, StandardNormal)
    def _mine(q: MyPosterior, p: StandardNormal) -> torch.Tensor:
        return torch.full(q.batch_shape, 42.0)

    try:
        q = MyPosterior(Normal(torch.zeros(3, 2), torch.ones(3, 2)), 1)
        kl = kl_divergence(q, StandardNormal(torch.zeros(2), torch.ones(2)))
        torch.testing.assert_close(kl, torch.full((3,), 42.0))
    finally:
        del torch_kl._KL_REGISTRY[MyPosterior, StandardNormal]
        torch_kl._KL_MEMOIZE.clear()
        pkl.warm_kl_dispatch()  # register_kl emptied torch's cache: warm pyvae's pairs again


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_inputs_are_computed_in_float32(dtype: torch.dtype) -> None:
    mq, sq, mp, sp = _params(5, 4, 8)
    kl = diagonal_normal_kl(mq.to(dtype), sq.to(dtype), mp.to(dtype), sp.to(dtype))
    assert kl.dtype == torch.float32
    # the exact KL of the rounded parameters
    exact = _numpy_kl(*(t.to(dtype).double().numpy() for t in (mq, sq, mp, sp)))
    np.testing.assert_allclose(kl.numpy(), exact, rtol=1e-5)


def test_prior_given_by_halves_is_an_error() -> None:
    with pytest.raises(ValueError, match="loc_p and scale_p: give both"):
        diagonal_normal_kl(torch.zeros(2), torch.ones(2), torch.zeros(2))


def test_expand_keeps_the_type_and_log_scale() -> None:
    log_scale = torch.randn(3)
    d = DiagonalNormal(torch.randn(3), log_scale.exp(), log_scale=log_scale).expand((4,))
    assert type(d) is DiagonalNormal and d.batch_shape == (4,) and d.log_scale.shape == (4, 3)
    s = StandardNormal(torch.zeros(3), torch.ones(3)).expand((2,))
    assert type(s) is StandardNormal and s.batch_shape == (2,)


def test_compiles_without_graph_breaks() -> None:
    torch_kl._KL_MEMOIZE.clear()  # as after a user's register_kl
    pkl.warm_kl_dispatch()

    def kl(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        q = Independent(Normal(loc, log_scale.exp(), validate_args=False), 1, validate_args=False)
        return kl_divergence(q, StandardNormal(torch.zeros(3), torch.ones(3)))

    loc, log_scale = torch.randn(2, 3), torch.randn(2, 3)
    compiled = torch.compile(kl, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(loc, log_scale), kl(loc, log_scale))

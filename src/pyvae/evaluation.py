"""Likelihood bounds and estimates: the ELBO, the IWAE bound, the importance-sampled log p(x);
and a KL warm-up schedule for training loops.

Every number here is per example, shape (B,), in nats, with all normalising constants included
(so a Gaussian likelihood gives a true log-density); nothing is averaged over the batch. They work
for every model, likelihood, prior and posterior family with a density: they only use
``model.encode``, ``model.decode``, ``model.likelihood`` and ``model.prior_distribution()``. A
conditional model takes its labels as ``y=`` (shape (B,)); the numbers are then log p(x|y).

With importance weights ``log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)``, ``z_i ~ q(z|x)``:

* :func:`elbo` is ``E_q[log p(x|z)] - KL(q(z|x) || p(z))`` estimated with ``k`` samples;
* :func:`iwae_bound` is ``log (1/k) sum_i w_i`` (Burda, Grosse and Salakhutdinov, 2015,
  https://arxiv.org/abs/1509.00519): its expectation is a lower bound on log p(x) that rises
  with ``k``, from the ELBO at ``k = 1`` to log p(x) as ``k -> inf``;
* :func:`log_likelihood` is the same estimator with a large ``k`` (5000 by default), in eval mode
  and without gradients: the "test NLL" that papers report (as ``-log_likelihood``).

Training with the IWAE objective instead of the ELBO: build the model with
``objective={"name": "iwae", "k": 5}``, or in your own loop::

    loss = -pyvae.iwae_bound(model, x, k=5).mean()
    loss.backward()

KL warm-up (the beta of :meth:`pyvae.BaseVAE.loss` grows linearly from 0)::

    terms = model.loss(x, model(x), beta=pyvae.linear_warmup(step, warmup_steps=10_000))
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution

from pyvae.config import check_positive_int
from pyvae.kl import KLMethod, kl_divergence
from pyvae.validation import in_range, validate_args_enabled

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["elbo", "iwae_bound", "linear_warmup", "log_likelihood"]

#: The most samples z (over the batch) that :func:`elbo`, :func:`iwae_bound` and
#: :func:`log_likelihood` decode at once by default, so that memory stays bounded for any k.
DEFAULT_CHUNK_SIZE = 4096


def _check_result(name: str, value: torch.Tensor) -> torch.Tensor:
    """``value`` unless it holds NaN or infinity (when value checks run): never a silent NaN."""
    if validate_args_enabled() and not in_range(value):
        bad = int((~torch.isfinite(value.detach())).sum())
        raise FloatingPointError(
            f"{name}: {bad} of {value.numel()} examples gave a non-finite value; check the "
            f"model's weights and the inputs, or switch checks off with "
            f"pyvae.set_validate_args(False)"
        )
    return value


def _check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)


def _prepare(
    model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None
) -> tuple[torch.Tensor | None, Distribution, Distribution]:
    """Check x and y; q(z|x) and p(z)."""
    model.check_input(x)
    y = model.check_labels(y, x.shape[0])
    if model.prior is None:
        raise ValueError(
            f"{type(model).__name__} has no prior (e.g. a deterministic autoencoder): the ELBO "
            f"and likelihood bounds are undefined; evaluate its reconstruction term instead"
        )
    return y, model._encode(x, y), model.prior_distribution()


def _samples(
    model: BaseVAE,
    x: torch.Tensor,
    y: torch.Tensor | None,
    posterior: Distribution,
    k: int,
    chunk_size: int | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(z, log p(x|z))`` of shapes (n, B, D) and (n, B) for chunks of the ``k`` samples
    ``z ~ q(z|x)`` per example, each chunk decoding at most ``max(chunk_size, B)`` rows."""
    batch = x.shape[0]
    per_chunk = k if chunk_size is None else max(1, chunk_size // batch)
    for start in range(0, k, per_chunk):
        n = min(per_chunk, k - start)
        z = posterior.rsample((n,))
        labels = None if y is None else y.expand(n, batch).reshape(n * batch)
        params = model._decode(z.reshape(n * batch, -1), labels)
        repeated = x.expand(n, *x.shape).reshape(n * batch, *x.shape[1:])
        yield z, model.likelihood.log_prob(repeated, params).view(n, batch)


def iwae_bound(
    model: BaseVAE,
    x: torch.Tensor,
    k: int,
    *,
    y: torch.Tensor | None = None,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """The importance-weighted bound ``log (1/k) sum_i w_i`` per example, in nats, shape (B,).

    ``log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)`` with ``z_i ~ q(z|x)`` reparameterised,
    so the result is differentiable: ``-iwae_bound(model, x, k).mean()`` is the IWAE training loss
    (for ``k = 1`` it is the one-sample ELBO with a Monte Carlo KL). The model is used in its
    current mode (a denoising model in training mode encodes a corrupted x).

    Args:
        model: any pyvae model.
        x: inputs of shape (B, *input_shape).
        k: the number of importance samples per example.
        y: the labels of a conditional model, shape (B,).
        chunk_size: decode at most ``max(chunk_size, B)`` samples at once (default
            :data:`DEFAULT_CHUNK_SIZE`; ``None``: all ``k * B`` in one pass).

    Returns:
        Tensor of shape (B,): ``logsumexp_i(log w_i) - log k``.
    """
    return _check_result("iwae_bound", _iwae(model, x, k, y, chunk_size))


def _iwae(
    model: BaseVAE, x: torch.Tensor, k: int, y: torch.Tensor | None, chunk_size: int | None
) -> torch.Tensor:
    check_positive_int("k", k)
    _check_chunk_size(chunk_size)
    y, posterior, prior = _prepare(model, x, y)
    total: torch.Tensor | None = None  # logsumexp of the log-weights so far, (B,): O(B) memory
    for z, log_px in _samples(model, x, y, posterior, k, chunk_size):
        chunk = torch.logsumexp(log_px + prior.log_prob(z) - posterior.log_prob(z), dim=0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
    assert total is not None  # k >= 1
    return total - math.log(k)


def elbo(
    model: BaseVAE,
    x: torch.Tensor,
    *,
    k: int = 1,
    y: torch.Tensor | None = None,
    kl_method: KLMethod = "auto",
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """The evidence lower bound ``E_q[log p(x|z)] - KL(q(z|x) || p(z))`` per example, in nats.

    The expectation is the mean over ``k`` reparameterised samples ``z ~ q(z|x)``; the KL is
    closed-form where torch.distributions has one (``kl_method="auto"``), else the mean of ``k``
    Monte Carlo estimates ``log q(z) - log p(z)`` from the same samples (see
    :func:`pyvae.kl_divergence`). Differentiable; the model is used in its current mode.
    ``elbo(model, x)`` equals ``model.loss(x, model(x)).elbo`` in distribution.

    Args:
        model: any pyvae model.
        x: inputs of shape (B, *input_shape).
        k: the number of samples of z per example.
        y: the labels of a conditional model, shape (B,).
        kl_method: ``"auto"``, ``"closed_form"`` or ``"monte_carlo"``.
        chunk_size: decode at most ``max(chunk_size, B)`` samples at once (default
            :data:`DEFAULT_CHUNK_SIZE`; ``None``: all ``k * B`` in one pass).

    Returns:
        Tensor of shape (B,).
    """
    check_positive_int("k", k)
    _check_chunk_size(chunk_size)
    y, posterior, prior = _prepare(model, x, y)
    terms = [  # (n, B) each; a closed-form KL, of shape (B,), broadcasts
        log_px - kl_divergence(posterior, prior, z, method=kl_method)
        for z, log_px in _samples(model, x, y, posterior, k, chunk_size)
    ]
    return _check_result("elbo", torch.cat(terms).mean(dim=0))


@torch.no_grad()
def log_likelihood(
    model: BaseVAE,
    x: torch.Tensor,
    *,
    y: torch.Tensor | None = None,
    k: int = 5000,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """The importance-sampled estimate of ``log p(x)`` per example, in nats, shape (B,).

    It is :func:`iwae_bound` with ``k`` samples, computed without gradients and with the model in
    eval mode (each submodule's mode is restored afterwards), decoding at most
    ``max(chunk_size, B)`` samples at a time, so memory stays bounded for any ``k``. Its
    expectation is a lower bound on log p(x) that converges to it as ``k`` grows; the negative,
    averaged over a test set, is the "test NLL" papers report (in nats; divide by
    ``D * log 2`` for bits per dimension).

    Args:
        model: any pyvae model.
        x: inputs of shape (B, *input_shape).
        y: the labels of a conditional model, shape (B,) (the estimate is then log p(x|y)).
        k: the number of importance samples per example.
        chunk_size: the largest number of samples (over the batch) decoded at once.
    """
    check_positive_int("chunk_size", chunk_size)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        return _check_result("log_likelihood", _iwae(model, x, k, y, chunk_size))
    finally:
        for module, mode in modes:
            module.training = mode


def linear_warmup(step: int, warmup_steps: int, *, beta: float = 1.0) -> float:
    """A KL warm-up schedule: the KL weight ``beta * min(1, step / warmup_steps)``.

    Pass the result as ``beta`` to :meth:`pyvae.BaseVAE.loss`. The weight rises linearly from 0
    at step 0 to ``beta`` at ``warmup_steps`` and stays there (Bowman et al., 2016; Sønderby et
    al., 2016); ``warmup_steps=0`` gives ``beta`` from the start.

    Args:
        step: the current training step, >= 0.
        warmup_steps: the length of the warm-up in steps, >= 0.
        beta: the final KL weight, finite and >= 0 (1 for the ELBO; other values give a
            beta-VAE).
    """
    for name, value in (("step", step), ("warmup_steps", warmup_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    if (
        isinstance(beta, bool)
        or not isinstance(beta, (int, float))
        or not math.isfinite(beta)
        or beta < 0
    ):
        raise ValueError(f"beta: expected a finite number >= 0, got {beta!r}")
    if warmup_steps == 0:
        return float(beta)
    return float(beta) * min(1.0, step / warmup_steps)

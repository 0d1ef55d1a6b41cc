"""The ELBO objective with a KL weight, free bits and KL schedules.

* ``beta``: the KL weight (Higgins et al., 2017, https://openreview.net/forum?id=Sy2fzU9gl).
* ``free_bits``: per latent dimension, the loss uses ``sum_j max(lambda, mean_b KL_j)`` in place
  of the batch mean of the KL (Kingma et al., 2016, https://arxiv.org/abs/1606.04934, eq. (15),
  with one group per dimension): dimensions whose average KL is below ``lambda`` nats are not
  pushed further towards the prior, which counters posterior collapse.
* ``schedule``: a KL weight that changes with the training step, ``beta * f(step)``: a linear
  warm-up (Bowman et al., 2016, https://arxiv.org/abs/1511.06349) or cyclical annealing (Fu et
  al., 2019, https://arxiv.org/abs/1903.10145). The objective counts its own steps (a persistent
  buffer ``step``, incremented once per loss call in training mode), so the user's loop does not
  change, a saved model resumes its schedule, and the weight is computed on the device (no host
  synchronisation: ``torch.compile`` and DDP see the same graph every step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.distributions import Distribution
from torch.distributions import kl_divergence as closed_form_kl

from pyvae.config import ConfigError
from pyvae.kl import KLMethod
from pyvae.objectives import Objective, check_weight, register_objective
from pyvae.objectives._common import diagonal_gaussian, f32, factorised_base, probe_posterior
from pyvae.outputs import LossTerms, VAEOutput

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE
    from pyvae.posteriors import PosteriorHead

__all__ = ["ELBO", "cyclical_annealing", "kl_per_dimension", "schedule_weight"]

_SCHEDULES = ("linear", "cyclical")


def cyclical_annealing(
    step: int, period: int, *, ratio: float = 0.5, cycles: int | None = None, beta: float = 1.0
) -> float:
    """The cyclical KL schedule of Fu et al. (2019): ``beta * min(1, tau / ratio)`` with
    ``tau = (step mod period) / period``; after ``cycles`` full cycles (if given) it stays at
    ``beta``.

    Each cycle of ``period`` steps ramps the weight linearly from 0 to ``beta`` over its first
    ``ratio * period`` steps and holds it for the rest (the paper's R = ``ratio``, M = ``cycles``
    cycles over T = ``cycles * period`` steps).

    Args:
        step: the current training step (0 for the first), >= 0.
        period: the length of a cycle in steps, >= 1.
        ratio: the fraction of a cycle spent ramping up, in (0, 1].
        cycles: the number of cycles before the weight stays at ``beta``; ``None``: forever.
        beta: the largest KL weight, >= 0.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: expected an integer >= 0, got {step!r}")
    spec = _check_schedule({"name": "cyclical", "period": period, "ratio": ratio, "cycles": cycles})
    weight = check_weight("beta", beta)
    if spec["cycles"] is not None and step >= spec["cycles"] * spec["period"]:
        return weight
    tau = (step % spec["period"]) / spec["period"]
    return weight * min(1.0, tau / spec["ratio"])


def _positive_int(argument: str, value: object, *, zero: bool = False) -> int:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{argument}: expected an integer >= {low}, got {value!r}")
    return value


def _is_one(weight: float | torch.Tensor) -> bool:
    """A KL weight of exactly 1 (a Python number: no read from the device), skipped in the
    loss (one multiplication less in each direction of every step)."""
    return not isinstance(weight, torch.Tensor) and weight == 1


def _check_schedule(spec: object) -> dict[str, Any]:
    """A validated copy of a schedule spec, with defaults filled in."""
    if not isinstance(spec, Mapping) or spec.get("name") not in _SCHEDULES:
        raise ConfigError(
            "schedule: expected None, {'name': 'linear', 'warmup_steps': N} or {'name': "
            f"'cyclical', 'period': N, 'ratio': 0.5, 'cycles': None}}, got {spec!r}"
        )
    name = spec["name"]
    allowed = {
        "linear": {"name", "warmup_steps"},
        "cyclical": {"name", "period", "ratio", "cycles"},
    }
    unknown = sorted(set(spec) - allowed[name])
    if unknown:
        raise ConfigError(
            f"schedule: the {name!r} schedule takes {sorted(allowed[name] - {'name'})}, got "
            f"unknown keys {unknown}"
        )
    if name == "linear":
        if "warmup_steps" not in spec:
            raise ConfigError("schedule.warmup_steps: expected an integer >= 0, got nothing")
        steps = _positive_int("schedule.warmup_steps", spec["warmup_steps"], zero=True)
        return {"name": name, "warmup_steps": steps}
    if "period" not in spec:
        raise ConfigError("schedule.period: expected an integer >= 1, got nothing")
    period = _positive_int("schedule.period", spec["period"])
    ratio = spec.get("ratio", 0.5)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0 < ratio <= 1):
        raise ConfigError(f"schedule.ratio: expected a number in (0, 1], got {ratio!r}")
    cycles = spec.get("cycles")
    if cycles is not None:
        cycles = _positive_int("schedule.cycles", cycles)
    return {"name": name, "period": period, "ratio": float(ratio), "cycles": cycles}


def schedule_weight(schedule: Mapping[str, Any], step: torch.Tensor) -> torch.Tensor:
    """The factor ``f(step)`` in [0, 1] of a KL schedule, computed on ``step``'s device.

    Args:
        schedule: ``{"name": "linear", "warmup_steps": W}`` (``min(1, step / W)``; 1 when
            ``W = 0``) or ``{"name": "cyclical", "period": P, "ratio": R, "cycles": M}`` (see
            :func:`cyclical_annealing`).
        step: the step counter, an integer tensor of shape ().

    Returns:
        A float32 tensor of shape ().
    """
    spec = _check_schedule(schedule)
    if spec["name"] == "linear":
        if spec["warmup_steps"] == 0:
            return torch.ones((), dtype=torch.float32, device=step.device)
        return (step.to(torch.float32) / spec["warmup_steps"]).clamp(max=1.0)
    period = spec["period"]
    tau = torch.remainder(step, period).to(torch.float32) / period
    factor = (tau / spec["ratio"]).clamp(max=1.0)
    if spec["cycles"] is not None:
        factor = torch.where(step >= spec["cycles"] * period, torch.ones_like(factor), factor)
    return factor


def kl_per_dimension(
    q: Distribution,
    p: Distribution,
    z: torch.Tensor | None = None,
    *,
    method: KLMethod = "auto",
) -> torch.Tensor:
    """``KL(q(z_j|x) || p(z_j))`` for each latent dimension j, in nats, shape (B, D), float32.

    Defined for a posterior and a prior that both factorise over the dimensions
    (``Independent(univariate, 1)``): closed form for diagonal Gaussians (and any pair
    ``torch.distributions`` knows), else, or with ``method="monte_carlo"``, the one-sample
    estimate ``log q(z_j|x) - log p(z_j)`` at ``z`` per dimension (its sum over j is the usual
    Monte Carlo KL). Other families (full covariance, flows, mixture priors) have no
    per-dimension KL: a :class:`pyvae.ConfigError` says so.

    Args:
        q: the posterior, batch shape (B,), event shape (D,).
        p: the prior, event shape (D,).
        z: a sample of ``q``, shape (B, D), for the Monte Carlo estimate (drawn when needed
            and not given).
        method: ``"auto"``, ``"closed_form"`` or ``"monte_carlo"``.
    """
    if method not in ("auto", "closed_form", "monte_carlo"):
        raise ValueError(f"method: expected 'auto', 'closed_form' or 'monte_carlo', got {method!r}")
    qb, pb = factorised_base(q), factorised_base(p)
    if qb is None or pb is None:
        raise ConfigError(
            "free_bits: needs a per-dimension KL, defined for a posterior and a prior that "
            "factorise over the latent dimensions (e.g. posterior='gaussian' with prior="
            f"'normal' or 'learned_normal'); got posterior {type(q).__name__} and prior "
            f"{type(p).__name__}"
        )
    if method != "monte_carlo":
        gq, gp = diagonal_gaussian(q), diagonal_gaussian(p)
        if gq is not None and gp is not None:
            (mq, sq), (mp, sp) = gq, gp
            return sp.log() - sq.log() + (sq * sq + (mq - mp) ** 2) / (2.0 * sp * sp) - 0.5
        try:
            return f32(closed_form_kl(qb, pb))
        except NotImplementedError:
            if method == "closed_form":
                raise NotImplementedError(
                    f"method='closed_form': torch.distributions has no closed-form KL for "
                    f"{type(qb).__name__} || {type(pb).__name__}; use method='monte_carlo'"
                ) from None
    if z is None:
        z = q.rsample()
    z = f32(z)
    return f32(qb.log_prob(z)) - f32(pb.log_prob(z))


def _plain_kl(model: BaseVAE) -> bool:
    """Whether the model's regulariser is the one KL(q(z|x) || p(z)) of BaseVAE (through
    wrappers)."""
    from pyvae.models.base import BaseVAE, VAEWrapper

    while isinstance(model, VAEWrapper):
        model = model.backbone
    return type(model).kl is BaseVAE.kl


@register_objective("elbo")
class ELBO(Objective):
    """The negative evidence lower bound, ``loss = mean_b(recon + w * kl)`` (Kingma and
    Welling, 2014), with a KL weight ``w``, optional free bits and an optional KL schedule.

    ``w = beta`` (``beta != 1`` gives a beta-VAE, Higgins et al., 2017), or ``beta * f(step)``
    with a ``schedule`` (see :func:`schedule_weight`); ``model.loss(..., beta=b)`` sets ``w = b``
    for one call. With ``free_bits = lambda > 0`` the KL part of the loss is
    ``w * sum_j max(lambda, mean_b KL_j)`` over the latent dimensions j (Kingma et al., 2016),
    so ``loss = mean_b(recon) + w * sum_j max(lambda, mean_b KL_j)``.

    ``terms.kl`` is always the true per-example ``KL(q(z|x) || p(z))`` (unweighted, unclamped);
    with a schedule ``terms.beta`` (shape (B,), all equal) is the weight used for this call.

    The schedule's step counter is the persistent buffer ``step`` (saved with the model),
    incremented on the device once per ``model.loss`` call in training mode (``model.train()``);
    evaluation-mode calls neither use nor advance a different weight.

    Args:
        beta: the KL weight (with a schedule: its largest value), a finite number >= 0.
        free_bits: lambda, in nats per latent dimension, >= 0 (0: off). Needs a posterior and a
            prior that factorise over the dimensions (see :func:`kl_per_dimension`) and a model
            whose regulariser is the plain KL.
        schedule: ``None``, ``{"name": "linear", "warmup_steps": W}`` or ``{"name": "cyclical",
            "period": P, "ratio": 0.5, "cycles": None}``.
    """

    step: torch.Tensor

    def __init__(
        self,
        beta: float = 1.0,
        free_bits: float = 0.0,
        schedule: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.beta = check_weight("beta", beta)
        self.free_bits = check_weight("free_bits", free_bits)
        self.schedule = None if schedule is None else _check_schedule(schedule)
        if self.schedule is not None:
            self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def check_model(self, model: BaseVAE) -> None:
        """Refuse free bits for priors that do not factorise and models with their own KL."""
        super().check_model(model)
        if self.free_bits > 0:
            from pyvae.objectives._common import require_factorised_prior

            require_factorised_prior(model, "elbo", "free_bits")
            if not _plain_kl(model):
                raise ConfigError(
                    f"free_bits: needs the model's regulariser to be KL(q(z|x) || p(z)) over one "
                    f"latent vector; {type(model).__name__} overrides kl() (structured latents)"
                )

    def check_posterior(self, head: PosteriorHead) -> None:
        """With free bits, refuse a posterior family that does not factorise over the latent
        dimensions (checked on the head's output for one probe row when the model is built)."""
        super().check_posterior(head)
        if self.free_bits > 0:
            q = probe_posterior(head)
            if q is not None and factorised_base(q) is None:
                raise ConfigError(
                    f"free_bits: needs a per-dimension KL, defined for posteriors that factorise "
                    f"over the latent dimensions (e.g. posterior='gaussian'), got "
                    f"{type(head).registered_name!r} ({type(q).__name__})"
                )

    def weight(self, beta: float | None = None) -> float | torch.Tensor:
        """The KL weight of the next loss call: ``beta`` if given, else the objective's
        ``beta`` times the schedule's factor at the current step (a tensor of shape () on the
        counter's device), or the plain ``beta`` without a schedule."""
        if beta is not None:
            return beta
        if self.schedule is None:
            return self.beta
        return self.beta * schedule_weight(self.schedule, self.step)

    def forward(
        self,
        model: BaseVAE,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        beta: float | None = None,
        kl_method: KLMethod = "auto",
    ) -> LossTerms:
        weight = self.weight(beta)
        recon = model.reconstruction_term(x, out)
        kl, parts = model.kl_terms(out, method=kl_method)  # a hierarchy: kl_layers
        if self.free_bits > 0:
            per_dim = kl_per_dimension(
                out.posterior, model.prior_distribution(), out.z, method=kl_method
            )
            penalty = per_dim.mean(0).clamp(min=self.free_bits).sum()
            loss = recon.mean() + weight * penalty
        else:
            loss = (recon + (kl if _is_one(weight) else weight * kl)).mean()
        extras: dict[str, torch.Tensor] = dict(parts)
        if self.schedule is not None:
            extras["beta"] = torch.as_tensor(weight, dtype=kl.dtype, device=kl.device).expand_as(kl)
            if self.training:
                self.step.add_(1)
        return LossTerms(loss=loss, recon=recon, kl=kl, extras=extras)

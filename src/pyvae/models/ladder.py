"""The Ladder VAE: a hierarchy of stochastic layers with top-down inference (Sønderby et al.,
2016, https://arxiv.org/abs/1602.02282).

The generative model is ``p(z_L) p(z_{L-1}|z_L) ... p(z_1|z_2) p(x|z_1)``. Inference runs a
deterministic bottom-up pass ``x -> d_1 -> ... -> d_L`` that gives each layer Gaussian parameters
``(mu_hat_l, sigma_hat_l)``, then a top-down pass that samples ``z_L ~ N(mu_hat_L, sigma_hat_L)``
and, for each lower layer, merges the bottom-up Gaussian with the generative one
``p(z_l|z_{l+1}) = N(mu_p, sigma_p)`` by precision weighting:

    sigma_q^2 = 1 / (sigma_hat^-2 + sigma_p^-2)
    mu_q = (mu_hat sigma_hat^-2 + mu_p sigma_p^-2) sigma_q^2

How it fits pyvae's contract: the latent vector is the concatenation ``z = (z_1, ..., z_L)``
(``latent_dim = sum(latent_dims)``). :meth:`LadderVAE.encode` returns a
:class:`LadderPosterior` over it (``rsample`` runs the top-down pass; ``log_prob`` is the exact
hierarchical ``log q(z|x)``), :meth:`LadderVAE.prior_distribution` a :class:`HierarchicalPrior`
(``log_prob = log p(z_L) + sum_l log p(z_l|z_{l+1})``, ancestral ``sample``), so that
:func:`pyvae.log_likelihood` importance-samples the whole hierarchy and ``model.sample`` runs the
generative top-down path unchanged. :meth:`LadderVAE.kl` (the model-level regulariser) is the sum
of the per-layer KLs, each closed-form given the sampled upper layers; they are reported per layer
as ``terms.kl_layers`` (B, L).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints

from pyvae.config import ConfigError, check_positive_int, check_positive_ints
from pyvae.kl import KLMethod, diagonal_normal_kl, kl_divergence
from pyvae.likelihoods import Likelihood
from pyvae.models.base import BaseVAE, data_size, register_model
from pyvae.nn import conv_decoder, conv_encoder, conv_output_sizes, init_weights, mlp
from pyvae.objectives import Objective
from pyvae.outputs import VAEOutput
from pyvae.posteriors import LOG_VAR_MAX, LOG_VAR_MIN
from pyvae.priors import Prior

__all__ = ["HierarchicalPrior", "LadderPosterior", "LadderVAE", "precision_weighted"]

Spec = str | Mapping[str, Any]
Gaussian = tuple[torch.Tensor, torch.Tensor]  # (loc, scale)
TopDown = Callable[[int, torch.Tensor], Gaussian]
_LOG_2PI = math.log(2 * math.pi)


def precision_weighted(
    loc1: torch.Tensor, scale1: torch.Tensor, loc2: torch.Tensor, scale2: torch.Tensor
) -> Gaussian:
    """The product of two diagonal Gaussians, renormalised: ``(loc, scale)`` with
    ``scale^-2 = scale1^-2 + scale2^-2`` and ``loc = (loc1 scale1^-2 + loc2 scale2^-2) scale^2``
    (the Ladder VAE's merge of bottom-up and top-down parameters). Shapes broadcast."""
    precision1, precision2 = scale1.pow(-2), scale2.pow(-2)
    variance = 1.0 / (precision1 + precision2)
    return (loc1 * precision1 + loc2 * precision2) * variance, variance.sqrt()


def _gaussian_params(linear: nn.Module, h: torch.Tensor) -> Gaussian:
    """``(loc, scale)`` from a linear layer's output, the log-variance clamped as in
    :class:`pyvae.posteriors.DiagonalGaussianHead`."""
    loc, log_var = linear(h).chunk(2, dim=-1)
    return loc, torch.exp(0.5 * log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX))


def _normal_log_prob(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``log N(z; loc, diag scale^2)`` summed over the last dimension."""
    return -(((z - loc) / scale).pow(2) / 2 + scale.log() + _LOG_2PI / 2).sum(-1)


class _Concatenated(Distribution):
    """Shared plumbing of the two hierarchical distributions over ``z = (z_1, ..., z_L)``."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, dims: tuple[int, ...], batch_shape: torch.Size, top_down: TopDown) -> None:
        self.dims = dims
        self.top_down = top_down
        super().__init__(batch_shape, torch.Size([sum(dims)]), validate_args=False)

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """``z`` (..., sum(dims)) into the layers ``[z_1, ..., z_L]``."""
        if z.shape[-1] != sum(self.dims):
            raise ValueError(
                f"z: expected a last dimension of {sum(self.dims)} (the layers {self.dims}), got "
                f"shape {tuple(z.shape)}"
            )
        return list(z.split(self.dims, dim=-1))

    def sample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(torch.Size(sample_shape))


class LadderPosterior(_Concatenated):
    """q(z|x) of a Ladder VAE over the concatenated ``z = (z_1, ..., z_L)``: batch shape (B,),
    event shape (sum(dims),).

    ``q(z|x) = q(z_L|x) prod_{l<L} q(z_l|z_{l+1}, x)``, with ``q(z_L|x) = N(mu_hat_L,
    sigma_hat_L)`` and each lower layer the precision-weighted merge of its bottom-up Gaussian and
    ``p(z_l|z_{l+1})``. ``rsample`` runs the top-down pass (reparameterised); ``log_prob`` is the
    exact log-density; ``mean`` is the top-down pass at the means (the point ``reconstruct`` and
    samplers use; for non-linear top-down networks not the exact mean of q).

    Args:
        bottom_up: ``(loc, scale)`` of each layer from the bottom-up pass, each (B, d_l).
        top_down: ``(l, z_{l+1}) -> (loc, scale)`` of ``p(z_l|z_{l+1})`` for layer index
            ``l = 0..L-2``.
    """

    def __init__(self, bottom_up: Sequence[Gaussian], top_down: TopDown) -> None:
        self.bottom_up = list(bottom_up)
        dims = tuple(loc.shape[-1] for loc, _ in self.bottom_up)
        super().__init__(dims, self.bottom_up[0][0].shape[:-1], top_down)

    def layer(self, index: int, upper: torch.Tensor) -> Gaussian:
        """``(loc, scale)`` of ``q(z_l|z_{l+1}, x)`` for layer ``index < L-1`` given ``upper``
        (..., d_{l+1}) (leading sample dimensions broadcast)."""
        loc_p, scale_p = self.top_down(index, upper)
        loc_hat, scale_hat = self.bottom_up[index]
        return precision_weighted(loc_hat, scale_hat, loc_p, scale_p)

    def _pass(self, sample_shape: Sequence[int], noise: bool) -> torch.Tensor:
        loc, scale = self.bottom_up[-1]
        shape = (*sample_shape, *loc.shape)
        z = loc.expand(shape) + (
            scale * torch.randn(shape, dtype=loc.dtype, device=loc.device) if noise else 0
        )
        layers = [z]
        for index in range(len(self.dims) - 2, -1, -1):
            loc, scale = self.layer(index, z)
            z = loc + scale * torch.randn_like(loc) if noise else loc
            layers.append(z)
        return torch.cat(layers[::-1], dim=-1)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        return self._pass(tuple(sample_shape), noise=True)

    @property
    def mean(self) -> torch.Tensor:
        return self._pass((), noise=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        layers = self.split(value)
        loc, scale = self.bottom_up[-1]
        total = _normal_log_prob(layers[-1], loc, scale)
        for index in range(len(self.dims) - 1):
            loc, scale = self.layer(index, layers[index + 1])
            total = total + _normal_log_prob(layers[index], loc, scale)
        return total


class HierarchicalPrior(_Concatenated):
    """p(z) of a Ladder VAE over ``z = (z_1, ..., z_L)``: ``p(z_L) prod_{l<L} p(z_l|z_{l+1})``,
    batch shape (), event shape (sum(dims),). ``sample`` is ancestral (top layer first);
    ``log_prob`` is exact.

    Args:
        top: p(z_L), event shape (d_L,) (the model's ``prior`` component).
        dims: the layer sizes ``(d_1, ..., d_L)``.
        top_down: ``(l, z_{l+1}) -> (loc, scale)`` of ``p(z_l|z_{l+1})``.
    """

    def __init__(self, top: Distribution, dims: Sequence[int], top_down: TopDown) -> None:
        self.top = top
        super().__init__(tuple(dims), torch.Size(), top_down)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        z = self.top.rsample(shape) if self.top.has_rsample else self.top.sample(shape)
        layers = [z]
        for index in range(len(self.dims) - 2, -1, -1):
            loc, scale = self.top_down(index, z)
            z = loc + scale * torch.randn_like(loc)
            layers.append(z)
        return torch.cat(layers[::-1], dim=-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        layers = self.split(value)
        total = self.top.log_prob(layers[-1])
        for index in range(len(self.dims) - 1):
            loc, scale = self.top_down(index, layers[index + 1])
            total = total + _normal_log_prob(layers[index], loc, scale)
        return total


@register_model("ladder")
class LadderVAE(BaseVAE):
    """A Ladder VAE (Sønderby et al., 2016, https://arxiv.org/abs/1602.02282) with an ``mlp`` or
    ``conv`` backbone.

    The backbone's encoder gives features ``d_1`` of x; each higher layer's features are a dense
    ReLU layer of ``ladder_dim`` units on the one below; a linear layer per layer gives the
    bottom-up Gaussian (clamped log-variance, as the ``gaussian`` posterior). The generative
    top-down network of layer l is ``Linear(d_{l+1}, ladder_dim) -> ReLU -> Linear(2 d_l)``. The
    decoder (the backbone's) maps ``z_1`` to the likelihood's parameters. ``prior`` is the prior
    of the top layer ``z_L`` (any registered prior: ``normal``, ``learned_normal``, ``mog``,
    ``vamp`` - the VampPrior encodes its pseudo-inputs to ``q(z_L|u)``).

    With one layer (``latent_dims=(d,)``) it is exactly the plain VAE of its backbone (the same
    networks and ELBO), which the tests use as a check; use two or more layers for a ladder.

    Args:
        input_shape: shape of one example (``conv`` needs (C, H, W)).
        latent_dims: the sizes ``(d_1, ..., d_L)`` of the stochastic layers, bottom (nearest x)
            first. Default (32, 16); or derived from ``latent_dim``.
        latent_dim: the total size ``sum(latent_dims)``; given alone, it is split into two
            layers ``(d - d // 2, d // 2)`` (one layer if d = 1).
        backbone: ``"mlp"`` or ``"conv"``: the encoder to ``d_1``'s features and the decoder.
        hidden_dims: the ``mlp`` backbone's hidden widths.
        channels: the ``conv`` backbone's channels.
        hidden_dim: the ``conv`` backbone's dense width.
        batch_norm: ``BatchNorm2d`` in the ``conv`` backbone.
        ladder_dim: the width of the deterministic layers between stochastic layers.
        likelihood: p(x|z_1) by name, config or instance.
        prior: the prior of the top layer ``p(z_L)`` by name, config or instance.
        objective: the training objective (default ``"elbo"``).
        num_classes: the number of classes of a conditional model (the label is appended to the
            encoder's features and to ``z_1`` for the decoder), or ``None``.
        init: the weight initialisation of every network: ``"he"`` (the default here, as the
            ladder was measured), ``"lecun"`` or ``"torch"`` (see :func:`pyvae.nn.init_weights`).
    """

    latent_dims: tuple[int, ...]
    encoder: nn.Module
    decoder: nn.Module

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dims: Sequence[int] | None = None,
        latent_dim: int | None = None,
        backbone: Literal["mlp", "conv"] = "mlp",
        hidden_dims: Sequence[int] = (512, 256),
        channels: Sequence[int] = (32, 64),
        hidden_dim: int = 256,
        batch_norm: bool = False,
        ladder_dim: int = 128,
        likelihood: Spec | Likelihood = "bernoulli",
        prior: Spec | Prior = "normal",
        objective: Spec | Objective = "elbo",
        num_classes: int | None = None,
        init: str = "he",
    ) -> None:
        dims = _layer_sizes(latent_dims, latent_dim)
        self.latent_dims = dims  # read by component_context to size the top layer's prior
        super().__init__(
            input_shape=input_shape,
            latent_dim=sum(dims),
            likelihood=likelihood,
            prior=prior,
            objective=objective,
            num_classes=num_classes,
        )
        if prior is None:
            raise ConfigError("prior: the ladder needs a prior for its top layer, got None")
        if backbone not in ("mlp", "conv"):
            raise ConfigError(f"backbone: expected 'mlp' or 'conv', got {backbone!r}")
        self.backbone_kind = backbone
        self.ladder_dim = check_positive_int("ladder_dim", ladder_dim)
        # every argument is checked, also those of the backbone not chosen (none silently ignored)
        check_positive_ints("hidden_dims", hidden_dims)
        check_positive_ints("channels", channels)
        check_positive_int("hidden_dim", hidden_dim)
        if not isinstance(batch_norm, bool):
            raise ConfigError(f"batch_norm: expected a bool, got {batch_norm!r}")
        if backbone == "mlp":
            hidden = check_positive_ints("hidden_dims", hidden_dims)
            n_in = data_size(self.input_shape)
            self.encoder = nn.Sequential(nn.Flatten(), mlp([n_in, *hidden], final_activation=True))
            features = hidden[-1]
            self.decoder = nn.Sequential(
                mlp([dims[0] + self.condition_dim, *reversed(hidden), n_in]),
                nn.Unflatten(1, self.input_shape),
            )
        else:
            self.encoder, self.decoder, features = _conv_backbone(
                self.input_shape, channels, hidden_dim, batch_norm, dims[0] + self.condition_dim
            )
        widths = [features + self.condition_dim] + [self.ladder_dim] * (len(dims) - 1)
        self.up = nn.ModuleList(
            nn.Sequential(nn.Linear(widths[i], self.ladder_dim), nn.ReLU())
            for i in range(len(dims) - 1)
        )
        self.q_heads = nn.ModuleList(nn.Linear(widths[i], 2 * d) for i, d in enumerate(dims))
        self.p_nets = nn.ModuleList(
            nn.Sequential(
                nn.Linear(dims[i + 1], self.ladder_dim),
                nn.ReLU(),
                nn.Linear(self.ladder_dim, 2 * dims[i]),
            )
            for i in range(len(dims) - 1)
        )
        init_weights([self.encoder, self.decoder, self.up, self.q_heads, self.p_nets], init)

    def component_context(self, role: str, **context: Any) -> dict[str, Any]:
        """The base class's, with ``latent_dim=latent_dims[-1]`` for the prior: it is the prior
        of the top layer ``z_L``."""
        context = super().component_context(role, **context)
        if role == "prior":
            context["latent_dim"] = self.latent_dims[-1]
        return context

    # -- networks ------------------------------------------------------------------------------
    def _bottom_up(self, x: torch.Tensor, y: torch.Tensor | None) -> list[Gaussian]:
        d = self.condition(self.encoder(x), y)
        params = [_gaussian_params(self.q_heads[0], d)]
        for up, head in zip(self.up, list(self.q_heads)[1:], strict=True):
            d = up(d)
            params.append(_gaussian_params(head, d))
        return params

    def _top_down(self, index: int, upper: torch.Tensor) -> Gaussian:
        """``(loc, scale)`` of ``p(z_l|z_{l+1})`` for layer index ``l`` (0-based, < L-1)."""
        return _gaussian_params(self.p_nets[index], upper)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z|x) as a :class:`LadderPosterior` over the concatenated layers, (B, latent_dim)."""
        return LadderPosterior(self._bottom_up(x, y), self._top_down)

    def encode_top(self, x: torch.Tensor) -> Distribution:
        """``q(z_L|x)``, the top layer's posterior (bottom-up only), event (d_L,): what a
        VampPrior on the top layer encodes its pseudo-inputs with."""
        loc, scale = self._bottom_up(x, None)[-1]
        return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """p(x|z_1)'s parameters from the bottom layer ``z_1 = z[:, :d_1]``; (B, *input_shape)."""
        return self.decoder(self.condition(z[..., : self.latent_dims[0]], y))

    # -- the structured latent space -----------------------------------------------------------
    def prior_distribution(self) -> Distribution:
        """p(z) as a :class:`HierarchicalPrior` (the top layer's prior, then the top-down
        conditionals)."""
        assert self.prior is not None
        top = self.prior(self.encode_top) if self.prior.needs_encoder else self.prior()
        return HierarchicalPrior(top, self.latent_dims, self._top_down)

    def kl_layers(self, out: VAEOutput, *, method: KLMethod = "auto") -> torch.Tensor:
        """The KL term per layer at the sample ``out.z``, shape (B, L), in nats.

        Layer l < L: ``KL(q(z_l|z_{l+1}, x) || p(z_l|z_{l+1}))`` in closed form at the sampled
        ``z_{l+1}`` (``method="monte_carlo"``: ``log q - log p`` at ``z_l``); the top layer:
        ``KL(q(z_L|x) || p(z_L))`` by :func:`pyvae.kl_divergence` with ``method``. Their sum is
        :meth:`kl`, an unbiased estimate of ``KL(q(z|x) || p(z))``.
        """
        posterior = out.posterior
        if not isinstance(posterior, LadderPosterior):
            raise TypeError(
                f"out.posterior: expected the LadderPosterior of this model's forward, got "
                f"{type(posterior).__name__}"
            )
        z = out.z.float() if out.z.dtype in (torch.float16, torch.bfloat16) else out.z
        layers = posterior.split(z)
        prior = self.prior_distribution()
        assert isinstance(prior, HierarchicalPrior)
        terms = []
        for index in range(len(self.latent_dims) - 1):
            loc_p, scale_p = self._top_down(index, layers[index + 1])
            loc_q, scale_q = posterior.layer(index, layers[index + 1])
            if method == "monte_carlo":
                terms.append(
                    _normal_log_prob(layers[index], loc_q, scale_q)
                    - _normal_log_prob(layers[index], loc_p, scale_p)
                )
            else:
                terms.append(diagonal_normal_kl(loc_q, scale_q, loc_p, scale_p))
        loc, scale = posterior.bottom_up[-1]
        top_q = Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)
        terms.append(kl_divergence(top_q, prior.top, z=layers[-1], method=method))
        return torch.stack(terms, dim=-1)

    def kl(self, out: VAEOutput, *, method: KLMethod = "auto") -> torch.Tensor:
        """The sum of :meth:`kl_layers`, shape (B,), in nats."""
        return self.kl_layers(out, method=method).sum(-1)

    def kl_terms(
        self, out: VAEOutput, *, method: KLMethod = "auto"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`kl` and ``{"kl_layers": (B, L)}`` (reported as ``terms.kl_layers``)."""
        layers = self.kl_layers(out, method=method)
        return layers.sum(-1), {"kl_layers": layers}

    def extra_repr(self) -> str:
        kind = self.backbone_kind
        return f"{super().extra_repr()}, latent_dims={self.latent_dims}, backbone={kind!r}"


def _layer_sizes(latent_dims: Sequence[int] | None, latent_dim: int | None) -> tuple[int, ...]:
    if latent_dims is None:
        if latent_dim is None:
            return (32, 16)
        d = check_positive_int("latent_dim", latent_dim)
        return (d - d // 2, d // 2) if d >= 2 else (d,)
    if isinstance(latent_dims, (str, bytes)) or not isinstance(latent_dims, Sequence):
        raise ConfigError(f"latent_dims: expected a sequence of layer sizes, got {latent_dims!r}")
    dims = check_positive_ints("latent_dims", latent_dims)
    if latent_dim is not None and latent_dim != sum(dims):
        raise ConfigError(
            f"latent_dim: expected sum(latent_dims) = {sum(dims)} for latent_dims={dims}, got "
            f"{latent_dim!r}"
        )
    return dims


def _conv_backbone(
    input_shape: tuple[int, ...],
    channels: Sequence[int],
    hidden_dim: int,
    batch_norm: bool,
    z_in: int,
) -> tuple[nn.Module, nn.Module, int]:
    """The conv model's encoder (to ``hidden_dim`` features) and decoder (from ``z_in``)."""
    if len(input_shape) != 3:
        raise ConfigError(
            f"input_shape: the conv backbone expects images (C, H, W), got {input_shape!r}"
        )
    channels = check_positive_ints("channels", channels)
    hidden_dim = check_positive_int("hidden_dim", hidden_dim)
    if not isinstance(batch_norm, bool):
        raise ConfigError(f"batch_norm: expected a bool, got {batch_norm!r}")
    c, h, w = input_shape
    heights, widths = conv_output_sizes(h, len(channels)), conv_output_sizes(w, len(channels))
    bottleneck = (channels[-1], heights[-1], widths[-1])
    n_features = channels[-1] * heights[-1] * widths[-1]
    encoder = nn.Sequential(
        conv_encoder(c, channels, batch_norm),
        nn.Flatten(),
        nn.Linear(n_features, hidden_dim),
        nn.ReLU(),
    )
    decoder = nn.Sequential(
        nn.Linear(z_in, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, n_features),
        nn.ReLU(),
        nn.Unflatten(1, bottleneck),
        conv_decoder(c, channels, heights, widths, batch_norm),
    )
    return encoder, decoder, hidden_dim

"""The VQ-VAE: a grid of discrete codes (van den Oord et al., 2017,
https://arxiv.org/abs/1711.00937).

A convolutional encoder maps x to a grid of vectors ``z_e`` (latent_dim channels, H' x W'
positions); each vector is replaced by its nearest entry of a codebook of ``codebook_size``
vectors (``z_q``), with the straight-through estimator carrying the decoder's gradient to the
encoder; the decoder maps ``z_q`` back to the likelihood's parameters. The codebook is trained by
the codebook loss, or by exponential moving averages of the assigned encoder outputs
(``ema_decay``); unused codes can be restarted on encoder outputs
(:meth:`VQVAE.restart_dead_codes`).

How it fits pyvae's contract: z is the quantised grid, flattened channel-first, so
``model.latent_dim = latent_dim * H' * W'`` (the argument ``latent_dim`` is the size of one code,
``model.code_dim``). The posterior is a :class:`QuantizedPosterior`, a point mass at ``z_q`` (no
density: likelihood bounds are refused). The KL term against the uniform prior over codes is the
constant ``H' W' log(codebook_size)``. After training, :meth:`VQVAE.fit_prior` fits a categorical
distribution per grid position over the code indices of the data (stored in the model's buffers,
so it is saved with it); ``sample`` then draws from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, constraints

from pyvae.config import ConfigError, check_positive_int, check_positive_ints
from pyvae.kl import KLMethod
from pyvae.likelihoods import Likelihood
from pyvae.models.base import BaseVAE, register_model
from pyvae.nn import conv_decoder, conv_encoder, conv_output_sizes, init_weights
from pyvae.objectives import Objective
from pyvae.outputs import VAEOutput
from pyvae.posteriors import PointMass

__all__ = [
    "VQVAE",
    "CodePrior",
    "QuantizedPosterior",
    "codebook_perplexity",
    "ema_codebook_update",
    "nearest_codes",
]

Spec = str | Mapping[str, Any]


def nearest_codes(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The index of the nearest codebook row (Euclidean) of each vector: (N, D), (K, D) -> (N,).
    Ties go to the lowest index."""
    distances = (
        vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ codebook.t() + codebook.pow(2).sum(1)
    )
    return distances.argmin(1)


def codebook_perplexity(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``exp(H(p))`` of the code usage ``p`` over all entries of ``indices`` (any shape): from 1
    (one code used) to ``codebook_size`` (all used equally). A scalar tensor."""
    counts = torch.bincount(indices.reshape(-1), minlength=codebook_size).to(torch.float64)
    p = counts / counts.sum()
    return torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum())


def ema_codebook_update(
    count: torch.Tensor,
    total: torch.Tensor,
    vectors: torch.Tensor,
    indices: torch.Tensor,
    decay: float,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One EMA step of the codebook (van den Oord et al., 2017, appendix A.1):
    ``N_k <- decay N_k + (1 - decay) n_k``, ``m_k <- decay m_k + (1 - decay) sum_{i: k} z_i``,
    ``e_k = m_k / N~_k`` with the Laplace-smoothed count
    ``N~_k = (N_k + eps) / (sum N + K eps) * sum N``.

    Args:
        count: ``N`` (K,); total: ``m`` (K, D); vectors: ``z`` (N, D); indices: (N,).

    Returns:
        The new ``(count, total, codebook)``.
    """
    k = count.shape[0]
    ones = torch.ones(indices.shape[0], dtype=vectors.dtype, device=vectors.device)
    batch_count = torch.zeros(k, dtype=vectors.dtype, device=vectors.device).index_add(
        0, indices, ones
    )
    batch_total = torch.zeros_like(total).index_add(0, indices, vectors)
    count = decay * count + (1 - decay) * batch_count
    total = decay * total + (1 - decay) * batch_total
    n = count.sum()
    smoothed = (count + eps) / (n + k * eps) * n
    return count, total, total / smoothed.unsqueeze(1)


class QuantizedPosterior(PointMass):
    """The posterior of a VQ-VAE: a point mass at the quantised grid ``z_q`` (flattened,
    (B, latent_dim)), whose ``rsample`` is the straight-through value ``z_e + sg[z_q - z_e]``
    (equal to ``z_q``; its gradient flows to the encoder's ``z_e``).

    Attributes:
        z_e: the encoder's output, flattened (B, latent_dim).
        codes: the nearest codes ``z_q`` without the straight-through path, (B, latent_dim).
        indices: the code index of each grid position, (B, H', W').
    """

    def __init__(self, z_e: torch.Tensor, codes: torch.Tensor, indices: torch.Tensor) -> None:
        super().__init__(z_e + (codes - z_e).detach())
        self.z_e, self.codes, self.indices = z_e, codes, indices

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "a VQ-VAE's posterior is a point mass on its codes: log q(z|x) and likelihood bounds "
            "are undefined; compare VQ-VAEs by reconstruction error and codebook perplexity"
        )


class CodePrior(Distribution):
    """A distribution over quantised grids: independent categoricals over the code index of each
    grid position, mapped to the code vectors and flattened channel-first as the model's z.

    ``sample`` gives (…, latent_dim) grids; ``log_prob(z)`` is the log-probability of the code
    indices of a grid made of codebook vectors (-inf for a z that is not).

    Args:
        logits: (positions, K) unnormalised log-probabilities per grid position.
        codebook: (K, code_dim).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector

    def __init__(self, logits: torch.Tensor, codebook: torch.Tensor) -> None:
        self.indices = Categorical(logits=logits, validate_args=False)
        self.codebook = codebook
        self.positions, self.code_dim = logits.shape[0], codebook.shape[1]
        shape = torch.Size([self.positions * self.code_dim])
        super().__init__(torch.Size(), shape, validate_args=False)

    def grid(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (…, positions) to the flattened grid (…, code_dim * positions)."""
        vectors = self.codebook[indices]  # (…, P, D)
        return vectors.transpose(-1, -2).reshape(*indices.shape[:-1], -1)

    def sample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.grid(self.indices.sample(torch.Size(sample_shape)))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        vectors = value.reshape(*value.shape[:-1], self.code_dim, self.positions).transpose(-1, -2)
        flat = vectors.reshape(-1, self.code_dim)
        index = nearest_codes(flat, self.codebook).reshape(vectors.shape[:-1])
        exact = (self.codebook[index] == vectors).all(-1).all(-1)
        log_p = self.indices.log_prob(index).sum(-1)
        return torch.where(exact, log_p, torch.full_like(log_p, -math.inf))


@register_model("vqvae")
class VQVAE(BaseVAE):
    """A VQ-VAE (van den Oord et al., 2017, https://arxiv.org/abs/1711.00937) on images.

    Encoder: the conv model's strided 3x3 convolutions (``channels``), then a 1x1 convolution to
    ``latent_dim`` channels; decoder: a 1x1 convolution back to ``channels[-1]`` and the mirrored
    transposed convolutions. Quantisation: nearest codebook entry per grid position,
    straight-through gradients. The objective ``"vq"`` adds the codebook and commitment losses
    (``{"name": "vq", "beta": 0.25}``).

    Args:
        input_shape: ``(C, H, W)``.
        latent_dim: the size of one code vector (the codebook's width). The model's
            ``latent_dim`` attribute is the flattened grid's size, ``latent_dim * H' * W'``.
        codebook_size: the number K of codes.
        channels: the encoder's convolution channels (each halves H and W, rounding up).
        batch_norm: ``BatchNorm2d`` after the hidden convolutions.
        ema_decay: ``None`` trains the codebook by gradient (the codebook loss); a decay in
            (0, 1), e.g. 0.99, updates it by exponential moving averages in training-mode forward
            passes instead (the codebook is then a buffer).
        likelihood: p(x|z) by name, config or instance (default ``"bernoulli"``).
        objective: ``"vq"`` (the only objective that trains a codebook).
        num_classes: the number of classes of a conditional model (the one-hot label is added
            as constant channels to the encoder's input and to the code grid for the decoder;
            the code prior stays unconditional), or ``None``.
        init: the weight initialisation of the encoder and decoder, ``"torch"`` (the default
            here), ``"he"`` or ``"lecun"`` (see :func:`pyvae.nn.init_weights`; the codebook
            starts uniform in [-1/K, 1/K] either way). He's larger encoder outputs made the
            codebook-loss training diverge at a high learning rate (a test with Adam at 1e-2);
            with ``ema_decay`` and restarts ``"he"`` measured better (see the VQ-VAE docs page).
    """

    vector_quantized: ClassVar[bool] = True
    codebook: torch.Tensor
    ema_count: torch.Tensor  # with ema=True only, as ema_total
    ema_total: torch.Tensor
    usage: torch.Tensor
    prior_logits: torch.Tensor
    prior_fitted: torch.Tensor

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        codebook_size: int = 64,
        channels: Sequence[int] = (32, 64),
        batch_norm: bool = False,
        ema_decay: float | None = None,
        likelihood: Spec | Likelihood = "bernoulli",
        objective: Spec | Objective = "vq",
        num_classes: int | None = None,
        init: str = "torch",
    ) -> None:
        shape = check_positive_ints("input_shape", input_shape)
        if len(shape) != 3:
            raise ConfigError(
                f"input_shape: the vqvae model expects images (C, H, W), got {tuple(input_shape)!r}"
            )
        code_dim = check_positive_int("latent_dim", latent_dim)
        channels = check_positive_ints("channels", channels)
        c, h, w = shape
        heights, widths = conv_output_sizes(h, len(channels)), conv_output_sizes(w, len(channels))
        grid = (heights[-1], widths[-1])
        super().__init__(
            input_shape=shape,
            latent_dim=code_dim * grid[0] * grid[1],
            likelihood=likelihood,
            prior=None,
            objective=objective,
            num_classes=num_classes,
        )
        self.code_dim, self.grid = code_dim, grid
        self.codebook_size = check_positive_int("codebook_size", codebook_size)
        if not isinstance(batch_norm, bool):
            raise ConfigError(f"batch_norm: expected a bool, got {batch_norm!r}")
        if ema_decay is not None and (
            isinstance(ema_decay, bool)
            or not isinstance(ema_decay, (int, float))
            or not 0 < ema_decay < 1
        ):
            raise ConfigError(f"ema_decay: expected None or a number in (0, 1), got {ema_decay!r}")
        from pyvae.objectives.vq import VQObjective

        if not isinstance(self.objective, VQObjective):
            raise ConfigError(
                f"objective: the vqvae model trains its codebook with the 'vq' objective, got "
                f"{type(self.objective).registered_name!r}"
            )
        self.ema = ema_decay is not None
        self.ema_decay = ema_decay
        labels = self.condition_dim
        self.encoder = nn.Sequential(
            conv_encoder(c + labels, channels, batch_norm), nn.Conv2d(channels[-1], code_dim, 1)
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim + labels, channels[-1], 1),
            nn.ReLU(),
            conv_decoder(c, channels, heights, widths, batch_norm),
        )
        init_weights([self.encoder, self.decoder], init)
        k = self.codebook_size
        initial = torch.empty(k, code_dim).uniform_(-1 / k, 1 / k)
        if self.ema:
            self.register_buffer("codebook", initial)
            self.register_buffer("ema_count", torch.ones(k))
            self.register_buffer("ema_total", initial.clone())
        else:
            self.codebook = nn.Parameter(initial)
        self.register_buffer("usage", torch.ones(k))
        positions = grid[0] * grid[1]
        self.register_buffer("prior_logits", torch.zeros(positions, k))
        self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool))

    # -- quantisation --------------------------------------------------------------------------
    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codes of an encoder grid ``z_e`` (B, D, H', W'): ``(indices (B, H', W'),
        codes (B, D, H', W'))`` (no straight-through path)."""
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        indices = nearest_codes(flat.detach().to(self.codebook.dtype), self.codebook.detach())
        codes = F.embedding(indices, self.codebook).view(b, h, w, d).permute(0, 3, 1, 2)
        return indices.view(b, h, w), codes

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """The :class:`QuantizedPosterior` of x. In training mode this also updates the code
        usage counts (and, with ``ema_decay``, the codebook)."""
        z_e = self.encoder(self._with_label(x, y))
        indices, codes = self.quantize(z_e)
        if self.training:
            self._track(z_e.detach(), indices)
            if self.ema:  # the codes were read before the update: this step uses the old ones
                codes = codes.detach()
        return QuantizedPosterior(z_e.flatten(1), codes.flatten(1), indices)

    @torch.no_grad()
    def _track(self, z_e: torch.Tensor, indices: torch.Tensor) -> None:
        flat = indices.reshape(-1)
        counts = torch.zeros_like(self.usage).index_add(
            0, flat, torch.ones_like(flat, dtype=self.usage.dtype)
        )
        self.usage.mul_(0.99).add_(counts, alpha=0.01)
        if self.ema:
            assert self.ema_decay is not None
            vectors = z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim).to(self.codebook.dtype)
            count, total, codebook = ema_codebook_update(
                self.ema_count, self.ema_total, vectors, indices.reshape(-1), self.ema_decay
            )
            self.ema_count.copy_(count)
            self.ema_total.copy_(total)
            self.codebook.copy_(codebook)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's parameters from a flattened grid z (B, latent_dim)."""
        return self.decoder(self._with_label(z.view(z.shape[0], self.code_dim, *self.grid), y))

    def _with_label(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``t`` (B, C, H, W) with the one-hot label as ``num_classes`` constant channels."""
        if self.num_classes is None or y is None:
            return t
        one_hot = self.condition(t.new_zeros(t.shape[0], 0), y)  # (B, num_classes)
        return torch.cat([t, one_hot[:, :, None, None].expand(-1, -1, *t.shape[2:])], dim=1)

    # -- the regulariser and the code prior ----------------------------------------------------
    def kl(self, out: VAEOutput, *, method: KLMethod = "auto") -> torch.Tensor:
        """``KL(q || uniform)`` of a one-hot posterior per position: the constant
        ``H' W' log(codebook_size)`` per example, (B,)."""
        value = self.grid[0] * self.grid[1] * math.log(self.codebook_size)
        z = out.z
        return torch.full(
            z.shape[:1],
            value,
            dtype=torch.float32 if z.dtype in (torch.float16, torch.bfloat16) else z.dtype,
            device=z.device,
        )

    def code_indices(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The code index of each grid position of x, (B, H', W') (no gradient, any mode; a
        conditional model encodes with the labels y)."""
        self.check_input(x)
        y = self.check_labels(y, x.shape[0])
        with torch.no_grad():
            return self.quantize(self.encoder(self._with_label(x, y)))[0]

    @torch.no_grad()
    def fit_prior(
        self,
        data: torch.Tensor | Iterable[Any],
        *,
        y: torch.Tensor | None = None,
        smoothing: float = 1.0,
    ) -> VQVAE:
        """Fit the code prior: a categorical per grid position over the code indices of
        ``data`` (a tensor (N, *input_shape), with labels ``y`` for a conditional model, or an
        iterable of ``x`` / ``(x, y, ...)`` batches), with add-``smoothing`` counts (a
        conditional model's prior is the marginal over its classes). Stored in the buffers
        ``prior_logits`` (saved with the model); ``sample`` uses it afterwards. The model runs in
        eval mode (restored). Returns ``self``."""
        if (
            isinstance(smoothing, bool)
            or not isinstance(smoothing, (int, float))
            or not (smoothing > 0 and math.isfinite(smoothing))
        ):
            raise ValueError(f"smoothing: expected a finite number > 0, got {smoothing!r}")
        batches: Iterable[Any]
        if isinstance(data, torch.Tensor):
            batches = [
                data[i : i + 256] if y is None else (data[i : i + 256], y[i : i + 256])
                for i in range(0, data.shape[0], 256)
            ]
        elif y is not None:
            raise ValueError("y: give labels only with a tensor; a loader's batches carry them")
        elif isinstance(data, Iterable):
            batches = data
        else:
            raise TypeError(
                f"data: expected a tensor or an iterable of batches, got {type(data).__name__}"
            )
        reference = self.codebook
        counts = torch.zeros_like(self.prior_logits, dtype=torch.float64)
        positions = torch.arange(counts.shape[0], device=counts.device)
        was_training = self.training
        self.eval()
        try:
            for batch in batches:
                pair = isinstance(batch, (tuple, list))
                x = batch[0] if pair else batch
                labels = batch[1] if pair and len(batch) > 1 and self.num_classes else None
                if labels is not None:
                    labels = torch.as_tensor(labels).to(reference.device)
                x = x.to(reference.device, reference.dtype)
                indices = self.code_indices(x, labels).flatten(1)
                counts.index_put_(
                    (positions.expand_as(indices).reshape(-1), indices.reshape(-1)),
                    torch.ones(indices.numel(), dtype=torch.float64, device=counts.device),
                    accumulate=True,
                )
        finally:
            self.train(was_training)
        if counts.sum() == 0:
            raise ValueError("data: no examples to fit the code prior to")
        probs = (counts + smoothing) / (counts + smoothing).sum(1, keepdim=True)
        self.prior_logits.copy_(probs.log().to(self.prior_logits.dtype))
        self.prior_fitted.fill_(True)
        return self

    def prior_distribution(self) -> Distribution:
        """The fitted :class:`CodePrior`; before :meth:`fit_prior` a ValueError says what to
        do."""
        if not bool(self.prior_fitted):
            raise ValueError(
                "VQVAE: the code prior is not fitted yet; after training call "
                "model.fit_prior(train_data) (a categorical per grid position over the code "
                "indices), then model.sample(n)"
            )
        return CodePrior(self.prior_logits, self.codebook)

    def log_likelihood(
        self,
        x: torch.Tensor,
        *,
        y: torch.Tensor | None = None,
        k: int = 5000,
        chunk_size: int = 4096,
    ) -> torch.Tensor:
        """Refused: a VQ-VAE's posterior is a point mass, so there is no importance-sampled
        likelihood; compare by reconstruction error and codebook perplexity."""
        raise ValueError(
            "VQVAE has no posterior density: log p(x) bounds are undefined; compare VQ-VAEs by "
            "reconstruction error (terms.recon) and codebook_perplexity"
        )

    # -- codebook maintenance ------------------------------------------------------------------
    @torch.no_grad()
    def restart_dead_codes(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        min_usage: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> int:
        """Move every code whose usage (an exponential moving average of its assignments per
        training batch, decay 0.99, the buffer ``usage``) is below ``min_usage`` (default: fewer
        than one assignment per batch lately) onto a randomly chosen encoder output of ``x``
        (with labels ``y`` for a conditional model); returns how many were moved. A moved code's
        usage is reset to 1.

        Call it between training steps (e.g. every few hundred), outside a compiled step: which
        codes move depends on the data. Under DDP, call it on every rank: rank 0's codebook and
        counts are then broadcast so that the ranks stay identical.
        """
        self.check_input(x)
        y = self.check_labels(y, x.shape[0])
        dead = (self.usage < min_usage).nonzero().squeeze(1)
        n = int(dead.numel())
        if n:
            z_e = (
                self.encoder(self._with_label(x, y)).permute(0, 2, 3, 1).reshape(-1, self.code_dim)
            )
            pick = torch.randint(0, z_e.shape[0], (n,), generator=generator).to(z_e.device)
            self.codebook.data[dead] = z_e[pick].to(self.codebook.dtype)
            self.usage[dead] = 1.0
            if self.ema:
                self.ema_count[dead] = 1.0
                self.ema_total[dead] = self.codebook[dead]
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for tensor in (self.codebook.data, self.usage, *self._ema_buffers()):
                dist.broadcast(tensor, 0)
        return n

    def _ema_buffers(self) -> list[torch.Tensor]:
        return [self.ema_count, self.ema_total] if self.ema else []

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, code_dim={self.code_dim}, grid={self.grid}, "
            f"codebook_size={self.codebook_size}, ema={self.ema}"
        )

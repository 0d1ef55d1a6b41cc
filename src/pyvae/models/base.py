"""The contract every pyvae model follows: encode, reparameterize, decode, loss."""

from __future__ import annotations

import abc
import contextlib
import math
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn
from torch.distributions import Distribution

from pyvae import evaluation
from pyvae.config import ConfigError, Configurable, check_positive_int, check_positive_ints
from pyvae.kl import KLMethod, kl_divergence
from pyvae.likelihoods import LIKELIHOODS, Likelihood
from pyvae.objectives import OBJECTIVES, Objective, check_weight
from pyvae.outputs import LossTerms, VAEOutput
from pyvae.posteriors import POSTERIORS, PosteriorHead, latent_point
from pyvae.priors import PRIORS, Prior, draw
from pyvae.registry import Registry
from pyvae.validation import (
    check_finite,
    check_tensor,
    deferred_checks,
    format_shape,
    in_range,
    read_values,
    support_interval,
    validate_args_enabled,
)

__all__ = ["MODELS", "BaseVAE", "VAEWrapper", "register_model"]

ComponentSpec = str | Mapping[str, Any]
_HALF_DTYPES = (torch.float16, torch.bfloat16)
C = TypeVar("C", bound=Configurable)


class BaseVAE(Configurable, nn.Module, abc.ABC):
    """Abstract variational autoencoder: a backbone combined with swappable parts.

    A concrete model builds its networks in ``__init__`` (after calling
    ``super().__init__(input_shape=..., latent_dim=..., likelihood=..., prior=..., ...)``) and
    defines :meth:`encode` and :meth:`decode`; reparameterisation, the loss, sampling and
    reconstruction are shared. The parts:

    * ``self.likelihood`` (a :class:`~pyvae.likelihoods.Likelihood`): p(x|z), the reconstruction
      term;
    * ``self.prior`` (a :class:`~pyvae.priors.Prior`, or ``None`` for a model without one, such
      as the autoencoder): p(z), read with :meth:`prior_distribution`;
    * ``self.objective`` (an :class:`~pyvae.objectives.Objective`): what :meth:`loss` computes;
    * the posterior family, a head built with :meth:`build_posterior` (see
      :mod:`pyvae.posteriors`);
    * ``num_classes``: a conditional model feeds one-hot labels y to encoder and decoder
      (:meth:`condition`).

    Components given by name or config dict are built with what they need (``latent_dim``,
    ``input_shape``); an instance belongs to the one model that received it first.

    Args:
        input_shape: shape of one example, without the batch dimension, e.g. ``(1, 28, 28)``.
        latent_dim: size D of the latent space.
        likelihood: a likelihood name (see :func:`pyvae.list_likelihoods`), config dict or instance.
        prior: a prior name (see :func:`pyvae.list_priors`), config dict, instance or ``None``.
        objective: an objective name (see :func:`pyvae.list_objectives`), config dict or instance.
        num_classes: the number of classes of a conditional model (labels ``0..num_classes-1``),
            or ``None`` for an unconditional one.
    """

    input_shape: tuple[int, ...]
    latent_dim: int
    num_classes: int | None
    likelihood: Likelihood
    prior: Prior | None
    objective: Objective
    _validate_args: bool | None = None

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        latent_dim: int,
        likelihood: ComponentSpec | Likelihood = "bernoulli",
        prior: ComponentSpec | Prior | None = "normal",
        objective: ComponentSpec | Objective = "elbo",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = check_positive_ints("input_shape", input_shape)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        if num_classes is not None:
            check_positive_int("num_classes", num_classes)
        self.num_classes = num_classes
        self.likelihood = self._component(
            LIKELIHOODS, likelihood, "likelihood", event_shape=self.input_shape
        )
        self.prior = (
            None
            if prior is None
            else self._component(
                PRIORS, prior, "prior", latent_dim=self.latent_dim, input_shape=self.input_shape
            )
        )
        self.objective = self._component(OBJECTIVES, objective, "objective")
        self.objective.check_model(self)
        if self.prior is not None and self.prior.needs_encoder and num_classes is not None:
            raise ConfigError(
                f"prior: {type(self.prior).__name__} encodes unlabelled pseudo-inputs and cannot "
                f"serve a conditional model (num_classes={num_classes}); choose another prior"
            )

    #: Arguments added to the class after checkpoints of it were written, each with the value
    #: that rebuilds such a checkpoint's model (its stored config lacks the argument): the
    #: conv model's ``kernel_size`` came in pyvae 0.3, before which its kernels were 3x3.
    added_arguments: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    @classmethod
    def upgrade_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """A stored ``config`` of this class with the arguments added since it was written
        filled in (:attr:`added_arguments`), so that an older checkpoint rebuilds the model it
        holds; :func:`pyvae.load` calls it before building. A config written now records every
        argument and is returned unchanged."""
        return {**cls.added_arguments, **config}

    def component_context(self, role: str, **context: Any) -> dict[str, Any]:
        """The model-given arguments of the part in ``role`` (``"likelihood"``, ``"prior"``,
        ``"objective"`` or ``"posterior"``): a part given by name or config is built with those
        its class takes, an instance must agree with them. By default ``context`` unchanged:
        ``event_shape`` for the likelihood, ``latent_dim`` and ``input_shape`` for the prior,
        ``in_features`` and ``latent_dim`` for the posterior, none for the objective.

        A subclass whose part needs other values overrides it (the Ladder VAE gives its prior
        ``latent_dim=latent_dims[-1]``, the size of its top layer). It is called inside
        ``BaseVAE.__init__``: what it reads must be set before ``super().__init__(...)``.
        """
        return context

    def _component(self, registry: Registry[C], spec: Any, role: str, **context: Any) -> C:
        """Build a part from a name or dict, filling in the :meth:`component_context` arguments
        its class takes (e.g. ``latent_dim``), or adopt an instance that no other model owns."""
        context = self.component_context(role, **context)
        if isinstance(spec, registry.base):
            for key, value in context.items():
                own = getattr(spec, key, None)
                if own is not None and own != value:
                    raise ConfigError(
                        f"{role}: the {type(spec).__name__} instance has {key}={own!r}, the model "
                        f"{value!r}"
                    )
            owner = getattr(spec, "_pyvae_owner", None)
            if owner is not None and owner() is not None and owner() is not self:
                raise ConfigError(
                    f"{role}: this {type(spec).__name__} instance already belongs to another "
                    f"model; a component serves one model (its parameters and state would be "
                    f"shared silently). Pass its name or config ({role}={spec.config!r}), a new "  # type: ignore[attr-defined]
                    f"instance, or copy.deepcopy(it)"
                )
            object.__setattr__(spec, "_pyvae_owner", weakref.ref(self))
            return spec  # type: ignore[return-value]
        if isinstance(spec, str):
            spec = {"name": spec}
        if isinstance(spec, Mapping) and "name" in spec:
            cls = registry.get(spec["name"])
            accepted = inspect_parameters(cls)
            spec = dict(spec)
            for key, value in context.items():
                if key not in accepted:
                    continue
                given = spec.get(key)
                if given is not None and _normalised(given) != _normalised(value):
                    raise ConfigError(
                        f"{role}: {key}={given!r} does not match the model's {key}={value!r}"
                    )
                spec[key] = value
        component = registry.build(spec)
        object.__setattr__(component, "_pyvae_owner", weakref.ref(self))
        return component

    def build_posterior(
        self, spec: ComponentSpec | PosteriorHead, in_features: int
    ) -> PosteriorHead:
        """The posterior head of this model from a name, dict or instance (see
        :mod:`pyvae.posteriors`), for encoder features of width ``in_features`` (a conditional
        model's head also receives the one-hot label: ``in_features + num_classes`` inputs).
        The objective may refuse the family (:meth:`pyvae.Objective.check_posterior`)."""
        head = self._component(
            POSTERIORS,
            spec,
            "posterior",
            in_features=in_features + self.condition_dim,
            latent_dim=self.latent_dim,
        )
        self.objective.check_posterior(head)
        if head.deterministic and self.prior is not None and self.prior.needs_encoder:
            raise ConfigError(
                f"prior: {type(self.prior).__name__} is a mixture of the model's posteriors, and "
                f"the posterior {type(head).registered_name!r} is a point mass with no density, "
                f"so p(z) would have none; choose another prior (or prior=None)"
            )
        return head

    # -- value checks ----------------------------------------------------------------------------
    @property
    def validate_args(self) -> bool | None:
        """This model's value checks: ``True`` (on), ``False`` (off) or ``None`` (the default:
        follow the global :func:`pyvae.set_validate_args`). Not part of the config: a run-time
        setting, like ``model.train()``."""
        return self._validate_args

    @validate_args.setter
    def validate_args(self, value: bool | None) -> None:
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"validate_args: expected True, False or None, got {value!r}")
        self._validate_args = value

    def value_checks(self) -> bool:
        """Whether this model's value checks run now: its :attr:`validate_args`, or the global
        switch when that is ``None``; never inside ``torch.compile``."""
        return validate_args_enabled(self._validation_setting())

    def _validation_setting(self) -> bool | None:
        return self.validate_args

    # -- what a concrete model defines -------------------------------------------------------
    @abc.abstractmethod
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z|x) (q(z|x, y) for a conditional model) for inputs x of shape (B, *input_shape):
        a distribution with batch shape (B,), event shape (latent_dim,) that supports
        ``rsample``. Models without labels may define ``encode(self, x)``."""

    @abc.abstractmethod
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The parameters of p(x|z) (p(x|z, y)) (e.g. Bernoulli logits) for z of shape
        (B, latent_dim); shape (B, *input_shape). Models without labels may define
        ``decode(self, z)``."""

    # -- conditioning --------------------------------------------------------------------------
    @property
    def condition_dim(self) -> int:
        """The width of the one-hot label a conditional model appends (0 if unconditional)."""
        return self.num_classes or 0

    def condition(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``h`` (B, F) with the one-hot label appended, (B, F + num_classes), for a conditional
        model; ``h`` itself otherwise. Built-in backbones call it on the encoder's features and
        on z."""
        if self.num_classes is None or y is None:
            return h
        classes = torch.arange(self.num_classes, device=y.device)
        one_hot = (y.unsqueeze(-1) == classes).to(h.dtype)
        return torch.cat([h, one_hot.expand(*h.shape[:-1], self.num_classes)], dim=-1)

    def check_labels(self, y: object, batch: int, *, values: bool = True) -> torch.Tensor | None:
        """Raise a clear error unless ``y`` fits the model: ``None`` for an unconditional model;
        integer labels of shape (batch,) in ``[0, num_classes)``, on the model's device, for a
        conditional one (the range check is a value check, see :meth:`value_checks`; skipped
        with ``values=False``, as ``forward`` does: :meth:`loss` checks the labels' range with
        the step's other values)."""
        if self.num_classes is None:
            if y is not None:
                raise ValueError(
                    f"y: {type(self).__name__} is unconditional (num_classes=None) and takes no "
                    f"labels; build it with num_classes=... to condition on y"
                )
            return None
        if y is None:
            raise ValueError(
                f"y: this model is conditional (num_classes={self.num_classes}): pass the labels "
                f"as y, an integer tensor of shape ({batch},)"
            )
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"y: expected an integer tensor of shape ({batch},), got {type(y).__name__}"
            )
        if y.layout != torch.strided:
            raise TypeError(
                f"y: expected a dense (strided) tensor, got layout {y.layout}; convert it with "
                f".to_dense()"
            )
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"y: expected integer class labels, got dtype {y.dtype}")
        if y.shape != (batch,):
            raise ValueError(
                f"y: expected shape ({batch},) (one label per example), got "
                f"{format_shape(list(y.shape))}"
            )
        reference = self._reference_tensor()
        if reference is not None and y.device != reference.device:
            raise ValueError(
                f"y: expected a tensor on {reference.device} (the model's device), got one on "
                f"{y.device}"
            )
        if values and self.value_checks() and not in_range(y, 0, self.num_classes - 1):
            self._labels_out_of_range(int(y.min()), int(y.max()))
        return y

    def _labels_out_of_range(self, low: float, high: float) -> None:
        raise ValueError(
            f"y: expected class labels in [0, {(self.num_classes or 0) - 1}], got values in "
            f"[{low:g}, {high:g}]"
        )

    def _encode(self, x: torch.Tensor, y: torch.Tensor | None) -> Distribution:
        return self.encode(x) if y is None else self.encode(x, y)

    def _decode(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.decode(z) if y is None else self.decode(z, y)

    # -- shared --------------------------------------------------------------------------------
    def reparameterize(self, posterior: Distribution) -> torch.Tensor:
        """A differentiable sample z ~ q(z|x) of shape (B, latent_dim) (``posterior.rsample()``):
        gradients reach the encoder through it."""
        return posterior.rsample()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> VAEOutput:
        """Encode, sample z with the reparameterisation trick, decode.

        ``forward`` checks the structure of x and y (shape, dtype, device), which costs no read
        from the device; their values (finite, in the likelihood's support, labels in range) are
        checked by :meth:`loss`, together with the loss, in one read per training step.
        :meth:`reconstruct` and :meth:`check_input` check values themselves.

        Args:
            x: inputs of shape (B, *input_shape), floating point, on the model's device.
            y: class labels of shape (B,) for a conditional model; ``None`` otherwise.
        """
        self._check_structure(x)
        y = self.check_labels(y, x.shape[0], values=False)
        with _batch_norm_errors():
            posterior = self._encode(x, y)
            z = self.reparameterize(posterior)
            params = self._decode(z, y)
        if params.shape != x.shape:
            raise RuntimeError(
                f"{type(self).__name__}.decode returned shape {format_shape(list(params.shape))}"
                f" for inputs of shape {format_shape(list(x.shape))}; it must return the data's"
                f" shape"
            )
        return VAEOutput(posterior=posterior, z=z, params=params, y=y)

    def prior_distribution(self) -> Distribution:
        """p(z), built from the prior's current parameters: event shape (latent_dim,)."""
        if self.prior is None:
            raise ValueError(
                f"{type(self).__name__} has no prior (prior=None, e.g. a deterministic "
                f"autoencoder): fit a sampler to its codes, "
                f"pyvae.samplers.GaussianMixtureSampler(model).fit(data), to sample"
            )
        return self.prior(self.encode) if self.prior.needs_encoder else self.prior()

    def reconstruction_term(self, x: torch.Tensor, out: VAEOutput) -> torch.Tensor:
        """``-log p(x|z)`` per example at the sample ``out.z``, summed over data dimensions,
        in nats, shape (B,); computed in float32 when the decoder ran in 16 bits (autocast)."""
        params = out.params.float() if out.params.dtype in _HALF_DTYPES else out.params
        return -self.likelihood.log_prob(x, params)

    def kl(self, out: VAEOutput, *, method: KLMethod = "auto") -> torch.Tensor:
        """The model's regulariser per example, shape (B,), in nats: ``KL(q(z|x) || p(z))``,
        closed form where torch.distributions has one, else the Monte Carlo estimate at
        ``out.z`` (see :func:`pyvae.kl_divergence`). Models with structured latents (a hierarchy)
        override it."""
        z = out.z.float() if out.z.dtype in _HALF_DTYPES else out.z
        return kl_divergence(out.posterior, self.prior_distribution(), z=z, method=method)

    def kl_terms(
        self, out: VAEOutput, *, method: KLMethod = "auto"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`kl` per example, (B,), and its named parts, reported by objectives as
        :class:`~pyvae.LossTerms` extras (the ladder: ``kl_layers``, (B, L)). By default
        ``(self.kl(out, method=method), {})``; models whose regulariser has parts override it."""
        return self.kl(out, method=method), {}

    def loss(
        self,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        beta: float | None = None,
        kl_method: KLMethod = "auto",
    ) -> LossTerms:
        """The model's objective for ``x`` given ``out = self(x)`` (or ``self(x, y)``), in nats.

        The objective chosen at build time computes it (by default ``"elbo"``: ``recon =
        -log p(x|z)`` summed over data dimensions and ``kl = KL(q(z|x) || p(z))`` per example,
        shape (B,), and ``loss = mean_b(recon + beta * kl)``, the scalar to backpropagate).

        Args:
            x: the (clean) inputs, shape (B, *input_shape).
            out: the output of ``self(x)``.
            beta: the KL weight for this call, >= 0, overriding the objective's (e.g. a warm-up
                in your own loop); ``None`` keeps the objective's.
            kl_method: ``"auto"`` (closed form when torch.distributions has one),
                ``"closed_form"`` or ``"monte_carlo"`` (from the sample ``out.z``).
        """
        self._check_structure(x)
        self._check_output(x, out)
        if beta is not None:
            check_weight("beta", beta)
        if torch.compiler.is_compiling():  # no checks in a graph
            return self.objective(self, x, out, beta=beta, kl_method=kl_method)
        with deferred_checks():  # the components' own checks: done below, in one read
            terms = self.objective(self, x, out, beta=beta, kl_method=kl_method)
        if self.value_checks():
            self._check_step(x, out.y, terms)
        return terms

    def _check_step(self, x: torch.Tensor, y: torch.Tensor | None, terms: LossTerms) -> None:
        """The value checks of a training step with one read back to the host: x finite and in
        the likelihood's support, the labels in range, the loss finite. The detailed checks that
        word an error run only once something is wrong."""
        values = [terms.loss]
        if x.numel():
            values += torch.aminmax(x.detach())
        if y is not None and y.numel():
            values += torch.aminmax(y)
        read = read_values(*values)
        if x.numel():
            low, high = read[1], read[2]
            if not (math.isfinite(low) and math.isfinite(high)):
                check_finite("x", x, setting=True)
            interval = support_interval(self.likelihood.support)
            if interval is None or not interval[0] <= low <= high <= interval[1]:
                self.likelihood.check_support(x)  # words the error (or checks another support)
        if y is not None and y.numel():
            y_low, y_high = read[-2], read[-1]
            if not 0 <= y_low <= y_high <= (self.num_classes or 0) - 1:
                self._labels_out_of_range(y_low, y_high)
        if not math.isfinite(read[0]):
            term = "recon (-log p(x|z))" if not bool(torch.isfinite(terms.recon).all()) else "kl"
            raise FloatingPointError(
                f"the loss is not finite: its first non-finite term is {term}; check the "
                f"learning rate and the inputs, or switch checks off with "
                f"model.validate_args = False or pyvae.set_validate_args(False)"
            )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` draws z ~ p(z), decoded to the mean of p(x|z): shape (n, *input_shape).

        The model runs in eval mode for the call (each submodule's mode is restored), so
        sampling never updates batch-norm running statistics and never uses batch statistics.

        Args:
            n: the number of samples.
            y: for a conditional model, the class of each sample, integer tensor of shape (n,).
            generator: makes the draws reproducible (the global RNG is left untouched).
        """
        check_positive_int("n", n)
        reference = self._reference_tensor()
        device = reference.device if reference is not None else torch.device("cpu")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(
                    f"generator: expected a torch.Generator or None, got "
                    f"{type(generator).__name__}; e.g. torch.Generator().manual_seed(0)"
                )
        values = n * max(math.prod(self.input_shape), self.latent_dim)
        if values >= 2**62:
            raise ValueError(
                f"n: {n} samples of shape {format_shape(list(self.input_shape))} are more "
                f"values than a tensor can hold; draw them in batches"
            )
        y = self.check_labels(y, n)
        try:
            with _eval_mode(self):  # batch statistics and running averages stay untouched
                z = draw(self.prior_distribution(), n, generator=generator)
                return self.likelihood.mean(self._decode(z, y))
        except (MemoryError, RuntimeError) as exc:
            if not (isinstance(exc, MemoryError) or _out_of_memory(exc)):
                raise
            raise MemoryError(
                f"sample: not enough memory for n={n} samples of shape "
                f"{format_shape(list(self.input_shape))} on {device}; draw them in batches "
                f"({str(exc).splitlines()[0][:160]})"
            ) from None

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|z) at the posterior's point (its mean; see
        :func:`pyvae.posteriors.latent_point`): shape (B, *input_shape). Runs in eval mode (each
        submodule's mode is restored afterwards)."""
        self.check_input(x)
        y = self.check_labels(y, x.shape[0])
        with _eval_mode(self):  # inference: no corruption, no batch-norm statistics updated
            return self.likelihood.mean(self._decode(latent_point(self._encode(x, y)), y))

    def log_likelihood(
        self,
        x: torch.Tensor,
        *,
        y: torch.Tensor | None = None,
        k: int = 5000,
        chunk_size: int = 4096,
    ) -> torch.Tensor:
        """The importance-sampled estimate of ``log p(x)`` (``log p(x|y)``) per example, in
        nats, shape (B,).

        ``logsumexp_i(log w_i) - log k`` over ``k`` samples ``z_i ~ q(z|x)``, with
        ``log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)``; computed in eval mode without
        gradients, decoding at most ``max(chunk_size, B)`` samples at a time. See
        :func:`pyvae.log_likelihood`; for the IWAE training objective use
        ``objective={"name": "iwae", "k": 5}``.
        """
        return evaluation.log_likelihood(self, x, y=y, k=k, chunk_size=chunk_size)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error if x is not a finite float tensor of shape (B, *input_shape) with
        the model's dtype, on the model's device (the finiteness check is a value check: see
        :meth:`value_checks`)."""
        self._check_structure(x)
        check_finite("x", x, setting=self._validation_setting())

    def _reference_tensor(self) -> torch.Tensor | None:
        """The first parameter (``next(self.parameters())``, whose dtype and device inputs must
        match), found by a direct walk: ``parameters()`` builds the module tree's name tables,
        tens of microseconds on every call, twice per training step."""
        return _first_parameter(self)

    def _check_structure(self, x: torch.Tensor) -> None:
        """Shape, dtype and device of x (no value read back from the device); at least one
        example (every entry point refuses an empty batch: a mean over no examples is NaN)."""
        reference = self._reference_tensor()
        check_tensor(
            "x",
            x,
            (None, *self.input_shape),
            dtype=None if reference is None else reference.dtype,
            device=None if reference is None else reference.device,
        )
        if x.shape[0] == 0:
            raise ValueError(
                f"x: expected at least one example, got an empty batch of shape "
                f"{format_shape(list(x.shape))} (a mean over no examples is NaN); skip empty "
                f"batches"
            )

    def _check_output(self, x: torch.Tensor, out: VAEOutput) -> None:
        """``out`` is this model's output for this ``x`` (not another model's or batch's)."""
        if not isinstance(out, VAEOutput):
            raise TypeError(f"out: expected the VAEOutput of model(x), got {type(out).__name__}")
        z_size = out.z.shape[-1] if out.z.dim() else None
        if out.params.shape != x.shape or z_size != self.latent_dim:
            raise ValueError(
                f"out: expected the output of this model for x (params of shape "
                f"{format_shape(list(x.shape))}, z of size {self.latent_dim}), got params of "
                f"shape {format_shape(list(out.params.shape))} and z of shape "
                f"{format_shape(list(out.z.shape))}: pass out = model(x) for the same model "
                f"and batch"
            )

    def save(
        self, path: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the weights (safetensors) and the build config (JSON) to ``path``; no pickle.

        ``pyvae.load(path)`` rebuilds the model exactly. See :func:`pyvae.checkpoint.save`.

        Args:
            path: the file to write, conventionally ``*.safetensors``.
            metadata: optional JSON-serialisable values stored beside the config.
        """
        from pyvae.checkpoint import save

        return save(self, path, metadata=metadata)

    def extra_repr(self) -> str:
        conditional = "" if self.num_classes is None else f", num_classes={self.num_classes}"
        return f"input_shape={self.input_shape}, latent_dim={self.latent_dim}{conditional}"


class VAEWrapper(BaseVAE):
    """A model that wraps another (its ``backbone``) and changes one stage of it.

    The wrapper's contract: the backbone owns the networks and every part (likelihood, prior,
    objective, posterior head), so the wrapper builds none and does not call
    ``BaseVAE.__init__``; ``input_shape``, ``latent_dim``, ``num_classes``, ``likelihood``,
    ``prior`` and ``objective`` are read from the backbone, and :meth:`encode`, :meth:`decode`,
    :meth:`prior_distribution` and :meth:`kl` delegate to it. A subclass overrides the stage it
    changes (the denoising model: :meth:`encode`).

    Args:
        backbone: the wrapped model instance.
    """

    def __init__(self, backbone: BaseVAE) -> None:
        nn.Module.__init__(self)
        if not isinstance(backbone, BaseVAE):
            raise ConfigError(f"backbone: expected a pyvae model, got {type(backbone).__name__}")
        self.backbone = backbone

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        """The backbone's input shape."""
        return self.backbone.input_shape

    @property
    def latent_dim(self) -> int:  # type: ignore[override]
        """The backbone's latent size D."""
        return self.backbone.latent_dim

    @property
    def num_classes(self) -> int | None:  # type: ignore[override]
        """The backbone's number of classes (``None``: unconditional)."""
        return self.backbone.num_classes

    @property
    def likelihood(self) -> Likelihood:  # type: ignore[override]
        """The backbone's likelihood p(x|z)."""
        return self.backbone.likelihood

    @property
    def prior(self) -> Prior | None:  # type: ignore[override]
        """The backbone's prior p(z)."""
        return self.backbone.prior

    @property
    def objective(self) -> Objective:  # type: ignore[override]
        """The backbone's objective."""
        return self.backbone.objective

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """The backbone's q(z|x)."""
        return self.backbone._encode(x, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The backbone's p(x|z) parameters."""
        return self.backbone._decode(z, y)

    def _validation_setting(self) -> bool | None:
        """The wrapper's own ``validate_args``, else the backbone's (then the global switch)."""
        return self.validate_args if self.validate_args is not None else self.backbone.validate_args

    def prior_distribution(self) -> Distribution:
        """The backbone's p(z) (a VampPrior encodes its pseudo-inputs with the backbone)."""
        return self.backbone.prior_distribution()

    def kl(self, out: VAEOutput, *, method: KLMethod = "auto") -> torch.Tensor:
        """The backbone's regulariser."""
        return self.backbone.kl(out, method=method)

    def kl_terms(
        self, out: VAEOutput, *, method: KLMethod = "auto"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The backbone's regulariser and its parts."""
        return self.backbone.kl_terms(out, method=method)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block; each submodule's own mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


@contextlib.contextmanager
def _batch_norm_errors() -> Iterator[None]:
    """Batch norm's raw error for a single value per channel, said in the model's terms."""
    try:
        yield
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise ValueError(
            f"x: in training mode, batch norm needs more than one value per channel, and this "
            f"batch gives one ({exc}); train with batches of at least 2 examples, or call "
            f"model.eval() to use the running statistics"
        ) from None


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)


def inspect_parameters(cls: type) -> set[str]:
    """The keyword names ``cls.__init__`` accepts."""
    import inspect

    return {n for n in inspect.signature(cls).parameters if n != "self"}


def _normalised(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


MODELS: Registry[BaseVAE] = Registry("model", BaseVAE, "pyvae.models")
register_model = MODELS.register


def data_size(shape: Sequence[int]) -> int:
    """Number of data dimensions of one example."""
    return math.prod(shape)


def _first_parameter(module: nn.Module) -> torch.Tensor | None:
    """``next(module.parameters(), None)``: a module's own parameters first, then its
    children's, depth first in registration order (the order of ``parameters()``)."""
    for parameter in module._parameters.values():
        if parameter is not None:
            return parameter
    for child in module._modules.values():
        if child is not None:
            found = _first_parameter(child)
            if found is not None:
                return found
    return None

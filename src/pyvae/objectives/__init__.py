"""Training objectives, as swappable components: what ``model.loss`` computes.

An objective is chosen when the model is built (``pyvae.build("mlp", objective="elbo")`` or
``objective={"name": "elbo", "beta": 4.0}``), so the user's loop never changes:
``model.loss(x, model(x)).loss.backward()``. It returns :class:`pyvae.LossTerms` with the
per-example terms it optimises (``recon``, ``kl`` and its own extras).

Registered: ``elbo`` (the negative ELBO, with a KL weight ``beta``, free bits and KL schedules;
:mod:`pyvae.objectives.elbo`), ``beta_tc`` (:mod:`pyvae.objectives.beta_tc`), ``mmd`` (InfoVAE,
:mod:`pyvae.objectives.mmd`), ``iwae`` (:mod:`pyvae.objectives.iwae`) and ``ae`` (the
autoencoder's reconstruction term, with an optional latent L2 penalty). Register a new one with
:func:`register_objective`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from pyvae.config import ConfigError, Configurable
from pyvae.kl import KLMethod
from pyvae.outputs import LossTerms, VAEOutput
from pyvae.registry import Registry

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE
    from pyvae.posteriors import PosteriorHead

__all__ = [
    "ELBO",
    "OBJECTIVES",
    "AutoencoderObjective",
    "Objective",
    "check_weight",
    "list_objectives",
    "register_objective",
]


def check_weight(name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number >= 0 (not a bool), else ConfigError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


class Objective(Configurable, nn.Module, abc.ABC):
    """Base class of objectives. Subclasses define :meth:`forward`.

    An objective may hold state (a step counter for a schedule, as a buffer, so that it is saved
    with the model and moves with ``.to``).
    """

    #: Whether the objective needs a prior p(z) (the model refuses ``prior=None`` then).
    requires_prior: bool = True
    #: Whether the objective needs the density log q(z|x) (the KL term): a deterministic
    #: posterior head (a point mass) is refused then.
    requires_density: bool = True

    def check_model(self, model: BaseVAE) -> None:
        """Raise :class:`pyvae.ConfigError` if ``model`` cannot use this objective (called when
        the model is built, after its components, before its networks)."""
        if self.requires_prior and model.prior is None:
            raise ConfigError(
                f"objective {type(self).registered_name!r} needs a prior p(z), got prior=None; "
                f"pass a prior (e.g. prior='normal') or use objective='ae'"
            )

    def check_posterior(self, head: PosteriorHead) -> None:
        """Raise :class:`pyvae.ConfigError` if this objective cannot train a model with the
        posterior ``head`` (called by :meth:`pyvae.BaseVAE.build_posterior` when the head is
        built). By default a deterministic head (a point mass, which has no density) is refused
        when the objective ``requires_density``; an objective that needs a particular family
        (e.g. a diagonal Gaussian) overrides it."""
        if self.requires_density and head.deterministic:
            raise ConfigError(
                f"objective {type(self).registered_name!r} needs a posterior with a density "
                f"(its KL term uses log q(z|x)), got the deterministic posterior "
                f"{type(head).registered_name!r}; use objective='ae' for a point-mass posterior"
            )

    @abc.abstractmethod
    def forward(
        self,
        model: BaseVAE,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        beta: float | None = None,
        kl_method: KLMethod = "auto",
    ) -> LossTerms:
        """The loss terms of ``x`` given ``out = model(x)``; see :meth:`pyvae.BaseVAE.loss`."""


OBJECTIVES: Registry[Objective] = Registry("objective", Objective, "pyvae.objectives")
_C = TypeVar("_C", bound=type)


def register_objective(name: str, *, overwrite: bool = False) -> Callable[[_C], _C]:
    """Class decorator that registers a :class:`Objective` subclass under ``name`` in
    :data:`OBJECTIVES` (``OBJECTIVES.register``; see :meth:`pyvae.Registry.register`)."""
    return OBJECTIVES.register(name, overwrite=overwrite)


def list_objectives(pattern: str | None = None) -> list[str]:
    """Registered objective names, sorted, optionally filtered by an fnmatch wildcard."""
    return OBJECTIVES.names(pattern)


@register_objective("ae")
class AutoencoderObjective(Objective):
    """The deterministic autoencoder's loss: the reconstruction term ``-log p(x|z)`` (for the
    Bernoulli likelihood the summed binary cross-entropy; for the Gaussian a scaled squared
    error), plus ``l2 * ||z||^2 / 2`` per example, the latent penalty of the regularised
    autoencoder (RAE, Ghosh et al., 2020, https://arxiv.org/abs/1903.12436).

    ``kl`` is reported as zeros; the penalty is the extra term ``l2`` (per example ``||z||^2/2``,
    unweighted).

    Args:
        l2: the weight of the latent L2 penalty, >= 0 (0: a plain autoencoder).
    """

    requires_prior = False
    requires_density = False

    def __init__(self, l2: float = 0.0) -> None:
        super().__init__()
        self.l2 = check_weight("l2", l2)

    def forward(
        self,
        model: BaseVAE,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        beta: float | None = None,
        kl_method: KLMethod = "auto",
    ) -> LossTerms:
        if beta is not None:
            raise ValueError("beta: the 'ae' objective has no KL term to weight; leave beta unset")
        recon = model.reconstruction_term(x, out)
        z = out.z.float() if out.z.dtype in (torch.float16, torch.bfloat16) else out.z
        penalty = 0.5 * z.pow(2).flatten(1).sum(1)
        loss = (recon + self.l2 * penalty).mean() if self.l2 else recon.mean()
        return LossTerms(loss=loss, recon=recon, kl=torch.zeros_like(recon), extras={"l2": penalty})


# the objectives of their own modules register on import (after the base class exists)
from pyvae.objectives import beta_tc, iwae, mmd, vq  # noqa: E402, F401
from pyvae.objectives.elbo import ELBO  # noqa: E402

"""The Gaussian-mixture sampler (Ghosh et al., 2020, https://arxiv.org/abs/1903.12436)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import torch

from pyvae.config import ConfigError, check_positive_int
from pyvae.samplers import LatentSampler, register_sampler

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["GaussianMixtureSampler"]


@register_sampler("gmm")
class GaussianMixtureSampler(LatentSampler):
    """A Gaussian mixture fitted to the posterior points of the training set, by EM.

    The fit is scikit-learn's ``GaussianMixture`` (k-means initialisation, EM to convergence,
    ``reg_covar`` added to the diagonals): a mature, tested implementation, so pyvae does not
    reimplement EM. scikit-learn is imported only when fitting (``pip install "pyvae[viz]"``);
    sampling and loading need only torch. Draws are made in float64 with torch from the fitted
    weights, means and Cholesky factors of the covariances.

    Args:
        model: the trained model.
        n_components: the number K of mixture components.
        covariance_type: ``"full"`` (one full D x D covariance per component) or ``"diag"``.
        reg_covar: added to each covariance's diagonal (numerical floor), > 0.
        max_iter: the most EM iterations.
        seed: the random state of the fit (k-means initialisation), for reproducible fits.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor

    def __init__(
        self,
        model: BaseVAE,
        n_components: int = 10,
        covariance_type: Literal["full", "diag"] = "full",
        reg_covar: float = 1e-6,
        max_iter: int = 200,
        seed: int = 0,
    ) -> None:
        super().__init__(model)
        self.n_components = check_positive_int("n_components", n_components)
        if covariance_type not in ("full", "diag"):
            raise ConfigError(
                f"covariance_type: expected 'full' or 'diag', got {covariance_type!r}"
            )
        self.covariance_type = covariance_type
        if (
            isinstance(reg_covar, bool)
            or not isinstance(reg_covar, (int, float))
            or not reg_covar > 0
        ):
            raise ConfigError(f"reg_covar: expected a number > 0, got {reg_covar!r}")
        self.reg_covar = float(reg_covar)
        self.max_iter = check_positive_int("max_iter", max_iter)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed: expected an integer >= 0, got {seed!r}")
        self.seed = seed

    def _fit(self, codes: torch.Tensor) -> None:
        try:
            from sklearn.mixture import GaussianMixture
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "GaussianMixtureSampler.fit needs scikit-learn: pip install 'pyvae[viz]'"
            ) from exc
        if codes.shape[0] < self.n_components:
            raise ValueError(
                f"data: {codes.shape[0]} examples cannot fit n_components={self.n_components}"
            )
        gmm = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            random_state=self.seed,
        ).fit(codes.double().numpy())
        covariances = torch.from_numpy(gmm.covariances_)
        if self.covariance_type == "diag":
            covariances = torch.diag_embed(covariances)
        self.load_state_tensors(
            {
                "weights": torch.from_numpy(gmm.weights_),
                "means": torch.from_numpy(gmm.means_),
                "covariances": covariances,
            }
        )

    def _sample_latents(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], 1, dtype=torch.float64, generator=generator)
        z = self.means[component] + (self._cholesky[component] @ eps).squeeze(-1)
        return z.float()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """The mixture's log-density at codes ``z`` (N, D), in nats, shape (N,)."""
        dist = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=self.weights),
            torch.distributions.MultivariateNormal(self.means, scale_tril=self._cholesky),
        )
        return dist.log_prob(z.to(torch.float64))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """``weights`` (K,), ``means`` (K, D), ``covariances`` (K, D, D), float64."""
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of :meth:`state_tensors` for this K and the model's D."""
        k, d = self.n_components, self.model.latent_dim
        return {"weights": (k,), "means": (k, d), "covariances": (k, d, d)}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Set weights, means and covariances; checks that the weights are a distribution and
        every covariance is symmetric positive definite."""
        weights = tensors["weights"].to(torch.float64)
        if (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError("weights: expected non-negative mixture weights summing to 1")
        covariances = tensors["covariances"].to(torch.float64)
        if not torch.allclose(covariances, covariances.transpose(-1, -2)):
            raise ValueError("covariances: expected symmetric matrices")
        cholesky, info = torch.linalg.cholesky_ex(covariances)
        if (info != 0).any():
            raise ValueError("covariances: expected positive definite matrices")
        self.weights = weights
        self.means = tensors["means"].to(torch.float64)
        self.covariances = covariances
        self._cholesky = cholesky

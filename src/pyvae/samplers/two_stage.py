"""The two-stage VAE sampler (Dai and Wipf, 2019, https://arxiv.org/abs/1903.05789)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from pyvae.config import ConfigError, check_positive_int, check_positive_ints
from pyvae.samplers import LatentSampler, register_sampler

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["TwoStageSampler"]


@register_sampler("two_stage")
class TwoStageSampler(LatentSampler):
    """A second, small VAE trained on the first model's codes; sampling draws u ~ N(0, I),
    decodes it with the second VAE to a code z and z with the model.

    The second stage is pyvae's own ``mlp`` model on flat inputs of size D, with a Gaussian
    likelihood whose single standard deviation is learned (the learned gamma of Dai and Wipf;
    it starts at 0.1, since starting at 1 on standardised codes lets the second stage collapse to
    its prior),
    trained with the ELBO and Adam on the standardised codes (the per-dimension mean and standard
    deviation are stored and undone when sampling).

    Args:
        model: the trained model.
        latent_dim: the second VAE's latent size (default: the model's latent_dim).
        hidden_dims: the second VAE's hidden widths.
        epochs: passes over the codes.
        batch_size: codes per step.
        lr: Adam's learning rate.
        seed: seeds the shuffling, the initialisation and the noise of the fit.
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        model: BaseVAE,
        latent_dim: int | None = None,
        hidden_dims: Sequence[int] = (256, 256),
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        super().__init__(model)
        self.latent_dim = (
            model.latent_dim if latent_dim is None else check_positive_int("latent_dim", latent_dim)
        )
        self.hidden_dims = check_positive_ints("hidden_dims", hidden_dims)
        self.epochs = check_positive_int("epochs", epochs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ConfigError(f"lr: expected a number > 0, got {lr!r}")
        self.lr = float(lr)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed: expected an integer >= 0, got {seed!r}")
        self.seed = seed
        self.vae: BaseVAE | None = None

    def _second_stage_config(self) -> dict[str, Any]:
        return {
            "name": "mlp",
            "input_shape": (self.model.latent_dim,),
            "latent_dim": self.latent_dim,
            "hidden_dims": self.hidden_dims,
            "likelihood": {"name": "gaussian", "learn_scale": "global", "scale": 0.1},
        }

    def _build(self) -> BaseVAE:
        import pyvae

        return pyvae.build(self._second_stage_config())

    def _fit(self, codes: torch.Tensor) -> None:
        codes = codes.float()
        shift = codes.mean(0)
        scale = codes.std(0).clamp_min(1e-6)
        data = (codes - shift) / scale
        generator = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            vae = self._build()
            optimiser = torch.optim.Adam(vae.parameters(), lr=self.lr)
            vae.train()
            for _ in range(self.epochs):
                order = torch.randperm(data.shape[0], generator=generator)
                for start in range(0, data.shape[0], self.batch_size):
                    x = data[order[start : start + self.batch_size]]
                    loss = vae.loss(x, vae(x)).loss
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
        vae.eval()
        self.vae, self.shift, self.scale = vae, shift, scale

    def _sample_latents(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        assert self.vae is not None
        u = torch.randn(n, self.latent_dim, generator=generator)
        z = self.vae.likelihood.mean(self.vae.decode(u))
        return z * self.scale + self.shift

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """``shift``, ``scale`` (D,) and the second VAE's weights as ``vae.<name>``."""
        assert self.vae is not None
        state = {f"vae.{k}": v for k, v in self.vae.state_dict().items()}
        return {"shift": self.shift, "scale": self.scale, **state}

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of :meth:`state_tensors`, from the second VAE built on the meta device."""
        with torch.device("meta"):
            vae = self._build()
        d = self.model.latent_dim
        shapes = {f"vae.{k}": tuple(v.shape) for k, v in vae.state_dict().items()}
        return {"shift": (d,), "scale": (d,), **shapes}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Build the second VAE and copy its weights in; set ``shift`` and ``scale``."""
        if (tensors["scale"] <= 0).any():
            raise ValueError("scale: expected standard deviations > 0")
        vae = self._build()
        vae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("vae.")})
        vae.eval()
        self.vae = vae
        self.shift, self.scale = tensors["shift"].float(), tensors["scale"].float()

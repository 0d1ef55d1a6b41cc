"""A custom model registered as a plug-in: subclass ``pyvae.BaseVAE``, define ``encode`` and
``decode``, register it by name. It then gets everything else for free: the loss with any
likelihood and prior, sampling, reconstruction, the latent tools, the figures, and checkpoints
(``pyvae.load`` rebuilds it from its name and recorded arguments).

Here: a residual MLP with LayerNorm and GELU. To ship it as a plug-in package, point the
entry-point group ``pyvae.models`` at the module that registers it; pyvae imports it when a model
name is first looked up, so ``pyvae.build("resmlp")``, ``pyvae.load(...)`` and even
``pyvae train --model resmlp`` work once the package is installed::

    [project.entry-points."pyvae.models"]
    resmlp = "my_package.models"

    python examples/custom_model.py --smoke
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal
from torch.utils.data import DataLoader

import pyvae
from pyvae import viz
from pyvae.data import load_digits


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(h)


@pyvae.register_model("resmlp", overwrite=True)  # overwrite: safe to re-run in a notebook
class ResidualMLPVAE(pyvae.BaseVAE):
    """Residual MLP encoder and decoder.

    Args:
        input_shape: the shape of one example.
        latent_dim: size of the latent space.
        width: width of the residual blocks.
        depth: residual blocks on each side.
        likelihood: p(x|z) by name or config.
        prior: p(z) by name or config.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 8,
        width: int = 128,
        depth: int = 2,
        likelihood: str | Mapping[str, Any] = "bernoulli",
        prior: str | Mapping[str, Any] = "normal",
    ) -> None:
        # BaseVAE checks the shapes and builds self.likelihood and self.prior
        super().__init__(
            input_shape=input_shape, latent_dim=latent_dim, likelihood=likelihood, prior=prior
        )
        n = math.prod(self.input_shape)
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n, width),
            *[ResidualBlock(width) for _ in range(depth)],
            nn.LayerNorm(width),
            nn.Linear(width, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, width),
            *[ResidualBlock(width) for _ in range(depth)],
            nn.LayerNorm(width),
            nn.Linear(width, n),
            nn.Unflatten(1, self.input_shape),
        )

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x): a diagonal Gaussian, batch shape (B,), event shape (latent_dim,)."""
        loc, log_var = self.encoder(x).chunk(2, dim=-1)
        scale = torch.exp(0.5 * log_var.clamp(-30, 20))
        return Independent(Normal(loc, scale), 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters (Bernoulli logits), shape (B, *input_shape)."""
        return self.decoder(z)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/custom_model")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, a few seconds")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = load_digits()
    if args.smoke:
        args.epochs = 1
    print("registered models:", pyvae.list_models())

    model = pyvae.build("resmlp", input_shape=data.input_shape, latent_dim=2, width=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(data.train.dataset(), batch_size=64, shuffle=True)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for x, _ in loader:
            terms = model.loss(x, model(x))
            optimizer.zero_grad()
            terms.loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: -ELBO {float(terms.loss.detach()):.2f} nats")

    out = Path(args.out)
    model.save(out / "model.safetensors")
    loaded = pyvae.load(out / "model.safetensors")  # rebuilt by name from the registry
    assert isinstance(loaded, ResidualMLPVAE) and loaded.config == model.config
    model.eval()
    viz.save_figure(viz.plot_manifold(model, 12), out / "manifold.png")
    viz.save_figure(
        viz.plot_reconstructions(model, data.eval.images[:16]), out / "reconstructions.png"
    )
    with torch.no_grad():
        x = data.eval.images
        terms = model.loss(x, model(x))
    results = {"eval_neg_elbo": float(terms.loss.detach())}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out}/")
    return results


if __name__ == "__main__":
    main()

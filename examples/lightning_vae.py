"""Train any pyvae model with PyTorch Lightning.

:class:`VAEModule` wraps a pyvae model (an instance, a name or a config dict) in a
``LightningModule`` that logs the terms of the ELBO (``loss``, ``recon``, ``kl``, ``elbo``, in nats
per example) for training and validation. Run it on MNIST-format images::

    python examples/lightning_vae.py --model conv --max-epochs 2

Requires ``pip install "pyvae[lightning]"``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import pyvae
from pyvae.data import read_idx

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
)


class VAEModule(L.LightningModule):
    """A LightningModule around a pyvae model.

    Args:
        model: a pyvae model, or a model name / config dict for :func:`pyvae.build`.
        lr: the Adam learning rate.
        beta: the KL weight of the loss (1 gives the negative ELBO).
        **model_config: keyword arguments for :func:`pyvae.build` when ``model`` is a name.
    """

    def __init__(
        self,
        model: pyvae.BaseVAE | str | Mapping[str, Any] = "conv",
        lr: float = 1e-3,
        beta: float = 1.0,
        **model_config: Any,
    ) -> None:
        super().__init__()
        if not isinstance(model, pyvae.BaseVAE):
            model = pyvae.build(model, **model_config)
        self.model = model
        self.lr = lr
        self.beta = beta
        # the model's config (JSON-ready) rebuilds it from a Lightning checkpoint
        self.save_hyperparameters({"model": model.config, "lr": lr, "beta": beta})

    def forward(self, x: torch.Tensor) -> pyvae.VAEOutput:
        return self.model(x)

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        terms = self.model.loss(x, self.model(x), beta=self.beta)
        values = {
            "loss": terms.loss,
            "recon": terms.recon.mean(),
            "kl": terms.kl.mean(),
            "elbo": terms.elbo.mean(),
        }
        self.log_dict(
            {f"{stage}/{k}": v.detach() for k, v in values.items()},
            prog_bar=stage == "val",
            on_step=stage == "train",
            on_epoch=True,
            batch_size=x.shape[0],
        )
        return terms.loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)


def mnist_loaders(
    path: Path = DEFAULT_DATA, *, batch_size: int = 128, n_val: int = 1000
) -> tuple[DataLoader, DataLoader]:
    """Training and validation loaders over an MNIST IDX images file (floats in [0, 1])."""
    images = read_idx(path).unsqueeze(1).float() / 255
    train, val = images[n_val:], images[:n_val]
    return (
        DataLoader(TensorDataset(train), batch_size=batch_size, shuffle=True),
        DataLoader(TensorDataset(val), batch_size=batch_size),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conv", help="a registered model name")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX images file")
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    train, val = mnist_loaders(args.data, batch_size=args.batch_size)
    module = VAEModule(args.model, lr=args.lr)
    trainer = L.Trainer(max_epochs=args.max_epochs, accelerator="auto", devices=1)
    trainer.fit(module, train, val)


if __name__ == "__main__":
    main()

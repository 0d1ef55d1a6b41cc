"""The Lightning example (``examples/lightning_vae.py``) wraps any pyvae model, trains a few steps
with the Trainer on CPU, logs the ELBO terms and restores from a Lightning checkpoint."""

from __future__ import annotations

import csv
import importlib.util
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from tiny import vae_models
from torch.utils.data import DataLoader, TensorDataset

import pyvae

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lightning_vae.py"
SHAPE = (1, 8, 8)
TINY: dict[str, dict[str, Any]] = {
    "mlp": {"input_shape": SHAPE, "hidden_dims": (32,), "latent_dim": 2},
    "conv": {"input_shape": SHAPE, "channels": (4,), "hidden_dim": 16, "latent_dim": 2},
    "denoising": {"backbone": "mlp", "input_shape": SHAPE, "hidden_dims": (32,), "latent_dim": 2},
}
TERMS = ("loss", "recon", "kl", "elbo")
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # inside lightning


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lightning_vae_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loaders(mnist: tuple[torch.Tensor, torch.Tensor]) -> tuple[DataLoader, DataLoader]:
    images = F.adaptive_avg_pool2d(mnist[0][:192], SHAPE[1:])
    return (
        DataLoader(TensorDataset(images[:128]), batch_size=32, shuffle=True),
        DataLoader(TensorDataset(images[128:]), batch_size=32),
    )


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(tmp_path: Path, max_steps: int) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path, name="logs"),
        log_every_n_steps=1,
        limit_val_batches=2,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _read_metrics(trainer: L.Trainer) -> list[dict[str, float]]:
    path = Path(trainer.logger.log_dir) / "metrics.csv"  # type: ignore[union-attr]
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


@pytest.mark.parametrize("model_name", vae_models())
def test_trainer_fits_any_model_and_logs_the_elbo_terms(
    model_name: str, example: ModuleType, loaders: tuple[DataLoader, DataLoader], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = pyvae.build(model_name, **TINY.get(model_name, {"input_shape": SHAPE}))
    module = example.VAEModule(model, lr=1e-2, beta=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer(tmp_path, max_steps=6)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module, *loaders)
    assert trainer.global_step == 6
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    rows = _read_metrics(trainer)
    steps = [r for r in rows if "train/loss_step" in r]
    assert len(steps) == 6
    for row in steps:
        loss, recon, kl, elbo = (row[f"train/{t}_step"] for t in TERMS)
        assert all(math.isfinite(v) for v in (loss, recon, kl, elbo))
        assert kl >= 0
        assert elbo == pytest.approx(-(recon + kl), rel=1e-5)
        assert loss == pytest.approx(recon + 0.5 * kl, rel=1e-5)  # beta = 0.5
    epoch_rows = [r for r in rows if "val/loss" in r]
    assert epoch_rows and all(f"val/{t}" in epoch_rows[-1] for t in TERMS)
    assert all(math.isfinite(trainer.callback_metrics[f"val/{t}"].item()) for t in TERMS)


def test_checkpoint_restores_the_model(
    example: ModuleType, loaders: tuple[DataLoader, DataLoader], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    module = example.VAEModule("conv", lr=1e-2, likelihood="gaussian", **TINY["conv"])
    trainer = _trainer(tmp_path, max_steps=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module, *loaders)
    trainer.save_checkpoint(tmp_path / "vae.ckpt")
    restored = example.VAEModule.load_from_checkpoint(tmp_path / "vae.ckpt", weights_only=False)
    assert restored.model.config == module.model.config
    assert restored.lr == module.lr and restored.beta == module.beta
    x = loaders[1].dataset.tensors[0][:8]
    module.eval()
    restored.eval()
    torch.testing.assert_close(restored.model.reconstruct(x), module.model.reconstruct(x))

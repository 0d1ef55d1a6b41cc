"""Every example in examples/ runs on tiny settings (``--smoke``) and writes what it promises."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import matplotlib
import pytest
import torch

import pyvae

matplotlib.use("Agg")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one thread is as fast, and much faster on a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _scoped_registries() -> Iterator[None]:
    """The plug-in examples register names: forget them afterwards, so that no later test (which
    may parametrise over ``pyvae.list_models()``) depends on the order the tests ran in."""
    with contextlib.ExitStack() as stack:
        for registry in (pyvae.MODELS, pyvae.LIKELIHOODS, pyvae.PRIORS, pyvae.CORRUPTIONS):
            stack.enter_context(registry.scoped())
        yield


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def test_mnist_conv_vae(tmp_path: Path) -> None:
    results = _load("mnist_conv_vae").main(
        ["--smoke", "--data-dir", str(MNIST_DIR), "--out", str(tmp_path)]
    )
    assert _files(tmp_path) == {
        "model.safetensors",
        "reconstructions.png",
        "samples.png",
        "latent.png",
        "manifold.png",
        "interpolation.png",
        "results.json",
    }
    assert 0 < results["test_nll"] < results["test_neg_elbo"] + 5
    assert pyvae.load(tmp_path / "model.safetensors").latent_dim == 2


def test_mlp_vae(tmp_path: Path) -> None:
    results = _load("mlp_vae").main(
        ["--smoke", "--data-dir", str(MNIST_DIR), "--out", str(tmp_path), "--latent-dim", "4"]
    )
    assert {"latent.png", "traversal.png", "reconstructions.png"} <= _files(tmp_path)
    assert 0 < results["test_nll"] < 28 * 28 * 0.7  # below a uniform guess (log 2 per pixel)


def test_beta_vae_kl_falls_with_beta(tmp_path: Path) -> None:
    results = _load("beta_vae").main(["--smoke", "--betas", "0.25", "8", "--out", str(tmp_path)])
    # two tiny epochs: too short to rank the reconstructions, long enough for the KL
    assert results["8.0"]["kl"] < results["0.25"]["kl"]
    assert {"traversal_beta0.25.png", "traversal_beta8.0.png"} <= _files(tmp_path)


def test_denoising_vae_reconstructs_closer_than_the_noisy_input(tmp_path: Path) -> None:
    results = _load("denoising_vae").main(
        ["--smoke", "--data-dir", str(MNIST_DIR), "--out", str(tmp_path)]
    )
    assert "denoising.png" in _files(tmp_path)
    # even after one tiny epoch, the decoded digits are closer to the clean ones than the noise
    assert results["mse_reconstruction_of_noisy"] < results["mse_noisy_input"]


def test_custom_prior_plugin(tmp_path: Path) -> None:
    module = _load("custom_prior")
    assert "laplace_prior" in pyvae.list_priors()
    results = module.main(["--smoke", "--out", str(tmp_path)])
    loaded = pyvae.load(tmp_path / "model.safetensors")
    assert loaded.config["prior"] == {"name": "laplace_prior", "init_scale": 1.0}
    scale = float(loaded.prior.log_scale.detach().exp().mean())
    assert scale == pytest.approx(results["prior_scale_mean"])
    assert results["prior_scale_mean"] != 1.0  # the prior's scale was trained


def test_custom_model_plugin(tmp_path: Path) -> None:
    module = _load("custom_model")
    assert "resmlp" in pyvae.list_models()
    module.main(["--smoke", "--out", str(tmp_path)])
    loaded = pyvae.load(tmp_path / "model.safetensors")
    assert type(loaded).__name__ == "ResidualMLPVAE"
    assert loaded.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 8, 8)
    assert {"manifold.png", "reconstructions.png"} <= _files(tmp_path)


def test_disentanglement_on_sprites(tmp_path: Path) -> None:
    results = _load("disentanglement").main(["--smoke", "--betas", "1", "--out", str(tmp_path)])
    scores = results["1.0"]
    for name in ("mig", "sap", "dci_disentanglement", "dci_completeness"):
        assert 0 <= scores[name] <= 1, name
    # one tiny epoch may leave every dimension collapsed: then the FactorVAE score is undefined
    assert scores["factorvae"] is None or 0 <= scores["factorvae"] <= 1
    assert (tmp_path / "results.json").is_file()


def test_every_example_is_tested() -> None:
    tested = {
        "mnist_conv_vae",
        "mlp_vae",
        "beta_vae",
        "denoising_vae",
        "custom_prior",
        "custom_model",
        "disentanglement",
    }
    mine = {p.stem for p in EXAMPLES.glob("*.py")} & tested
    assert mine == tested

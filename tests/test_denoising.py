"""The denoising VAE: corrupts only in training mode, scores against the clean input, and
behaves exactly like its backbone in eval mode."""

from __future__ import annotations

import pytest
import torch

import pyvae
from pyvae.models import DenoisingVAE, GaussianNoise, Masking, SaltAndPepper


def make(**kwargs: object) -> DenoisingVAE:
    model = pyvae.build("denoising", input_shape=(1, 8, 8), latent_dim=2, **kwargs)
    assert isinstance(model, DenoisingVAE)
    return model


@pytest.mark.parametrize("backbone", ["mlp", "conv"])
def test_eval_mode_is_exactly_the_backbone(backbone: str) -> None:
    model = make(backbone=backbone).eval()
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(model.encode(x).mean, model.backbone.encode(x).mean, rtol=0, atol=0)
    torch.testing.assert_close(model.reconstruct(x), model.backbone.reconstruct(x), rtol=0, atol=0)
    torch.manual_seed(3)
    ours = model.loss(x, model(x)).loss
    torch.manual_seed(3)
    theirs = model.backbone.loss(x, model.backbone(x)).loss
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_training_mode_encodes_the_corrupted_input() -> None:
    model = make(corruption={"name": "masking", "p": 0.5}).train()
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(0)
    noisy_mean = model.encode(x).mean
    torch.manual_seed(0)
    corrupted = model.corruption(x)
    torch.testing.assert_close(noisy_mean, model.backbone.encode(corrupted).mean)
    assert not torch.allclose(noisy_mean, model.backbone.encode(x).mean)


def test_reconstruction_term_scores_the_clean_input() -> None:
    model = make(corruption={"name": "gaussian", "std": 1.0}).train()
    x = torch.rand(4, 1, 8, 8)
    out = model(x)
    terms = model.loss(x, out)
    expected = -model.likelihood.distribution(out.params).log_prob(x)
    torch.testing.assert_close(terms.recon, expected)


def test_components_are_the_backbones_and_stored_once() -> None:
    model = make(backbone="conv", channels=(4,), hidden_dim=8, likelihood="gaussian")
    assert model.likelihood is model.backbone.likelihood
    assert model.prior is model.backbone.prior
    assert model.input_shape == (1, 8, 8) and model.latent_dim == 2
    assert all(key.startswith(("backbone.", "corruption.")) for key in model.state_dict())
    backbone = model.config["backbone"]  # the backbone's whole config, given arguments included
    assert backbone["name"] == "conv" and backbone["likelihood"] == "gaussian"
    assert backbone == model.backbone.config and "likelihood" not in model.config
    assert pyvae.build(model.config).config == model.config


def test_backbone_instance_is_wrapped() -> None:
    backbone = pyvae.build("mlp", input_shape=(5,), latent_dim=2, hidden_dims=(4,))
    model = pyvae.build("denoising", backbone=backbone, corruption=SaltAndPepper(p=0.2))
    assert model.backbone is backbone
    rebuilt = pyvae.build(model.config)
    assert rebuilt.config == model.config
    assert rebuilt.config["backbone"]["hidden_dims"] == [4]


def test_corruption_statistics() -> None:
    x = torch.full((200, 1, 20, 20), 0.5)
    masked = Masking(p=0.3)(x)
    assert abs((masked == 0).float().mean().item() - 0.3) < 0.02
    assert set(masked.unique().tolist()) <= {0.0, 0.5}
    salted = SaltAndPepper(p=0.2)(x)
    assert abs((salted == 0).float().mean().item() - 0.1) < 0.02
    assert abs((salted == 1).float().mean().item() - 0.1) < 0.02
    noisy = GaussianNoise(std=0.3)(x)
    assert abs((noisy - x).std().item() - 0.3) < 0.01
    assert abs((noisy - x).mean().item()) < 0.01


def test_unknown_corruption_is_named() -> None:
    with pytest.raises(pyvae.UnknownNameError, match="Unknown corruption 'salt'"):
        make(corruption="salt")

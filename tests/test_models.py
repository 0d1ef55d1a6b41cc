"""The BaseVAE contract, checked for every registered model (a new model is tested for free)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny import vae_models

import pyvae
from pyvae import testing
from pyvae.models import BaseVAE

INPUT_SHAPE = (1, 8, 8)
LATENT_DIM = 3
BATCH = 5
# Small networks keep the suite fast; a model not listed here is built with its defaults.
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dims": (16,)},
    "conv": {"channels": (4, 8), "hidden_dim": 16},
    "denoising": {"hidden_dims": (16,)},
}


def small_model(name: str, **overrides: Any) -> BaseVAE:
    config = {"input_shape": INPUT_SHAPE, "latent_dim": LATENT_DIM, **SMALL.get(name, {})}
    return pyvae.build(name, **{**config, **overrides})


@pytest.fixture(params=vae_models())
def model(request: pytest.FixtureRequest) -> BaseVAE:
    return small_model(request.param)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(BATCH, *INPUT_SHAPE)


def test_conformance_kit(model: BaseVAE, x: torch.Tensor) -> None:
    """pyvae.testing.check_model: encode's distribution (batch (B,), event (D,), rsample), the
    VAEOutput's shapes, the loss terms per example, sample and reconstruct shapes, gradients to
    every parameter (finite, not all zero), the JSON config rebuilding the same class, config
    and state_dict names and shapes (and outputs), a checkpoint round trip."""
    testing.check_model(model, x=x)
    assert model.sample(7).shape == (7, *INPUT_SHAPE)


def test_loss_is_finite_and_its_terms_add_up(model: BaseVAE, x: torch.Tensor) -> None:
    out = model(x)
    terms = model.loss(x, out, beta=0.5)
    assert torch.isfinite(terms.loss) and torch.isfinite(terms.recon).all()
    assert (terms.kl >= 0).all()  # closed-form KL of a Gaussian to N(0, I)
    torch.testing.assert_close(terms.loss, (terms.recon + 0.5 * terms.kl).mean())
    torch.testing.assert_close(terms.elbo, -(terms.recon + terms.kl))
    expected_recon = -model.likelihood.distribution(out.params).log_prob(x)
    torch.testing.assert_close(terms.recon, expected_recon)


def test_eval_mode_is_deterministic(model: BaseVAE, x: torch.Tensor) -> None:
    model.eval()
    torch.testing.assert_close(model.reconstruct(x), model.reconstruct(x), rtol=0, atol=0)
    torch.testing.assert_close(model.encode(x).mean, model.encode(x).mean, rtol=0, atol=0)
    torch.manual_seed(1)
    first = model(x).params
    torch.manual_seed(1)
    torch.testing.assert_close(model(x).params, first, rtol=0, atol=0)


def test_state_dict_round_trip(model: BaseVAE, x: torch.Tensor) -> None:
    model.eval()
    torch.manual_seed(123)
    other = pyvae.build(model.config).eval()
    assert not torch.equal(other.reconstruct(x), model.reconstruct(x))
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.reconstruct(x), model.reconstruct(x), rtol=0, atol=0)


def test_wrong_inputs_give_clear_errors(model: BaseVAE, x: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 1, 8, 8\), got \(5, 64\)"):
        model(x.flatten(1))
    with pytest.raises(TypeError, match="expected a floating-point tensor, got dtype torch.uint8"):
        model((x * 255).to(torch.uint8))
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float32 \(the model's\)"):
        model(x.double())
    with pytest.raises(TypeError, match="x: expected a tensor"):
        model(x.numpy())  # type: ignore[arg-type]
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x: expected finite values, got 1 non-finite"):
        model.check_input(bad)
    with pytest.raises(ValueError, match="x: expected finite values, got 1 non-finite"):
        model.loss(bad, model(bad))  # forward checks structure; loss checks the values
    with pytest.raises(ValueError, match="x: expected finite values, got 1 non-finite"):
        model.reconstruct(bad)
    with pytest.raises(ValueError, match="outside it"):
        model.loss(x + 1, model(x + 1))
    with pytest.raises(ValueError, match="beta: expected a finite number >= 0"):
        model.loss(x, model(x), beta=-1.0)
    with pytest.raises(TypeError, match="out: expected the VAEOutput"):
        model.loss(x, (model(x).params,))  # type: ignore[arg-type]


def test_value_checks_can_be_switched_off(model: BaseVAE, x: torch.Tensor) -> None:
    pyvae.set_validate_args(False)
    try:
        terms = model.loss(x * 2, model(x * 2))  # outside Bernoulli's support: not checked
        assert terms.recon.shape == (BATCH,)
    finally:
        pyvae.set_validate_args(True)
    with pytest.raises(TypeError, match="expected a bool"):
        pyvae.set_validate_args(1)  # type: ignore[arg-type]


def test_sample_uses_model_dtype_and_generator(model: BaseVAE) -> None:
    model.double()
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    first, second = model.sample(4, generator=g1), model.sample(4, generator=g2)
    assert first.dtype == torch.float64
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not torch.equal(model.sample(4, generator=g1), first)  # the generator advanced


def test_likelihood_mean_is_in_the_data_range(model: BaseVAE, x: torch.Tensor) -> None:
    samples = model.sample(6)
    assert ((samples >= 0) & (samples <= 1)).all()  # Bernoulli means


def test_bf16_input_is_accepted_under_cpu_autocast(model: BaseVAE, x: torch.Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.loss(x.bfloat16(), model(x.bfloat16()))
    assert terms.loss.dtype == torch.float32 and torch.isfinite(terms.loss)
    with pytest.raises(TypeError, match="expected dtype torch.float32"):
        model(x.bfloat16())  # outside autocast a bf16 batch for a float32 model is refused


def test_bernoulli_fast_log_prob_equals_torch_distributions() -> None:
    likelihood = pyvae.build("mlp", input_shape=(2, 3), latent_dim=2).likelihood
    x, logits = torch.rand(4, 2, 3, dtype=torch.float64), 5 * torch.randn(4, 2, 3).double()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x.round()).sum((1, 2))
    torch.testing.assert_close(likelihood.log_prob(x.round(), logits), expected)
    torch.testing.assert_close(
        likelihood.log_prob(x, logits), likelihood.distribution(logits).log_prob(x)
    )


def test_loss_refuses_nan_data(model: BaseVAE, x: torch.Tensor) -> None:
    out = model(x)
    bad = x.clone()
    bad[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"x: expected finite values, got 1 non-finite"):
        model.loss(bad, out)


def test_mlp_activation_is_used_initialised_and_saved(tmp_path: Any) -> None:
    """``activation="tanh"`` (Burda et al.'s networks): every hidden layer is a Tanh, He-style
    initialisation (the default) uses tanh's gain (std 5/3 / sqrt(fan_in)), LeCun's gain 1,
    and save/load keeps it."""
    torch.manual_seed(0)
    lecun = pyvae.build("mlp", latent_dim=50, hidden_dims=(400, 400), init="lecun")
    assert lecun.encoder[1][2].weight.std().item() == pytest.approx(1 / 400**0.5, rel=0.02)
    assert lecun.head.linear.weight.std().item() == pytest.approx(1 / 400**0.5, rel=0.05)
    model = pyvae.build("mlp", latent_dim=50, hidden_dims=(400, 400), activation="tanh")
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.Tanh in kinds and torch.nn.ReLU not in kinds
    layer = model.encoder[1][2]  # 400 -> 400
    assert layer.weight.std().item() == pytest.approx(5 / 3 / 400**0.5, rel=0.02)
    model.save(tmp_path / "m")
    loaded = pyvae.load(tmp_path / "m")
    assert {type(m) for m in loaded.modules()} == kinds
    relu = pyvae.build("mlp", latent_dim=50, hidden_dims=(400, 400), init="he")
    assert relu.encoder[1][2].weight.std().item() == pytest.approx(2**0.5 / 400**0.5, rel=0.02)


def test_unknown_activation_names_the_argument_and_the_choices() -> None:
    with pytest.raises(pyvae.ConfigError, match=r"activation: expected one of \('relu', 'tanh'"):
        pyvae.build("mlp", activation="sigmoidal")
    with pytest.raises(pyvae.ConfigError, match="activation"):
        pyvae.build("ae", activation=3)


def test_component_context_gives_each_part_its_model_arguments() -> None:
    # the public hook a subclass overrides to size its parts (the ladder's top-layer prior)
    seen = []

    class Recording(pyvae.MLPVAE):
        def component_context(self, role: str, **context: Any) -> dict[str, Any]:
            seen.append((role, sorted(context)))
            return super().component_context(role, **context)

    Recording(input_shape=(4,), latent_dim=2, hidden_dims=[8])
    assert seen == [
        ("likelihood", ["event_shape"]),
        ("prior", ["input_shape", "latent_dim"]),
        ("objective", []),
        ("posterior", ["in_features", "latent_dim"]),
    ]
    ladder = pyvae.build("ladder", input_shape=(4,), latent_dims=(3, 2), hidden_dims=[8])
    assert ladder.component_context("prior", latent_dim=5) == {"latent_dim": 2}
    assert ladder.component_context("likelihood", event_shape=(4,)) == {"event_shape": (4,)}


def test_reference_parameter_is_the_first_of_parameters(model: BaseVAE) -> None:
    """The dtype/device reference of the input checks, found by a direct walk, is exactly
    ``next(model.parameters())``, also after moving the model."""
    assert model._reference_tensor() is next(model.parameters())
    model = model.double()
    assert model._reference_tensor() is next(model.parameters())
    assert model._reference_tensor().dtype == torch.float64

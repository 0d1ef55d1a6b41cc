"""Latent samplers (pyvae.samplers): the Gaussian mixture recovers a known mixture, draws are
reproducible with a generator, files round-trip and hostile files are refused, and a fitted
sampler beats N(0, I) for an autoencoder under a likelihood-free proxy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.distributions import Distribution

import pyvae
from pyvae.posteriors import PointMass
from pyvae.samplers import GaussianMixtureSampler, SamplerError, TwoStageSampler

SHAPE = (1, 8, 8)


class Identity(pyvae.BaseVAE):
    """Codes are the inputs themselves: the sampler sees exactly the data it is given."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__(
            input_shape=(dim,), latent_dim=dim, likelihood="gaussian", prior=None, objective="ae"
        )
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return PointMass(x + 0 * self.dummy)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return z + 0 * self.dummy


def known_mixture(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    means = torch.tensor([[-6.0, 0.0], [0.0, 6.0], [6.0, -2.0]], dtype=torch.float64)
    a = torch.tensor(
        [[[1.0, 0.0], [0.5, 0.5]], [[0.3, 0.0], [0.0, 1.2]], [[0.8, 0.0], [-0.4, 0.6]]],
        dtype=torch.float64,
    )
    component = torch.multinomial(weights, n, replacement=True, generator=g)
    eps = torch.randn(n, 2, 1, generator=g, dtype=torch.float64)
    x = means[component] + (a[component] @ eps).squeeze(-1)
    return x.float(), weights, means, a @ a.transpose(1, 2)


def test_gmm_recovers_a_known_mixture() -> None:
    x, weights, means, covariances = known_mixture(8000)
    sampler = GaussianMixtureSampler(Identity(), n_components=3).fit(x)
    order = torch.argsort(sampler.means[:, 0])  # the true means are sorted by their x
    torch.testing.assert_close(sampler.weights[order], weights, atol=0.02, rtol=0)
    torch.testing.assert_close(sampler.means[order], means, atol=0.08, rtol=0)
    torch.testing.assert_close(sampler.covariances[order], covariances, atol=0.12, rtol=0)
    # and its draws have the mixture's moments
    z = sampler.sample_latents(50_000, generator=torch.Generator().manual_seed(0)).double()
    mean = (weights[:, None] * means).sum(0)
    torch.testing.assert_close(z.mean(0), mean, atol=0.08, rtol=0)
    # log_prob is the mixture density (against an independent evaluation)
    point = torch.tensor([[0.5, 5.0]], dtype=torch.float64)
    dens = sum(
        float(w) * torch.distributions.MultivariateNormal(m, c).log_prob(point).exp()
        for w, m, c in zip(sampler.weights, sampler.means, sampler.covariances, strict=True)
    )
    torch.testing.assert_close(sampler.log_prob(point), torch.log(dens))


@pytest.mark.parametrize("name", ["gmm", "two_stage"])
def test_draws_are_reproducible_with_a_generator(name: str) -> None:
    model = pyvae.build("ae", input_shape=SHAPE, hidden_dims=(16,))
    options = {"n_components": 2} if name == "gmm" else {"epochs": 2, "hidden_dims": (8,)}
    sampler = pyvae.samplers.SAMPLERS.build({"name": name, "model": model, **options})
    sampler.fit(torch.rand(64, *SHAPE))
    state = torch.get_rng_state()
    a = sampler.sample(5, generator=torch.Generator().manual_seed(3))
    b = sampler.sample(5, generator=torch.Generator().manual_seed(3))
    c = sampler.sample(5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert a.shape == (5, *SHAPE) and torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a <= 1)).all()  # Bernoulli means


def test_two_stage_fit_is_reproducible_and_models_the_codes() -> None:
    x, _, _, _ = known_mixture(1000)
    model = Identity()
    options = {"epochs": 25, "hidden_dims": (32, 32), "batch_size": 64, "lr": 3e-3, "seed": 5}
    one = TwoStageSampler(model, **options).fit(x)
    two = TwoStageSampler(model, **options).fit(x)
    for (k, a), b in zip(one.state_tensors().items(), two.state_tensors().values(), strict=True):
        assert torch.equal(a, b), k
    z = one.sample_latents(4000, generator=torch.Generator().manual_seed(0))
    # draws are in the codes' units (the standardisation is undone) and not collapsed
    torch.testing.assert_close(z.mean(0), x.mean(0), atol=1.0, rtol=0)
    assert (z.std(0) > 0.3 * x.std(0)).all() and (z.std(0) < 1.3 * x.std(0)).all()


@pytest.mark.parametrize("name", ["gmm", "two_stage"])
def test_save_and_load_round_trip(name: str, tmp_path: Path) -> None:
    model = pyvae.build("ae", input_shape=SHAPE, hidden_dims=(16,))
    options = {"n_components": 2} if name == "gmm" else {"epochs": 1, "hidden_dims": (8,)}
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.rand(40, *SHAPE), torch.zeros(40, dtype=torch.long)),
        batch_size=16,
    )  # (x, y) batches
    sampler = pyvae.samplers.SAMPLERS.build({"name": name, "model": model, **options}).fit(data)
    path = sampler.save(tmp_path / "s.safetensors")
    loaded = pyvae.samplers.load(path, model)
    assert type(loaded) is type(sampler) and loaded.config == sampler.config
    g = torch.Generator().manual_seed(0)
    expected = sampler.sample(4, generator=g)
    assert torch.equal(loaded.sample(4, generator=torch.Generator().manual_seed(0)), expected)
    other = pyvae.build("ae", input_shape=SHAPE, hidden_dims=(16,), latent_dim=4)
    with pytest.raises(SamplerError, match="codes of size 3, the model's latent_dim is 4"):
        pyvae.samplers.load(path, other)


def _rewrite(path: Path, tensors: dict[str, torch.Tensor] | None = None, **header: str) -> Path:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update(header)
    save_file(tensors if tensors is not None else load_file(str(path)), str(path), metadata=meta)
    return path


def test_hostile_sampler_files_are_refused(tmp_path: Path) -> None:
    model = Identity()
    x, _, _, _ = known_mixture(500)
    path = GaussianMixtureSampler(model, n_components=2).fit(x).save(tmp_path / "g.safetensors")
    good = load_file(str(path))
    (tmp_path / "junk").write_bytes(b"not a safetensors file")
    with pytest.raises(SamplerError, match="not a readable safetensors file"):
        pyvae.samplers.load(tmp_path / "junk", model)
    with pytest.raises(SamplerError, match="not a pyvae sampler file"):
        pyvae.samplers.load(_rewrite(tmp_path / "g.safetensors", format="other"), model)
    _rewrite(path, format="pyvae-sampler")
    with pytest.raises(SamplerError, match="unknown sampler|no sampler|cannot be built"):
        pyvae.samplers.load(_rewrite(path, config=json.dumps({"name": "nope"})), model)
    _rewrite(path, config=json.dumps({"name": "gmm", "n_components": 2}))
    bad = dict(good, covariances=-good["covariances"])
    with pytest.raises(SamplerError, match="positive definite"):
        pyvae.samplers.load(_rewrite(path, bad), model)
    bad = dict(good, means=torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(SamplerError, match=r"'means' should be floating point of shape \(2, 2\)"):
        pyvae.samplers.load(_rewrite(path, bad), model)
    bad = dict(good, weights=torch.tensor([0.9, 0.9], dtype=torch.float64))
    with pytest.raises(SamplerError, match="summing to 1"):
        pyvae.samplers.load(_rewrite(path, bad), model)
    bad = dict(good, means=torch.full((2, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(SamplerError, match="non-finite"):
        pyvae.samplers.load(_rewrite(path, bad), model)
    # a two-stage file claiming a huge second VAE: refused from shapes alone (meta device)
    two = TwoStageSampler(model, epochs=1, hidden_dims=(4,)).fit(x)
    tpath = two.save(tmp_path / "t.safetensors")
    huge = json.dumps({**two.config, "hidden_dims": [2**40]})
    with pytest.raises(SamplerError, match="expected tensors|should be floating point"):
        pyvae.samplers.load(_rewrite(tpath, config=huge), model)


def test_unfitted_and_unsuitable_uses_are_refused() -> None:
    model = pyvae.build("ae", input_shape=SHAPE, hidden_dims=(16,))
    sampler = GaussianMixtureSampler(model, n_components=2)
    with pytest.raises(RuntimeError, match=r"not fitted: call sampler.fit\(data\)"):
        sampler.sample(2)
    with pytest.raises(pyvae.ConfigError, match="n_components: expected a positive integer"):
        GaussianMixtureSampler(model, n_components=0)
    with pytest.raises(ValueError, match="cannot fit n_components=5"):
        GaussianMixtureSampler(model, n_components=5).fit(torch.rand(3, *SHAPE))
    with pytest.raises(TypeError, match="data: expected a tensor or an iterable"):
        sampler.fit(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x: expected"):
        sampler.fit(torch.rand(4, 1, 7, 7))
    with pytest.raises(TypeError, match="model: expected a pyvae model"):
        GaussianMixtureSampler(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    sampler.fit(torch.rand(8, *SHAPE))
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        sampler.sample(2, generator=3)  # type: ignore[arg-type]


def test_conditional_model_fits_with_labels_and_samples_a_class() -> None:
    model = pyvae.build("mlp", input_shape=SHAPE, latent_dim=2, hidden_dims=(16,), num_classes=3)
    x, y = torch.rand(30, *SHAPE), torch.arange(30) % 3
    with pytest.raises(ValueError, match="needs the labels"):
        GaussianMixtureSampler(model, n_components=2).fit(x)
    sampler = GaussianMixtureSampler(model, n_components=2).fit(x, y=y)
    g = torch.Generator().manual_seed(0)
    a = sampler.sample(4, y=torch.zeros(4, dtype=torch.long), generator=g)
    b = sampler.sample(4, y=torch.full((4,), 2), generator=torch.Generator().manual_seed(0))
    assert a.shape == (4, *SHAPE) and not torch.equal(a, b)  # same codes, other class


def nearest_neighbour_distance(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The sample-quality proxy: the mean Euclidean distance (pixel space) from each sample to
    its nearest held-out image; lower is better."""
    return torch.cdist(samples.flatten(1), reference.flatten(1)).min(1).values.mean()


def test_a_fitted_sampler_beats_standard_normal_draws_for_an_autoencoder() -> None:
    splits = pyvae.data.load_digits(seed=0)
    train, held_out = splits.train.images, splits.eval.images
    model = pyvae.build("ae", input_shape=SHAPE, latent_dim=4, hidden_dims=(64, 32))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        x = train[torch.randint(0, train.shape[0], (64,), generator=g)]
        loss = model.loss(x, model(x)).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    sampler = GaussianMixtureSampler(model, n_components=10).fit(train)
    fitted = sampler.sample(500, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = torch.randn(500, 4, generator=torch.Generator().manual_seed(1))
        standard = model.likelihood.mean(model.decode(z))
    fitted_d = nearest_neighbour_distance(fitted, held_out)
    standard_d = nearest_neighbour_distance(standard, held_out)
    assert fitted_d < 0.9 * standard_d, (fitted_d, standard_d)

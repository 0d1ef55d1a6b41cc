"""The VQ-VAE against independent computations: quantisation against brute-force nearest
neighbours, straight-through gradients, the codebook and commitment losses and their gradients by
hand, the EMA codebook update against a numpy reference, the code prior, dead-code restarts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pyvae
from pyvae.models.vqvae import CodePrior, QuantizedPosterior, codebook_perplexity, nearest_codes

SHAPE = (1, 8, 8)


def tiny(**config: object) -> pyvae.VQVAE:
    base = {"input_shape": SHAPE, "latent_dim": 3, "codebook_size": 8, "channels": (4,)}
    model = pyvae.build("vqvae", **{**base, **config})
    assert isinstance(model, pyvae.VQVAE)
    return model


def test_quantisation_is_the_brute_force_nearest_neighbour() -> None:
    rng = np.random.default_rng(0)
    vectors, codebook = rng.normal(size=(200, 5)), rng.normal(size=(17, 5))
    brute = np.array(
        [min(range(17), key=lambda k: ((v - codebook[k]) ** 2).sum()) for v in vectors]
    )
    got = nearest_codes(torch.from_numpy(vectors), torch.from_numpy(codebook))
    np.testing.assert_array_equal(got.numpy(), brute)
    # the model's grid quantisation: per position, channel vectors, with the model's codebook
    model = tiny()
    x = torch.rand(4, *SHAPE)
    z_e = model.encoder(x).detach()
    indices, codes = model.quantize(z_e)
    grid = z_e.permute(0, 2, 3, 1).numpy()  # (B, H, W, D)
    cb = model.codebook.detach().numpy()
    expected = ((grid[..., None, :] - cb) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(indices.numpy(), expected)
    np.testing.assert_allclose(codes.detach().permute(0, 2, 3, 1).numpy(), cb[expected])


def test_straight_through_gradients_reach_the_encoder() -> None:
    model = tiny()
    x = torch.rand(4, *SHAPE)
    out = model(x)
    posterior = out.posterior
    assert isinstance(posterior, QuantizedPosterior)
    torch.testing.assert_close(out.z, posterior.codes)  # the forward value is the code
    posterior.z_e.retain_grad()
    out.z.retain_grad()
    model.reconstruction_term(x, out).sum().backward()
    assert out.z.grad is not None and out.z.grad.abs().sum() > 0
    torch.testing.assert_close(posterior.z_e.grad, out.z.grad)  # identity through quantisation
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert model.codebook.grad is None  # the reconstruction does not move the codebook


def test_codebook_and_commitment_losses_and_gradients_by_hand() -> None:
    model = tiny(objective={"name": "vq", "beta": 0.4}).double()
    x = torch.rand(3, *SHAPE, dtype=torch.float64)
    out = model(x)
    terms = model.loss(x, out)
    z_e = out.posterior.z_e.detach().numpy()
    b, positions = 3, model.grid[0] * model.grid[1]
    idx = out.posterior.indices.reshape(b, positions).numpy()
    cb = model.codebook.detach().numpy()
    e = cb[idx].transpose(0, 2, 1).reshape(b, -1)  # channel-first flattening
    squared = ((z_e - e) ** 2).sum(1)
    np.testing.assert_allclose(terms.codebook.detach().numpy(), squared)
    np.testing.assert_allclose(terms.commitment.detach().numpy(), squared)
    np.testing.assert_allclose(terms.kl.numpy(), positions * math.log(8))
    recon = terms.recon.detach().numpy()
    np.testing.assert_allclose(terms.loss.item(), (recon + squared + 0.4 * squared).mean())
    terms.loss.backward()
    # d/de_k of mean_b sum ||sg[z_e] - e||^2 = (2 / B) sum_{positions assigned k} (e_k - z_e)
    vectors = z_e.reshape(b, 3, positions).transpose(0, 2, 1).reshape(-1, 3)
    expected = np.zeros_like(cb)
    for v, k in zip(vectors, idx.reshape(-1), strict=True):
        expected[k] += 2 / b * (cb[k] - v)
    np.testing.assert_allclose(model.codebook.grad.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_ema_update_against_a_numpy_reference() -> None:
    decay, eps = 0.9, 1e-5
    model = tiny(ema_decay=decay, codebook_size=4).double()
    assert "codebook" not in dict(model.named_parameters())
    xs = [torch.rand(5, *SHAPE, dtype=torch.float64) for _ in range(3)]
    count = np.ones(4)
    cb = model.codebook.numpy().copy()
    total = cb.copy()
    for x in xs:
        with torch.no_grad():
            vectors = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, 3).numpy()
        k = ((vectors[:, None, :] - cb) ** 2).sum(-1).argmin(1)
        n_k = np.bincount(k, minlength=4)
        s_k = np.zeros_like(cb)
        np.add.at(s_k, k, vectors)
        count = decay * count + (1 - decay) * n_k
        total = decay * total + (1 - decay) * s_k
        n = count.sum()
        cb = total / ((count + eps) / (n + 4 * eps) * n)[:, None]
        model.train()
        model(x)
        np.testing.assert_allclose(model.codebook.numpy(), cb, rtol=1e-10)
    model.eval()
    before = model.codebook.clone()
    model(xs[0])
    assert torch.equal(model.codebook, before)  # eval mode leaves the codebook alone


def test_code_prior_fit_sample_and_log_prob(tmp_path: Path) -> None:
    model = tiny()
    x = torch.rand(40, *SHAPE)
    with pytest.raises(ValueError, match=r"model.fit_prior\(train_data\)"):
        model.sample(2)
    model.fit_prior(
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16), smoothing=0.5
    )
    idx = model.code_indices(x).reshape(40, -1).numpy()
    counts = np.stack([np.bincount(idx[:, p], minlength=8) for p in range(idx.shape[1])])
    expected = (counts + 0.5) / (40 + 8 * 0.5)
    np.testing.assert_allclose(model.prior_logits.exp().numpy(), expected, rtol=1e-6)
    prior = model.prior_distribution()
    assert isinstance(prior, CodePrior) and prior.event_shape == (model.latent_dim,)
    a = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, model.sample(3, generator=torch.Generator().manual_seed(0)))
    z = prior.sample((20_000,))
    position0 = z.view(-1, 3, idx.shape[1])[:, :, 0]  # the first grid position's codes
    grid_idx = nearest_codes(position0, model.codebook)
    freq = np.bincount(grid_idx.numpy(), minlength=8) / 20_000
    np.testing.assert_allclose(freq, expected[0], atol=0.015)
    lp = prior.log_prob(z[:2])
    per_position = model.prior_logits.log_softmax(-1)
    first = z[0].view(3, -1).t()
    k = nearest_codes(first, model.codebook)
    torch.testing.assert_close(lp[0], per_position[torch.arange(len(k)), k].sum())
    assert prior.log_prob(z[:1] + 0.123).item() == -math.inf
    # the fitted prior is saved with the model
    loaded = pyvae.load(model.save(tmp_path / "vq.safetensors"))
    assert torch.equal(loaded.sample(3, generator=torch.Generator().manual_seed(0)), a)


def test_dead_codes_restart_on_encoder_outputs() -> None:
    model = tiny()
    x = torch.rand(6, *SHAPE)
    with torch.no_grad():
        model.usage.copy_(torch.tensor([5.0, 0.0, 5.0, 0.001, 5.0, 5.0, 5.0, 5.0]))
    before = model.codebook.detach().clone()
    moved = model.restart_dead_codes(x, min_usage=0.01, generator=torch.Generator().manual_seed(0))
    assert moved == 2
    z_e = model.encoder(x).detach().permute(0, 2, 3, 1).reshape(-1, 3)
    for k in (1, 3):
        assert (model.codebook[k] - z_e).abs().sum(1).min() == 0  # exactly an encoder output
    keep = [0, 2, 4, 5, 6, 7]
    assert torch.equal(model.codebook.detach()[keep], before[keep])
    assert model.restart_dead_codes(x, min_usage=0.01) == 0  # their usage was reset


def test_perplexity_hand_values() -> None:
    assert codebook_perplexity(torch.arange(8).repeat(3), 8).item() == pytest.approx(8)
    assert codebook_perplexity(torch.zeros(10, dtype=torch.long), 8).item() == pytest.approx(1)
    two = codebook_perplexity(torch.tensor([0, 0, 0, 1]), 8).item()
    assert two == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


def test_refusals_name_the_problem() -> None:
    model = tiny()
    x = torch.rand(2, *SHAPE)
    with pytest.raises(ValueError, match="no posterior density"):
        model.log_likelihood(x)
    with pytest.raises(ValueError, match="no prior"):
        pyvae.log_likelihood(model, x, k=2)
    with pytest.raises(NotImplementedError, match="point mass on its codes"):
        model(x).posterior.log_prob(torch.zeros(2, model.latent_dim))
    with pytest.raises(pyvae.ConfigError, match="input_shape: the vqvae model expects images"):
        pyvae.build("vqvae", input_shape=(20,))
    with pytest.raises(pyvae.ConfigError, match="ema_decay: expected None or a number in"):
        tiny(ema_decay=1.0)
    with pytest.raises(pyvae.ConfigError, match="trains its codebook with the 'vq' objective"):
        tiny(objective="ae")
    with pytest.raises(pyvae.ConfigError, match="objective 'vq' needs a vector-quantised model"):
        pyvae.build("mlp", input_shape=SHAPE, objective="vq")
    with pytest.raises(pyvae.ConfigError, match="discrete latents"):
        pyvae.samplers.GaussianMixtureSampler(model)
    assert tiny().latent_dim == 3 * 4 * 4 and tiny().code_dim == 3

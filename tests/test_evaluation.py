"""ELBO, IWAE bound and log-likelihood on a linear-Gaussian model whose log p(x) is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.distributions import Distribution, Independent, Normal

import pyvae

D, M, NOISE = 4, 2, 0.5  # data and latent dimensions, the decoder's noise standard deviation


class LinearGaussianVAE(pyvae.BaseVAE):
    """z ~ N(0, I), x | z ~ N(W z + b, NOISE^2 I); a linear encoder with a diagonal Gaussian."""

    def __init__(self) -> None:
        super().__init__(
            input_shape=(D,), latent_dim=M, likelihood={"name": "gaussian", "scale": NOISE}
        )
        self.decoder = nn.Linear(M, D)
        self.encoder = nn.Linear(D, M)
        self.log_scale = nn.Parameter(torch.zeros(M))

    def encode(self, x: torch.Tensor) -> Distribution:
        return Independent(Normal(self.encoder(x), self.log_scale.exp()), 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class Setup:
    """The model in float64, data drawn from it, and the exact numbers, from numpy/scipy."""

    def __init__(self, batch: int = 8, scale_error: float = 1.2) -> None:
        rng = np.random.default_rng(0)
        w, b = rng.normal(size=(D, M)), rng.normal(size=D)
        self.x_np = rng.multivariate_normal(b, w @ w.T + NOISE**2 * np.eye(D), size=batch)
        self.log_px = stats.multivariate_normal(b, w @ w.T + NOISE**2 * np.eye(D)).logpdf(self.x_np)
        # The true posterior N(A (x - b), S) has a full covariance S; the encoder has the true
        # mean and a diagonal scale `scale_error` times too wide, so the ELBO is strictly below.
        s = np.linalg.inv(np.eye(M) + w.T @ w / NOISE**2)
        a = s @ w.T / NOISE**2
        q_scale = scale_error * np.sqrt(np.diag(s))
        # ELBO = log p(x) - KL(q(z|x) || p(z|x)); with equal means the KL is the same for all x.
        kl = 0.5 * (
            np.trace(np.linalg.inv(s) @ np.diag(q_scale**2))
            - M
            + np.linalg.slogdet(s)[1]
            - 2 * np.log(q_scale).sum()
        )
        self.exact_elbo = self.log_px - kl
        self.model = LinearGaussianVAE().double()
        with torch.no_grad():
            self.model.decoder.weight.copy_(torch.from_numpy(w))
            self.model.decoder.bias.copy_(torch.from_numpy(b))
            self.model.encoder.weight.copy_(torch.from_numpy(a))
            self.model.encoder.bias.copy_(torch.from_numpy(-a @ b))
            self.model.log_scale.copy_(torch.from_numpy(np.log(q_scale)))
        self.x = torch.from_numpy(self.x_np)


@pytest.fixture(scope="module")
def setup() -> Setup:
    return Setup()


def repeated(x: torch.Tensor, n: int) -> torch.Tensor:
    """x repeated n times along the batch: (n * B, ...), row r * B + b is example b."""
    return x.repeat(n, *([1] * (x.dim() - 1)))


def per_example(values: torch.Tensor, batch: int) -> torch.Tensor:
    """(n * B,) from :func:`repeated` inputs -> (n, B)."""
    return values.detach().view(-1, batch)


@pytest.mark.parametrize("kl_method", ["auto", "monte_carlo"])
def test_elbo_estimate_matches_the_exact_elbo_below_log_px(setup: Setup, kl_method: str) -> None:
    k, batch = 4000, len(setup.x)
    torch.manual_seed(1)
    estimate = pyvae.elbo(setup.model, setup.x, k=k, kl_method=kl_method).detach().numpy()
    # The spread of one-sample estimates (x repeated k times) gives the standard error.
    singles = per_example(pyvae.elbo(setup.model, repeated(setup.x, k), kl_method=kl_method), batch)
    assert singles.shape == (k, batch)
    se = singles.std(0).numpy() / np.sqrt(k)
    assert np.all(np.abs(estimate - setup.exact_elbo) <= 5 * se)
    assert np.all(np.abs(singles.mean(0).numpy() - setup.exact_elbo) <= 5 * se)
    assert np.all(setup.log_px - setup.exact_elbo > 10 * se)  # a real gap, well above the noise


def test_elbo_agrees_with_the_model_loss(setup: Setup) -> None:
    """One-sample ELBO of evaluation.elbo and of BaseVAE.loss: same value from the same z."""
    torch.manual_seed(3)
    a = pyvae.elbo(setup.model, setup.x)
    torch.manual_seed(3)
    b = setup.model.loss(setup.x, setup.model(setup.x)).elbo
    torch.testing.assert_close(a, b)


def test_iwae_bound_tightens_with_k_towards_log_px(setup: Setup) -> None:
    """Averaged over examples and repeats, the IWAE bound rises with k, stays below log p(x),
    and its k = 1 value is the ELBO."""
    repeats, batch = 2000, len(setup.x)
    x = repeated(setup.x, repeats)
    truth = float(setup.log_px.mean())
    means, ses = [], []
    torch.manual_seed(2)
    for k in (1, 3, 9, 27):
        bound = per_example(pyvae.iwae_bound(setup.model, x, k), batch).mean(1)  # (repeats,)
        means.append(float(bound.mean()))
        ses.append(float(bound.std() / repeats**0.5))
    assert abs(means[0] - float(setup.exact_elbo.mean())) <= 5 * ses[0]
    for i in range(3):
        assert means[i + 1] - means[i] > 3 * (ses[i] ** 2 + ses[i + 1] ** 2) ** 0.5
    assert means[-1] < truth + 3 * ses[-1]
    assert truth - means[-1] < 0.25 * (truth - means[0])  # most of the gap is closed


def importance_se(setup: Setup, k: int) -> np.ndarray:
    """The standard error of the k-sample estimate of log p(x) per example, by the delta method:
    sd(w) / (mean(w) sqrt(k)), from 20000 importance weights w = p(x, z) / q(z|x)."""
    torch.manual_seed(0)
    log_w = per_example(pyvae.iwae_bound(setup.model, repeated(setup.x, 20_000), 1), len(setup.x))
    w = torch.exp(log_w - log_w.max(0).values)
    return (w.std(0) / (w.mean(0) * k**0.5)).numpy()


def test_log_likelihood_with_large_k_is_close_to_the_truth(setup: Setup) -> None:
    torch.manual_seed(4)
    estimate = setup.model.log_likelihood(setup.x, k=5000)
    assert estimate.shape == (len(setup.x),)
    se = importance_se(setup, 5000)
    assert np.all(se < 0.01)
    assert np.all(np.abs(estimate.numpy() - setup.log_px) <= 5 * se)
    assert np.all(setup.exact_elbo < estimate.numpy() - 20 * se)


def test_log_likelihood_is_chunked(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most max(chunk_size, B) samples are decoded at once; the estimate is unchanged."""
    rows: list[int] = []
    decode = setup.model.decode

    def recording_decode(z: torch.Tensor) -> torch.Tensor:
        rows.append(z.shape[0])
        return decode(z)

    monkeypatch.setattr(setup.model, "decode", recording_decode)
    batch, k = len(setup.x), 1000
    estimate = pyvae.log_likelihood(setup.model, setup.x, k=k, chunk_size=100)
    assert max(rows) <= 100 and sum(rows) == k * batch and len(rows) == -(-k // (100 // batch))
    assert np.all(np.abs(estimate.numpy() - setup.log_px) <= 5 * importance_se(setup, k))
    rows.clear()
    pyvae.log_likelihood(setup.model, setup.x, k=3, chunk_size=1)  # chunk smaller than the batch
    assert rows == [batch] * 3


def test_log_likelihood_uses_eval_mode_no_grad_and_restores_modes() -> None:
    setup = Setup()
    model = setup.model
    model.train()
    model.encoder.eval()
    seen: list[bool] = []
    model.decoder.register_forward_hook(lambda module, args, out: seen.append(module.training))
    estimate = model.log_likelihood(setup.x, k=5)
    assert not estimate.requires_grad
    assert seen and not any(seen)
    assert model.training and model.decoder.training and not model.encoder.training


def test_iwae_bound_is_a_differentiable_training_objective(setup: Setup) -> None:
    model = LinearGaussianVAE().double()
    loss = -pyvae.iwae_bound(model, setup.x, k=5, chunk_size=16).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda m, x: pyvae.iwae_bound(m, x, 0), r"k: expected a positive integer, got 0"),
        (lambda m, x: pyvae.elbo(m, x, k=2.5), r"k: expected a positive integer, got 2.5"),
        (
            lambda m, x: pyvae.log_likelihood(m, x, chunk_size=0),
            r"chunk_size: expected a positive integer, got 0",
        ),
        (lambda m, x: pyvae.log_likelihood(m, x[:, :3]), r"x: expected shape \(B, 4\)"),
    ],
)
def test_bad_arguments_are_clear_errors(setup: Setup, call: object, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call(setup.model, setup.x)  # type: ignore[operator]


def test_linear_warmup() -> None:
    assert pyvae.linear_warmup(0, 100) == 0.0
    assert pyvae.linear_warmup(25, 100, beta=4.0) == pytest.approx(1.0)
    assert pyvae.linear_warmup(100, 100) == 1.0
    assert pyvae.linear_warmup(10_000, 100, beta=0.5) == 0.5
    assert pyvae.linear_warmup(0, 0, beta=2.0) == 2.0
    with pytest.raises(ValueError, match="step: expected an integer >= 0, got -1"):
        pyvae.linear_warmup(-1, 10)
    with pytest.raises(ValueError, match="warmup_steps: expected an integer >= 0, got 1.5"):
        pyvae.linear_warmup(1, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta: expected a finite number >= 0, got -1"):
        pyvae.linear_warmup(1, 10, beta=-1)

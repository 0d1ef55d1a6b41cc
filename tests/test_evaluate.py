"""pyvae.evaluate: every number against an exact value or a direct computation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.distributions import Distribution, Independent, Normal
from torch.utils.data import DataLoader, TensorDataset

import pyvae
from pyvae.evaluator import EvaluationReport, effective_sample_size, evaluate

D, NOISE = 5, 0.5  # data dimensions, the decoder's noise standard deviation


class LinearGaussianVAE(pyvae.BaseVAE):
    """z ~ N(0, I), x | z ~ N(W z + b, NOISE^2 I); a linear encoder with a diagonal Gaussian."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(
            input_shape=(D,),
            latent_dim=latent_dim,
            likelihood={"name": "gaussian", "scale": NOISE},
        )
        self.decoder = nn.Linear(latent_dim, D)
        self.encoder = nn.Linear(D, latent_dim)
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def encode(self, x: torch.Tensor) -> Distribution:
        return Independent(Normal(self.encoder(x), self.log_scale.exp()), 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class Setup:
    """A float64 linear-Gaussian model with ``dead`` planted dead latent dimensions (the decoder
    ignores them, the encoder outputs the prior for them), data drawn from it, exact numbers."""

    def __init__(self, n: int = 400, latent: int = 4, dead: int = 2, widen: float = 1.3) -> None:
        rng = np.random.default_rng(0)
        live = latent - dead
        w = np.zeros((D, latent))
        w[:, :live] = rng.normal(size=(D, live))
        b = rng.normal(size=D)
        self.cov_x = w @ w.T + NOISE**2 * np.eye(D)
        self.x_np = rng.multivariate_normal(b, self.cov_x, size=n)
        self.log_px = stats.multivariate_normal(b, self.cov_x).logpdf(self.x_np)
        s = np.linalg.inv(np.eye(latent) + w.T @ w / NOISE**2)  # the true posterior covariance
        a = s @ w.T / NOISE**2
        self.q_scale = widen * np.sqrt(np.diag(s))  # a diagonal posterior, too wide
        self.q_scale[live:] = 1.0  # dead dimensions: q(z_d|x) = p(z_d)
        self.a, self.b = a, b
        self.means = (self.x_np - b) @ a.T  # (n, latent)
        self.model = LinearGaussianVAE(latent).double()
        with torch.no_grad():
            self.model.decoder.weight.copy_(torch.from_numpy(w))
            self.model.decoder.bias.copy_(torch.from_numpy(b))
            self.model.encoder.weight.copy_(torch.from_numpy(a))
            self.model.encoder.bias.copy_(torch.from_numpy(-a @ b))
            self.model.log_scale.copy_(torch.from_numpy(np.log(self.q_scale)))
        self.x = torch.from_numpy(self.x_np)

    def exact_mutual_information(self) -> float:
        """I(x; z) under q: the aggregate posterior is N(0, A C A^T + Q) exactly."""
        q = np.diag(self.q_scale**2)
        return 0.5 * (
            np.linalg.slogdet(self.a @ self.cov_x @ self.a.T + q)[1] - np.linalg.slogdet(q)[1]
        )

    def kl_per_dim(self) -> np.ndarray:
        v = self.q_scale**2
        return np.mean(0.5 * (v + self.means**2 - 1 - np.log(v)), axis=0)


@pytest.fixture(scope="module")
def setup() -> Setup:
    return Setup()


def test_nll_reproduces_exact_log_px_within_its_standard_error(setup: Setup) -> None:
    report = evaluate(setup.model, setup.x, k=500, mutual_information=False)
    exact = -setup.log_px.mean()
    assert report.n == len(setup.x) and report.k == 500
    assert abs(report.nll - exact) < report.nll_stderr, (report.nll, exact, report.nll_stderr)
    assert abs(report.nll - exact) < 0.02  # the importance-sampling error is tiny here
    # the standard error and bits/dim by definition, from the per-example values
    values = report.nll_per_example.double().numpy()
    assert report.nll_stderr == pytest.approx(values.std(ddof=1) / math.sqrt(len(values)))
    assert report.bits_per_dim == pytest.approx(report.nll / (D * math.log(2)))
    assert np.abs(values + setup.log_px).max() < 0.25  # per example, k = 500
    # the ELBO is below log p(x): the too-wide posterior costs nats
    assert report.neg_elbo > report.nll
    assert report.neg_elbo == pytest.approx(report.recon + report.kl)


def test_ess_against_the_log_weights(setup: Setup) -> None:
    """The ESS and NLL equal those of log-weights drawn directly with the same seed."""
    model, x, k = setup.model, setup.x[:7], 50
    report = evaluate(model, x, k=k, chunk_size=7 * k, seed=3, mutual_information=False)
    torch.manual_seed(3)
    with torch.no_grad():
        model(x)  # evaluate draws the one-sample ELBO's z first
        q = model.encode(x)
        z = q.sample((k,))  # (k, B, M): the same draws as evaluate's (one chunk)
        logits = model.decode(z.reshape(-1, z.shape[-1]))
        log_px = model.likelihood.log_prob(x.repeat(k, 1), logits).view(k, -1)
        log_w = log_px + model.prior().log_prob(z) - q.log_prob(z)
    w = np.exp(log_w.numpy() - log_w.numpy().max(0))
    ess = (w.sum(0) ** 2 / (w**2).sum(0)) / k
    assert report.ess == pytest.approx(ess.mean(), rel=1e-9)
    nll = -(np.log(w.mean(0)) + log_w.numpy().max(0))
    assert report.nll_per_example.numpy() == pytest.approx(nll, rel=1e-5)
    assert 0 < report.ess <= 1


def test_effective_sample_size_formula() -> None:
    log_w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, -50.0, -50.0, -50.0]]).T
    assert effective_sample_size(log_w).tolist() == pytest.approx([4.0, 1.0])
    r = torch.randn(30, 3, dtype=torch.float64) * 2
    w = r.exp()
    assert effective_sample_size(r) == pytest.approx(w.sum(0) ** 2 / (w**2).sum(0))


def test_kl_per_dim_and_active_units_with_planted_dead_dimensions(setup: Setup) -> None:
    report = evaluate(setup.model, setup.x, k=None, mutual_information=False)
    assert report.kl_per_dim == pytest.approx(setup.kl_per_dim().tolist(), abs=1e-9)
    assert sum(report.kl_per_dim) == pytest.approx(report.kl, rel=1e-9)
    assert report.latent_variance == pytest.approx(setup.means.var(axis=0, ddof=1), abs=1e-9)
    assert report.active_units == 2
    assert report.kl_per_dim[2:] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert report.nll is None and report.k is None
    assert evaluate(setup.model, setup.x, k=None, threshold=1e6).active_units == 0


def test_mutual_information_matches_the_exact_value() -> None:
    big = Setup(n=3000, latent=2, dead=0)
    report = evaluate(big.model, big.x, k=None, mi_examples=3000)
    exact = big.exact_mutual_information()
    assert report.mi_examples == 3000
    assert report.mutual_information == pytest.approx(exact, abs=0.05), exact
    # and it cannot exceed log M (the estimator's ceiling)
    assert report.mutual_information < math.log(3000)


def test_loader_and_tensor_agree_and_modes_restore(setup: Setup) -> None:
    model = setup.model
    model.train()
    model.decoder.eval()  # a mixed state must come back as it was
    rng_before = torch.random.get_rng_state()
    a = evaluate(model, setup.x, k=20, batch_size=64)
    loader = DataLoader(TensorDataset(setup.x, torch.zeros(len(setup.x))), batch_size=64)
    b = evaluate(model, loader, k=20)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert model.training and not model.decoder.training and model.encoder.training
    assert a.to_dict() | {"seconds": 0} == b.to_dict() | {"seconds": 0}
    assert a.nll == evaluate(model, setup.x, k=20, batch_size=64).nll  # seeded


def test_to_dict_is_json_and_format_is_text(setup: Setup) -> None:
    report = evaluate(setup.model, setup.x[:50], k=10)
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) >= {
        "neg_elbo",
        "recon",
        "kl",
        "nll",
        "nll_stderr",
        "ess",
        "bits_per_dim",
        "active_units",
        "kl_per_dim",
        "mutual_information",
    }
    assert "nll_per_example" not in data
    text = report.format()
    assert "NLL (k=10)" in text and "active units       2 of 4" in text


def test_real_models_and_bounded_memory() -> None:
    torch.manual_seed(0)
    model = pyvae.build("conv", input_shape=(1, 8, 8), latent_dim=3, channels=(4,), hidden_dim=8)
    x = torch.rand(10, 1, 8, 8).round()
    calls: list[int] = []
    decode = model.decode

    def recording(z: torch.Tensor) -> torch.Tensor:
        calls.append(z.shape[0])
        return decode(z)

    model.decode = recording  # type: ignore[method-assign]
    report = evaluate(model, x, k=100, batch_size=5, chunk_size=50)
    assert max(calls) <= 50
    assert isinstance(report, EvaluationReport) and report.nll > 0 and 0 < report.ess <= 1
    mog = pyvae.build(
        "mlp",
        input_shape=(4,),
        latent_dim=2,
        hidden_dims=(8,),
        prior={"name": "mog", "n_components": 2},
        likelihood="gaussian",
    )
    r = evaluate(mog, torch.randn(20, 4), k=5)
    assert r.kl_per_dim is None and any("KL per dimension" in n for n in r.notes)
    assert r.nll is not None and r.mutual_information is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k"), ({"threshold": -1.0}, "threshold"), ({"batch_size": 0}, "batch_size")],
)
def test_bad_arguments(setup: Setup, kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate(setup.model, setup.x, **kwargs)


def test_empty_data_is_an_error(setup: Setup) -> None:
    with pytest.raises(ValueError, match="no examples"):
        evaluate(setup.model, setup.x[:0])


def test_autoencoder_reports_what_is_defined() -> None:
    torch.manual_seed(0)
    ae = pyvae.build("ae", input_shape=(1, 4, 4), latent_dim=3, hidden_dims=(8,))
    x = torch.rand(40, 1, 4, 4).round()
    report = evaluate(ae, x, k=10)
    assert report.recon is not None and report.recon > 0
    assert report.latent_variance is not None and report.active_units is not None
    codes = ae.encode(x).mean.detach().double()
    assert report.latent_variance == pytest.approx(codes.var(0).tolist(), rel=1e-6, abs=1e-12)
    for name in (
        "neg_elbo",
        "kl",
        "nll",
        "nll_stderr",
        "ess",
        "bits_per_dim",
        "kl_per_dim",
        "mutual_information",
        "k",
    ):
        assert getattr(report, name) is None, name
    assert any("no prior" in note for note in report.notes)
    assert "reconstruction" in report.format() and "NLL" not in report.format()
    json.dumps(report.to_dict())


def test_conditional_model_uses_the_labels() -> None:
    torch.manual_seed(0)
    model = pyvae.build("mlp", input_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), num_classes=3)
    x, y = torch.rand(30, 1, 4, 4).round(), torch.arange(30) % 3
    with pytest.raises(ValueError, match="conditional"):
        evaluate(model, x)
    a = evaluate(model, x, y=y, k=200)
    b = evaluate(model, (x, y), k=200)
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    c = evaluate(model, loader, k=200)
    assert a.nll == b.nll and c.nll == pytest.approx(a.nll, abs=3 * a.nll_stderr)
    other = evaluate(model, x, y=(y + 1) % 3, k=200)
    assert other.nll != a.nll  # the labels reach the encoder and the decoder
    exact = -pyvae.log_likelihood(model, x, y=y, k=2000).mean().item()
    assert a.nll == pytest.approx(exact, abs=0.05)


def test_point_mass_posterior_with_a_prior_says_what_is_undefined() -> None:
    torch.manual_seed(0)
    model = pyvae.build(
        "mlp",
        input_shape=(1, 4, 4),
        latent_dim=2,
        hidden_dims=(8,),
        posterior="point",
        objective="ae",
    )
    report = evaluate(model, torch.rand(40, 1, 4, 4).round(), k=5, batch_size=8)
    assert report.recon is not None and report.active_units is not None
    assert report.kl is None and report.nll is None and report.mutual_information is None
    assert len(report.notes) == len(set(report.notes)) == 4  # each said once, not per batch
    assert all("point-mass" in n or "KL per dimension" in n for n in report.notes)

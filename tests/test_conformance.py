"""Every registered part passes the conformance kit (:mod:`pyvae.testing`).

The tests are parametrised from the registries (models, posteriors, likelihoods, priors,
objectives, corruptions, samplers), so a part registered later is checked without new test code.
A part that does not combine with another must say so with a :class:`pyvae.ConfigError` when the
model is built; the kit turns that (and only that) into :class:`pyvae.testing.NotApplicable`,
and every part must pass in at least one backbone. The last tests break parts on purpose: the
kit must catch each breakage.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from torch import nn
from torch.distributions import AffineTransform, Distribution, Independent, Normal

import pyvae
from pyvae import testing
from pyvae.posteriors import PointMass
from pyvae.testing import ConformanceError, NotApplicable
from pyvae.testing.strategies import model_configs

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = pyvae.list_models()


def _applicable(label: str, check: Callable[[str], None], backbones: list[str]) -> None:
    """``check(backbone)`` passes for the first backbone that accepts the part; a refusal must
    be a ConfigError at build time (NotApplicable), and not every backbone may refuse."""
    refusals = []
    for backbone in backbones:
        try:
            check(backbone)
        except NotApplicable as exc:
            assert isinstance(exc.error, pyvae.ConfigError)
            refusals.append(f"{backbone}: {exc}")
            continue
        return
    raise AssertionError(f"{label} is refused by every backbone:\n" + "\n".join(refusals))


def _backbones() -> list[str]:
    """mlp first (the cheapest), then the other models."""
    return sorted(MODELS, key=lambda m: (m != "mlp", m))


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
@pytest.mark.parametrize("name", MODELS)
def test_every_model_conforms(name: str, conditional: bool) -> None:
    try:
        model = testing.small_model(name, num_classes=3 if conditional else None)
    except NotApplicable as exc:  # e.g. a model family that cannot take labels, said clearly
        assert conditional, f"{name} refuses its own defaults: {exc}"
        return
    testing.check_model(model)


@pytest.mark.parametrize("name", pyvae.list_posteriors())
def test_every_posterior_conforms(name: str) -> None:
    testing.check_posterior(name)
    _applicable(
        f"posterior {name!r}",
        lambda m: testing.check_posterior(name, model=m, objective=_objective_for(name)),
        _backbones(),
    )
    _applicable(  # a family also works in a conditional model (num_classes widens its input)
        f"posterior {name!r} (conditional)",
        lambda m: testing.check_model(
            testing.small_model(m, posterior=name, objective=_objective_for(name), num_classes=2)
        ),
        _backbones(),
    )


def _objective_for(posterior: str) -> str | None:
    """The default objective, or the autoencoder's for a deterministic posterior."""
    return "ae" if pyvae.POSTERIORS.get(posterior).deterministic else None


@pytest.mark.parametrize("name", pyvae.list_likelihoods())
def test_every_likelihood_conforms(name: str) -> None:
    testing.check_likelihood(name)
    _applicable(
        f"likelihood {name!r}", lambda m: testing.check_likelihood(name, model=m), _backbones()
    )


@pytest.mark.parametrize("name", pyvae.list_priors())
def test_every_prior_conforms(name: str) -> None:
    testing.check_prior(name)
    _applicable(f"prior {name!r}", lambda m: testing.check_prior(name, model=m), _backbones())


@pytest.mark.parametrize("name", pyvae.list_objectives())
def test_every_objective_conforms(name: str) -> None:
    _applicable(
        f"objective {name!r}", lambda m: testing.check_objective(name, model=m), _backbones()
    )
    _applicable(
        f"objective {name!r} (conditional)",
        lambda m: testing.check_objective(name, model=m, num_classes=2),
        _backbones(),
    )


@pytest.mark.parametrize("name", pyvae.CORRUPTIONS.names())
def test_every_corruption_conforms(name: str) -> None:
    testing.check_corruption(name)
    testing.check_model(testing.small_model("denoising", corruption=name))


@pytest.mark.parametrize("name", pyvae.samplers.list_samplers())
def test_every_sampler_conforms(name: str) -> None:
    testing.check_sampler(name)  # the autoencoder, which only samples through a sampler
    testing.check_sampler(name, model="conv", num_classes=3)  # a conditional VAE


def covering() -> list[dict[str, Any]]:
    """Rows of parts in which every model, posterior, likelihood, prior and objective appears
    at least once, with and without labels (row i takes the i-th entry of each list, cyclically);
    a part is passed only to models that take it."""
    axes = {
        "name": MODELS,
        "posterior": pyvae.list_posteriors(),
        "likelihood": pyvae.list_likelihoods(),
        "prior": pyvae.list_priors(),
        "objective": pyvae.list_objectives(),
        "num_classes": [None, 2],
    }
    n = max(len(values) for values in axes.values())
    return [{key: values[i % len(values)] for key, values in axes.items()} for i in range(n)]


def _row_id(row: dict[str, Any]) -> str:
    return "-".join(str(v) for v in row.values())


@pytest.mark.parametrize("row", covering(), ids=_row_id)
def test_covering_combinations_conform_or_refuse_at_build(row: dict[str, Any]) -> None:
    import inspect

    name = row["name"]
    params = inspect.signature(pyvae.MODELS.get(name)).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    parts = {k: v for k, v in row.items() if k != "name" and (takes_all or k in params)}
    try:
        model = testing.small_model(name, **parts)
    except NotApplicable as exc:
        assert isinstance(exc.error, pyvae.ConfigError)
        assert str(exc)  # the refusal says why
        return
    testing.check_model(model)


def test_covering_set_covers_every_registered_part() -> None:
    rows = covering()
    for key, names in (
        ("name", MODELS),
        ("posterior", pyvae.list_posteriors()),
        ("likelihood", pyvae.list_likelihoods()),
        ("prior", pyvae.list_priors()),
        ("objective", pyvae.list_objectives()),
    ):
        assert {row[key] for row in rows} == set(names), key
    assert {row["num_classes"] for row in rows} == {None, 2}


@settings(max_examples=12)
@given(model_configs())
def test_drawn_configs_conform_or_refuse_at_build(config: dict[str, Any]) -> None:
    try:
        model = pyvae.build(config)
    except pyvae.ConfigError:
        return  # a part refused the drawn combination (checked to be a ConfigError only)
    testing.check_model(model, save=False)


@settings(max_examples=6)
@given(model_configs(names=["mlp", "conv"], parts=False))
def test_drawn_shapes_save_and_load(config: dict[str, Any]) -> None:
    testing.check_model(pyvae.build(config))


@pytest.mark.slow  # starts a process
def test_importing_pyvae_imports_neither_pytest_nor_hypothesis() -> None:
    code = (
        "import sys, pyvae, pyvae.testing\n"
        "bad = {'pytest', 'hypothesis', '_pytest'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_only_a_config_error_at_build_is_not_applicable() -> None:
    with pytest.raises(NotApplicable, match="cannot serve a conditional model") as info:
        testing.small_model("mlp", prior="vamp", num_classes=2)
    assert isinstance(info.value.error, pyvae.ConfigError)

    class Broken(pyvae.Prior):
        def __init__(self, latent_dim: int) -> None:
            super().__init__(latent_dim)
            raise RuntimeError("a bug in the part")

        def forward(self) -> Distribution:
            raise AssertionError

    with pyvae.PRIORS.scoped():
        pyvae.register_prior("kit_broken")(Broken)
        with pytest.raises(RuntimeError, match="a bug in the part"):
            testing.small_model("mlp", prior="kit_broken")


# -- the kit catches broken parts -------------------------------------------------------------


@pytest.fixture
def scoped() -> Iterator[None]:
    with (
        pyvae.MODELS.scoped(),
        pyvae.LIKELIHOODS.scoped(),
        pyvae.PRIORS.scoped(),
        pyvae.POSTERIORS.scoped(),
        pyvae.OBJECTIVES.scoped(),
    ):
        yield


class _OffNormal(Normal):
    """A Normal whose log-density is off by a constant: it does not integrate to 1."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return super().log_prob(value) + 0.1


def test_kit_catches_an_unnormalised_likelihood(scoped: None) -> None:
    @pyvae.register_likelihood("kit_off")
    class Off(pyvae.Likelihood):
        def distribution(self, params: torch.Tensor) -> Distribution:
            return Independent(_OffNormal(params, 1.0), params.dim() - 1)

    with pytest.raises(ConformanceError, match="total mass"):
        testing.check_likelihood("kit_off")


def test_kit_catches_a_fast_path_that_disagrees(scoped: None) -> None:
    @pyvae.register_likelihood("kit_fast")
    class Fast(pyvae.Likelihood):
        def distribution(self, params: torch.Tensor) -> Distribution:
            return Independent(Normal(params, 1.0), params.dim() - 1)

        def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
            return -0.5 * (x - params).pow(2).flatten(1).sum(1)  # forgot the constant

    with pytest.raises(ConformanceError, match="differs from distribution"):
        testing.check_likelihood("kit_fast")


class _NoJacobian(AffineTransform):
    """Scales by 2 but forgets the log-determinant of the Jacobian."""

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[:-1])


def _flow_head(transform: type[AffineTransform]) -> type[pyvae.PosteriorHead]:
    class Flow(pyvae.PosteriorHead):
        def __init__(self, in_features: int, latent_dim: int) -> None:
            super().__init__(in_features, latent_dim)
            self.linear = nn.Linear(in_features, latent_dim)

        def forward(self, h: torch.Tensor) -> Distribution:
            base = Independent(Normal(self.linear(h), 1.0), 1)
            scale = transform(0.0, 2.0, event_dim=1)
            return torch.distributions.TransformedDistribution(base, [scale])

    return Flow


def test_kit_catches_a_flow_without_its_log_determinant(scoped: None) -> None:
    pyvae.register_posterior("kit_flow")(_flow_head(_NoJacobian))
    with pytest.raises(ConformanceError, match="does not integrate to 1"):
        testing.check_posterior("kit_flow")
    # the same flow with its log-determinant passes
    pyvae.register_posterior("kit_flow_ok")(_flow_head(AffineTransform))
    testing.check_posterior("kit_flow_ok", model="mlp")


def test_kit_catches_an_unnormalised_prior(scoped: None) -> None:
    @pyvae.register_prior("kit_off")
    class Off(pyvae.Prior):
        def forward(self) -> Distribution:
            return Independent(_OffNormal(torch.zeros(self.latent_dim), 1.0), 1)

    with pytest.raises(ConformanceError, match="does not integrate to 1"):
        testing.check_prior("kit_off")


def test_kit_catches_a_decoder_that_ignores_the_label(scoped: None) -> None:
    @pyvae.register_model("kit_deaf")
    class Deaf(pyvae.MLPVAE):
        def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            return super().decode(z, None if y is None else torch.zeros_like(y))

    with pytest.raises(ConformanceError, match="the decoder ignores the label y"):
        testing.check_model(testing.small_model("kit_deaf", num_classes=3))


def test_kit_catches_a_parameter_without_gradient(scoped: None) -> None:
    @pyvae.register_model("kit_unused")
    class Unused(pyvae.MLPVAE):
        def __init__(self, **config: Any) -> None:
            super().__init__(**config)
            self.forgotten = nn.Parameter(torch.ones(2))

    model = pyvae.MODELS.get("kit_unused")(input_shape=(1, 8, 8), latent_dim=2, hidden_dims=[8])
    with pytest.raises(ConformanceError, match="'forgotten' got no gradient"):
        testing.check_model(model)
    testing.check_model(model, allow_unused=["forgotten"], save=False)


def test_kit_catches_a_loss_term_that_is_not_per_example(scoped: None) -> None:
    @pyvae.register_objective("kit_mean_kl")
    class MeanKL(pyvae.Objective):
        def forward(self, model: Any, x: Any, out: Any, **kwargs: Any) -> pyvae.LossTerms:
            recon, kl = model.reconstruction_term(x, out), model.kl(out)
            return pyvae.LossTerms(loss=(recon + kl).mean(), recon=recon, kl=kl.mean())

    with pytest.raises(ConformanceError, match="term 'kl' is not per example"):
        testing.check_objective("kit_mean_kl")


@pytest.mark.slow  # dynamo traces twice
def test_kit_catches_a_graph_break_under_fullgraph_compile(scoped: None) -> None:
    @pyvae.register_model("kit_breaks")
    class Breaks(pyvae.MLPVAE):
        def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            if z.sum().item() > 1e9:  # data-dependent control flow: a graph break
                z = z * 0
            return super().decode(z, y)

    model = testing.small_model("kit_breaks")
    testing.check_model(model, save=False)  # eager is fine
    with pytest.raises(ConformanceError, match="fullgraph=True"):
        testing.check_model(model, save=False, compile=True)
    torch._dynamo.reset()


def test_kit_catches_a_config_that_does_not_rebuild(scoped: None) -> None:
    @pyvae.register_model("kit_forgets")
    class Forgets(pyvae.MLPVAE):
        def __init__(self, width: int = 8, **config: Any) -> None:
            super().__init__(hidden_dims=(width,), **config)

        @property
        def config(self) -> dict[str, Any]:
            config = super().config
            config.pop("width")  # the rebuilt model gets the default width
            return config

    model = pyvae.MODELS.get("kit_forgets")(width=5, input_shape=(1, 8, 8), latent_dim=2)
    with pytest.raises(ConformanceError, match="state_dict has other names or shapes"):
        testing.check_model(model)


def test_label_probe_reads_any_quantised_posterior() -> None:
    # a plug-in's quantised posterior (not pyvae's QuantizedPosterior): the label check reads its
    # continuous z_e, which a small change of the encoder's output moves; its rounded point not
    class Rounded(PointMass):
        def __init__(self, z_e: torch.Tensor) -> None:
            super().__init__(z_e.round())
            self.z_e = z_e

    z_e = torch.tensor([[0.10, 0.20]])
    probe = testing._label_probe
    assert torch.equal(probe(Rounded(z_e)), z_e)
    assert not torch.equal(probe(Rounded(z_e)), probe(Rounded(z_e + 0.01)))
    assert torch.equal(probe(PointMass(z_e.round())), z_e.round())  # no z_e: the point

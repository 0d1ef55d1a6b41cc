"""torch.compile: a training step of every model x likelihood x prior traces with fullgraph=True
(no graph breaks) and gives eager's loss and gradients.

Compilation is the expensive part of this suite on a CPU, so the models are tiny and the work is
split in two:

* every (model, likelihood) and (model, prior) pair -- the only places where components interact
  with a model (a VampPrior calls the model's encoder, a learned scale lives in the likelihood) --
  is traced by dynamo with ``fullgraph=True`` (``backend="eager"``: dynamo's graph, run as it is);
  the loss and gradients must equal eager's;
* a covering set in which every model, every likelihood and every prior appears at least once is
  compiled with inductor (``fallback_random=True``, so that the compiled step draws the same random
  numbers as eager), forward and backward (AOTAutograd), and must match eager to float32 rounding.

The training step is the standard one: forward and loss compiled, ``loss.backward()`` called on the
compiled graph's output (its backward graph is compiled by AOTAutograd too).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
import torch
import torch._dynamo
import torch._inductor.config as inductor_config
from tiny import SHAPE, family_configs, family_covering, family_id, pairs, tiny_model

import pyvae

pytestmark = pytest.mark.usefixtures("one_thread")


def covering() -> list[tuple[str, str, str]]:
    """A list in which every model, likelihood and prior appears at least once; slots beyond the
    number of models go to the cheapest model to compile (``mlp``)."""
    models, likelihoods, priors = pyvae.list_models(), pyvae.list_likelihoods(), pyvae.list_priors()
    n = max(len(models), len(likelihoods), len(priors))
    spare = "mlp" if "mlp" in models else models[0]
    return [
        (
            models[i] if i < len(models) else spare,
            likelihoods[i % len(likelihoods)],
            priors[i % len(priors)],
        )
        for i in range(n)
    ]


def _make_step(model: pyvae.BaseVAE) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """Forward and loss (a conditional model gets the labels 0, 1, ... of its classes)."""

    def step(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if model.num_classes is None:
            out = model(x)
        else:
            out = model(x, torch.arange(x.shape[0], device=x.device) % model.num_classes)
        terms = model.loss(x, out)
        return terms.loss, terms.recon, terms.kl, *terms.extras.values()

    return step


def _run(
    model: pyvae.BaseVAE,
    step: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    x: torch.Tensor,
    seed: int,
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    outputs = list(step(x))
    outputs[0].backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return [t.detach() for t in outputs], grads


def _compare(model: pyvae.BaseVAE, backend: str, *, rtol: float, atol: float) -> None:
    x = torch.rand(6, *SHAPE)
    model.train()
    eager_out, eager_grads = _run(model, _make_step(model), x, seed=123)
    other_noise = _run(model, _make_step(model), x, seed=7)[0]
    compiled = torch.compile(_make_step(model), fullgraph=True, backend=backend)
    for seed in (123, 7):  # the second call reuses the graph with other random numbers
        out, grads = _run(model, compiled, x, seed=seed)
        if seed == 123:
            names = ("loss", "recon", "kl", "extras")
            for name, a, b in zip(names * len(out), out, eager_out, strict=False):
                torch.testing.assert_close(
                    a, b, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
                )
            assert grads.keys() == eager_grads.keys()
            assert len(grads) == len(list(model.parameters()))  # every parameter gets a gradient
            for name in grads:
                torch.testing.assert_close(
                    grads[name],
                    eager_grads[name],
                    rtol=rtol,
                    atol=atol,
                    msg=lambda m, n=name: f"{n}: {m}",
                )
        else:  # new noise (none in a deterministic model): eager's result for that seed
            torch.testing.assert_close(out[0], other_noise[0], rtol=rtol, atol=atol)
            if not torch.equal(other_noise[0], eager_out[0]):
                assert not torch.equal(out[0], eager_out[0])  # not a constant folded in
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # no recompilation


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(("model_name", "likelihood", "prior"), list(pairs()))
def test_fullgraph_traces_and_matches_eager(model_name: str, likelihood: str, prior: str) -> None:
    model = tiny_model(model_name, likelihood, prior)
    _compare(model, "eager", rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "likelihood", "prior"), covering())
def test_inductor_matches_eager(model_name: str, likelihood: str, prior: str) -> None:
    model = tiny_model(model_name, likelihood, prior)
    with inductor_config.patch(fallback_random=True, compile_threads=1):
        _compare(model, "inductor", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config", family_configs(), ids=family_id)
def test_every_family_traces_with_fullgraph_and_matches_eager(config: dict) -> None:
    """Each posterior family, each objective, each model with labels (parts registered later
    are included: the list comes from the registries)."""
    _compare(pyvae.build(config), "eager", rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("config", family_covering(), ids=family_id)
def test_inductor_matches_eager_for_families(config: dict) -> None:
    """A covering set of the families (every posterior and objective, with and without labels)
    compiled with inductor."""
    with inductor_config.patch(fallback_random=True, compile_threads=1):
        _compare(pyvae.build(config), "inductor", rtol=1e-4, atol=1e-5)


def test_family_lists_cover_every_posterior_objective_and_conditional_model() -> None:
    for configs in (family_configs(), family_covering()):
        ids = [family_id(c) for c in configs]
        for posterior in pyvae.list_posteriors():
            assert any(f"pos={posterior}" in i for i in ids), (posterior, ids)
        for objective in pyvae.list_objectives():
            assert any(f"obj={objective}" in i for i in ids), (objective, ids)
        assert any(i.endswith("-y") for i in ids) and not all(i.endswith("-y") for i in ids)
    conditional = {c["name"] for c in family_configs() if family_id(c).endswith("-y")}
    assert {"mlp", "conv", "ae", "denoising"} <= conditional


def test_covering_set_covers_everything() -> None:
    combos = covering()
    for i, names in enumerate((pyvae.list_models(), pyvae.list_likelihoods(), pyvae.list_priors())):
        assert {c[i] for c in combos} == set(names)
    assert set(itertools.chain.from_iterable(pairs())) >= set(pyvae.list_priors())


def test_eval_mode_step_compiles_without_graph_break() -> None:
    """Evaluation (eval mode, no grad): the denoising model skips its corruption."""
    model = tiny_model("denoising").eval()
    x = torch.rand(4, *SHAPE)
    compiled = torch.compile(_make_step(model), fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.manual_seed(0)
        expected = _make_step(model)(x)
        torch.manual_seed(0)
        got = compiled(x)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)

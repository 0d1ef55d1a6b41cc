"""A conformance kit for plug-in authors: does a part keep the pyvae contract?

Each ``check_*`` function builds or takes one part, exercises it the way pyvae does (shapes,
dtypes, gradients to every parameter, save and load, optionally ``torch.compile``) and raises
:class:`ConformanceError` (an ``AssertionError``, so test runners show it as a failure) naming
the part, the check and what it saw. They need neither pytest nor hypothesis; call them from any
test::

    import pyvae.testing

    def test_my_likelihood():
        pyvae.testing.check_likelihood("student_t")
        pyvae.testing.check_likelihood("student_t", model="mlp")  # also inside a model

``check_model``, ``check_posterior``, ``check_likelihood``, ``check_prior``,
``check_objective``, ``check_corruption`` and ``check_sampler`` cover every kind of registered
part.

A part that legitimately does not combine with another (a prior that cannot serve a conditional
model, an objective that needs a Gaussian posterior) says so with a :class:`pyvae.ConfigError`
when the model is built; the kit turns exactly that, and nothing else, into
:class:`NotApplicable`. Every other error propagates.

Hypothesis strategies that draw shapes and small configs live in :mod:`pyvae.testing.strategies`
(imported only by tests; it needs ``hypothesis``, e.g. ``pip install "pyvae[testing]"``).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch.distributions import Distribution, Independent, Normal

from pyvae.config import ConfigError, Configurable
from pyvae.likelihoods import LIKELIHOODS, Likelihood
from pyvae.models import CORRUPTIONS, MODELS, BaseVAE, Corruption
from pyvae.objectives import OBJECTIVES, Objective
from pyvae.outputs import LossTerms, VAEOutput
from pyvae.posteriors import POSTERIORS, PosteriorHead, latent_point
from pyvae.priors import PRIORS, Prior, draw
from pyvae.registry import Registry

__all__ = [
    "SMALL_MODEL_CONFIGS",
    "SMALL_PART_ARGUMENTS",
    "ConformanceError",
    "NotApplicable",
    "check_corruption",
    "check_likelihood",
    "check_model",
    "check_objective",
    "check_posterior",
    "check_prior",
    "check_sampler",
    "example_batch",
    "small_model",
    "small_spec",
]

Spec = str | Mapping[str, Any]

#: Small networks for the built-in backbones (keyword arguments their classes take), so that
#: checks run in milliseconds. A model not listed gets :data:`SMALL_PART_ARGUMENTS` that its
#: class accepts, and its defaults otherwise.
SMALL_MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dims": (16,)},
    "ae": {"hidden_dims": (16,)},
    "conv": {"channels": (4,), "hidden_dim": 8},
    "denoising": {"backbone": "mlp", "hidden_dims": (16,)},
    "ladder": {"hidden_dims": (16,), "ladder_dim": 8},  # latent_dim 3 -> layers (2, 1)
}

#: Size-like keyword arguments set to small values wherever a part's (or model's) class accepts
#: them: mixture components, flow steps, importance samples, hidden widths, codebooks, a
#: sampler's fitting epochs or iterations. Also the training-set size an estimator may require
#: (``dataset_size``).
SMALL_PART_ARGUMENTS: dict[str, Any] = {
    "n_components": 3,
    "hidden_dims": (16,),
    "channels": (4,),
    "hidden_dim": 8,
    "hidden_features": 8,
    "steps": 2,
    "n_steps": 2,
    "num_steps": 2,
    "flow_steps": 2,
    "n_flows": 2,
    "k": 3,
    "epochs": 2,
    "max_iter": 20,
    "dataset_size": 64,
    "num_embeddings": 8,
    "codebook_size": 8,
}

_SHAPE = (1, 8, 8)


class ConformanceError(AssertionError):
    """A part breaks the pyvae contract; the message names the part, the check and what was
    seen."""


class NotApplicable(Exception):
    """Building the combination raised a :class:`pyvae.ConfigError`: a part declared that it
    does not combine with the others. ``error`` is that ConfigError."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


def _fail(what: str, message: str) -> ConformanceError:
    return ConformanceError(f"{what}: {message}")


def _expect(condition: object, what: str, message: str) -> None:
    if not condition:
        raise _fail(what, message)


def _accepted(cls: type) -> tuple[set[str], bool]:
    """The keyword names ``cls`` takes, and whether it takes ``**kwargs``."""
    params = inspect.signature(cls).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {n for n in params if n != "self"}, var_kw


def small_spec(registry: Registry[Any], name: str, **overrides: Any) -> dict[str, Any]:
    """A config dict ``{"name": name, ...}`` for a registered part with small sizes: the entries
    of :data:`SMALL_PART_ARGUMENTS` its class accepts (a likelihood with a learnable scale learns
    one per dimension, so that its parameters are exercised), then ``overrides``."""
    cls = registry.get(name)
    accepted, _ = _accepted(cls)
    spec: dict[str, Any] = {"name": name}
    spec.update({k: v for k, v in SMALL_PART_ARGUMENTS.items() if k in accepted})
    if registry is LIKELIHOODS and "learn_scale" in accepted:
        spec["learn_scale"] = "per_dim"
    spec.update(overrides)
    return spec


def small_model(
    name: str = "mlp",
    *,
    input_shape: Sequence[int] = _SHAPE,
    latent_dim: int = 3,
    **config: Any,
) -> BaseVAE:
    """A small model of the registered backbone ``name`` on ``input_shape`` inputs.

    ``config`` holds the parts (``posterior=``, ``likelihood=``, ``prior=``, ``objective=``,
    ``num_classes=``) and any other keyword; parts given by name are sized with
    :func:`small_spec`. ``None`` values are dropped (the model's default).

    Raises:
        NotApplicable: the build raised a :class:`pyvae.ConfigError` (a part refused the
            combination); any other error propagates.
    """
    cls = MODELS.get(name)
    accepted, _ = _accepted(cls)
    small = SMALL_MODEL_CONFIGS.get(name)
    if small is None:
        small = {k: v for k, v in SMALL_PART_ARGUMENTS.items() if k in accepted}
    registries: dict[str, Registry[Any]] = {
        "posterior": POSTERIORS,
        "likelihood": LIKELIHOODS,
        "prior": PRIORS,
        "objective": OBJECTIVES,
        "corruption": CORRUPTIONS,
    }
    parts = {}
    for key, value in config.items():
        if value is None:
            continue
        if key in registries and isinstance(value, str):
            value = small_spec(registries[key], value)
        parts[key] = value
    full = {"input_shape": tuple(input_shape), "latent_dim": latent_dim, **small, **parts}
    try:
        return MODELS.build(name, **full)
    except ConfigError as exc:
        raise NotApplicable(exc) from exc


def example_batch(
    model: BaseVAE, batch_size: int = 4, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch ``(x, y)`` the model accepts: ``x`` of shape (batch_size, *input_shape) in the
    likelihood's support (uniform in (0, 1) where that fits, else a draw of p(x|z) at zero
    decoder outputs), in the model's dtype, on its device; ``y`` the labels ``0, 1, ...`` (mod
    num_classes) of a conditional model, else ``None``. ``generator`` is a CPU generator."""
    reference = next(model.parameters(), None)
    dtype = torch.get_default_dtype() if reference is None else reference.dtype
    device = torch.device("cpu") if reference is None else reference.device
    shape = (batch_size, *model.input_shape)
    x = torch.rand(shape, generator=generator, dtype=dtype).mul(0.9).add(0.05).to(device)
    if not bool(model.likelihood.support.check(x).all()):
        with torch.no_grad():
            zeros = torch.zeros(shape, dtype=dtype, device=device)
            x = model.likelihood.distribution(zeros).sample()
    y = None
    if model.num_classes is not None:
        y = (torch.arange(batch_size) % model.num_classes).to(device)
    return x, y


# -- models ----------------------------------------------------------------------------------


def _call(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None) -> VAEOutput:
    return model(x) if y is None else model(x, y)


def _has_density(posterior: Distribution) -> bool:
    """Whether ``log_prob`` is defined (a point mass raises NotImplementedError)."""
    try:
        posterior.log_prob(posterior.rsample())
    except NotImplementedError:
        return False
    return True


def _exempt(model: BaseVAE) -> set[str]:
    """Parameter names that need no gradient from the model's objective: the prior's, when the
    objective declares that it does not use a prior (``requires_prior = False``)."""
    if getattr(model.objective, "requires_prior", True) or model.prior is None:
        return set()
    prior_ids = {id(p) for p in model.prior.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in prior_ids}


def _check_gradients(
    module: torch.nn.Module, what: str, exempt: Iterable[str] = (), *, nonzero: bool = True
) -> None:
    exempt = set(exempt)
    for name, p in module.named_parameters():
        if name in exempt or not p.requires_grad:
            continue
        _expect(p.grad is not None, what, f"parameter {name!r} got no gradient")
        assert p.grad is not None
        _expect(bool(torch.isfinite(p.grad).all()), what, f"{name!r} has a non-finite gradient")
        if nonzero:
            _expect(bool(p.grad.abs().sum() > 0), what, f"{name!r} got an all-zero gradient")


def _check_terms(terms: object, batch: int, dtype: torch.dtype, what: str) -> LossTerms:
    _expect(
        isinstance(terms, LossTerms), what, f"loss returned {type(terms).__name__}, not LossTerms"
    )
    assert isinstance(terms, LossTerms)
    _expect(terms.loss.shape == (), what, f"loss has shape {tuple(terms.loss.shape)}, not ()")
    _expect(bool(torch.isfinite(terms.loss)), what, f"loss is not finite: {terms.loss}")
    _expect(terms.loss.dtype == dtype, what, f"loss has dtype {terms.loss.dtype}, not {dtype}")
    for name, term in [("recon", terms.recon), ("kl", terms.kl), *terms.extras.items()]:
        _expect(
            isinstance(term, torch.Tensor) and term.dim() >= 1 and term.shape[0] == batch,
            what,
            f"term {name!r} is not per example: shape "
            f"{tuple(getattr(term, 'shape', ()))}, expected ({batch}, ...)",
        )
        _expect(bool(torch.isfinite(term).all()), what, f"term {name!r} is not finite")
    _expect(terms.recon.shape == (batch,), what, f"recon has shape {tuple(terms.recon.shape)}")
    _expect(terms.kl.shape == (batch,), what, f"kl has shape {tuple(terms.kl.shape)}")
    return terms


def _step(model: BaseVAE, y: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    def step(x: torch.Tensor) -> torch.Tensor:
        return model.loss(x, _call(model, x, y)).loss

    return step


def _label_probe(posterior: Distribution) -> torch.Tensor:
    """What shows that the encoder read the label: the posterior's point, or for a quantised
    posterior the encoder's continuous output before quantisation (its point is piecewise
    constant, so a small change of the encoder's output need not move it).

    A quantised posterior is any distribution with a tensor attribute ``z_e`` (the encoder's
    output), the attribute the ``vq`` objective reads: pyvae's
    :class:`~pyvae.models.vqvae.QuantizedPosterior` or a plug-in's own."""
    z_e = getattr(posterior, "z_e", None)
    if isinstance(z_e, torch.Tensor):
        return z_e
    return latent_point(posterior)


def _refuses(call: Callable[[], object], errors: tuple[type[BaseException], ...]) -> str | None:
    """The message of the error ``call`` raises, or None if it returns."""
    try:
        call()
    except errors as exc:
        return str(exc)
    return None


def check_model(
    model: BaseVAE,
    *,
    batch_size: int = 4,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    save: bool = True,
    compile: bool = False,
    compile_backend: str = "eager",
    allow_unused: Iterable[str] = (),
) -> None:
    """Check that a model keeps the :class:`pyvae.BaseVAE` contract.

    It runs where the model is (its device and dtype). Checks: ``encode`` gives a distribution with
    batch shape (B,), event shape (latent_dim,) and ``rsample``; ``forward`` a
    :class:`pyvae.VAEOutput` with data-shaped ``params``; ``loss`` finite :class:`pyvae.LossTerms`
    with per-example terms, whose gradient reaches every parameter (finite, not all zero); wrong
    inputs and labels are refused (a conditional model refuses a missing ``y``, an unconditional one
    a given ``y``, and each label changes both encoder and decoder: the encoder's posterior point,
    or a quantised posterior's ``z_e`` attribute, its output before quantisation); eval mode is
    deterministic; ``sample`` and ``log_likelihood`` work and are reproducible, or, for a model
    without a prior or a posterior density (an autoencoder), refuse with a clear error; the IWAE
    bound is differentiable; the model runs in float64; the config rebuilds it
    (``pyvae.build(model.config)`` with the ``state_dict``, and ``model.save`` then
    ``pyvae.load``) with identical outputs; with ``compile=True`` a training step traces with
    ``torch.compile(fullgraph=True)`` and gives eager's loss and gradients.

    The model is left in training mode with its gradients cleared.

    Args:
        model: the model to check (registered, when ``save`` is True).
        batch_size: B, the size of the example batch (>= 2).
        x: inputs of shape (B, *input_shape); default :func:`example_batch`.
        y: labels of shape (B,) for a conditional model; default ``0, 1, ...``.
        save: also check the round trips through the config and through a checkpoint file.
        compile: also check a ``torch.compile(fullgraph=True)`` training step (slower).
        compile_backend: the ``torch.compile`` backend (``"eager"`` traces with dynamo only;
            ``"inductor"`` generates code).
        allow_unused: names of parameters that may legitimately get no gradient from the loss
            (the prior's, when the objective declares ``requires_prior = False``, always may).

    Raises:
        ConformanceError: the first broken rule.
    """
    what = f"model {type(model).__name__} ({type(model).registered_name!r})"
    _expect(isinstance(model, BaseVAE), what, "is not a pyvae.BaseVAE")
    _expect(batch_size >= 2, what, f"batch_size must be >= 2, got {batch_size}")
    model.train()
    default_x, default_y = example_batch(model, batch_size)
    x = default_x if x is None else x
    y = default_y if y is None and model.num_classes is not None else y
    batch, d = x.shape[0], model.latent_dim
    exempt = _exempt(model) | set(allow_unused)

    # encode / forward / loss / gradients
    q = model.encode(x) if y is None else model.encode(x, y)
    _expect(isinstance(q, Distribution), what, f"encode returned {type(q).__name__}")
    _expect(
        tuple(q.batch_shape) == (batch,) and tuple(q.event_shape) == (d,),
        what,
        f"encode's distribution has batch shape {tuple(q.batch_shape)} and event shape "
        f"{tuple(q.event_shape)}, expected ({batch},) and ({d},)",
    )
    _expect(q.has_rsample, what, "encode's distribution has no rsample (no reparameterisation)")
    _expect(tuple(latent_point(q).shape) == (batch, d), what, "latent_point has the wrong shape")
    out = _call(model, x, y)
    _expect(isinstance(out, VAEOutput), what, f"forward returned {type(out).__name__}")
    _expect(tuple(out.z.shape) == (batch, d), what, f"z has shape {tuple(out.z.shape)}")
    _expect(out.params.shape == x.shape, what, f"params has shape {tuple(out.params.shape)}")
    _expect(out.params.dtype == x.dtype, what, f"params has dtype {out.params.dtype}")
    model.zero_grad(set_to_none=True)
    terms = _check_terms(model.loss(x, out), batch, x.dtype, what)
    terms.loss.backward()
    _check_gradients(model, f"{what}, loss.backward()", exempt)
    model.zero_grad(set_to_none=True)

    # input and label checks
    message = _refuses(lambda: _call(model, x.unsqueeze(-1), y), (ValueError, TypeError))
    _expect(message and "x" in message, what, "a batch of the wrong shape was not refused")
    labels = torch.zeros(batch, dtype=torch.long, device=x.device)
    if model.num_classes is None:
        message = _refuses(lambda: model(x, labels), (ValueError,))
        _expect(message, what, "an unconditional model accepted labels y")
    else:
        assert y is not None
        message = _refuses(lambda: model(x), (ValueError,))
        _expect(message, what, "a conditional model accepted a batch without labels y")
        other = (y + 1) % model.num_classes
        with torch.no_grad():
            z = torch.zeros(batch, d, dtype=x.dtype, device=x.device)
            _expect(
                not torch.allclose(model.decode(z, y), model.decode(z, other)),
                what,
                "the decoder ignores the label y",
            )
            model.eval()
            _expect(
                not torch.allclose(
                    _label_probe(model.encode(x, y)), _label_probe(model.encode(x, other))
                ),
                what,
                "the encoder ignores the label y",
            )
            model.train()

    # eval mode, sampling, likelihood
    model.eval()
    recon = model.reconstruct(x) if y is None else model.reconstruct(x, y)
    _expect(recon.shape == x.shape, what, f"reconstruct gave shape {tuple(recon.shape)}")
    again = model.reconstruct(x) if y is None else model.reconstruct(x, y)
    _expect(torch.equal(recon, again), what, "reconstruct is not deterministic in eval mode")
    n = 3
    ys = None if model.num_classes is None else (torch.arange(n) % model.num_classes).to(x.device)
    density = _has_density(q)
    if model.prior is None:
        for name, call in (
            ("sample", lambda: model.sample(n, y=ys)),
            ("log_likelihood", lambda: model.log_likelihood(x, y=y, k=2)),
        ):
            message = _refuses(call, (ValueError,))
            _expect(message, what, f"{name} of a model without a prior did not refuse clearly")
    else:
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        first, second = model.sample(n, y=ys, generator=g1), model.sample(n, y=ys, generator=g2)
        _expect(first.shape == (n, *model.input_shape), what, f"sample gave {tuple(first.shape)}")
        _expect(bool(torch.isfinite(first).all()), what, "sample is not finite")
        _expect(torch.equal(first, second), what, "sample is not reproducible with a generator")
        if density:
            log_px = model.log_likelihood(x, y=y, k=4, chunk_size=8)
            _expect(log_px.shape == (batch,), what, f"log_likelihood gave {tuple(log_px.shape)}")
            _expect(bool(torch.isfinite(log_px).all()), what, "log_likelihood is not finite")
        else:
            message = _refuses(
                lambda: model.log_likelihood(x, y=y, k=2), (ValueError, NotImplementedError)
            )
            _expect(message, what, "log_likelihood without a posterior density did not refuse")
    model.train()
    if model.prior is not None and density:
        from pyvae.evaluation import iwae_bound

        bound = iwae_bound(model, x, 3, y=y)
        _expect(bound.shape == (batch,), what, f"iwae_bound gave {tuple(bound.shape)}")
        (-bound.mean()).backward()
        _check_gradients(model, f"{what}, -iwae_bound.backward()", allow_unused)
        model.zero_grad(set_to_none=True)

    # rebuild from the config (json), float64, checkpoint file
    if save:
        _check_rebuild(model, x, y, what)
    if compile:
        _check_compile(model, x, y, what, compile_backend, exempt)
    model.train()
    model.zero_grad(set_to_none=True)


def _same_outputs(a: BaseVAE, b: BaseVAE, x: torch.Tensor, y: torch.Tensor | None) -> bool:
    a.eval()
    b.eval()
    same = torch.equal(a.reconstruct(x, y), b.reconstruct(x, y))
    torch.manual_seed(11)
    loss_a = a.loss(x, _call(a, x, y)).loss
    torch.manual_seed(11)
    loss_b = b.loss(x, _call(b, x, y)).loss
    if a.prior is not None:
        z = torch.randn(5, a.latent_dim, dtype=x.dtype, device=x.device)
        same = same and torch.equal(
            a.prior_distribution().log_prob(z), b.prior_distribution().log_prob(z)
        )
    return same and torch.equal(loss_a, loss_b)


def _check_rebuild(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None, what: str) -> None:
    from pyvae.checkpoint import load

    try:
        config = json.loads(json.dumps(model.config))
    except (TypeError, ValueError) as exc:
        raise _fail(what, f"model.config is not JSON-serialisable ({exc})") from exc
    torch.manual_seed(1234)  # another initialisation than the model's
    rebuilt = MODELS.build(config).to(x.device)
    _expect(type(rebuilt) is type(model), what, f"its config builds a {type(rebuilt).__name__}")
    _expect(rebuilt.config == model.config, what, "its config does not rebuild the same config")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _expect(
        {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes,
        what,
        "the rebuilt model's state_dict has other names or shapes",
    )
    rebuilt.load_state_dict(model.state_dict())
    _expect(
        _same_outputs(model, rebuilt, x, y),
        what,
        "pyvae.build(model.config) + load_state_dict does not reproduce the model's outputs",
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        model.save(path)
        loaded = load(path, map_location=x.device)
    _expect(type(loaded) is type(model), what, f"pyvae.load built a {type(loaded).__name__}")
    _expect(
        _same_outputs(model, loaded, x, y),
        what,
        "model.save + pyvae.load does not reproduce the model's outputs",
    )
    wide = rebuilt.double()
    wide.train()
    x64 = x.double()
    terms = _check_terms(wide.loss(x64, _call(wide, x64, y)), x.shape[0], torch.float64, what)
    _expect(terms.recon.dtype == torch.float64, what, "float64 model gave a non-float64 recon")


def _check_compile(
    model: BaseVAE,
    x: torch.Tensor,
    y: torch.Tensor | None,
    what: str,
    backend: str,
    exempt: set[str],
) -> None:
    model.train()
    step = _step(model, y)

    def run(fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(321)
        loss = fn(x)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    eager_loss, eager_grads = run(step)
    try:
        compiled = torch.compile(step, fullgraph=True, backend=backend)
        loss, grads = run(compiled)
    except Exception as exc:  # dynamo's errors: re-raised with the part named
        raise _fail(
            what, f"torch.compile(fullgraph=True, backend={backend!r}) failed: {exc}"
        ) from exc
    rtol, atol = (1e-6, 1e-6) if backend == "eager" else (1e-4, 1e-5)
    _expect(
        torch.allclose(loss, eager_loss, rtol=rtol, atol=atol),
        what,
        f"compiled loss {loss.item()} != eager {eager_loss.item()}",
    )
    _expect(grads.keys() == eager_grads.keys(), what, "compiled step: other parameters got grads")
    for name, grad in grads.items():
        _expect(
            torch.allclose(grad, eager_grads[name], rtol=rtol, atol=atol),
            what,
            f"compiled gradient of {name!r} differs from eager",
        )
    model.zero_grad(set_to_none=True)


# -- parts -----------------------------------------------------------------------------------


def _build_part(
    registry: Registry[Any], spec: Any, context: Mapping[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """An instance from a name, dict or instance, with the context arguments its class takes;
    and its spec without them (for a model, which passes its own)."""
    if isinstance(spec, registry.base):
        config = dict(cast(Configurable, spec).config)  # every registry's base is Configurable
        return spec, {k: v for k, v in config.items() if k not in context}
    if isinstance(spec, str):
        spec = small_spec(registry, spec)
    spec = dict(spec)
    accepted, _ = _accepted(registry.get(spec["name"]))
    full = {**spec, **{k: v for k, v in context.items() if k in accepted and k not in spec}}
    return registry.build(full), spec


def _check_config(part: Configurable, registry: Registry[Any], what: str) -> Any:
    """The part's config is JSON-ready and rebuilds the same config; returns the rebuilt part
    with the part's state loaded."""
    _expect(type(part).registered_name is not None, what, "its class is not registered")
    try:
        config = json.loads(json.dumps(part.config))
    except (TypeError, ValueError) as exc:
        raise _fail(what, f"config is not JSON-serialisable ({exc})") from exc
    rebuilt = registry.build(config)
    _expect(type(rebuilt) is type(part), what, f"its config builds a {type(rebuilt).__name__}")
    _expect(rebuilt.config == part.config, what, "its config does not rebuild the same config")
    if isinstance(part, torch.nn.Module):
        rebuilt.load_state_dict(part.state_dict())
    return rebuilt


def _mc_total_mass(log_q: torch.Tensor, z: torch.Tensor, what: str, label: str) -> None:
    """``z`` (N, ..., D) drawn from q with log-density ``log_q`` (N, ...): the estimate of
    ``E_q[r(z) / q(z)] = 1`` for a Gaussian r narrower than q (so the ratio stays bounded),
    within five standard errors plus 2%: a wrong normalising constant or log-determinant fails."""
    loc, scale = z.mean(0), z.std(0) / 2
    log_r = Normal(loc, scale).log_prob(z).sum(-1)
    ratio = (log_r - log_q).exp()
    mean, se = ratio.mean(0), ratio.std(0) / math.sqrt(z.shape[0])
    bad = (mean - 1).abs() > 5 * se + 0.02
    _expect(
        not bool(bad.any()),
        what,
        f"{label} does not integrate to 1: E_q[r/q] = {mean.tolist()} (standard error "
        f"{se.tolist()}); check the normalising constant or the log-determinant",
    )


def check_posterior(
    head: Spec | PosteriorHead,
    *,
    in_features: int = 6,
    latent_dim: int = 3,
    batch_size: int = 4,
    model: str | None = None,
    compile: bool = False,
    **parts: Any,
) -> None:
    """Check a posterior family (a :class:`pyvae.PosteriorHead`, by name, dict or instance).

    Checks: the head maps features (B, in_features) to a distribution with batch shape (B,),
    event shape (latent_dim,), a reparameterised ``rsample`` (also of shape (S, B, latent_dim))
    through which gradients reach the features and every parameter, and a finite ``log_prob``
    of its own samples, shape (B,) -- or, for a ``deterministic`` head, a point mass whose
    ``log_prob`` raises NotImplementedError; :func:`pyvae.posteriors.latent_point` has shape
    (B, latent_dim); the density integrates to 1 (a Monte Carlo check in float64 with
    latent_dim 2, against the samples' own log_prob); the config rebuilds it. With ``model``,
    also :func:`check_model` of that backbone with this posterior.

    Args:
        head: the posterior family.
        in_features: the width of the features it is built for (a name or dict).
        latent_dim: D (a name or dict).
        batch_size: B.
        model: a registered backbone to check it in, e.g. ``"mlp"``; ``None`` for the part alone.
        compile: passed to :func:`check_model`.
        **parts: other parts of that model (by name or dict), e.g. ``objective="ae"``.

    Raises:
        ConformanceError: the first broken rule.
        NotApplicable: the backbone refused the posterior with a ConfigError at build time.
    """
    part, spec = _build_part(
        POSTERIORS, head, {"in_features": in_features, "latent_dim": latent_dim}
    )
    what = f"posterior {type(part).__name__} ({type(part).registered_name!r})"
    _expect(isinstance(part, PosteriorHead), what, "is not a pyvae.posteriors.PosteriorHead")
    f, d, b = part.in_features, part.latent_dim, batch_size
    h = torch.randn(b, f, requires_grad=True)
    q = part(h)
    _expect(isinstance(q, Distribution), what, f"returned {type(q).__name__}")
    _expect(
        tuple(q.batch_shape) == (b,) and tuple(q.event_shape) == (d,),
        what,
        f"batch shape {tuple(q.batch_shape)}, event shape {tuple(q.event_shape)}; expected "
        f"({b},), ({d},)",
    )
    _expect(q.has_rsample, what, "has no rsample")
    z = q.rsample()
    _expect(tuple(z.shape) == (b, d), what, f"rsample gave shape {tuple(z.shape)}")
    zs = q.rsample((2,))
    _expect(tuple(zs.shape) == (2, b, d), what, f"rsample((2,)) gave shape {tuple(zs.shape)}")
    point = latent_point(q)
    _expect(tuple(point.shape) == (b, d), what, f"latent_point gave {tuple(point.shape)}")
    _expect(bool(torch.isfinite(point).all()), what, "latent_point is not finite")
    if part.deterministic:
        _expect(torch.equal(z, point), what, "a deterministic head's sample is not its point")
        message = _refuses(lambda: q.log_prob(z), (NotImplementedError,))
        _expect(message, what, "a deterministic head's log_prob did not refuse")
        objective = z.sum()
    else:
        log_q = q.log_prob(z)
        _expect(log_q.shape == (b,), what, f"log_prob gave shape {tuple(log_q.shape)}")
        _expect(bool(torch.isfinite(log_q).all()), what, "log_prob of its own sample not finite")
        _expect(q.log_prob(zs).shape == (2, b), what, "log_prob of (S, B, D) samples is not (S, B)")
        objective = z.sum() + log_q.sum()
    objective.backward()
    _expect(h.grad is not None and bool(h.grad.abs().sum() > 0), what, "no gradient to features")
    _check_gradients(part, what)
    rebuilt = _check_config(part, POSTERIORS, what)
    with torch.no_grad():
        _expect(
            torch.equal(latent_point(rebuilt(h)), point),
            what,
            "the rebuilt head gives other outputs",
        )
    if not part.deterministic:  # the density integrates to 1 (D = 2, float64)
        small = POSTERIORS.build({**spec, "in_features": f, "latent_dim": 2}).double()
        with torch.no_grad():
            q2 = small(0.5 * torch.randn(2, small.in_features, dtype=torch.float64))
            samples = q2.rsample((20000,))
            _mc_total_mass(q2.log_prob(samples), samples, what, "q(z|x)")
    if model is not None:
        check_model(small_model(model, posterior=spec, **parts), compile=compile)


def check_likelihood(
    likelihood: Spec | Likelihood,
    *,
    event_shape: Sequence[int] = (1, 4, 4),
    batch_size: int = 3,
    model: str | None = None,
    compile: bool = False,
    **parts: Any,
) -> None:
    """Check a likelihood p(x|z) (a :class:`pyvae.Likelihood`, by name, dict or instance).

    Checks: ``distribution(params)`` has batch shape (B,) and event shape ``event_shape``;
    ``log_prob(x, params)`` of a draw x is finite, shape (B,), equal to
    ``distribution(params).log_prob(x)`` (a fast path must agree), and its gradient reaches
    ``params`` and every parameter of the likelihood; ``mean`` is data-shaped and equals the
    distribution's mean; values outside the support and NaN are refused (while value checks are
    on); the density (or mass function) of one data dimension integrates (sums) to 1 (float64,
    numerically); the config rebuilds it. With ``model``, also :func:`check_model` of that
    backbone with this likelihood.

    Args:
        likelihood: the likelihood.
        event_shape: the data shape it is built for (when given by name or dict).
        batch_size: B.
        model: a registered backbone to check it in, e.g. ``"mlp"``; ``None`` for the part alone.
        compile: passed to :func:`check_model`.
        **parts: other parts of that model (by name or dict), e.g. ``objective="ae"``.

    Raises:
        ConformanceError: the first broken rule.
        NotApplicable: the backbone refused the likelihood with a ConfigError at build time.
    """
    shape = tuple(event_shape)
    part, spec = _build_part(LIKELIHOODS, likelihood, {"event_shape": shape})
    what = f"likelihood {type(part).__name__} ({type(part).registered_name!r})"
    _expect(isinstance(part, Likelihood), what, "is not a pyvae.Likelihood")
    shape = tuple(getattr(part, "event_shape", None) or shape)
    b = batch_size
    params = torch.randn(b, *shape, requires_grad=True)
    dist = part.distribution(params)
    _expect(
        tuple(dist.batch_shape) == (b,) and tuple(dist.event_shape) == shape,
        what,
        f"distribution has batch shape {tuple(dist.batch_shape)} and event shape "
        f"{tuple(dist.event_shape)}, expected ({b},) and {shape}",
    )
    x = dist.sample().to(params.dtype)
    log_p = part.log_prob(x, params)
    _expect(log_p.shape == (b,), what, f"log_prob gave shape {tuple(log_p.shape)}")
    _expect(bool(torch.isfinite(log_p).all()), what, "log_prob of a draw is not finite")
    _expect(
        torch.allclose(log_p, dist.log_prob(x), rtol=1e-5, atol=1e-4),
        what,
        "log_prob(x, params) differs from distribution(params).log_prob(x)",
    )
    mean = part.mean(params)
    _expect(mean.shape == params.shape, what, f"mean gave shape {tuple(mean.shape)}")
    _expect(bool(torch.isfinite(mean).all()), what, "mean is not finite")
    try:
        reference = dist.mean
    except NotImplementedError:
        reference = None
    if reference is not None:
        _expect(torch.allclose(mean, reference, rtol=1e-5, atol=1e-5), what, "mean is wrong")
    (log_p.sum() + mean.sum()).backward()
    _expect(params.grad is not None, what, "no gradient reaches the decoder's output")
    _check_gradients(part, what)
    bad = x.detach().clone()
    bad.view(-1)[0] = float("nan")
    message = _refuses(lambda: part.log_prob(bad, params), (ValueError,))
    _expect(message, what, "log_prob accepted NaN data")
    rebuilt = _check_config(part, LIKELIHOODS, what)
    with torch.no_grad():
        _expect(
            torch.equal(rebuilt.log_prob(x, params), log_p.detach()),
            what,
            "the rebuilt likelihood gives another log_prob",
        )
    _check_normalised(spec, part, what)
    if model is not None:
        check_model(small_model(model, likelihood=spec, **parts), compile=compile)


def _check_normalised(spec: dict[str, Any], part: Likelihood, what: str) -> None:
    """One data dimension's density integrates (its mass function sums) to 1, in float64."""
    accepted, _ = _accepted(type(part))
    one = LIKELIHOODS.build({**spec, "event_shape": [1]} if "event_shape" in accepted else spec)
    one = one.double()
    params = torch.tensor([[-1.3], [0.0], [0.7]], dtype=torch.float64)
    with torch.no_grad():
        support = one.distribution(params).support
        if support is None:
            raise _fail(what, f"{type(one).__name__}.distribution(params) has no support")
        base = getattr(support, "base_constraint", support)
        if base.is_discrete:
            dist = one.distribution(params)
            dist = dist.base_dist if isinstance(dist, Independent) else dist
            values = dist.enumerate_support()  # (K, 3, 1)
            mass = torch.stack([one.log_prob(v, params) for v in values]).exp().sum(0)
        else:
            low = getattr(base, "lower_bound", -60.0)
            high = getattr(base, "upper_bound", 60.0)
            low = -60.0 if low is None or not math.isfinite(float(low)) else float(low)
            high = 60.0 if high is None or not math.isfinite(float(high)) else float(high)
            grid = torch.linspace(low, high, 40001, dtype=torch.float64)
            n = grid.numel()
            values = grid.repeat_interleave(3).unsqueeze(1)  # (n * 3, 1)
            density = one.log_prob(values, params.repeat(n, 1)).exp().view(n, 3)
            mass = torch.trapezoid(density, grid, dim=0)
    _expect(
        torch.allclose(mass, torch.ones_like(mass), atol=2e-3),
        what,
        f"p(x|z) of one dimension has total mass {mass.tolist()}, not 1",
    )


class _TinyEncoder(torch.nn.Module):
    """A linear diagonal-Gaussian encoder, for priors that need one (the VampPrior)."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(math.prod(input_shape), 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> Distribution:
        loc, log_scale = self.linear(x.flatten(1)).chunk(2, dim=-1)
        return Independent(Normal(loc, log_scale.clamp(-3, 3).exp()), 1)


def check_prior(
    prior: Spec | Prior,
    *,
    latent_dim: int = 3,
    input_shape: Sequence[int] = (1, 4, 4),
    model: str | None = None,
    compile: bool = False,
    **parts: Any,
) -> None:
    """Check a prior p(z) (a :class:`pyvae.Prior`, by name, dict or instance).

    Checks: ``forward()`` (``forward(encoder)`` for ``needs_encoder`` priors) gives a
    distribution with batch shape () and event shape (latent_dim,), whose samples have shape
    (n, latent_dim) and a finite ``log_prob`` of shape (n,) through which gradients reach every
    parameter; draws with a generator are reproducible; ``.double()`` gives float64 densities;
    the density integrates to 1 (Monte Carlo, float64, latent_dim 2); the config rebuilds it.
    With ``model``, also :func:`check_model` of that backbone with this prior.

    Args:
        prior: the prior.
        latent_dim: D (when given by name or dict).
        input_shape: the data shape, for priors that take one (the VampPrior's pseudo-inputs).
        model: a registered backbone to check it in, e.g. ``"mlp"``; ``None`` for the part alone.
        compile: passed to :func:`check_model`.
        **parts: other parts of that model (by name or dict), e.g. ``objective="ae"``.

    Raises:
        ConformanceError: the first broken rule.
        NotApplicable: the backbone refused the prior with a ConfigError at build time.
    """
    context = {"latent_dim": latent_dim, "input_shape": tuple(input_shape)}
    part, spec = _build_part(PRIORS, prior, context)
    what = f"prior {type(part).__name__} ({type(part).registered_name!r})"
    _expect(isinstance(part, Prior), what, "is not a pyvae.Prior")
    d = part.latent_dim
    shape = tuple(getattr(part, "input_shape", None) or input_shape)
    encoder = _TinyEncoder(shape, d)

    def p_of(p: Prior, enc: torch.nn.Module) -> Distribution:
        return p(enc) if p.needs_encoder else p()

    dist = p_of(part, encoder)
    _expect(isinstance(dist, Distribution), what, f"forward returned {type(dist).__name__}")
    _expect(
        tuple(dist.batch_shape) == () and tuple(dist.event_shape) == (d,),
        what,
        f"batch shape {tuple(dist.batch_shape)}, event shape {tuple(dist.event_shape)}; "
        f"expected () and ({d},)",
    )
    z = draw(dist, 5, generator=torch.Generator().manual_seed(3))
    again = draw(p_of(part, encoder), 5, generator=torch.Generator().manual_seed(3))
    _expect(tuple(z.shape) == (5, d), what, f"samples have shape {tuple(z.shape)}")
    _expect(torch.equal(z, again), what, "draws with a generator are not reproducible")
    if not part.needs_encoder:
        _expect(tuple(part.sample(4).shape) == (4, d), what, "prior.sample(4) has a wrong shape")
    log_p = dist.log_prob(z)
    _expect(log_p.shape == (5,), what, f"log_prob gave shape {tuple(log_p.shape)}")
    _expect(bool(torch.isfinite(log_p).all()), what, "log_prob of its own samples not finite")
    if log_p.requires_grad:
        log_p.sum().backward()
    _check_gradients(part, what)
    rebuilt = _check_config(part, PRIORS, what)
    with torch.no_grad():
        _expect(
            torch.equal(p_of(rebuilt, encoder).log_prob(z), log_p.detach()),
            what,
            "the rebuilt prior gives another log_prob",
        )
        wide = copy.deepcopy(rebuilt).double()
        density = p_of(wide, copy.deepcopy(encoder).double()).log_prob(z.double())
        _expect(density.dtype == torch.float64, what, "a float64 prior gave another dtype")
        small, _ = _build_part(PRIORS, {**spec, "latent_dim": 2}, {"input_shape": shape})
        small = small.double()
        small_encoder = _TinyEncoder(shape, 2).double()
        p2 = p_of(small, small_encoder)
        samples = p2.sample((20000,))
        _mc_total_mass(p2.log_prob(samples), samples, what, "p(z)")
    if model is not None:
        check_model(small_model(model, prior=spec, **parts), compile=compile)


def check_objective(
    objective: Spec | Objective,
    *,
    model: str = "mlp",
    batch_size: int = 4,
    compile: bool = False,
    **parts: Any,
) -> None:
    """Check an objective (a :class:`pyvae.Objective`, by name, dict or instance) in a small
    model of the backbone ``model`` (with ``parts``: ``posterior=``, ``prior=``, ...).

    Checks: the config rebuilds it; ``model.loss`` gives finite :class:`pyvae.LossTerms` whose
    ``recon``, ``kl`` and extra terms are per example, and whose gradient reaches every
    parameter (but the prior's, if the objective declares ``requires_prior = False``); a fixed
    seed gives the same loss; a ``beta`` override is either honoured or refused with a
    ValueError naming ``beta``; then :func:`check_model` of the whole model.

    Args:
        objective: the objective.
        model: a registered backbone.
        batch_size: B.
        compile: passed to :func:`check_model`.
        **parts: other parts of the model (by name or dict), e.g. ``num_classes=3``.

    Raises:
        ConformanceError: the first broken rule.
        NotApplicable: the model refused the objective with a ConfigError at build time.
    """
    spec = objective
    if isinstance(objective, str):
        spec = small_spec(OBJECTIVES, objective)
    built = small_model(model, objective=spec, **parts)
    part = built.objective
    what = f"objective {type(part).__name__} ({type(part).registered_name!r}) in {model!r}"
    _expect(isinstance(part, Objective), what, "is not a pyvae.Objective")
    _check_config(part, OBJECTIVES, what)
    x, y = example_batch(built, batch_size)
    built.train()
    torch.manual_seed(2)
    terms = _check_terms(built.loss(x, _call(built, x, y)), batch_size, x.dtype, what)
    torch.manual_seed(2)
    same = built.loss(x, _call(built, x, y))
    _expect(torch.equal(terms.loss, same.loss), what, "the same seed gave another loss")
    terms.loss.backward()
    _check_gradients(built, what, _exempt(built))
    built.zero_grad(set_to_none=True)
    try:
        weighted = built.loss(x, _call(built, x, y), beta=0.5)
    except ValueError as exc:
        _expect("beta" in str(exc), what, f"a beta override was refused without naming it: {exc}")
    else:
        _check_terms(weighted, batch_size, x.dtype, f"{what}, beta=0.5")
    check_model(built, batch_size=batch_size, compile=compile)


def check_corruption(corruption: Spec | Corruption) -> None:
    """Check a corruption of the denoising model (a :class:`pyvae.Corruption`, by name, dict or
    instance): it returns a tensor of the input's shape and dtype, random (two calls differ;
    ``torch.manual_seed`` makes it reproducible), and its config rebuilds it.

    Raises:
        ConformanceError: the first broken rule.
    """
    part, _ = _build_part(CORRUPTIONS, corruption, {})
    what = f"corruption {type(part).__name__} ({type(part).registered_name!r})"
    _expect(isinstance(part, Corruption), what, "is not a pyvae.Corruption")
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(0)
    first = part(x)
    _expect(first.shape == x.shape and first.dtype == x.dtype, what, "changes shape or dtype")
    _expect(not torch.equal(first, part(x)), what, "two calls gave the same corruption")
    torch.manual_seed(0)
    _expect(torch.equal(part(x), first), what, "not reproducible with torch.manual_seed")
    _expect(part(x.double()).dtype == torch.float64, what, "does not keep float64")
    _check_config(part, CORRUPTIONS, what)


def check_sampler(
    sampler: Spec, *, model: str = "ae", num_classes: int | None = None, **parts: Any
) -> None:
    """Check a latent sampler (:mod:`pyvae.samplers`, by name or dict) fitted to a small model
    of the backbone ``model`` (with ``num_classes`` and other ``parts``).

    Checks: an unfitted sampler refuses to sample; ``fit`` returns the sampler; codes have shape
    (n, latent_dim), the model's dtype, are finite and reproducible with a generator; decoded
    samples have the data's shape (with labels, for a conditional model); the state tensors
    have the shapes ``expected_shapes`` announces; the config is JSON-ready and rebuilds the
    sampler; ``save`` + ``pyvae.samplers.load`` draws the same codes.

    Args:
        sampler: the sampler's registered name or config dict (without the model).
        model: a registered backbone with continuous latents.
        num_classes: labels for a conditional model, or ``None``.
        **parts: other parts of the model (by name or dict).

    Raises:
        ConformanceError: the first broken rule.
        NotApplicable: the model or the sampler refused the combination with a ConfigError.
    """
    from pyvae.samplers import SAMPLERS, LatentSampler, load

    spec = small_spec(SAMPLERS, sampler) if isinstance(sampler, str) else dict(sampler)
    vae = small_model(model, num_classes=num_classes, **parts)
    try:
        part = SAMPLERS.build(spec, model=vae)
    except ConfigError as exc:
        raise NotApplicable(exc) from exc
    what = f"sampler {type(part).__name__} ({type(part).registered_name!r}) on {model!r}"
    _expect(isinstance(part, LatentSampler), what, "is not a pyvae.samplers.LatentSampler")
    message = _refuses(lambda: part.sample_latents(2), (RuntimeError, ValueError))
    _expect(message, what, "an unfitted sampler did not refuse to sample")
    x, y = example_batch(vae, 32)
    _expect(part.fit(x, y=y) is part, what, "fit did not return the sampler")
    z = part.sample_latents(5, generator=torch.Generator().manual_seed(4))
    again = part.sample_latents(5, generator=torch.Generator().manual_seed(4))
    d = vae.latent_dim
    _expect(tuple(z.shape) == (5, d), what, f"codes have shape {tuple(z.shape)}, not (5, {d})")
    _expect(z.dtype == x.dtype, what, f"codes have dtype {z.dtype}, the model {x.dtype}")
    _expect(bool(torch.isfinite(z).all()), what, "codes are not finite")
    _expect(torch.equal(z, again), what, "codes are not reproducible with a generator")
    labels = None if num_classes is None else torch.arange(5) % num_classes
    images = part.sample(5, y=labels, generator=torch.Generator().manual_seed(4))
    _expect(images.shape == (5, *vae.input_shape), what, f"samples {tuple(images.shape)}")
    _expect(bool(torch.isfinite(images).all()), what, "samples are not finite")
    shapes = {k: tuple(v.shape) for k, v in part.state_tensors().items()}
    _expect(
        shapes == {k: tuple(v) for k, v in part.expected_shapes().items()},
        what,
        f"state tensors {shapes} differ from expected_shapes {part.expected_shapes()}",
    )
    try:
        config = json.loads(json.dumps(part.config))
    except (TypeError, ValueError) as exc:
        raise _fail(what, f"config is not JSON-serialisable ({exc})") from exc
    _expect(
        SAMPLERS.build(config, model=vae).config == part.config,
        what,
        "its config does not rebuild the same config",
    )
    with tempfile.TemporaryDirectory() as folder:
        path = part.save(Path(folder) / "sampler.safetensors")
        loaded = load(path, vae)
    _expect(type(loaded) is type(part), what, f"load built a {type(loaded).__name__}")
    _expect(
        torch.equal(loaded.sample_latents(5, generator=torch.Generator().manual_seed(4)), z),
        what,
        "save + load draws other codes",
    )

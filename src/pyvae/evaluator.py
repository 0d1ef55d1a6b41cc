"""One call for everything pyvae measures about a model on a data set: :func:`evaluate`.

    report = pyvae.evaluate(model, eval_loader, k=1000)
    report.nll, report.nll_stderr, report.active_units, report.mutual_information
    report.to_dict()                          # JSON-ready

It reads the data once (plus one pass for the mutual information), in eval mode and without
gradients, restoring every submodule's mode afterwards; the ``k`` importance samples are decoded
in chunks, so memory is bounded for any ``k``. It only uses the public contract of a model
(``encode``, ``decode``, ``likelihood``, the prior and ``latent_dim``), so it works for every
registered model and for plug-ins. Numbers that a model does not define (a model without a prior
has no KL, no ELBO and no likelihood) are ``None`` and :attr:`EvaluationReport.notes` says why.

Definitions (all in nats, per example, averaged over the data unless said otherwise):

* ``recon = -log p(x|z)`` with one ``z ~ q(z|x)``; ``kl = KL(q(z|x) || p(z))`` (closed form when
  torch has one, else one Monte Carlo sample); ``neg_elbo = recon + kl``.
* ``nll = -log (1/k) sum_i w_i`` with ``w_i = p(x|z_i) p(z_i) / q(z_i|x)``, ``z_i ~ q(z|x)``
  (Burda et al., 2015); ``nll_stderr`` is the standard error of its mean over the data
  (sample standard deviation / sqrt(N)); ``bits_per_dim = nll / (D log 2)``.
* ``ess``: the mean over examples of the effective sample size of the importance weights,
  ``(sum_i w_i)^2 / sum_i w_i^2``, divided by ``k``: 1 when q(z|x) is the true posterior, near
  ``1/k`` when one sample dominates (the NLL estimate is then unreliable).
* ``kl_per_dim[d]``: the mean over the data of ``KL(q(z_d|x) || p(z_d))``, defined when both the
  posterior and the prior factorise over dimensions (diagonal Gaussians); it sums to ``kl``.
* ``active_units``: the number of dimensions whose posterior mean varies over the data by more
  than ``threshold`` (``Cov_x(E_q[z_d]) > 0.01``; Burda et al., 2015).
* ``mutual_information``: ``I(x; z)`` under ``q(x, z) = p_data(x) q(z|x)``,
  ``E_x E_q[log q(z|x)] - E_q(z)[log q(z)]``, with the aggregate posterior
  ``q(z) = (1/M) sum_m q(z|x_m)`` over M examples (Hoffman and Johnson, 2016; the estimator of
  He et al., 2019). It costs M^2 posterior evaluations, so it uses the first ``mi_examples``;
  it is at most ``log M``, and one sample per example makes it noisy: near ``I = 0`` it can come
  out slightly negative.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.distributions import Distribution, Independent, Normal

from pyvae.config import check_positive_int
from pyvae.kl import kl_divergence

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["EvaluationReport", "effective_sample_size", "evaluate"]

_MI_BLOCK = 1 << 22  # posterior log-densities evaluated at once for the MI (elements)


@dataclass
class EvaluationReport:
    """What :func:`evaluate` measured. Values are in nats per example, means over the data.

    Attributes:
        n: the number of examples.
        k: importance samples per example for the NLL (``None``: not computed).
        neg_elbo: the negative ELBO ``recon + kl``.
        recon: the reconstruction term ``-log p(x|z)``.
        kl: ``KL(q(z|x) || p(z))``.
        nll: the importance-sampled negative log-likelihood.
        nll_stderr: the standard error of ``nll`` as a mean over the data.
        ess: the mean over examples of the effective sample size divided by ``k``, in (0, 1].
        bits_per_dim: ``nll / (D log 2)``, D the number of data dimensions.
        active_units: the number of latent dimensions with ``Cov_x(E_q[z_d]) > threshold``.
        threshold: the active-unit threshold.
        latent_variance: ``Cov_x(E_q[z_d])`` per dimension, shape (latent_dim,).
        kl_per_dim: the mean KL per latent dimension, shape (latent_dim,).
        mutual_information: ``I(x; z)`` under q, estimated on ``mi_examples`` examples.
        mi_examples: the number of examples the mutual information used.
        seconds: the wall time of the evaluation.
        notes: what was not computed, and why.
        nll_per_example: the per-example NLL, shape (n,) (not in :meth:`to_dict`).
    """

    n: int
    k: int | None = None
    neg_elbo: float | None = None
    recon: float | None = None
    kl: float | None = None
    nll: float | None = None
    nll_stderr: float | None = None
    ess: float | None = None
    bits_per_dim: float | None = None
    active_units: int | None = None
    threshold: float = 0.01
    latent_variance: list[float] | None = None
    kl_per_dim: list[float] | None = None
    mutual_information: float | None = None
    mi_examples: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    nll_per_example: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, ints, lists and strings (``None`` where undefined): JSON-ready."""
        return {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name != "nll_per_example"
        }

    def format(self) -> str:
        """A short multi-line text table of the report, for a terminal."""

        def num(value: float | None, unit: str = " nats", digits: int = 3) -> str:
            return "not defined" if value is None else f"{value:.{digits}f}{unit}"

        lines = [f"{self.n} examples"]
        if self.neg_elbo is not None:
            lines.append(
                f"  negative ELBO      {num(self.neg_elbo)} (recon {num(self.recon, '')}, "
                f"KL {num(self.kl, '')})"
            )
        elif self.recon is not None:
            lines.append(f"  reconstruction     {num(self.recon)}")
        if self.nll is not None:
            lines.append(
                f"  {f'NLL (k={self.k})':<18} {num(self.nll)} "
                f"± {num(self.nll_stderr, '')} (standard error), "
                f"{num(self.bits_per_dim, ' bits/dim', 4)}"
            )
            lines.append(f"  ESS / k            {num(self.ess, '', 3)}")
        if self.active_units is not None and self.latent_variance is not None:
            lines.append(
                f"  active units       {self.active_units} of {len(self.latent_variance)} "
                f"(Cov_x E[z_d] > {self.threshold:g})"
            )
        if self.kl_per_dim is not None:
            shown = ", ".join(f"{v:.2f}" for v in self.kl_per_dim[:16])
            more = " ..." if len(self.kl_per_dim) > 16 else ""
            lines.append(f"  KL per dimension   {shown}{more}")
        if self.mutual_information is not None:
            lines.append(
                f"  I(x; z) under q    {num(self.mutual_information)} "
                f"(on {self.mi_examples} examples)"
            )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def effective_sample_size(log_weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The effective sample size ``(sum_i w_i)^2 / sum_i w_i^2`` of importance weights.

    Computed from log-weights, stably: ``exp(2 logsumexp(log w) - logsumexp(2 log w))``.
    It lies in [1, k] for k weights: k when they are equal, 1 when one dominates.

    Args:
        log_weights: log importance weights, the samples along ``dim``.
        dim: the dimension of the samples.

    Returns:
        The ESS, with ``dim`` reduced.
    """
    return torch.exp(
        2 * torch.logsumexp(log_weights, dim=dim) - torch.logsumexp(2 * log_weights, dim=dim)
    )


# -- the model's contract ------------------------------------------------------------------------


def _prior_distribution(model: BaseVAE) -> Distribution | None:
    """p(z), or None for a model without a prior (an autoencoder)."""
    prior = getattr(model, "prior", None)
    if prior is None:
        return None
    getter = getattr(model, "prior_distribution", None)
    if callable(getter):
        return getter()
    return prior()


def _conditional(model: BaseVAE) -> bool:
    return getattr(model, "num_classes", None) is not None


def _call(fn: Any, value: torch.Tensor, y: torch.Tensor | None) -> Any:
    return fn(value) if y is None else fn(value, y)


def _point(posterior: Distribution) -> torch.Tensor:
    """The deterministic point of q(z|x) (its mean; pyvae.posteriors.latent_point when there)."""
    try:
        from pyvae.posteriors import latent_point  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return posterior.mean
    return latent_point(posterior)


def _diagonal_normal(d: Distribution) -> Normal | None:
    if isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1:
        if isinstance(d.base_dist, Normal):
            return d.base_dist
    return None


def _kl(model: BaseVAE, out: Any, prior: Distribution) -> torch.Tensor:
    """Per-example KL of the model's regulariser (``model.kl`` when it has one)."""
    hook = getattr(model, "kl", None)
    if callable(hook):
        return hook(out)
    return kl_divergence(out.posterior, prior, z=out.z)


def _batches(
    model: BaseVAE,
    data: torch.Tensor | Iterable[Any],
    y: torch.Tensor | None,
    batch_size: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(x, y) batches on the model's device and dtype; y only for a conditional model."""
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.get_default_dtype()
    conditional = _conditional(model)
    if isinstance(data, torch.Tensor):
        if conditional and y is None:
            raise ValueError("y: the model is conditional; pass the labels with y=")
        if y is not None:
            if not isinstance(y, torch.Tensor) or y.shape[:1] != data.shape[:1]:
                raise ValueError(
                    f"y: expected a tensor with one label per example ({data.shape[0]}), got "
                    f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
                )
        for start in range(0, data.shape[0], batch_size):
            yb = None if y is None else y[start : start + batch_size].to(device)
            yield data[start : start + batch_size].to(device, dtype), yb
        return
    if y is not None:
        raise ValueError("y: pass labels with a tensor of inputs; a loader yields (x, y) batches")
    for batch in data:
        if isinstance(batch, (tuple, list)):
            x = batch[0]
            yb = batch[1] if conditional and len(batch) > 1 else None
        else:
            x, yb = batch, None
        if conditional and yb is None:
            raise ValueError("data: the model is conditional; the loader must yield (x, y) batches")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"data: expected batches of tensors, got {type(x).__name__}")
        yield x.to(device, dtype), (None if yb is None else torch.as_tensor(yb).to(device))


class _Mean:
    """A running sum (float64) of per-example values, for means and standard errors."""

    def __init__(self) -> None:
        self.total = 0.0
        self.squares = 0.0
        self.n = 0

    def add(self, values: torch.Tensor) -> None:
        v = values.detach().double()
        self.total += float(v.sum())
        self.squares += float((v * v).sum())
        self.n += v.numel()

    @property
    def mean(self) -> float:
        return self.total / self.n


def _log_weight_sums(
    model: BaseVAE,
    x: torch.Tensor,
    y: torch.Tensor | None,
    posterior: Distribution,
    prior: Distribution,
    k: int,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``logsumexp_i log w_i`` and ``logsumexp_i 2 log w_i`` over k samples, each (B,)."""
    batch = x.shape[0]
    per_chunk = max(1, chunk_size // batch)
    lse1: torch.Tensor | None = None
    lse2: torch.Tensor | None = None
    for start in range(0, k, per_chunk):
        n = min(per_chunk, k - start)
        z = posterior.sample((n,))  # (n, B, D)
        flat_z = z.reshape(n * batch, *z.shape[2:])
        flat_y = None if y is None else y.repeat(n, *([1] * (y.dim() - 1)))
        params = _call(model.decode, flat_z, flat_y)
        repeated = x.expand(n, *x.shape).reshape(n * batch, *x.shape[1:])
        log_px = model.likelihood.log_prob(repeated, params).view(n, batch)
        log_w = (log_px + prior.log_prob(z) - posterior.log_prob(z)).double()
        c1, c2 = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0)
        lse1 = c1 if lse1 is None else torch.logaddexp(lse1, c1)
        lse2 = c2 if lse2 is None else torch.logaddexp(lse2, c2)
    assert lse1 is not None and lse2 is not None
    return lse1, lse2


def _mutual_information(posteriors: list[Distribution], samples: list[torch.Tensor]) -> float:
    """``E log q(z|x) - E log q(z)`` with the aggregate posterior over the stored posteriors."""
    z = torch.cat(samples)  # (M, D): one z_m ~ q(z|x_m) per example
    m = z.shape[0]
    own = torch.cat([q.log_prob(s) for q, s in zip(posteriors, samples, strict=True)])
    log_qz = []
    block = max(1, _MI_BLOCK // max(1, m * z.shape[-1]))
    for start in range(0, m, block):
        zc = z[start : start + block].unsqueeze(1)  # (c, 1, D) against every posterior (B,)
        parts = [q.log_prob(zc) for q in posteriors]  # each (c, B)
        log_qz.append(torch.logsumexp(torch.cat(parts, dim=1).double(), dim=1) - math.log(m))
    return float(own.double().mean() - torch.cat(log_qz).mean())


def evaluate(
    model: BaseVAE,
    data: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | Iterable[Any],
    *,
    y: torch.Tensor | None = None,
    k: int | None = 1000,
    batch_size: int = 256,
    chunk_size: int = 4096,
    threshold: float = 0.01,
    mutual_information: bool = True,
    mi_examples: int = 2000,
    seed: int | None = 0,
    progress: bool = False,
) -> EvaluationReport:
    """Evaluate a model on a data set: bounds, likelihood, latent diagnostics, in one pass.

    See the module's documentation for the definitions. The model runs in eval mode without
    gradients (every submodule's mode is restored afterwards); the random draws come from a
    generator seeded with ``seed`` (the global random state is left as it was), so the same call
    gives the same numbers.

    Args:
        model: any pyvae model.
        data: inputs of shape (N, *input_shape), a pair ``(x, y)`` of inputs and labels, or an
            iterable of batches (a ``DataLoader``) that yields ``x`` or ``(x, y, ...)``; for a
            conditional model, the labels are the second element of each batch.
        y: the labels of a tensor of inputs, for a conditional model.
        k: importance samples per example for the NLL (``None``: skip the NLL and the ESS).
        batch_size: examples per batch when ``data`` is a tensor.
        chunk_size: the most samples (over a batch) decoded at once for the NLL.
        threshold: the active-unit threshold on ``Cov_x(E_q[z_d])``.
        mutual_information: estimate ``I(x; z)`` (M^2 posterior evaluations).
        mi_examples: M, the number of examples (the first ones) the mutual information uses.
        seed: the seed of the samples (``None``: the global random state).
        progress: show a tqdm progress bar (when tqdm is installed).

    Returns:
        An :class:`EvaluationReport`.
    """
    if isinstance(data, tuple):
        if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
            raise ValueError("data: a tuple must be (x, y), two tensors")
        if y is not None:
            raise ValueError("y: given twice (in data=(x, y) and as y=)")
        data, y = data
    if k is not None:
        check_positive_int("k", k)
    check_positive_int("batch_size", batch_size)
    check_positive_int("chunk_size", chunk_size)
    check_positive_int("mi_examples", mi_examples)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (math.isfinite(threshold) and threshold >= 0)
    ):
        raise ValueError(f"threshold: expected a finite number >= 0, got {threshold!r}")
    modes = [(module, module.training) for module in model.modules()]
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    started = time.perf_counter()
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if not isinstance(data, torch.Tensor):
                data = iter(data)  # a DataLoader draws its base seed here: before seeding
            if seed is not None:
                torch.manual_seed(seed)
            return _evaluate(
                model,
                data,
                y,
                k,
                batch_size,
                chunk_size,
                float(threshold),
                mutual_information,
                mi_examples,
                progress,
                started,
            )
    finally:
        for module, mode in modes:
            module.training = mode


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(desc="evaluate", unit="batch", leave=False)


def _evaluate(
    model: BaseVAE,
    data: torch.Tensor | Iterable[Any],
    y: torch.Tensor | None,
    k: int | None,
    batch_size: int,
    chunk_size: int,
    threshold: float,
    mutual_information: bool,
    mi_examples: int,
    progress: bool,
    started: float,
) -> EvaluationReport:
    prior = _prior_distribution(model)
    notes: list[str] = []
    recon, kl, nll = _Mean(), _Mean(), _Mean()
    ess_total = 0.0
    nll_values: list[torch.Tensor] = []
    point_sum: torch.Tensor | None = None
    point_squares: torch.Tensor | None = None
    kl_dims: torch.Tensor | None = None
    per_dim = True
    mi_posteriors: list[Distribution] = []
    mi_samples: list[torch.Tensor] = []
    mi_seen = 0
    defined = {"kl": prior is not None, "nll": prior is not None and k is not None}
    bar = _progress_bar(progress)
    n = 0
    try:
        for x, yb in _batches(model, data, y, batch_size):
            n += x.shape[0]
            out = _call(model, x, yb)
            posterior = out.posterior
            recon.add(-model.likelihood.log_prob(x, out.params))
            point = _point(posterior).double().reshape(x.shape[0], -1)
            point_sum = point.sum(0) if point_sum is None else point_sum + point.sum(0)
            sq = (point * point).sum(0)
            point_squares = sq if point_squares is None else point_squares + sq
            if prior is not None and defined["kl"]:
                try:
                    kl.add(_kl(model, out, prior))
                except NotImplementedError as exc:
                    defined["kl"] = False
                    notes.append(f"KL not computed: {exc}")
                q1, p1 = _diagonal_normal(out.posterior), _diagonal_normal(prior)
                if per_dim and q1 is not None and p1 is not None:
                    dims = torch.distributions.kl_divergence(q1, p1).double().sum(0)
                    kl_dims = dims if kl_dims is None else kl_dims + dims
                else:
                    per_dim = False
            if defined["nll"]:
                assert prior is not None and k is not None
                try:
                    lse1, lse2 = _log_weight_sums(model, x, yb, posterior, prior, k, chunk_size)
                except NotImplementedError as exc:
                    defined["nll"] = False
                    notes.append(f"NLL not computed: {exc}")
                else:
                    values = -(lse1 - math.log(k))
                    nll.add(values)
                    nll_values.append(values.float().cpu())
                    ess_total += float(torch.exp(2 * lse1 - lse2).sum()) / k
            if mutual_information and prior is not None and mi_seen < mi_examples:
                take = min(x.shape[0], mi_examples - mi_seen)
                q = (
                    posterior
                    if take == x.shape[0]
                    else _call(model.encode, x[:take], None if yb is None else yb[:take])
                )
                try:
                    mi_samples.append(q.sample())
                    mi_posteriors.append(q)
                    mi_seen += take
                except NotImplementedError:
                    mutual_information = False
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if n == 0:
        raise ValueError("data: no examples to evaluate")
    report = EvaluationReport(n=n, k=k if defined["nll"] else None, threshold=threshold)
    report.recon = recon.mean
    if prior is None:
        notes.append(
            "the model has no prior p(z): the KL, the ELBO, the likelihood and the mutual "
            "information are not defined"
        )
    if defined["kl"] and prior is not None:
        report.kl = kl.mean
        report.neg_elbo = report.recon + report.kl
    if defined["nll"] and nll.n:
        report.nll = nll.mean
        values = torch.cat(nll_values).double()
        report.nll_stderr = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else None
        if n == 1:
            notes.append("one example: no standard error")
        report.ess = ess_total / n
        size = math.prod(model.input_shape)
        report.bits_per_dim = report.nll / (size * math.log(2))
        report.nll_per_example = values.float()
    elif k is None:
        notes.append("NLL not computed (k=None)")
    assert point_sum is not None and point_squares is not None
    mean = point_sum / n
    variance = (point_squares - n * mean * mean) / max(1, n - 1)
    variance = variance.clamp_min(0)
    report.latent_variance = [float(v) for v in variance]
    report.active_units = int((variance > threshold).sum())
    if kl_dims is not None and per_dim:
        report.kl_per_dim = [float(v) for v in kl_dims / n]
    elif prior is not None:
        notes.append(
            "KL per dimension not defined: the posterior and the prior do not both factorise "
            "into independent Gaussians"
        )
    if mutual_information and mi_posteriors:
        try:
            report.mutual_information = _mutual_information(mi_posteriors, mi_samples)
            report.mi_examples = mi_seen
        except (NotImplementedError, RuntimeError) as exc:
            notes.append(f"mutual information not computed: {exc}")
    report.notes = notes
    report.seconds = time.perf_counter() - started
    return report

"""An optional training layer: :func:`fit` runs the epochs; callbacks add diagnostics and logs.

Your own loop stays first-class: ``model.loss(x, model(x))`` and an optimizer are all a model
needs, and every callback here can also be called from a plain loop (see the docs page
"Training loops"). :func:`fit` is that loop, written once, with the pieces people add to it::

    history = pyvae.training.fit(
        model, train_loader, epochs=20, lr=1e-3,
        beta=lambda step: pyvae.linear_warmup(step, 1000),      # a KL schedule
        eval_data=eval_images,
        callbacks=[LatentDiagnostics(eval_images), GradientNorm(), NaNGuard("skip"),
                   CSVLogger("runs/a/history.csv"), TensorBoardLogger("runs/a/tb")],
    )

Each epoch appends one row (a dict of floats) to the history: ``epoch``, ``step``, ``beta`` (the KL
weight used: fit's, else the objective's, where it has one), ``train_loss``, ``train_recon``,
``train_kl`` and ``train_neg_elbo = train_recon + train_kl`` (means over the epoch's examples,
nats), the ``eval_neg_elbo``, ``eval_recon``, ``eval_kl`` of ``eval_data`` and whatever the
callbacks add.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from pyvae.config import check_positive_int

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE
    from pyvae.outputs import LossTerms

__all__ = [
    "CSVLogger",
    "Callback",
    "GradientNorm",
    "JSONLogger",
    "LatentDiagnostics",
    "NaNGuard",
    "NonFiniteLossError",
    "PosteriorCollapseWarning",
    "TensorBoardLogger",
    "TrainState",
    "fit",
    "gradient_norm",
]

Schedule = float | Callable[[int], float]


class PosteriorCollapseWarning(UserWarning):
    """Fewer latent dimensions are active than the threshold of :class:`LatentDiagnostics`."""


class NonFiniteLossError(FloatingPointError):
    """A loss term or gradient is NaN or infinite (raised by :class:`NaNGuard`)."""


@dataclass
class TrainState:
    """What callbacks see and may change while :func:`fit` runs.

    Attributes:
        model: the model being trained.
        optimizer: its optimizer.
        epochs: the number of epochs asked for.
        epoch: the current epoch, from 1.
        step: optimizer steps taken so far (skipped steps not counted).
        beta: the KL weight passed to ``model.loss`` this step (``None``: the objective's own).
        row: the current epoch's history row; callbacks add their numbers to it.
        history: the rows of the finished epochs.
        stop: set to True to stop after the current step (the epoch's row is still written).
        skip_step: set to True (in ``on_loss`` or ``on_backward``) to skip this optimizer step.
        eval_report: the :class:`pyvae.EvaluationReport` of ``eval_data`` this epoch (None
            without ``eval_data``).
    """

    model: BaseVAE
    optimizer: torch.optim.Optimizer
    epochs: int
    epoch: int = 0
    step: int = 0
    beta: float | None = None
    row: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False
    skip_step: bool = False
    eval_report: Any = None


class Callback:
    """Hooks that :func:`fit` calls; override the ones you need (all do nothing by default)."""

    def on_train_begin(self, state: TrainState) -> None:
        """Before the first epoch."""

    def on_loss(self, state: TrainState, terms: LossTerms) -> None:
        """After the loss of a batch is computed, before ``backward``."""

    def on_backward(self, state: TrainState) -> None:
        """After ``backward``, before the optimizer step (gradients are set)."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After an epoch's training and evaluation; add numbers to ``state.row``."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch (also when training stopped early or failed)."""


# -- training ------------------------------------------------------------------------------------


def _split_batch(batch: Any, conditional: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, (tuple, list)):
        x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        x, y = batch, None
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"train: expected batches of tensors, got {type(x).__name__}")
    if conditional and y is None:
        raise ValueError("train: the model is conditional; the loader must yield (x, y) batches")
    return x, (y if conditional else None)


def _beta(beta: Schedule, step: int) -> float:
    value = beta(step) if callable(beta) else beta
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"beta: expected a finite number >= 0 (or a schedule), got {value!r}")
    return float(value)


def _objective_beta(model: BaseVAE, terms: LossTerms | None) -> float | None:
    """The KL weight the model's objective used at its last step (its scheduled ``beta``
    extra, else its ``beta`` attribute), for the history row; ``None`` if it has none."""
    extras = getattr(terms, "extras", None) or {}
    if isinstance(extras.get("beta"), torch.Tensor):
        return float(extras["beta"].detach().reshape(-1)[0])
    weight = getattr(getattr(model, "objective", None), "beta", None)
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        return float(weight)
    return None


def _loader(data: torch.Tensor | Iterable[Any], batch_size: int, seed: int | None) -> Any:
    if isinstance(data, torch.Tensor):
        from torch.utils.data import DataLoader, TensorDataset

        generator = None if seed is None else torch.Generator().manual_seed(seed)
        return DataLoader(
            TensorDataset(data), batch_size=batch_size, shuffle=True, generator=generator
        )
    return data


def fit(
    model: BaseVAE,
    train: torch.Tensor | Iterable[Any],
    *,
    epochs: int = 10,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    beta: Schedule | None = None,
    eval_data: torch.Tensor | Iterable[Any] | None = None,
    callbacks: Sequence[Callback] = (),
    batch_size: int = 128,
    seed: int | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train ``model`` for ``epochs`` epochs and return the history (one row per epoch).

    Each step computes ``terms = model.loss(x, model(x), beta=...)`` (``model(x, y)`` for a
    conditional model), calls ``terms.loss.backward()`` and steps the optimizer, with the
    callbacks' hooks in between. After each epoch, ``eval_data`` (if given) is scored with
    :func:`pyvae.evaluate` (``k=None``: the ELBO terms only) and the row goes to the callbacks.

    Args:
        model: the model, on the device to train on; it is left in train mode.
        train: a ``DataLoader`` (or any iterable of ``x`` or ``(x, y, ...)`` batches), or a tensor
            of inputs (shuffled into batches of ``batch_size``); batches move to the model's
            device.
        epochs: the number of passes over ``train``.
        optimizer: the optimizer (default: Adam over ``model.parameters()`` with ``lr``).
        lr: the learning rate of the default optimizer.
        beta: the KL weight passed to ``model.loss``: ``None`` (default) keeps the objective's
            own (its ``beta`` and schedule, chosen at build time; objectives without a KL weight,
            such as ``"ae"`` and ``"iwae"``, need ``None``), a number, or a schedule
            ``step -> weight`` such as ``lambda s: pyvae.linear_warmup(s, 1000)``.
        eval_data: held-out data scored after each epoch: inputs, an ``(x, y)`` pair of tensors
            (conditional models), or a loader.
        callbacks: :class:`Callback` instances, called in order.
        batch_size: the batch size when ``train`` is a tensor.
        seed: the seed of the shuffling when ``train`` is a tensor.
        progress: show a tqdm progress bar (when tqdm is installed).

    Returns:
        The history: a list of dicts of floats, one per epoch.
    """
    from pyvae.evaluator import _call, _conditional, evaluate

    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    if optimizer is None:
        if (
            isinstance(lr, bool)
            or not isinstance(lr, (int, float))
            or not (math.isfinite(lr) and lr > 0)
        ):
            raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if beta is not None:
        _beta(beta, 0)  # a bad schedule fails before training
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.get_default_dtype()
    conditional = _conditional(model)
    loader = _loader(train, batch_size, seed)
    try:
        total = epochs * len(loader)
    except TypeError:
        total = None
    bar = _progress_bar(progress, total)
    state = TrainState(model=model, optimizer=optimizer, epochs=epochs)
    guards = [cb for cb in callbacks if isinstance(cb, NaNGuard)]
    model.train()
    for cb in callbacks:
        cb.on_train_begin(state)
    try:
        for epoch in range(1, epochs + 1):
            state.epoch, state.row = epoch, {}
            sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
            seen = 0
            last: LossTerms | None = None
            for batch in loader:
                x, y = _split_batch(batch, conditional)
                x = x.to(device, dtype)
                y = None if y is None else torch.as_tensor(y).to(device)
                state.beta = None if beta is None else _beta(beta, state.step)
                state.skip_step = False
                out = _call(model, x, y)
                try:
                    terms: LossTerms | None = model.loss(x, out, beta=state.beta)
                except FloatingPointError as exc:  # the model's own check (validation on)
                    if not guards:
                        raise
                    terms = None
                    for guard in guards:
                        guard.fail_step(state, f"{exc} (step {state.step}, epoch {epoch})")
                if terms is not None:
                    last = terms
                    for cb in callbacks:
                        cb.on_loss(state, terms)
                optimizer.zero_grad(set_to_none=True)
                if terms is None:
                    state.skip_step = True
                if not state.skip_step and terms is not None:
                    terms.loss.backward()
                    for cb in callbacks:
                        cb.on_backward(state)
                if state.skip_step or terms is None:
                    optimizer.zero_grad(set_to_none=True)
                else:
                    optimizer.step()
                    state.step += 1
                    b = x.shape[0]
                    sums["loss"] += float(terms.loss.detach()) * b
                    sums["recon"] += float(terms.recon.detach().sum())
                    sums["kl"] += float(terms.kl.detach().sum())
                    seen += b
                if bar is not None:
                    bar.update(1)
                    bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
                    if terms is not None:
                        bar.set_postfix(
                            loss=f"{float(terms.loss.detach()):.2f}",
                            recon=f"{float(terms.recon.detach().mean()):.2f}",
                            kl=f"{float(terms.kl.detach().mean()):.2f}",
                            refresh=False,
                        )
                if state.stop:
                    break
            row: dict[str, float] = {"epoch": epoch, "step": state.step}
            row_beta = state.beta if state.beta is not None else _objective_beta(model, last)
            if row_beta is not None:
                row["beta"] = row_beta
            row.update({f"train_{k}": (v / seen if seen else math.nan) for k, v in sums.items()})
            row["train_neg_elbo"] = row["train_recon"] + row["train_kl"]
            if eval_data is not None:
                report = evaluate(model, eval_data, k=None, mutual_information=False, seed=epoch)
                state.eval_report = report
                row.update(
                    {
                        "eval_neg_elbo": math.nan if report.neg_elbo is None else report.neg_elbo,
                        "eval_recon": report.recon if report.recon is not None else math.nan,
                        "eval_kl": math.nan if report.kl is None else report.kl,
                    }
                )
            state.row = row
            for cb in callbacks:
                cb.on_epoch_end(state)
            state.history.append(state.row)
            if state.stop:
                break
    finally:
        if bar is not None:
            bar.close()
        for cb in callbacks:
            cb.on_train_end(state)
    return state.history


def _progress_bar(enabled: bool, total: int | None) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print("(install tqdm, or pip install 'pyvae[viz]', for a progress bar)", file=sys.stderr)
        return None
    return tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr, mininterval=0.5)


# -- diagnostics ---------------------------------------------------------------------------------


def gradient_norm(parameters: Iterable[torch.nn.Parameter]) -> float:
    """The L2 norm of all gradients together (parameters without a gradient are skipped)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(
        torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    )


class GradientNorm(Callback):
    """Record the global gradient norm of each step (and optionally clip it).

    Adds ``grad_norm`` (mean over the epoch's steps) and ``grad_norm_max`` to the history. From
    your own loop, call :func:`gradient_norm` after ``backward``.

    Args:
        max_norm: clip the gradients to this global norm (``torch.nn.utils.clip_grad_norm_``)
            after measuring them; ``None``: no clipping.
    """

    def __init__(self, max_norm: float | None = None) -> None:
        if max_norm is not None and not (
            isinstance(max_norm, (int, float)) and not isinstance(max_norm, bool) and max_norm > 0
        ):
            raise ValueError(f"max_norm: expected a number > 0 or None, got {max_norm!r}")
        self.max_norm = max_norm
        self._norms: list[float] = []

    def on_backward(self, state: TrainState) -> None:
        norm = gradient_norm(state.model.parameters())
        self._norms.append(norm)
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.max_norm)

    def on_epoch_end(self, state: TrainState) -> None:
        if self._norms:
            state.row["grad_norm"] = sum(self._norms) / len(self._norms)
            state.row["grad_norm_max"] = max(self._norms)
        self._norms = []


class NaNGuard(Callback):
    """Stop a NaN or infinite loss from silently ruining a run.

    After each loss, it checks the per-example terms (``recon``, ``kl``, then any extra terms,
    then ``loss``); after ``backward``, the gradients. On the first non-finite value it names the
    term (or parameter), the epoch and the step, and then, by ``action``: ``"raise"`` a
    :class:`NonFiniteLossError`; ``"skip"`` the optimizer step (counted in the history as
    ``skipped_steps``; after ``max_skips`` skips in a row it raises); or ``"stop"`` training after
    this epoch's row. From your own loop, call :meth:`check` on the loss terms.

    A model's ``loss`` raises ``FloatingPointError`` itself when pyvae's argument validation is
    on and the scalar loss is not finite (its message names the term); :func:`fit` hands that to
    the guard too, so the action is the same whether validation is on or off.

    Args:
        action: ``"raise"``, ``"skip"`` or ``"stop"``.
        max_skips: with ``"skip"``, raise after this many consecutive skipped steps.
    """

    def __init__(
        self, action: Literal["raise", "skip", "stop"] = "raise", *, max_skips: int = 10
    ) -> None:
        if action not in ("raise", "skip", "stop"):
            raise ValueError(f"action: expected 'raise', 'skip' or 'stop', got {action!r}")
        self.action = action
        self.max_skips = check_positive_int("max_skips", max_skips)
        self.skipped = 0
        self._in_a_row = 0
        self.last_message: str | None = None

    @staticmethod
    def first_nonfinite(terms: LossTerms) -> str | None:
        """The name of the first non-finite loss term (``None`` when all are finite)."""
        named: list[tuple[str, Any]] = [("recon", terms.recon), ("kl", terms.kl)]
        extras = getattr(terms, "extras", None)
        if isinstance(extras, dict):
            named += sorted(extras.items())
        named.append(("loss", terms.loss))
        for name, value in named:
            if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
                return name
        return None

    def check(self, terms: LossTerms, *, step: int, epoch: int | None = None) -> bool:
        """True when every loss term is finite; otherwise act (raise, or return False)."""
        name = self.first_nonfinite(terms)
        if name is None:
            self._in_a_row = 0
            return True
        where = f"step {step}" + ("" if epoch is None else f" (epoch {epoch})")
        self._fail(f"the loss term {name!r} is not finite at {where}")
        return False

    def _fail(self, message: str) -> None:
        self.last_message = message
        if self.action == "raise":
            raise NonFiniteLossError(f"{message}; lower the learning rate or check the inputs")
        if self.action == "skip":
            self.skipped += 1
            self._in_a_row += 1
            if self._in_a_row > self.max_skips:
                raise NonFiniteLossError(
                    f"{message}; {self._in_a_row} steps in a row were not finite (max_skips="
                    f"{self.max_skips})"
                )
        warnings.warn(f"pyvae.NaNGuard: {message}; {self.action}", RuntimeWarning, stacklevel=3)

    def fail_step(self, state: TrainState, message: str) -> None:
        """Act on a non-finite step that :func:`fit` detected (the model's own loss check)."""
        self._fail(message)
        state.skip_step = True
        state.stop = state.stop or self.action == "stop"

    def on_loss(self, state: TrainState, terms: LossTerms) -> None:
        if not self.check(terms, step=state.step, epoch=state.epoch):
            state.skip_step = True
            state.stop = state.stop or self.action == "stop"

    def on_backward(self, state: TrainState) -> None:
        for name, p in state.model.named_parameters():
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                self._fail(
                    f"the gradient of {name!r} is not finite at step {state.step} "
                    f"(epoch {state.epoch})"
                )
                state.skip_step = True
                state.stop = state.stop or self.action == "stop"
                return

    def on_epoch_end(self, state: TrainState) -> None:
        state.row["skipped_steps"] = float(self.skipped)


class LatentDiagnostics(Callback):
    """Per-epoch KL per dimension and active units on held-out data; warns on posterior collapse.

    Adds ``active_units``, ``kl_dim_0`` ... ``kl_dim_{D-1}`` (when the model defines them) and
    ``mutual_information`` (with ``mutual_information=True``) to the history, using
    :func:`pyvae.evaluate` with ``k=None``. Warns with a :class:`PosteriorCollapseWarning` when
    fewer than ``min_active`` dimensions are active. From your own loop, call
    :meth:`measure` (it returns the :class:`pyvae.EvaluationReport`).

    Args:
        data: held-out inputs (tensor or loader); a few hundred examples are enough. ``None``:
            inside :func:`fit`, reuse its per-epoch evaluation of ``eval_data`` (no second pass).
        threshold: the active-unit threshold on ``Cov_x(E_q[z_d])``.
        min_active: warn when fewer dimensions are active (default 1: all collapsed; 0: never).
        every: measure every this many epochs.
        mutual_information: also estimate I(x; z) (M^2 posterior evaluations).
    """

    def __init__(
        self,
        data: torch.Tensor | Iterable[Any] | None = None,
        *,
        threshold: float = 0.01,
        min_active: int = 1,
        every: int = 1,
        mutual_information: bool = False,
    ) -> None:
        self.data = data
        self.threshold = threshold
        if isinstance(min_active, bool) or not isinstance(min_active, int) or min_active < 0:
            raise ValueError(f"min_active: expected an integer >= 0, got {min_active!r}")
        self.min_active = min_active
        self.every = check_positive_int("every", every)
        self.mutual_information = mutual_information
        self.warned = False

    def measure(self, model: BaseVAE) -> Any:
        """Evaluate the latent statistics now; warns on collapse. Returns the report."""
        from pyvae.evaluator import evaluate

        if self.data is None:
            raise ValueError("LatentDiagnostics: no data to measure on (pass data=)")
        report = evaluate(
            model,
            self.data,
            k=None,
            threshold=self.threshold,
            mutual_information=self.mutual_information,
        )
        self._check(model, report)
        return report

    def _check(self, model: BaseVAE, report: Any) -> None:
        if report.threshold != self.threshold:
            active = sum(v > self.threshold for v in report.latent_variance or [])
        else:
            active = report.active_units
        report.active_units = active
        if active is not None and active < self.min_active:
            self.warned = True
            warnings.warn(
                f"posterior collapse: {active} of {model.latent_dim} latent "
                f"dimensions are active (Cov_x E[z_d] > {self.threshold:g}); the decoder "
                f"ignores the code. Try KL warm-up (beta schedule), a smaller beta or free bits",
                PosteriorCollapseWarning,
                stacklevel=3,
            )

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch % self.every and state.epoch != state.epochs:
            return
        if self.data is None and state.eval_report is not None and not self.mutual_information:
            report = state.eval_report
            self._check(state.model, report)
        else:
            report = self.measure(state.model)
        state.row["active_units"] = float(report.active_units)
        for d, value in enumerate(report.kl_per_dim or []):
            state.row[f"kl_dim_{d}"] = value
        if report.mutual_information is not None:
            state.row["mutual_information"] = report.mutual_information


# -- logging -------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _columns(history: list[dict[str, float]]) -> list[str]:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    return columns


class CSVLogger(Callback):
    """Write the history to a CSV file after every epoch (one row per epoch; the columns are the
    union of the rows' keys, missing values empty)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_epoch_end(self, state: TrainState) -> None:
        rows = [*state.history, state.row]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=_columns(rows), restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


class JSONLogger(Callback):
    """Write the history to a JSON file (a list of rows) after every epoch; non-finite numbers
    are written as ``null`` (standard JSON)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_epoch_end(self, state: TrainState) -> None:
        rows = [
            {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in r.items()}
            for r in [*state.history, state.row]
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, json.dumps(rows, indent=2, allow_nan=False) + "\n")


class TensorBoardLogger(Callback):
    """Write each epoch's numbers as TensorBoard scalars (needs the ``tensorboard`` package:
    ``pip install 'pyvae[tensorboard]'``); the step of each point is the epoch.

    Args:
        log_dir: the folder of the event files.
        every_step: also write the training loss of every step (tag ``step/loss``).
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, every_step: bool = False) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "TensorBoardLogger needs the tensorboard package: pip install 'pyvae[tensorboard]'"
            ) from exc
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.every_step = every_step

    def on_loss(self, state: TrainState, terms: LossTerms) -> None:
        if self.every_step:
            self.writer.add_scalar("step/loss", float(terms.loss.detach()), state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        for key, value in state.row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, float(value), state.epoch)
        self.writer.flush()

    def on_train_end(self, state: TrainState) -> None:
        self.writer.close()

"""pyvae.training: fit, its callbacks (diagnostics, NaN guard, gradient norms) and loggers."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pyvae
from pyvae.training import (
    Callback,
    CSVLogger,
    GradientNorm,
    JSONLogger,
    LatentDiagnostics,
    NaNGuard,
    NonFiniteLossError,
    PosteriorCollapseWarning,
    TensorBoardLogger,
    TrainState,
    fit,
    gradient_norm,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(latent_dim: int = 3) -> pyvae.BaseVAE:
    torch.manual_seed(0)
    return pyvae.build("mlp", input_shape=(1, 4, 4), latent_dim=latent_dim, hidden_dims=(16,))


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 4, 4, generator=g) > 0.5).float()


def test_fit_matches_a_plain_loop_exactly() -> None:
    """The same run written with fit and with a plain loop ends with the same weights."""
    data = images(64)
    loader = DataLoader(TensorDataset(data), batch_size=16)  # no shuffling: same batches
    schedule = lambda step: pyvae.linear_warmup(step, 6)  # noqa: E731

    a = tiny()
    torch.manual_seed(1)
    history = fit(a, loader, epochs=3, lr=1e-2, beta=schedule)

    b = tiny()
    optimizer = torch.optim.Adam(b.parameters(), lr=1e-2)
    torch.manual_seed(1)
    step = 0
    for _ in range(3):
        for (x,) in loader:
            terms = b.loss(x, b(x), beta=schedule(step))
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizer.step()
            step += 1
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert [row["step"] for row in history] == [4, 8, 12]
    assert history[-1]["beta"] == schedule(11) == 1.0
    assert history[0]["beta"] == schedule(3)
    assert a.training


def test_history_rows_and_eval_terms() -> None:
    model, data = tiny(), images(64)
    history = fit(
        model, data, epochs=2, batch_size=16, seed=0, eval_data=images(32, seed=1), beta=1.0
    )
    row = history[-1]
    assert set(row) >= {
        "epoch",
        "step",
        "beta",
        "train_loss",
        "train_recon",
        "train_kl",
        "eval_neg_elbo",
        "eval_recon",
        "eval_kl",
    }
    assert row["train_loss"] == pytest.approx(row["train_recon"] + row["train_kl"], rel=1e-5)
    assert row["eval_neg_elbo"] == pytest.approx(row["eval_recon"] + row["eval_kl"])
    assert row["epoch"] == 2 and row["step"] == 8


def test_latent_diagnostics_counts_active_units_and_warns_on_collapse() -> None:
    model, held_out = tiny(latent_dim=4), images(64, seed=2)
    diagnostics = LatentDiagnostics(held_out, min_active=1)
    with torch.no_grad():  # plant a dead encoder: every input gets the same posterior
        for p in model.encoder.parameters():
            p.zero_()
    with pytest.warns(PosteriorCollapseWarning, match="0 of 4 latent dimensions are active"):
        report = diagnostics.measure(model)
    assert report.active_units == 0 and diagnostics.warned
    fresh = tiny(latent_dim=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PosteriorCollapseWarning)  # an untrained model may warn
        history = fit(fresh, images(64), epochs=1, callbacks=[LatentDiagnostics(held_out)])
    expected = pyvae.evaluate(fresh, held_out, k=None, mutual_information=False)
    assert history[0]["active_units"] == expected.active_units
    assert [history[0][f"kl_dim_{d}"] for d in range(4)] == pytest.approx(expected.kl_per_dim)


def test_gradient_norm_and_clipping() -> None:
    model = tiny()
    x = images(16)
    model.loss(x, model(x)).loss.backward()
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert gradient_norm(model.parameters()) == pytest.approx(float(expected), rel=1e-6)
    state = TrainState(model=model, optimizer=torch.optim.SGD(model.parameters()), epochs=1)
    clip = GradientNorm(max_norm=1e-3)
    clip.on_backward(state)
    assert gradient_norm(model.parameters()) == pytest.approx(1e-3, rel=1e-4)
    clip.on_epoch_end(state)
    assert state.row["grad_norm"] == pytest.approx(float(expected), rel=1e-6)
    history = fit(tiny(), images(32), epochs=1, batch_size=8, callbacks=[GradientNorm()])
    assert 0 < history[0]["grad_norm"] <= history[0]["grad_norm_max"]


class PoisonedMLP(pyvae.MLPVAE):
    """Decodes to NaN for batches of all-zero images."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        params = super().decode(z)
        return params * math.nan if getattr(self, "_poison", False) else params

    def forward(self, x: torch.Tensor) -> pyvae.VAEOutput:  # type: ignore[override]
        self._poison = bool((x == 0).all())
        return super().forward(x)


def poisoned_run(guard: NaNGuard) -> list[dict[str, float]]:
    torch.manual_seed(0)
    model = PoisonedMLP(input_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,))
    data = images(48)
    data[16:32] = 0  # the second batch
    return fit(model, DataLoader(TensorDataset(data), batch_size=16), epochs=2, callbacks=[guard])


@pytest.mark.parametrize("validate", [True, False])
def test_nan_guard_raise_names_the_term_and_step(validate: bool) -> None:
    pyvae.set_validate_args(validate)
    try:
        with pytest.raises(NonFiniteLossError, match=r"recon.*step 1"):
            poisoned_run(NaNGuard("raise"))
    finally:
        pyvae.set_validate_args(True)


def test_nan_guard_skip_and_stop() -> None:
    with pytest.warns(RuntimeWarning, match="step 1"):
        history = poisoned_run(NaNGuard("skip"))
    assert [row["step"] for row in history] == [2, 4]  # the poisoned batch is skipped each epoch
    assert history[-1]["skipped_steps"] == 2
    assert all(math.isfinite(row["train_loss"]) for row in history)
    with pytest.warns(RuntimeWarning):
        history = poisoned_run(NaNGuard("stop"))
    assert len(history) == 1 and history[0]["step"] == 1


def test_nan_guard_check_from_a_plain_loop() -> None:
    guard = NaNGuard("skip")
    model, x = tiny(), images(8)
    terms = model.loss(x, model(x))
    assert guard.check(terms, step=0)
    terms.kl = terms.kl * math.inf
    with pytest.warns(RuntimeWarning, match="'kl' is not finite at step 5"):
        assert not guard.check(terms, step=5)


def test_csv_and_json_logs_read_back(tmp_path: Path) -> None:
    history = fit(
        tiny(),
        images(32),
        epochs=2,
        batch_size=16,
        callbacks=[CSVLogger(tmp_path / "h.csv"), JSONLogger(tmp_path / "h.json")],
    )
    with open(tmp_path / "h.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    logged = json.loads((tmp_path / "h.json").read_text())
    assert len(rows) == len(logged) == len(history) == 2
    for row, from_csv, from_json in zip(history, rows, logged, strict=True):
        assert {k: float(v) for k, v in from_csv.items()} == pytest.approx(row)
        assert from_json == pytest.approx(row)
    assert not list(tmp_path.glob("*.tmp"))


def test_tensorboard_events_read_back(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = fit(
        tiny(), images(32), epochs=3, batch_size=16, callbacks=[TensorBoardLogger(tmp_path)]
    )
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert "train_loss" in events.Tags()["scalars"]
    points = events.Scalars("train_loss")
    assert [p.step for p in points] == [1, 2, 3]
    assert [p.value for p in points] == pytest.approx([r["train_loss"] for r in history])


def test_callbacks_can_stop_and_see_every_hook() -> None:
    calls: list[str] = []

    class Recorder(Callback):
        def on_train_begin(self, state: TrainState) -> None:
            calls.append("begin")

        def on_loss(self, state: TrainState, terms: object) -> None:
            calls.append("loss")

        def on_backward(self, state: TrainState) -> None:
            calls.append("backward")

        def on_epoch_end(self, state: TrainState) -> None:
            calls.append("epoch")
            state.stop = True

        def on_train_end(self, state: TrainState) -> None:
            calls.append("end")

    history = fit(tiny(), images(16), epochs=5, batch_size=8, callbacks=[Recorder()])
    assert len(history) == 1
    assert calls == ["begin", "loss", "backward", "loss", "backward", "epoch", "end"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"beta": lambda step: -1.0}, "beta"),
        ({"beta": math.nan}, "beta"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_bad_arguments_fail_before_training(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit(tiny(), images(8), **kwargs)  # type: ignore[arg-type]


def test_bad_guard_action() -> None:
    with pytest.raises(ValueError, match="action"):
        NaNGuard("ignore")  # type: ignore[arg-type]


def test_fit_trains_conditional_models_and_autoencoders() -> None:
    torch.manual_seed(0)
    model = pyvae.build("mlp", input_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), num_classes=2)
    x, y = images(32), torch.arange(32) % 2
    history = fit(
        model,
        DataLoader(TensorDataset(x, y), batch_size=8),
        epochs=1,
        eval_data=(x, y),
        callbacks=[LatentDiagnostics((x, y), min_active=0)],
    )
    assert history[0]["step"] == 4 and math.isfinite(history[0]["eval_neg_elbo"])
    assert history[0]["beta"] == 1.0  # left to the objective (the ELBO's weight)
    ae = pyvae.build("ae", input_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,))
    history = fit(ae, x, epochs=2, batch_size=8, seed=0, eval_data=x)
    assert history[-1]["step"] == 8 and math.isfinite(history[-1]["eval_recon"])
    assert math.isnan(history[-1]["eval_neg_elbo"])  # an autoencoder has no ELBO

"""The ``pyvae`` command line: ``demo``, ``train``, ``eval``, ``sample``, ``list``.

    pyvae demo                                   # ~1 minute on 2 CPU cores, no download
    pyvae train --model conv --data mnist --data-dir data --download --latent-dim 2 --out runs/mnist
    pyvae eval runs/mnist --k 5000
    pyvae sample runs/mnist -n 64

Every error caused by the input (arguments, files, data, checkpoints) is reported as one line on
stderr with a non-zero exit status; set ``PYVAE_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from pyvae.training import Callback, TrainState

__all__ = ["main", "train_run"]

# The demo: a small conv VAE on scikit-learn's 8x8 digits, sized for about a minute on 2 cores.
DEMO_DEFAULTS: dict[str, Any] = {
    "model": "conv",
    "data": "digits",
    "latent_dim": 2,
    "epochs": 40,
    "batch_size": 32,
    "lr": 1e-3,
    "threads": 1,  # tiny tensors: one thread is as fast, and much faster on a busy machine
    "model_args": {"channels": [32, 64], "hidden_dim": 256, "batch_norm": True},
}


class UsageError(ValueError):
    """A command-line value that is well-formed for argparse but invalid (reported, exit 2)."""


# -- argument types -----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _component(text: str) -> str | dict[str, Any]:
    """A component given as a name (``gaussian``) or a JSON config (``{"name": ..., ...}``)."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {exc}") from None
        if not isinstance(value, dict) or "name" not in value:
            raise argparse.ArgumentTypeError(
                f"expected a name or a JSON object with a 'name' key, got {text!r}"
            )
        return value
    return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE (VALUE in JSON, e.g. channels=[16,32]), got {text!r}"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string
    return key.strip().replace("-", "_"), value


# -- the parser ---------------------------------------------------------------------------------


def _add_training_options(p: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    from pyvae.data import DATASETS

    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=defaults.get("model", "conv"),
        help="a registered model (see `pyvae list`); default %(default)s",
    )
    g.add_argument(
        "--latent-dim",
        type=_positive_int,
        default=defaults.get("latent_dim", 2),
        help="size of the latent space; default %(default)s",
    )
    g.add_argument(
        "--likelihood",
        type=_component,
        default="bernoulli",
        help="p(x|z): a name or a JSON config, e.g. "
        '\'{"name": "gaussian", "scale": 0.1}\'; default %(default)s',
    )
    g.add_argument(
        "--prior",
        type=_component,
        default=None,
        help="p(z): a name or a JSON config (default: the model's, normal for the VAEs)",
    )
    g.add_argument(
        "--posterior",
        type=_component,
        default=None,
        help="q(z|x): a name or a JSON config (default: the model's, gaussian for the VAEs)",
    )
    g.add_argument(
        "--objective",
        type=_component,
        default=None,
        help="the training objective: a name or a JSON config (default: the model's, elbo "
        "for the VAEs)",
    )
    g.add_argument(
        "--model-arg",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another model argument, VALUE in JSON (repeatable), e.g. "
        "--model-arg channels=[16,32]",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        choices=DATASETS,
        default=defaults.get("data", "digits"),
        help="data set; default %(default)s",
    )
    g.add_argument(
        "--data-dir",
        default="data",
        help="folder with the MNIST/FashionMNIST IDX files (a folder with only the "
        "test-set files works: it is split 8000/2000); default %(default)s",
    )
    g.add_argument(
        "--download",
        action="store_true",
        help="download MNIST/FashionMNIST with torchvision if the files are missing",
    )
    g.add_argument(
        "--limit", type=_positive_int, default=None, help="use only the first N training images"
    )
    g.add_argument(
        "--eval-limit",
        type=_positive_int,
        default=None,
        help="use only the first N evaluation images",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs",
        type=_positive_int,
        default=defaults.get("epochs", 10),
        help="default %(default)s",
    )
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults.get("batch_size", 128),
        help="default %(default)s",
    )
    g.add_argument(
        "--lr",
        type=_positive_float,
        default=defaults.get("lr", 1e-3),
        help="Adam learning rate; default %(default)s",
    )
    g.add_argument(
        "--beta",
        type=_nonnegative_float,
        default=None,
        help="KL weight (beta-VAE; default: the objective's, 1 for the ELBO)",
    )
    g.add_argument("--seed", type=int, default=0, help="default %(default)s")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... or auto (default)")
    g.add_argument(
        "--threads",
        type=int,
        default=defaults.get("threads", 0),
        help="CPU threads for torch (0: torch's default); default %(default)s",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        default=defaults.get("out", "runs/run"),
        help="the run folder to write; default %(default)s",
    )
    g.add_argument(
        "--k",
        type=_positive_int,
        default=100,
        help="importance samples per image for the final NLL estimate (`pyvae eval "
        "RUN --k 5000` for a tighter one); default %(default)s",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in a non-empty --out folder (only once the new run is complete)",
    )
    g.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the epochs to OUT/tensorboard (needs pip install 'pyvae[tensorboard]')",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-figures", action="store_true", help="write no figures or report")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pyvae`` command."""
    from pyvae.data import DATASETS

    parser = argparse.ArgumentParser(
        prog="pyvae",
        description="Train, evaluate and look at variational autoencoders.",
        epilog="Run `pyvae demo` to see everything in about a minute.",
    )
    parser.add_argument("--version", action="version", version=f"pyvae {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo_defaults = {**DEMO_DEFAULTS, "out": "runs/demo"}
    p = sub.add_parser(
        "demo",
        help="train a small conv VAE on scikit-learn's 8x8 digits (~1 min) and write a report",
        description="Train a small conv VAE (2-D latent space, channels 32 and 64, BatchNorm; "
        "change with --latent-dim and --model-arg) on scikit-learn's 8x8 digits "
        "(1,797 images, no download) and write a run folder with the checkpoint, "
        "curves, figures and a one-page HTML report.",
    )
    _add_training_options(p, demo_defaults)
    p.set_defaults(func=_cmd_train, demo=True)

    p = sub.add_parser(
        "train",
        help="train any registered model and write a run folder",
        description="Train a registered model with any likelihood and prior; write a run folder "
        "(checkpoint, curves, figures, report).",
    )
    _add_training_options(p, {"out": "runs/run"})
    p.set_defaults(func=_cmd_train, demo=False)

    p = sub.add_parser(
        "eval",
        help="evaluate a run: ELBO, importance-sampled NLL, latent diagnostics",
        description="Print and save the evaluation report of a run on its evaluation data "
        "(pyvae.evaluate): negative ELBO, importance-sampled NLL with its standard error, ESS, "
        "bits per dimension, KL per dimension, active units, mutual information.",
    )
    p.add_argument("run", help="a run folder or a checkpoint (.safetensors)")
    p.add_argument(
        "--k",
        type=_positive_int,
        default=100,
        help="importance samples per image (papers use 5000: slow on a CPU); default %(default)s",
    )
    p.add_argument("--data", choices=DATASETS, default=None, help="override the run's data set")
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument(
        "--download",
        action="store_true",
        help="download MNIST/FashionMNIST with torchvision if the files are missing",
    )
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        help="evaluate only the first N evaluation images",
    )
    p.add_argument("--batch-size", type=_positive_int, default=100, help="default %(default)s")
    p.add_argument("--seed", type=int, default=0, help="default %(default)s")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--mi-examples",
        type=_positive_int,
        default=2000,
        help="examples for the mutual information I(x; z) (cost grows as the square); "
        "default %(default)s",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--out",
        default=None,
        help="the JSON file to save the report to (default: evaluation-kK.json beside the "
        "checkpoint)",
    )
    p.add_argument("--no-save", action="store_true", help="print the report only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "sample",
        help="write a grid of samples from a run's model",
        description="Decode samples z ~ p(z) of a saved model into a PNG grid.",
    )
    p.add_argument("run", help="a run folder or a checkpoint (.safetensors)")
    p.add_argument(
        "-n",
        type=_positive_int,
        default=64,
        help="number of samples (per class for a conditional model); default 64",
    )
    p.add_argument("--out", default=None, help="the PNG to write (default RUN/samples_N.png)")
    p.add_argument("--seed", type=int, default=0, help="default %(default)s")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--class",
        dest="classes",
        type=int,
        action="append",
        default=None,
        metavar="C",
        help="a conditional model's class to draw; repeat it for one row per class (default: "
        "every class, one row each, -n samples per row, columns sharing their z)",
    )
    p.add_argument(
        "--sampler",
        default=None,
        help="draw codes from a latent sampler instead of p(z): a sampler name (gmm, two_stage; "
        "fitted to the run's training data and saved as RUN/sampler_NAME.safetensors) or a saved "
        "sampler file",
    )
    p.set_defaults(func=_cmd_sample)

    from pyvae.app import add_parser as add_playground_parser  # imports no Streamlit

    add_playground_parser(sub)

    p = sub.add_parser("list", help="list the registered models, likelihoods, priors, data sets")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pyvae`` command; returns the exit status (0 on success)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and the error (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"pyvae {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("PYVAE_DEBUG"):
            raise
        code = 2 if isinstance(exc, UsageError) else 1
        print(f"pyvae {args.command}: error: {_describe_error(exc)}", file=sys.stderr)
        return code


def _describe_error(exc: BaseException) -> str:
    from pyvae.checkpoint import CheckpointError
    from pyvae.config import ConfigError

    message = str(exc) or type(exc).__name__
    known = (ValueError, TypeError, OSError, ImportError, ConfigError, CheckpointError)
    if isinstance(exc, known):
        return message
    return f"{type(exc).__name__}: {message} (set PYVAE_DEBUG=1 for the traceback)"


def _version() -> str:
    from pyvae import __version__

    return __version__


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: expected cpu, cuda, cuda:N or auto, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here; use --device cpu")
    if device.type == "meta":
        raise UsageError("--device meta: the meta device holds no values; use cpu or cuda")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise UsageError(f"--device {name}: not usable here ({exc}); use --device cpu") from None
    return device


# -- training -----------------------------------------------------------------------------------

# Named flags that --model-arg may not also set (the flag is the one place for each).
_NAMED_MODEL_FLAGS = {
    "name": "--model",
    "model": "--model",
    "latent_dim": "--latent-dim",
    "likelihood": "--likelihood",
    "prior": "--prior",
    "posterior": "--posterior",
    "objective": "--objective",
    "input_shape": "--data (the data set fixes the input shape)",
}
_RUN_MARKERS = ("run.json", "model.safetensors")  # what makes a folder a run folder


def _log(message: str) -> None:
    """One line on stderr that does not break a running tqdm bar."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print(message, file=sys.stderr)
    else:
        tqdm.write(message, file=sys.stderr)


def _check_out(text: str, overwrite: bool) -> Path:
    """The --out folder, checked before anything else runs."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: expected a folder, got the file {out}")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(
                f"--out: the folder {out} is not empty; pass --overwrite to replace the run in "
                f"it, or choose another --out"
            )
        if not any((out / marker).is_file() for marker in _RUN_MARKERS):
            raise UsageError(
                f"--out {out}: --overwrite replaces only a run folder (one with "
                f"{' or '.join(_RUN_MARKERS)}), and this folder is not one"
            )
    if out.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise UsageError(f"--out {out}: the run folder cannot be the working folder or above it")
    parent = out.resolve().parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {existing} is not writable")
    return out


def _check_options(args: argparse.Namespace) -> None:
    """Every option combination that can fail, checked before data is loaded or a model trained."""
    if args.threads < 0:
        raise UsageError(f"--threads: expected 0 (torch's default) or more, got {args.threads}")
    if args.eval_limit is not None and args.eval_limit < 2:
        raise UsageError(
            f"--eval-limit: expected at least 2 evaluation images (the standard error of the NLL "
            f"and the figures need two), got {args.eval_limit}"
        )
    seen: dict[str, Any] = {}
    for key, value in args.model_arg:
        flag = _NAMED_MODEL_FLAGS.get(key)
        if flag is not None:
            raise UsageError(
                f"--model-arg {key}={json.dumps(value)}: {key} is set by {flag}; use that instead"
            )
        if key in seen and seen[key] != value:
            raise UsageError(
                f"--model-arg {key}: given twice with different values "
                f"({json.dumps(seen[key])} and {json.dumps(value)})"
            )
        seen[key] = value


def _staging_folder(out: Path) -> Path:
    """A fresh hidden folder beside ``out``: the run is written there and moved into place."""
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.resolve().parent))


def _publish(staging: Path, out: Path, overwrite: bool) -> None:
    """Move the finished run into place; a previous run there is replaced only as a whole."""
    if not out.exists():
        os.replace(staging, out)
        return
    if any(out.iterdir()) and not overwrite:  # appeared while training
        raise UsageError(
            f"--out: the folder {out} filled up while training; the run is kept in {staging}"
        )
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.resolve().parent))
    os.replace(out, old / "run")
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


class _EpochLines(Callback):
    """Prints a line for the first, the last and every tenth of the epochs."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, state: TrainState) -> None:
        row, epoch, epochs = state.row, state.epoch, self.epochs
        if epoch == 1 or epoch == epochs or epoch % max(1, epochs // 10) == 0:
            line = (
                f"epoch {epoch:>3}/{epochs}: train -ELBO {row['train_neg_elbo']:.2f} "
                f"(recon {row['train_recon']:.2f}, KL {row['train_kl']:.2f})"
            )
            if "eval_neg_elbo" in row:
                line += f"; eval -ELBO {row['eval_neg_elbo']:.2f} nats"
            if "active_units" in row:
                line += f"; {row['active_units']:.0f} active units"
            _log(line)


def train_run(args: argparse.Namespace) -> Path:
    """Train as ``pyvae train``/``pyvae demo`` do and write the run folder; returns its path.

    Every option is checked before training; the run is written into a hidden folder beside
    ``--out`` and moved into place at the end, so an interrupted run never looks complete and a
    previous run is replaced (with ``--overwrite``) only by a finished one. ``--threads`` applies
    while it runs; torch's thread count is restored afterwards.
    """
    _check_options(args)
    previous = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _train_run(args)
    finally:
        torch.set_num_threads(previous)


def _model_config(args: argparse.Namespace, input_shape: Sequence[int]) -> dict[str, Any]:
    model_args: dict[str, Any] = {}
    if args.demo and args.model == DEMO_DEFAULTS["model"]:
        model_args = dict(DEMO_DEFAULTS["model_args"])
    model_args.update(dict(args.model_arg))
    # the components a flag names only when given, so that each model keeps its own defaults
    # (the autoencoder has no prior)
    chosen = {
        key: getattr(args, key)
        for key in ("prior", "posterior", "objective")
        if getattr(args, key) is not None
    }
    return {
        "name": args.model,
        "input_shape": list(input_shape),
        "latent_dim": args.latent_dim,
        "likelihood": args.likelihood,
        **chosen,
        **model_args,
    }


def _figures_available(enabled: bool) -> bool:
    if not enabled:
        return False
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        _log(f"pyvae: figures skipped: {exc} (pip install 'pyvae[viz]')")
        return False
    return True


def _train_run(args: argparse.Namespace) -> Path:
    """Check, load, build, then train and write into a staging folder moved into place."""
    from pyvae.evaluator import evaluate
    from pyvae.factory import build

    started = time.perf_counter()
    out = _check_out(args.out, args.overwrite)
    device = _device(args.device)
    figures = _figures_available(not args.no_figures)
    _check_tensorboard(args.tensorboard)
    torch.manual_seed(args.seed)
    data, train, evaluation = _load_data(args)
    model = build(_model_config(args, data.input_shape)).to(device)
    _check_data_support(model, train.images)
    loader = DataLoader(
        train.dataset(),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=len(train) > args.batch_size,
        generator=torch.Generator().manual_seed(args.seed),
    )
    _log(
        f"pyvae: {type(model).__name__} ({_n_parameters(model):,} parameters), latent_dim "
        f"{model.latent_dim}, on {data.note}; {args.epochs} epochs of {len(loader)} "
        f"steps on {device}"
    )
    staging = _staging_folder(out)
    try:
        eval_data = _eval_data(model, evaluation)
        history = _fit(args, model, loader, eval_data, staging)
        train_seconds = time.perf_counter() - started
        report = evaluate(model, eval_data, k=args.k, batch_size=100, seed=args.seed)
        _log_evaluation(args.k, model, report)
        files = _write_run(
            args,
            staging,
            out,
            model,
            data,
            (train, evaluation),
            history,
            report,
            figures,
            {"started": started, "train_seconds": train_seconds, "device": str(device)},
        )
        _publish(staging, out, args.overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _log(f"wrote {out}/ ({', '.join(files)}) in {time.perf_counter() - started:.1f} s")
    if "report.html" in files:
        _log(f"open {out / 'report.html'} to see the report")
    return out


def _eval_data(model: Any, split: Any) -> Any:
    """The evaluation images, with their labels for a conditional model."""
    if getattr(model, "num_classes", None) is not None:
        return (split.images, split.labels)
    return split.images


def _check_tensorboard(enabled: bool) -> None:
    if not enabled:
        return
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UsageError(
            "--tensorboard: the tensorboard package is not installed "
            "(pip install 'pyvae[tensorboard]')"
        ) from None


def _load_data(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from pyvae.data import load_dataset

    data = load_dataset(args.data, root=args.data_dir, download=args.download, seed=args.seed)
    train, evaluation = data.train.head(args.limit), data.eval.head(args.eval_limit)
    if len(evaluation) < 2:
        raise UsageError(
            f"the {data.name} evaluation split has {len(evaluation)} image(s); at least 2 are "
            f"needed"
        )
    return data, train, evaluation


def _n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fit(
    args: argparse.Namespace,
    model: Any,
    loader: DataLoader[Any],
    eval_data: Any,
    staging: Path,
) -> list[dict[str, float]]:
    """The epochs, through pyvae.training.fit, logging into the staging folder."""
    from pyvae.training import (
        CSVLogger,
        JSONLogger,
        LatentDiagnostics,
        NaNGuard,
        NonFiniteLossError,
        TensorBoardLogger,
        fit,
    )

    callbacks: list[Callback] = [
        NaNGuard("raise"),
        # KL per dimension and active units of the per-epoch evaluation (collapse is judged on
        # the final model: an untrained model often has no active unit yet)
        LatentDiagnostics(min_active=0),
        _EpochLines(args.epochs),
        CSVLogger(staging / "history.csv"),
        JSONLogger(staging / "history.json"),
    ]
    if args.tensorboard:
        callbacks.append(TensorBoardLogger(staging / "tensorboard"))
    try:
        return fit(
            model,
            loader,
            epochs=args.epochs,
            optimizer=torch.optim.Adam(model.parameters(), lr=args.lr),
            beta=args.beta,
            eval_data=eval_data,
            callbacks=callbacks,
            progress=not args.no_progress,
        )
    except (NonFiniteLossError, FloatingPointError) as exc:
        raise FloatingPointError(f"training diverged: {exc}; lower --lr (now {args.lr})") from None


def _log_evaluation(k: int, model: Any, report: Any) -> None:
    nll = "not defined" if report.nll is None else f"{report.nll:.2f} ± {report.nll_stderr:.2f}"
    _log(
        f"eval: -ELBO {_num(report.neg_elbo)}, NLL (k={k}) {nll} nats per image "
        f"({report.n} images); {report.active_units} of {model.latent_dim} latent dimensions "
        f"active"
    )
    if report.active_units == 0:
        _log(
            "pyvae: warning: posterior collapse: no latent dimension is active (the decoder "
            "ignores the code); try more epochs, a smaller --beta or another --likelihood"
        )


def _write_run(
    args: argparse.Namespace,
    staging: Path,
    out: Path,
    model: Any,
    data: Any,
    splits: tuple[Any, Any],
    history: list[dict[str, float]],
    report: Any,
    figures: bool,
    timing: dict[str, Any],
) -> list[str]:
    """Checkpoint, numbers, figures and report into the staging folder; run.json last."""
    from pyvae.checkpoint import CHECKPOINT_NAME
    from pyvae.run_report import write_figures, write_report

    train, evaluation = splits
    metrics: dict[str, Any] = {
        "eval_neg_elbo": report.neg_elbo,
        "eval_recon": report.recon,
        "eval_kl": report.kl,
        "eval_nll": report.nll,
        "eval_nll_stderr": report.nll_stderr,
        "nll_k": args.k,
        "eval_bits_per_dim": report.bits_per_dim,
        "eval_ess": report.ess,
        "active_units": report.active_units,
        "mutual_information": report.mutual_information,
        "train_neg_elbo": history[-1]["train_neg_elbo"],
        "n_train": len(train),
        "n_eval": len(evaluation),
        "train_seconds": round(timing["train_seconds"], 2),
    }
    data_info = {
        "name": data.name,
        "data_dir": str(args.data_dir),
        "seed": args.seed,
        "limit": args.limit,
        "eval_limit": args.eval_limit,
        "note": data.note,
        "classes": list(data.classes),
    }
    training = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "beta": args.beta,
        "seed": args.seed,
        "device": timing["device"],
        "optimizer": "Adam",
        "threads": torch.get_num_threads(),
    }
    model.save(
        staging / CHECKPOINT_NAME,
        metadata={"data": data_info, "training": training, "metrics": _finite(metrics)},
    )
    files = [CHECKPOINT_NAME, "history.csv", "history.json", "metrics.json", "run.json"]
    files += ["evaluation.json", *(["tensorboard"] if args.tensorboard else [])]
    (staging / "evaluation.json").write_text(_dumps(report.to_dict()))
    if figures:
        files += write_figures(
            staging,
            model,
            history,
            evaluation.images,
            evaluation.labels,
            classes=data.classes,
            seed=args.seed,
            kl_per_dim=report.kl_per_dim,
            active=[v > report.threshold for v in report.latent_variance or []] or None,
        )
    metrics["wall_seconds"] = round(time.perf_counter() - timing["started"], 2)
    (staging / "metrics.json").write_text(_dumps(metrics))
    run = {
        "pyvae_version": _version(),
        "command": "demo" if args.demo else "train",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.config,
        "n_parameters": _n_parameters(model),
        "data": data_info,
        "training": training,
        "metrics": metrics,
        "evaluation": report.to_dict(),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "files": files,
    }
    if figures:
        files.append("report.html")
        write_report(staging / "report.html", run, files, folder=str(out))
    (staging / "run.json").write_text(_dumps(run))  # last: a run folder is complete with it
    return files


def _num(value: float | None) -> str:
    return "not defined" if value is None else f"{value:.2f}"


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (standard JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_finite(value), indent=2, allow_nan=False) + "\n"


def _check_data_support(model: Any, images: torch.Tensor) -> None:
    support = getattr(model.likelihood, "support", None)
    if support is None:
        return
    ok = support.check(images[:1000].to(next(model.parameters()).device))
    if not bool(ok.all()):
        raise UsageError(
            f"--likelihood {type(model.likelihood).__name__} expects data in {support}, but the "
            f"images are not (range {float(images.min()):g} to {float(images.max()):g})"
        )


def _cmd_train(args: argparse.Namespace) -> int:
    train_run(args)
    return 0


# -- eval, sample, list -------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace) -> int:
    from pyvae.checkpoint import load, read_info
    from pyvae.data import DATASETS, load_dataset
    from pyvae.evaluator import evaluate

    device = _device(args.device)
    info = read_info(args.run)
    stored = _stored_data(info.path, info.metadata.get("data", {}))
    name = args.data or stored.get("name")
    if name is None:
        raise UsageError(
            f"{info.path} does not say which data it was trained on; pass --data "
            f"({', '.join(DATASETS)})"
        )
    if args.download and args.data_dir is None:
        # the checkpoint never chooses a folder to write to
        raise UsageError("--download: pass --data-dir too, the folder to download into")
    model = load(info.path, map_location=device)
    data_dir = args.data_dir or stored.get("data_dir", "data")
    data = load_dataset(name, root=data_dir, download=args.download, seed=stored.get("seed", 0))
    limit = args.limit if args.limit is not None else stored.get("eval_limit")
    evaluation = data.eval.head(limit)
    if tuple(evaluation.images.shape[1:]) != tuple(model.input_shape):
        raise UsageError(
            f"the model expects inputs of shape {tuple(model.input_shape)}, but the {name} "
            f"images have shape {tuple(evaluation.images.shape[1:])}"
        )
    if len(evaluation) < 1:
        raise UsageError(f"no {name} evaluation images to evaluate")
    save_to = _eval_output(args, info.path)
    report = evaluate(
        model,
        _eval_data(model, evaluation),
        k=args.k,
        batch_size=args.batch_size,
        seed=args.seed,
        mi_examples=args.mi_examples,
        progress=not args.no_progress and not args.json,
    )
    result = {
        "checkpoint": str(info.path),
        "data": name,
        "n_images": len(evaluation),
        **report.to_dict(),
    }
    if save_to is not None:
        save_to.write_text(_dumps(result))
    if args.json:
        print(_dumps(result), end="")
    else:
        print(f"{info.path}: {type(model).__name__} on {len(evaluation)} {name} evaluation images")
        print(report.format())
        if save_to is not None:
            print(f"(saved to {save_to})")
    return 0


def _eval_output(args: argparse.Namespace, checkpoint: Path) -> Path | None:
    """Where ``pyvae eval`` saves its report: --out, else beside the checkpoint the user named
    (never a folder that the checkpoint's contents choose)."""
    if args.no_save:
        return None
    if args.out is not None:
        out = Path(args.out)
        if out.suffix.lower() != ".json":
            raise UsageError(f"--out: expected a .json file, got {out}")
        if out.is_dir():
            raise UsageError(f"--out: expected a file, got the folder {out}")
        return out
    return checkpoint.parent / f"evaluation-k{args.k}.json"


#: The most values ``pyvae sample`` decodes at once (1 GiB of float32).
_MAX_SAMPLE_VALUES = 2**28


def _stored_data(path: Path, stored: object) -> dict[str, Any]:
    """The ``data`` entry of a checkpoint's metadata, each field that ``eval`` uses checked (a
    checkpoint is untrusted input: a bad field is a CheckpointError naming it)."""
    from pyvae.checkpoint import CheckpointError
    from pyvae.data import DATASETS

    def bad(field: str, expected: str, value: object) -> CheckpointError:
        return CheckpointError(
            f"{path}: metadata field data.{field}: expected {expected}, got {str(value)[:80]!r}"
        )

    if not isinstance(stored, dict):
        raise bad("", "an object", stored)
    name = stored.get("name")
    if name is not None and name not in DATASETS:
        raise bad("name", f"one of {', '.join(DATASETS)}", name)
    data_dir = stored.get("data_dir")
    if data_dir is not None and (not isinstance(data_dir, str) or not data_dir or "\0" in data_dir):
        raise bad("data_dir", "a folder name", data_dir)
    seed = stored.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63
    ):
        raise bad("seed", "an integer in [0, 2**63)", seed)
    limit = stored.get("eval_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise bad("eval_limit", "a positive integer or null", limit)
    return stored


def _sample_classes(model: Any, classes: list[int] | None) -> int | list[int] | None:
    """``--class``: None for an unconditional model; for a conditional one, one class (an int)
    or the classes of the rows (default: all of them)."""
    k = model.num_classes
    if k is None:
        if classes:
            raise UsageError(
                f"--class: {type(model).__name__} is unconditional (num_classes=None) and takes "
                f"no class; leave --class out"
            )
        return None
    if classes is None:
        return list(range(k))
    bad = [c for c in classes if not 0 <= c < k]
    if bad:
        raise UsageError(f"--class: expected a class in [0, {k - 1}], got {bad[0]}")
    return classes[0] if len(classes) == 1 else list(classes)


def _cmd_sample(args: argparse.Namespace) -> int:
    from pyvae.checkpoint import load, read_info
    from pyvae.viz import sample_grid, save_grid

    device = _device(args.device)
    info = read_info(args.run)
    model = load(info.path, map_location=device)
    rows = _sample_classes(model, args.classes)
    count = args.n * (len(rows) if isinstance(rows, list) else 1)
    values = count * math.prod(model.input_shape)
    if values > _MAX_SAMPLE_VALUES:  # a conv model's weights do not bound its image size
        raise UsageError(
            f"-n {args.n}: {count} samples of shape {tuple(model.input_shape)} are {values} "
            f"values, more than {_MAX_SAMPLE_VALUES}; ask for fewer samples"
        )
    out = Path(args.out) if args.out else info.path.parent / f"samples_{args.n}.png"
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"--out: expected a .png or .jpg file, got {out}")
    if args.sampler is None:
        generator = torch.Generator(device=device).manual_seed(args.seed)
        save_grid(sample_grid(model, args.n, y=rows, generator=generator), out)
    else:
        sampler = _fitted_sampler(args.sampler, model, info)
        generator = torch.Generator().manual_seed(args.seed)
        if rows is None:
            save_grid(sampler.sample(args.n, generator=generator), out)
        else:  # one class, or one row per class with the codes shared down the columns
            state = generator.get_state()
            images = []
            for c in [rows] if isinstance(rows, int) else rows:
                generator.set_state(state)
                y = torch.full((args.n,), c, dtype=torch.long, device=device)
                images.append(sampler.sample(args.n, y=y, generator=generator))
            batch = torch.cat(images)
            save_grid(batch, out, ncol=None if isinstance(rows, int) else args.n)
    by_class = "" if not isinstance(rows, list) else f", one row of {args.n} per class {rows}"
    of = "" if not isinstance(rows, int) else f" of class {rows}"
    print(f"wrote {count} samples{of} to {out}{by_class}")
    return 0


def _fitted_sampler(spec: str, model: Any, info: Any) -> Any:
    """``--sampler``: a saved sampler file, or a registered sampler fitted to the run's training
    data (as recorded in the checkpoint) and saved beside it."""
    import pyvae.samplers
    from pyvae.data import load_dataset

    if spec.endswith(".safetensors"):
        return pyvae.samplers.load(spec, model)
    if spec not in pyvae.samplers.list_samplers():
        raise UsageError(
            f"--sampler: expected a sampler name ({', '.join(pyvae.samplers.list_samplers())}) "
            f"or a .safetensors file, got {spec!r}"
        )
    if hasattr(model, "fit_prior"):
        raise UsageError(
            f"--sampler: {type(model).__name__} has discrete latents and samples through its "
            f"own code prior (model.fit_prior); run pyvae sample without --sampler"
        )
    stored = _stored_data(info.path, info.metadata.get("data", {}))
    if stored.get("name") is None:
        raise UsageError(f"--sampler {spec}: {info.path} does not say which data it was trained on")
    data = load_dataset(
        stored["name"], root=stored.get("data_dir", "data"), seed=stored.get("seed", 0)
    )
    reference = next(model.parameters())
    labels = None if model.num_classes is None else data.train.labels.to(reference.device)
    sampler = pyvae.samplers.SAMPLERS.build({"name": spec, "model": model})
    sampler.fit(data.train.images.to(reference.device, reference.dtype), y=labels)
    path = sampler.save(info.path.parent / f"sampler_{spec}.safetensors")
    print(
        f"fitted the {spec} sampler to {len(data.train)} {stored['name']} images; saved to {path}"
    )
    return sampler


def _cmd_list(args: argparse.Namespace) -> int:
    import pyvae
    from pyvae.data import DATASETS

    listing: list[tuple[str, Callable[[], list[str]]]] = [
        ("models", pyvae.list_models),
        ("likelihoods", pyvae.list_likelihoods),
        ("priors", pyvae.list_priors),
        ("data sets", lambda: list(DATASETS)),
    ]
    for title, names in listing:
        print(f"{title}: {', '.join(names())}")
    return 0

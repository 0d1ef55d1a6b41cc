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
import csv
import html
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

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
        default="normal",
        help="p(z): a name or a JSON config; default %(default)s",
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
        default=1.0,
        help="KL weight (beta-VAE); default %(default)s",
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
        help="test negative ELBO and importance-sampled NLL of a run",
        description="Report the negative ELBO and the importance-sampled "
        "negative log-likelihood of a run on its evaluation data.",
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
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "sample",
        help="write a grid of samples from a run's model",
        description="Decode samples z ~ p(z) of a saved model into a PNG grid.",
    )
    p.add_argument("run", help="a run folder or a checkpoint (.safetensors)")
    p.add_argument("-n", type=_positive_int, default=64, help="number of samples; default 64")
    p.add_argument("--out", default=None, help="the PNG to write (default RUN/samples_N.png)")
    p.add_argument("--seed", type=int, default=0, help="default %(default)s")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_sample)

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


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print("(install tqdm, or pip install 'pyvae[viz]', for a progress bar)", file=sys.stderr)
        return None
    return tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr, mininterval=0.5)


def _log(bar: Any, message: str) -> None:
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


@torch.no_grad()
def _evaluate_elbo(
    model: Any, images: torch.Tensor, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Mean negative ELBO, reconstruction and KL (one posterior sample each) in eval mode."""
    was_training = model.training
    model.eval()
    totals = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0}
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            terms = model.loss(x, model(x))
            totals["recon"] += float(terms.recon.sum())
            totals["kl"] += float(terms.kl.sum())
            totals["neg_elbo"] += float((terms.recon + terms.kl).sum())
    finally:
        model.train(was_training)
    return {k: v / len(images) for k, v in totals.items()}


@torch.no_grad()
def _evaluate_nll(
    model: Any, images: torch.Tensor, k: int, batch_size: int, device: torch.device
) -> float:
    """Mean importance-sampled negative log-likelihood (``model.log_likelihood``), nats per
    example."""
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        total += float(model.log_likelihood(x, k=k).sum())
    return -total / len(images)


def train_run(args: argparse.Namespace) -> Path:
    """Train as ``pyvae train``/``pyvae demo`` do and write the run folder; returns its path.

    ``--threads`` applies while it runs; torch's thread count is restored afterwards.
    """
    if args.threads < 0:
        raise UsageError(f"--threads: expected 0 (torch's default) or more, got {args.threads}")
    previous = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _train_run(args)
    finally:
        torch.set_num_threads(previous)


def _train_run(args: argparse.Namespace) -> Path:
    from pyvae.checkpoint import CHECKPOINT_NAME
    from pyvae.data import load_dataset
    from pyvae.factory import build

    started = time.perf_counter()
    device = _device(args.device)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: expected a folder, got the file {out}")

    data = load_dataset(args.data, root=args.data_dir, download=args.download, seed=args.seed)
    train = data.train.head(args.limit)
    evaluation = data.eval.head(args.eval_limit)
    model_args: dict[str, Any] = {}
    if args.demo and args.model == DEMO_DEFAULTS["model"]:
        model_args = dict(DEMO_DEFAULTS["model_args"])
    model_args.update(dict(args.model_arg))
    config: dict[str, Any] = {
        "name": args.model,
        "input_shape": list(data.input_shape),
        "latent_dim": args.latent_dim,
        "likelihood": args.likelihood,
        "prior": args.prior,
        **model_args,
    }
    model = build(config).to(device)
    _check_data_support(model, train.images)

    loader = DataLoader(
        train.dataset(),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=len(train) > args.batch_size,
        generator=torch.Generator().manual_seed(args.seed),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = len(loader)
    bar = _progress(args.epochs * steps_per_epoch, not args.no_progress)
    n_params = sum(p.numel() for p in model.parameters())
    _log(
        bar,
        f"pyvae: {type(model).__name__} ({n_params:,} parameters), latent_dim "
        f"{model.latent_dim}, on {data.note}; {args.epochs} epochs of {steps_per_epoch} "
        f"steps on {device}",
    )
    history: list[dict[str, float]] = []
    step = 0
    try:
        for epoch in range(1, args.epochs + 1):
            model.train()
            sums = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0}
            seen = 0
            for x, _ in loader:
                x = x.to(device)
                out_ = model(x)
                terms = model.loss(x, out_, beta=args.beta)
                optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                optimizer.step()
                step += 1
                b = x.shape[0]
                recon, kl = float(terms.recon.detach().sum()), float(terms.kl.detach().sum())
                sums["recon"] += recon
                sums["kl"] += kl
                sums["neg_elbo"] += recon + kl
                seen += b
                if bar is not None:
                    bar.update(1)
                    bar.set_description(f"epoch {epoch}/{args.epochs}", refresh=False)
                    bar.set_postfix(
                        loss=f"{float(terms.loss.detach()):.2f}",
                        recon=f"{recon / b:.2f}",
                        kl=f"{kl / b:.2f}",
                        refresh=False,
                    )
            row: dict[str, float] = {"epoch": epoch, "step": step}
            row.update({f"train_{k}": v / seen for k, v in sums.items()})
            row.update(
                {
                    f"eval_{k}": v
                    for k, v in _evaluate_elbo(model, evaluation.images, 256, device).items()
                }
            )
            history.append(row)
            if epoch == 1 or epoch == args.epochs or epoch % max(1, args.epochs // 10) == 0:
                _log(
                    bar,
                    f"epoch {epoch:>3}/{args.epochs}: train -ELBO "
                    f"{row['train_neg_elbo']:.2f} (recon {row['train_recon']:.2f}, KL "
                    f"{row['train_kl']:.2f}); eval -ELBO {row['eval_neg_elbo']:.2f} nats",
                )
            if not math.isfinite(row["train_neg_elbo"]):
                raise FloatingPointError(
                    f"the training loss diverged at epoch {epoch}; lower --lr (now {args.lr})"
                )
    finally:
        if bar is not None:
            bar.close()
    train_time = time.perf_counter() - started

    model.eval()
    torch.manual_seed(args.seed)
    nll = _evaluate_nll(model, evaluation.images, args.k, 100, device)
    final = history[-1]
    metrics = {
        "eval_neg_elbo": final["eval_neg_elbo"],
        "eval_recon": final["eval_recon"],
        "eval_kl": final["eval_kl"],
        "eval_nll": nll,
        "nll_k": args.k,
        "train_neg_elbo": final["train_neg_elbo"],
        "n_train": len(train),
        "n_eval": len(evaluation),
        "train_seconds": round(train_time, 2),
    }
    _log(
        None,
        f"eval: -ELBO {metrics['eval_neg_elbo']:.2f}, NLL (k={args.k}) {nll:.2f} nats "
        f"per image ({len(evaluation)} images)",
    )

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
        "device": str(device),
        "optimizer": "Adam",
        "threads": torch.get_num_threads(),
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save(
        out / CHECKPOINT_NAME,
        metadata={"data": data_info, "training": training, "metrics": metrics},
    )
    _write_history(out, history)
    files = [CHECKPOINT_NAME, "history.csv", "history.json", "metrics.json", "run.json"]
    if not args.no_figures:
        try:
            files += _write_figures(out, model, history, evaluation, data.classes, args.seed)
        except ImportError as exc:
            _log(None, f"pyvae: figures skipped: {exc}")
    wall = time.perf_counter() - started
    metrics["wall_seconds"] = round(wall, 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    run = {
        "pyvae_version": _version(),
        "command": "demo" if args.demo else "train",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.config,
        "n_parameters": n_params,
        "data": data_info,
        "training": training,
        "metrics": metrics,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "files": files,
    }
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    if not args.no_figures and "curves.png" in files:
        _write_report(out / "report.html", run, files)
        files.append("report.html")
    _log(None, f"wrote {out}/ ({', '.join(files)}) in {wall:.1f} s")
    if "report.html" in files:
        _log(None, f"open {out / 'report.html'} to see the report")
    return out


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


def _write_history(out: Path, history: list[dict[str, float]]) -> None:
    (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def _interpolation_pairs(labels: torch.Tensor) -> list[tuple[int, int]]:
    first: dict[int, int] = {}
    for i, y in enumerate(labels.tolist()):
        first.setdefault(int(y), i)
    pairs = [
        (first[a], first[b])
        for a, b in ((0, 6), (1, 7), (3, 8), (4, 9))
        if a in first and b in first
    ]
    if not pairs:
        n = len(labels)
        pairs = [(i, i + 1) for i in range(0, min(n - 1, 8), 2)]
    return pairs


def _write_figures(
    out: Path,
    model: Any,
    history: list[dict[str, float]],
    evaluation: Any,
    classes: Sequence[str],
    seed: int,
) -> list[str]:
    from pyvae import viz
    from pyvae.latent import encode_loader

    written = []

    def save(fig: Any, name: str) -> None:
        viz.save_figure(fig, out / name)
        written.append(name)

    device = next(model.parameters()).device
    images, labels = evaluation.images, evaluation.labels
    save(viz.plot_training_curves(history), "curves.png")
    save(viz.plot_reconstructions(model, images[:16].to(device)), "reconstructions.png")
    generator = torch.Generator(device=device).manual_seed(seed)
    save(viz.plot_samples(model, 64, generator=generator), "samples.png")
    loader = DataLoader(evaluation.dataset(), batch_size=256)
    means, ys = encode_loader(model, loader)
    save(viz.plot_latent(means, ys, class_names=classes, max_points=1500, seed=seed), "latent.png")
    if model.latent_dim >= 2:
        save(viz.plot_manifold(model, 15, seed=seed), "manifold.png")
    else:
        z = torch.zeros(1, device=device)
        values = [float(v) for v in torch.linspace(-2.5, 2.5, 11)]
        save(
            viz.plot_traversal(model, z, [0], values, title="decoded z_1 (1-D latent space)"),
            "manifold.png",
        )
    pairs = [(images[a].to(device), images[b].to(device)) for a, b in _interpolation_pairs(labels)]
    save(viz.plot_interpolation(model, pairs, steps=10), "interpolation.png")
    return written


_CAPTIONS = {
    "curves.png": "Training curves: negative ELBO, reconstruction term and KL per epoch "
    "(nats per image; solid: training, dashed: evaluation).",
    "reconstructions.png": "Evaluation images (input rows) and their reconstructions.",
    "samples.png": "Samples from the prior p(z), decoded to the mean of p(x|z).",
    "latent.png": "Posterior means of the evaluation images, coloured by class.",
    "manifold.png": "The decoder over a grid of the latent plane (prior quantiles 5%-95%).",
    "interpolation.png": "Decoded straight paths between the codes of two evaluation images.",
}


def _write_report(path: Path, run: Mapping[str, Any], files: Iterable[str]) -> None:
    """A one-page, self-contained-by-folder HTML report of a run."""
    m = run["metrics"]
    rows = [
        ("test negative ELBO", f"{m['eval_neg_elbo']:.2f} nats"),
        ("  reconstruction -log p(x|z)", f"{m['eval_recon']:.2f} nats"),
        ("  KL(q(z|x) || p(z))", f"{m['eval_kl']:.2f} nats"),
        (f"test NLL (importance sampled, k={m['nll_k']})", f"{m['eval_nll']:.2f} nats"),
        ("train negative ELBO (last epoch)", f"{m['train_neg_elbo']:.2f} nats"),
        ("images (train / eval)", f"{m['n_train']} / {m['n_eval']}"),
        ("wall time", f"{m['wall_seconds']:.1f} s"),
    ]
    esc = html.escape
    metric_rows = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    settings = {
        **run["training"],
        "data": run["data"]["note"],
        "parameters": f"{run['n_parameters']:,}",
    }
    setting_rows = "\n".join(
        f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in settings.items()
    )
    figures = "\n".join(
        f'<figure><img src="{esc(name)}" alt="{esc(name)}"><figcaption>{esc(caption)}'
        f"</figcaption></figure>"
        for name, caption in _CAPTIONS.items()
        if name in files
    )
    links = " · ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in files)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>pyvae run: {esc(run["model"]["name"])} on {esc(run["data"]["name"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 1.5em auto; color: #222;
       padding: 0 1em; }}
h1 {{ font-size: 1.5em; margin-bottom: 0.2em; }} .sub {{ color: #666; margin-top: 0; }}
.cols {{ display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ text-align: left; padding: 0.2em 0.8em 0.2em 0; border-bottom: 1px solid #eee;
          vertical-align: top; }} th {{ font-weight: 600; white-space: pre; }}
pre {{ background: #f6f6f6; padding: 0.6em; font-size: 0.8em; max-width: 420px;
       overflow-x: auto; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
         gap: 1em; }}
figure {{ margin: 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.85em; color: #555; }}
</style></head><body>
<h1>pyvae run: {esc(run["model"]["name"])} VAE on {esc(run["data"]["name"])}</h1>
<p class="sub">pyvae {esc(run["pyvae_version"])} · {esc(run["created"])} ·
torch {esc(run["environment"]["torch"])} · command <code>pyvae {esc(run["command"])}</code></p>
<div class="cols">
<div><h2>Metrics (evaluation split)</h2><table>{metric_rows}</table></div>
<div><h2>Training</h2><table>{setting_rows}</table></div>
<div><h2>Model config</h2><pre>{esc(json.dumps(run["model"], indent=2))}</pre></div>
</div>
<h2>Figures</h2>
<div class="grid">
{figures}
</div>
<p>Files: {links}. Load the model with <code>pyvae.load("{esc(str(path.parent))}")</code>.</p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")


def _cmd_train(args: argparse.Namespace) -> int:
    train_run(args)
    return 0


# -- eval, sample, list -------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace) -> int:
    from pyvae.checkpoint import load, read_info
    from pyvae.data import DATASETS, load_dataset

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
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    elbo_terms = _evaluate_elbo(model, evaluation.images, args.batch_size, device)
    nll = _evaluate_nll(model, evaluation.images, args.k, args.batch_size, device)
    result = {
        "checkpoint": str(info.path),
        "data": name,
        "n_images": len(evaluation),
        "neg_elbo": elbo_terms["neg_elbo"],
        "recon": elbo_terms["recon"],
        "kl": elbo_terms["kl"],
        "nll": nll,
        "k": args.k,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{info.path}: {type(model).__name__} on {len(evaluation)} {name} evaluation images")
        nll_label = f"NLL (k={args.k})"
        print(
            f"  {'negative ELBO':<16} {result['neg_elbo']:10.3f} nats per image "
            f"(recon {result['recon']:.3f}, KL {result['kl']:.3f})"
        )
        print(f"  {nll_label:<16} {nll:10.3f} nats per image (importance sampled)")
    return 0


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


def _cmd_sample(args: argparse.Namespace) -> int:
    from pyvae.checkpoint import load, read_info
    from pyvae.viz import sample_grid, save_grid

    device = _device(args.device)
    info = read_info(args.run)
    model = load(info.path, map_location=device)
    values = args.n * math.prod(model.input_shape)
    if values > _MAX_SAMPLE_VALUES:  # a conv model's weights do not bound its image size
        raise UsageError(
            f"-n {args.n}: {args.n} samples of shape {tuple(model.input_shape)} are {values} "
            f"values, more than {_MAX_SAMPLE_VALUES}; ask for fewer samples"
        )
    generator = torch.Generator(device=device).manual_seed(args.seed)
    grid = sample_grid(model, args.n, generator=generator)
    out = Path(args.out) if args.out else info.path.parent / f"samples_{args.n}.png"
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"--out: expected a .png or .jpg file, got {out}")
    save_grid(grid, out)
    print(f"wrote {args.n} samples to {out}")
    return 0


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

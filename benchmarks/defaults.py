"""Do pyvae's default models learn as well as the textbook ones, in the same budget?

    python benchmarks/defaults.py              # 5 epochs, seeds 0 1 2; writes the docs page
    python benchmarks/defaults.py --epochs 50 --models mlp
    python benchmarks/defaults.py --candidates mlp-400 --out /tmp/t.md --json /tmp/t.jsonl

The protocol is a new user's: Adam (lr 1e-3), batch 128, images 0-7999 of the MNIST test set in
``../shared/data/mnist`` for training with dynamic binarisation (a fresh Bernoulli draw of every
image each time it is seen), and the negative ELBO (nats per image, one posterior sample per image,
the same seeded binarisation and noise for every candidate) on images 8000-9999. Each candidate is
trained from seeds 0, 1, 2 (the seed sets the initial weights, the batches and the noise); the
table gives the median and the range over seeds. Candidates whose label starts with ``textbook``
are hand-written plain-PyTorch models (no pyvae): the reference the defaults must match.

The other candidates start from PyTorch's initialisation (``init="torch"``); variants that no
build() argument expresses (another activation, 4x4 kernels, He initialisation as it was tried
before it became the default) are applied to the built model by swapping modules or
re-initialising weights. ``mlp-512-256`` and ``conv-32-64`` are pyvae 0.1's defaults,
``pyvae-0.2-conv`` pyvae 0.2's conv; ``pyvae-*`` are today's (``pyvae.build(name, latent_dim=16)``;
the mlp's is unchanged since 0.2).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/defaults.py`

import torch
import torch.nn.functional as F
from torch import nn

import pyvae
from benchmarks.common import REPO, load_average, machine, mnist_images

LATENT = 16
BATCH = 128
LR = 1e-3
N_TRAIN = 8000


# -- the textbook references, in plain PyTorch ---------------------------------------------------
class TextbookMLP(nn.Module):
    """Kingma and Welling's one-hidden-layer VAE as PyTorch's own example writes it:
    784 -> 400 (ReLU) -> (loc, log_var); latent -> 400 (ReLU) -> 784 Bernoulli logits."""

    def __init__(self, latent: int = LATENT, hidden: int = 400) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2 * latent)
        self.dec = nn.Sequential(
            nn.Linear(latent, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 784),
            nn.Unflatten(1, (1, 28, 28)),
        )


class TextbookConv(nn.Module):
    """The common convolutional VAE for 28x28 images: 4x4 convolutions of stride 2 and padding 1
    (28 -> 14 -> 7), 32 and 64 channels, a dense layer of 256, and the mirror with 4x4 transposed
    convolutions (7 -> 14 -> 28)."""

    def __init__(self, latent: int = LATENT) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 256),
            nn.ReLU(),
        )
        self.head = nn.Linear(256, 2 * latent)
        self.dec = nn.Sequential(
            nn.Linear(latent, 256),
            nn.ReLU(),
            nn.Linear(256, 64 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1),
        )


def textbook_neg_elbo(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-example negative ELBO (B,): Bernoulli logits, closed-form KL to N(0, I)."""
    loc, log_var = model.head(model.enc(x)).chunk(2, dim=-1)
    std = torch.exp(0.5 * log_var)
    z = loc + std * torch.randn_like(std)
    recon = F.binary_cross_entropy_with_logits(model.dec(z), x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (log_var.exp() + loc.pow(2) - 1.0 - log_var).sum(1)
    return recon + kl


def pyvae_neg_elbo(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return -model.loss(x, model(x)).elbo  # type: ignore[operator]


# -- variants of built pyvae models ---------------------------------------------------------
def swap_activation(model: nn.Module, make: Callable[[], nn.Module]) -> nn.Module:
    """Replace every ``nn.ReLU`` of ``model`` by ``make()``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, make())
    return model


def kaiming_init(model: nn.Module) -> nn.Module:
    """He initialisation (normal, fan_in, gain for ReLU) of every weight; biases to zero."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def _followed_by_activation(model: nn.Module) -> set[int]:
    """The ids of the layers of ``model`` that an activation follows in their ``nn.Sequential``."""
    activations = (nn.ReLU, nn.SiLU, nn.Tanh, nn.ELU, nn.GELU)
    ids = set()
    for parent in model.modules():
        if isinstance(parent, nn.Sequential):
            for layer, after in itertools.pairwise(parent):
                if isinstance(after, activations):
                    ids.add(id(layer))
    return ids


def kaiming_hidden_init(model: nn.Module) -> nn.Module:
    """He initialisation (gain sqrt(2)) of the layers an activation follows, LeCun's (gain 1,
    N(0, 1 / fan_in)) of the others (the posterior head, the decoder's output layer): He et al.'s
    gain compensates for the ReLU that halves the signal's second moment, which a linear output
    layer does not have. Biases to zero."""
    hidden = _followed_by_activation(model)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            gain = "relu" if id(module) in hidden else "linear"
            nn.init.kaiming_normal_(module.weight, nonlinearity=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def lecun_init(model: nn.Module) -> nn.Module:
    """LeCun's initialisation, N(0, 1 / fan_in), of every weight (half He's variance, three
    times PyTorch's); biases to zero."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def kernel4(model: nn.Module) -> nn.Module:
    """Replace each 3x3 stride-2 (transposed) convolution by a 4x4 one with padding 1 (same
    output sizes on even sizes: 28 -> 14 -> 7 and back, no output padding)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d):
                new: nn.Module = nn.Conv2d(
                    child.in_channels, child.out_channels, 4, 2, 1, bias=child.bias is not None
                )
            elif isinstance(child, nn.ConvTranspose2d):
                new = nn.ConvTranspose2d(
                    child.in_channels, child.out_channels, 4, 2, 1, bias=child.bias is not None
                )
            else:
                continue
            setattr(parent, name, new)
    return model


@dataclass
class Candidate:
    label: str
    model: str  # "mlp" or "conv": which default it is a candidate for
    build: Callable[[], nn.Module]
    neg_elbo: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    description: str


def _pyvae(label: str, kind: str, description: str, post=None, **kwargs: Any) -> Candidate:
    if not label.startswith("pyvae-"):  # variants start from PyTorch's initialisation
        kwargs.setdefault("init", "torch")

    def build() -> nn.Module:
        model = pyvae.build(kind, latent_dim=LATENT, **kwargs)
        return model if post is None else post(model)

    return Candidate(label, kind, build, pyvae_neg_elbo, description)


CANDIDATES: dict[str, Candidate] = {
    c.label: c
    for c in [
        Candidate("textbook-mlp", "mlp", TextbookMLP, textbook_neg_elbo, TextbookMLP.__doc__ or ""),
        Candidate(
            "textbook-conv", "conv", TextbookConv, textbook_neg_elbo, TextbookConv.__doc__ or ""
        ),
        _pyvae(
            "pyvae-mlp",
            "mlp",
            "pyvae's mlp default (`pyvae.build('mlp', latent_dim=16)`: hidden_dims=(512, 256), "
            "He initialisation; unchanged since 0.2)",
        ),
        _pyvae(
            "mlp-lecun",
            "mlp",
            "`pyvae.build('mlp', latent_dim=16, init='lecun')`: hidden_dims=(512, 256), LeCun "
            "initialisation",
            init="lecun",
        ),
        _pyvae(
            "pyvae-conv",
            "conv",
            "pyvae's conv default (`pyvae.build('conv', latent_dim=16)`: channels=(32, 64), "
            "hidden_dim=256, 4x4 kernels, LeCun initialisation)",
        ),
        _pyvae(
            "pyvae-0.2-conv",
            "conv",
            "pyvae 0.2's conv default: channels=(32, 64), hidden_dim=256, 3x3 kernels, He "
            "initialisation",
            kernel_size=3,
            init="he",
        ),
        _pyvae("mlp-400", "mlp", "hidden_dims=(400,)", hidden_dims=(400,)),
        _pyvae("mlp-512", "mlp", "hidden_dims=(512,)", hidden_dims=(512,)),
        _pyvae("mlp-512-256", "mlp", "hidden_dims=(512, 256)", hidden_dims=(512, 256)),
        _pyvae(
            "mlp-512-256-he",
            "mlp",
            "hidden_dims=(512, 256), He initialisation",
            kaiming_init,
            hidden_dims=(512, 256),
        ),
        _pyvae(
            "mlp-512-256-silu",
            "mlp",
            "hidden_dims=(512, 256), SiLU",
            lambda m: swap_activation(m, nn.SiLU),
            hidden_dims=(512, 256),
        ),
        _pyvae(
            "mlp-512-512",
            "mlp",
            "hidden_dims=(512, 512)",
            hidden_dims=(512, 512),
        ),
        _pyvae("conv-32-64", "conv", "channels=(32, 64), hidden_dim=256", channels=(32, 64)),
        _pyvae(
            "conv-32-64-he",
            "conv",
            "channels=(32, 64), He initialisation",
            kaiming_init,
            channels=(32, 64),
        ),
        _pyvae(
            "conv-32-64-silu",
            "conv",
            "channels=(32, 64), SiLU",
            lambda m: swap_activation(m, nn.SiLU),
            channels=(32, 64),
        ),
        _pyvae("conv-k4", "conv", "channels=(32, 64), 4x4 kernels", kernel4, channels=(32, 64)),
        _pyvae(
            "conv-k4-he",
            "conv",
            "channels=(32, 64), 4x4 kernels, He initialisation",
            lambda m: kaiming_init(kernel4(m)),
            channels=(32, 64),
        ),
        _pyvae(
            "conv-k4-he-out1",
            "conv",
            "channels=(32, 64), 4x4 kernels, He initialisation of the layers an activation "
            "follows, gain 1 for the output layers (posterior head, decoder output)",
            lambda m: kaiming_hidden_init(kernel4(m)),
            channels=(32, 64),
        ),
        _pyvae(
            "conv-k4-lecun",
            "conv",
            "channels=(32, 64), 4x4 kernels, LeCun initialisation (N(0, 1/fan_in))",
            lambda m: lecun_init(kernel4(m)),
            channels=(32, 64),
        ),
        _pyvae(
            "conv-32-64-lecun",
            "conv",
            "channels=(32, 64), LeCun initialisation (N(0, 1/fan_in))",
            lecun_init,
            channels=(32, 64),
        ),
        _pyvae(
            "mlp-512-256-lecun",
            "mlp",
            "hidden_dims=(512, 256), LeCun initialisation (N(0, 1/fan_in))",
            lecun_init,
            hidden_dims=(512, 256),
        ),
        _pyvae(
            "mlp-400-he",
            "mlp",
            "hidden_dims=(400,), He initialisation",
            kaiming_init,
            hidden_dims=(400,),
        ),
        _pyvae("mlp-1024", "mlp", "hidden_dims=(1024,)", hidden_dims=(1024,)),
        _pyvae(
            "mlp-512-he",
            "mlp",
            "hidden_dims=(512,), He initialisation",
            kaiming_init,
            hidden_dims=(512,),
        ),
        _pyvae(
            "mlp-1024-he",
            "mlp",
            "hidden_dims=(1024,), He initialisation",
            kaiming_init,
            hidden_dims=(1024,),
        ),
        _pyvae(
            "mlp-1024-512-he",
            "mlp",
            "hidden_dims=(1024, 512), He initialisation",
            kaiming_init,
            hidden_dims=(1024, 512),
        ),
    ]
}


# -- training ------------------------------------------------------------------------------
def splits() -> tuple[torch.Tensor, torch.Tensor]:
    """(training images 0-7999 in [0, 1], evaluation images 8000-9999 binarised once, seed 0)."""
    images = mnist_images()
    train, held_out = images[:N_TRAIN], images[N_TRAIN:]
    binarised = torch.bernoulli(held_out, generator=torch.Generator().manual_seed(0))
    return train, binarised


def train_subset(train_x: torch.Tensor) -> torch.Tensor:
    """Training images 0-1999 binarised once (seed 1): the -ELBO on data the model was trained
    on, against the held-out one, shows how much of a difference is fitting and how much is
    generalisation."""
    return torch.bernoulli(train_x[:2000], generator=torch.Generator().manual_seed(1))


def evaluate(candidate: Candidate, model: nn.Module, data: torch.Tensor) -> float:
    """The mean negative ELBO of ``data`` in nats, with the same posterior noise for everyone."""
    model.eval()
    torch.manual_seed(12345)
    with torch.no_grad():
        total = sum(candidate.neg_elbo(model, x).sum().item() for x in data.split(500))
    model.train()
    return total / len(data)


def train(
    candidate: Candidate,
    seed: int,
    epochs: list[int],
    train_x: torch.Tensor,
    eval_x: torch.Tensor,
) -> list[dict[str, Any]]:
    """Train one model to ``max(epochs)`` epochs; one row at each of ``epochs``. The evaluations
    run under a forked random state, so the rows at 5 epochs of a 50-epoch run are those of a
    5-epoch run."""
    torch.manual_seed(seed)
    model = candidate.build()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    fit_x = train_subset(train_x)
    rows, seconds = [], 0.0
    for epoch in range(1, max(epochs) + 1):
        start = time.perf_counter()
        for index in torch.randperm(len(train_x)).split(BATCH):
            x = torch.bernoulli(train_x[index])
            loss = candidate.neg_elbo(model, x).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
        if epoch in epochs:
            with torch.random.fork_rng(devices=[]):
                held_out = evaluate(candidate, model, eval_x)
                fit = evaluate(candidate, model, fit_x)
            rows.append(
                {
                    "candidate": candidate.label,
                    "seed": seed,
                    "epochs": epoch,
                    "neg_elbo": held_out,
                    "train_neg_elbo": fit,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "seconds": seconds,
                }
            )
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (candidate, epochs): median and range of the negative ELBO over seeds."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["candidate"], row["epochs"]), []).append(row)
    out = []
    for (label, epochs), group in groups.items():
        values = [r["neg_elbo"] for r in group]
        out.append(
            {
                "candidate": label,
                "epochs": epochs,
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "seeds": sorted(r["seed"] for r in group),
                "parameters": group[0]["parameters"],
                "seconds": statistics.median(r["seconds"] for r in group),
                "train": (
                    statistics.median(r["train_neg_elbo"] for r in group)
                    if all("train_neg_elbo" in r for r in group)
                    else None
                ),
            }
        )
    return out


def _curves(summary: list[dict[str, Any]]) -> list[str]:
    """A table of the median -ELBO against epochs, for the candidates trained with checkpoints
    (rows at three epochs or more), each seed set in its own column of medians."""
    by_label: dict[str, dict[int, dict[str, Any]]] = {}
    for r in summary:
        by_label.setdefault(r["candidate"], {})[r["epochs"]] = r
    curves = {label: rows for label, rows in by_label.items() if len(rows) >= 3}
    if not curves:
        return []
    epochs = sorted({e for rows in curves.values() for e in rows})
    lines = [
        "## Against epochs",
        "",
        "Median -ELBO over the seeds at each epoch, from the runs trained with checkpoints "
        "(`--epochs 1 2 5 ... 50`: one run per seed, evaluated along the way).",
        "",
        "| model | " + " | ".join(str(e) for e in epochs) + " |",
        "|---|" + "---|" * len(epochs),
    ]
    for label, rows in sorted(curves.items(), key=lambda kv: kv[1][max(kv[1])]["median"]):
        cells = [f"{rows[e]['median']:.1f}" if e in rows else "–" for e in epochs]
        lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
    return [*lines, ""]


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (candidate, seed, epochs): a later row replaces an earlier one (a rerun with
    checkpoints reproduces a row and adds the training-set figure)."""
    return list({(r["candidate"], r["seed"], r["epochs"]): r for r in rows}.values())


def render(
    rows: list[dict[str, Any]],
    info: dict[str, str],
    command: str,
    note: str = "",
    tables: tuple[int, ...] = (5, 50),
) -> str:
    summary = summarise(latest(rows))
    lines = [
        "# Default models against the textbook ones",
        "",
        "<!-- generated by `python benchmarks/defaults.py`; do not edit by hand -->",
        "",
        f"Command: `{command}`; written {info['measured (UTC)']} UTC on {info['cpu']} "
        f"({info['torch threads']} torch thread(s), torch {info['torch']}; load average "
        f"{info['load average (1, 5, 15 min) at start']} at the start).",
        "",
        "Protocol: Adam (lr 1e-3), batch 128, latent size 16, images 0-7999 of the MNIST test set "
        "with dynamic binarisation for training; the negative ELBO (nats per image, lower is "
        "better) of images 8000-9999, binarised once (seed 0), one posterior sample per image with "
        "the same seed for every model. Median over the seeds, with the range (min - max). "
        "`textbook-*` rows are hand-written plain-PyTorch models (no pyvae). The training-set "
        "column is the median -ELBO of training images 0-1999, binarised once (seed 1), where "
        "it was recorded: the difference between the two columns is the generalisation gap.",
        "",
        *([note, ""] if note else []),
    ]
    for epochs in sorted({r["epochs"] for r in summary} & set(tables)):
        lines += [f"## {epochs} epochs", ""]
        lines += [
            "| model | -ELBO (median) | range | seeds | training-set -ELBO | parameters "
            "| train s (median) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sorted((r for r in summary if r["epochs"] == epochs), key=lambda r: r["median"]):
            lines.append(
                f"| `{r['candidate']}` | {r['median']:.2f} | {r['min']:.2f} - {r['max']:.2f} | "
                f"{', '.join(map(str, r['seeds']))} | "
                f"{'–' if r['train'] is None else format(r['train'], '.2f')} | "
                f"{r['parameters']:,} | {r['seconds']:.0f} |"
            )
        lines.append("")
    lines += _curves(summary)
    lines += ["## The candidates", ""]
    lines += [
        f"- `{c}`: {CANDIDATES[c].description.strip()}"
        for c in dict.fromkeys(r["candidate"] for r in summary)
        if c in CANDIDATES
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=None, help=f"of {list(CANDIDATES)}")
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument(
        "--epochs", type=int, nargs="+", default=[5], help="train to the largest; a row at each"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "defaults-results.md")
    parser.add_argument("--json", type=Path, default=None, help="append raw rows here (JSON lines)")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, help="only render")
    parser.add_argument("--note", default="", help="a paragraph for the page (how rows were run)")
    args = parser.parse_args()
    shown = [a for i, a in enumerate(sys.argv[1:]) if a != "--note" and sys.argv[i] != "--note"]
    command = "python benchmarks/defaults.py " + " ".join(shown)
    info = {"measured (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), **machine()}
    if args.from_json:
        rows = [json.loads(line) for p in args.from_json for line in p.read_text().splitlines()]
        info["torch threads"] = f"{args.threads} (when trained)"
        info["load average (1, 5, 15 min) at start"] = "see the note below"
        args.out.write_text(render(rows, info, command, args.note))
        print(f"wrote {args.out}")
        return
    torch.set_num_threads(args.threads)
    info["torch threads"] = str(torch.get_num_threads())
    labels = args.candidates or [
        label
        for label in ("textbook-mlp", "pyvae-mlp", "textbook-conv", "pyvae-conv")
        if CANDIDATES[label].model in args.models
    ]
    train_x, eval_x = splits()
    rows = []
    for seed in args.seeds:
        for label in labels:
            for row in train(CANDIDATES[label], seed, sorted(set(args.epochs)), train_x, eval_x):
                print(json.dumps(row), flush=True)
                rows.append(row)
                if args.json is not None:
                    with args.json.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    info["load average (1, 5, 15 min) at the end"] = load_average()
    args.out.write_text(render(rows, info, command, args.note))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

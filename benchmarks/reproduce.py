"""Reproduce the literature: the paper protocol on complete MNIST, beside the published numbers.

The protocol of the VAE literature: train on the 60,000 MNIST training images with dynamic
binarisation (a fresh Bernoulli draw of every pixel in every epoch), evaluate on the 10,000 test
images (one fixed, seeded binarisation) the negative ELBO and the negative log-likelihood by
importance sampling with k = 5000, in nats. Each entry of :data:`ENTRIES` is a pyvae build config
with the published figure beside it; the script trains it, scores it with :func:`pyvae.evaluate`
and writes JSON and the docs page ``docs/reproducing.md``.

    python benchmarks/reproduce.py --entries vae_burda vamp --epochs 100      # the cheap rows
    python benchmarks/reproduce.py --quick --out /tmp/reproduce.json         # pipeline check

``--quick`` trains on 2,000 training images for one epoch and scores 200 test images with
k = 20: it checks that the pipeline works, not the numbers. Entries whose parts are not
registered (a family not built yet) are reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyvae
from benchmarks.common import REPO, machine
from pyvae.data import read_mnist_folder

MNIST_FULL = REPO.parent / "shared" / "data" / "mnist-full"
DOCS_PAGE = REPO / "docs" / "reproducing.md"


@dataclass
class Entry:
    """One row: a build config and the published figure it is compared with."""

    label: str
    config: dict[str, Any]
    published_nll: float | None
    source: str
    lr: float = 1e-3
    batch_size: int = 100
    notes: str = ""
    requires: tuple[str, ...] = field(default_factory=tuple)


def _burda(objective: Any = "elbo", **extra: Any) -> dict[str, Any]:
    """Burda et al. (2016)'s one-stochastic-layer architecture: 784-200-200-50 (tanh in the
    paper; pyvae's mlp uses ReLU unless it offers an ``activation`` argument)."""
    config: dict[str, Any] = {
        "name": "mlp",
        "latent_dim": 50,
        "hidden_dims": [200, 200],
        "objective": objective,
        **extra,
    }
    return config


ENTRIES: dict[str, Entry] = {
    "vae_burda": Entry(
        "VAE (Burda et al. 2016 architecture)",
        _burda(),
        86.76,
        "Burda, Grosse and Salakhutdinov 2016, Table 1 (VAE, k=1, one stochastic layer)",
    ),
    "iwae5_burda": Entry(
        "IWAE k=5",
        _burda({"name": "iwae", "k": 5}),
        85.54,
        "Burda et al. 2016, Table 1 (IWAE, k=5, one stochastic layer)",
        requires=("objective:iwae",),
    ),
    "iwae50_burda": Entry(
        "IWAE k=50",
        _burda({"name": "iwae", "k": 50}),
        84.78,
        "Burda et al. 2016, Table 1 (IWAE, k=50, one stochastic layer)",
        requires=("objective:iwae",),
    ),
    "vamp": Entry(
        "VampPrior, K=500",
        {
            "name": "mlp",
            "latent_dim": 40,
            "hidden_dims": [300, 300],
            "prior": {"name": "vamp", "n_components": 500},
        },
        85.57,
        "Tomczak and Welling 2018, Table 2 (VAE + VampPrior, one stochastic layer)",
        notes="the paper's gated MLP layers are plain ReLU layers here",
    ),
    "iaf": Entry(
        "IAF posterior",
        {"name": "mlp", "latent_dim": 50, "hidden_dims": [200, 200], "posterior": "iaf"},
        None,
        "Kingma et al. 2016 report IAF on MNIST with a ResNet VAE (79.88); no MLP figure",
        requires=("posterior:iaf",),
    ),
    "ladder": Entry(
        "Ladder VAE, 2 stochastic layers",
        {"name": "ladder", "latent_dims": [64, 32]},
        81.74,
        "Sønderby et al. 2016, Table 1 (LVAE, 2 layers, with warm-up and batch normalisation)",
        requires=("model:ladder",),
    ),
    "pyvae_mlp": Entry("pyvae.build('mlp') (defaults)", {"name": "mlp"}, None, "pyvae default"),
    "pyvae_conv": Entry("pyvae.build('conv') (defaults)", {"name": "conv"}, None, "pyvae default"),
}


def _missing(entry: Entry) -> str | None:
    """Why an entry cannot be built here (a part not registered), or None."""
    listing = {
        "model": pyvae.list_models,
        "objective": pyvae.list_objectives,
        "posterior": pyvae.list_posteriors,
    }
    for need in entry.requires:
        kind, name = need.split(":")
        if name not in listing[kind]():
            return f"the {kind} {name!r} is not registered in this pyvae"
    return None


def run_entry(
    entry: Entry,
    splits: pyvae.data.DataSplits,
    *,
    epochs: int,
    k: int,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Train one entry with dynamic binarisation and score it on the fixed binarised test set."""
    torch.manual_seed(seed)
    model = pyvae.build(entry.config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=entry.lr)
    generator = torch.Generator().manual_seed(seed)
    loader = splits.train.loader(entry.batch_size, dynamic_binarization=True, generator=generator)
    test = splits.eval.binarized(seed=seed)
    curve = []
    start, steps = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        for x, _ in loader:
            x = x.to(device)
            terms = model.loss(x, model(x))
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizer.step()
            total += float(terms.loss.detach()) * len(x)
            count += len(x)
            steps += 1
        curve.append({"epoch": epoch, "train_loss": total / count})
    seconds = time.perf_counter() - start
    report = pyvae.evaluate(model, test.images.to(device), k=k, mutual_information=False)
    return {
        "label": entry.label,
        "config": entry.config,
        "neg_elbo": report.neg_elbo,
        "nll": report.nll,
        "nll_stderr": report.nll_stderr,
        "k": k,
        "published_nll": entry.published_nll,
        "source": entry.source,
        "notes": entry.notes,
        "epochs": epochs,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "seed": seed,
        "device": str(device),
        "train_curve": curve,
    }


def write_page(results: dict[str, Any], path: Path) -> None:
    """The docs page: one row per entry, the published figure beside the measured one."""
    lines = [
        "# Reproducing published results",
        "",
        "The protocol of the VAE literature on complete MNIST (`../shared/data/mnist-full`):",
        "60,000 dynamically binarised training images, the 10,000 test images binarised once",
        "(seeded), test NLL by importance sampling, in nats (lower is better). Produced by",
        "`benchmarks/reproduce.py`; the JSON beside this page holds every number and the",
        "training curves.",
        "",
        f"Machine: {results['machine'].get('cpu', '?')}, {results['machine'].get('accelerator')}"
        f"; torch {results['machine'].get('torch')}.",
        "",
        "| entry | epochs | -ELBO | NLL (k) | published NLL | source | command |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, row in results["entries"].items():
        command = f"`python benchmarks/reproduce.py --entries {key} --epochs {row.get('epochs')}`"
        if "skipped" in row:
            lines.append(f"| {key} | – | – | – | – | skipped: {row['skipped']} | {command} |")
            continue
        published = "–" if row["published_nll"] is None else f"{row['published_nll']:.2f}"
        nll = f"{row['nll']:.2f} ± {row['nll_stderr']:.2f} ({row['k']})"
        lines.append(
            f"| {row['label']} | {row['epochs']} | {row['neg_elbo']:.2f} | {nll} | {published} "
            f"| {row['source']} | {command} |"
        )
    lines += [
        "",
        "± is the standard error of the mean NLL over the test images. The published figures",
        "come from far longer training (Burda et al. trained for 3,280 passes over the data);",
        "the budget of each row is its epoch count.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", nargs="*", default=list(ENTRIES), choices=list(ENTRIES))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=MNIST_FULL)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reproducing.json")
    parser.add_argument("--page", type=Path, default=None, help="docs page (default: none)")
    parser.add_argument("--quick", action="store_true", help="a pipeline check, not the numbers")
    args = parser.parse_args(argv)
    splits = read_mnist_folder(args.data)
    if args.quick:
        splits = pyvae.data.DataSplits(
            splits.name, splits.train.head(2000), splits.eval.head(200), note="quick"
        )
        args.epochs, args.k = 1, 20
    device = torch.device(args.device)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "entries": {}}
    for key in args.entries:
        entry = ENTRIES[key]
        reason = _missing(entry)
        if reason is not None:
            results["entries"][key] = {"skipped": reason, "epochs": args.epochs}
            print(f"{key}: skipped ({reason})", flush=True)
            continue
        row = run_entry(entry, splits, epochs=args.epochs, k=args.k, seed=args.seed, device=device)
        results["entries"][key] = row
        print(
            f"{key}: -ELBO {row['neg_elbo']:.2f}, NLL {row['nll']:.2f} ± {row['nll_stderr']:.2f}"
            f" (k={row['k']}), {row['train_seconds']} s",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, allow_nan=False), encoding="utf-8")
    if args.page is not None:
        write_page(results, args.page)
    return results


if __name__ == "__main__":
    main()

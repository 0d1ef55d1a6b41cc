"""The family table: every model family on the same small MNIST budget, beside the plain VAE.

Each row of :data:`ROWS` is a ``pyvae.build`` config (a backbone with a posterior, prior,
objective or ``num_classes``). Every row is trained the same way, in one run: the 8,000/2,000
split of the MNIST test set in ``../shared/data/mnist`` (:func:`pyvae.data.read_mnist_folder`:
images 0-7999 train, 8000-9999 evaluate), dynamic binarisation (a fresh Bernoulli draw of each
pixel in every batch), Adam at 1e-3, batch 128, 5 epochs, seeds 0, 1, 2. On the evaluation split,
binarised once (seeded), it reports per row the median over seeds of

* ``-ELBO`` (nats; one sample of z per image, the KL in closed form where there is one);
* ``recon``: the reconstruction term ``-log p(x|z)`` at one sample (for ``ae`` at its code: the
  only figure a deterministic autoencoder has);
* ``IW-NLL``: ``-log p(x)`` by importance sampling with k = 1000 (``pyvae.log_likelihood``);
* seconds per training epoch, wall clock and this process's CPU time (with one thread the CPU
  time moves less with the machine's load than the wall clock does);
* family-specific figures (a row's ``extras``), in a second table: the VQ-VAE's codebook
  perplexity, the Ladder VAE's KL per layer, and for ``ae`` and ``vqvae`` a sample-quality proxy
  with and without a fitted latent sampler: the mean Euclidean distance (pixel space) from each of
  500 generated images (likelihood means) to its nearest evaluation image, lower is closer to the
  data. The proxy is crude (it rewards blurry means and cannot see a lack of diversity), but it
  needs no extra network and separates samples that look like digits from ones that do not.

    OMP_NUM_THREADS=1 python benchmarks/families.py                     # the full protocol
    OMP_NUM_THREADS=1 python benchmarks/families.py --seeds 0 --nll-limit 250   # a cheaper run
    python benchmarks/families.py --quick --out /tmp/f.json --page none         # pipeline check

It writes the JSON (``docs/families.json``) and the table into ``docs/families.md``, between the
``<!-- family-table -->`` markers, and each family's row between its ``<!-- family-row:KEY -->``
markers. Rows whose parts are not registered in this pyvae are reported as skipped, with the
reason; add a family by adding a :class:`Row`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/families.py`

import pyvae
from benchmarks.common import MNIST_DIR, REPO, load_average, machine
from pyvae.data import DataSplits, read_mnist_folder

DOCS_PAGE = REPO / "docs" / "families.md"
LATENT = 16
MLP = {"name": "mlp", "latent_dim": LATENT}


@dataclass
class Row:
    """One family: its build config, what it needs registered, how to read it."""

    label: str
    config: dict[str, Any]
    requires: tuple[str, ...] = field(default_factory=tuple)  # "model:x", "objective:y", ...
    conditional: bool = False  # trained and scored with the digit labels
    deterministic: bool = False  # no density: recon only, no -ELBO / IW-NLL
    # family-specific figures: (model, splits, evaluation images, seed) -> {name: value}
    extras: Callable[[pyvae.BaseVAE, DataSplits, torch.Tensor, int], dict[str, float]] | None = None
    # called after each optimiser step with (model, batch, step): codebook maintenance
    step_hook: Callable[[pyvae.BaseVAE, torch.Tensor, int], None] | None = None


def restart_codes(model: pyvae.BaseVAE, x: torch.Tensor, step: int) -> None:
    """Every 100 steps, move the VQ-VAE's codes used less than once per batch (on average
    lately) onto encoder outputs of the batch."""
    if step % 100 == 99:
        assert isinstance(model, pyvae.VQVAE)
        model.restart_dead_codes(x, min_usage=1.0)


N_SAMPLES = 500  # generated images scored by the sample-quality proxy


def nearest_distance(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """The sample-quality proxy: mean Euclidean distance from each sample to its nearest
    reference image (pixel space); lower is closer to the data."""
    return float(torch.cdist(samples.flatten(1), reference.flatten(1)).min(1).values.mean())


def ae_extras(
    model: pyvae.BaseVAE, splits: DataSplits, x: torch.Tensor, seed: int
) -> dict[str, float]:
    """``ae``: decoded N(0, I) codes against a 10-component GMM fitted to the training codes."""
    from pyvae.samplers import GaussianMixtureSampler

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(N_SAMPLES, model.latent_dim, generator=g)
        standard = model.likelihood.mean(model.decode(z))
    sampler = GaussianMixtureSampler(model, n_components=10, seed=seed).fit(splits.train.images)
    fitted = sampler.sample(N_SAMPLES, generator=g)
    return {
        "sample NN distance, N(0, I) codes": nearest_distance(standard, x),
        "sample NN distance, GMM sampler": nearest_distance(fitted, x),
    }


def vqvae_extras(
    model: pyvae.BaseVAE, splits: DataSplits, x: torch.Tensor, seed: int
) -> dict[str, float]:
    """``vqvae``: codebook perplexity on the evaluation split; samples from uniformly drawn codes
    (the prior the training assumes) against the fitted per-position categorical prior."""
    from pyvae.models.vqvae import codebook_perplexity

    assert isinstance(model, pyvae.VQVAE)
    indices = torch.cat([model.code_indices(x[i : i + 500]) for i in range(0, len(x), 500)])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        positions = model.grid[0] * model.grid[1]
        uniform = torch.randint(0, model.codebook_size, (N_SAMPLES, positions), generator=g)
        z = model.codebook[uniform].transpose(1, 2).reshape(N_SAMPLES, -1)
        standard = model.likelihood.mean(model.decode(z))
    model.fit_prior(splits.train.images)
    fitted = model.sample(N_SAMPLES, generator=g)
    return {
        "codebook perplexity (of 64)": float(codebook_perplexity(indices, model.codebook_size)),
        "sample NN distance, uniform codes": nearest_distance(standard, x),
        "sample NN distance, fitted code prior": nearest_distance(fitted, x),
    }


def ladder_extras(
    model: pyvae.BaseVAE, splits: DataSplits, x: torch.Tensor, seed: int
) -> dict[str, float]:
    """``ladder``: the KL of each stochastic layer (nats, mean over the evaluation split)."""
    with torch.no_grad():
        layers = torch.cat(
            [
                model.loss(x[i : i + 500], model(x[i : i + 500])).kl_layers
                for i in range(0, len(x), 500)
            ]
        ).mean(0)
    dims = getattr(model, "latent_dims", ())
    return {
        f"KL layer {i + 1} (d={d})": float(v)
        for i, (v, d) in enumerate(zip(layers, dims, strict=True))
    }


ROWS: dict[str, Row] = {
    "vae": Row("VAE (mlp, gaussian)", dict(MLP)),
    "conv": Row("VAE (conv)", {"name": "conv", "latent_dim": LATENT}),
    "full_gaussian": Row(
        "full-covariance Gaussian",
        {**MLP, "posterior": "full_gaussian"},
        ("posterior:full_gaussian",),
    ),
    "planar": Row(
        "planar flow, 4 steps",
        {**MLP, "posterior": {"name": "planar", "n_steps": 4}},
        ("posterior:planar",),
    ),
    "iaf": Row(
        "IAF, 2 steps",
        {**MLP, "posterior": {"name": "iaf", "n_steps": 2, "hidden": 64, "context": 32}},
        ("posterior:iaf",),
    ),
    "beta_tc": Row(
        "beta-TC-VAE (beta 6)",
        {**MLP, "objective": {"name": "beta_tc", "beta": 6.0, "dataset_size": 8000}},
        ("objective:beta_tc",),
    ),
    "mmd": Row("InfoVAE (mmd)", {**MLP, "objective": "mmd"}, ("objective:mmd",)),
    "iwae": Row("IWAE k=5", {**MLP, "objective": {"name": "iwae", "k": 5}}, ("objective:iwae",)),
    "free_bits": Row(
        "free bits 0.5",
        {**MLP, "objective": {"name": "elbo", "free_bits": 0.5}},
        ("objective:elbo.free_bits",),
    ),
    "vamp": Row("VampPrior (50)", {**MLP, "prior": {"name": "vamp", "n_components": 50}}),
    "conditional": Row(
        "conditional conv",
        {"name": "conv", "latent_dim": LATENT, "num_classes": 10},
        conditional=True,
    ),
    "ae": Row(
        "autoencoder (ae)",
        {"name": "ae", "latent_dim": LATENT, "hidden_dims": [512, 256]},
        deterministic=True,
        extras=ae_extras,
    ),
    "vqvae": Row(
        "VQ-VAE (codebook loss)",
        {"name": "vqvae"},
        ("model:vqvae",),
        deterministic=True,
        extras=vqvae_extras,
    ),
    "vqvae_ema": Row(
        "VQ-VAE (EMA codebook, dead-code restarts every 100 steps)",
        {"name": "vqvae", "ema_decay": 0.99, "init": "he"},
        ("model:vqvae",),
        deterministic=True,
        extras=vqvae_extras,
        step_hook=restart_codes,
    ),
    "ladder": Row("Ladder VAE", {"name": "ladder"}, ("model:ladder",), extras=ladder_extras),
    "ladder_warmup": Row(
        "Ladder VAE, KL warm-up over 300 steps",
        {
            "name": "ladder",
            "objective": {"name": "elbo", "schedule": {"name": "linear", "warmup_steps": 300}},
        },
        ("model:ladder", "objective:elbo.schedule"),
        extras=ladder_extras,
    ),
}


def missing(row: Row) -> str | None:
    """Why a row cannot be built in this pyvae (a part not registered), or None."""
    listing: dict[str, Callable[[], list[str]]] = {
        "model": pyvae.list_models,
        "objective": pyvae.list_objectives,
        "posterior": pyvae.list_posteriors,
        "prior": pyvae.list_priors,
    }
    for need in row.requires:
        kind, name = need.split(":")
        name, _, argument = name.partition(".")
        if name not in listing[kind]():
            return f"the {kind} {name!r} is not registered"
        if argument:
            import inspect

            parameters = inspect.signature(pyvae.OBJECTIVES.get(name)).parameters
            if argument not in parameters:
                return f"the {kind} {name!r} has no {argument!r} option"
    return None


def train_and_score(
    row: Row, splits: DataSplits, *, epochs: int, seed: int, k: int, nll_limit: int
) -> dict[str, Any]:
    """Train one row with one seed; score it on the fixed binarisation of the eval split."""
    torch.manual_seed(seed)
    model = pyvae.build(row.config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    loader = splits.train.loader(128, dynamic_binarization=True, generator=generator)
    wall, cpu, losses = [], [], []
    step = 0
    for _ in range(epochs):
        model.train()
        start, start_cpu, total, count = time.perf_counter(), time.process_time(), 0.0, 0
        for x, y in loader:
            out = model(x, y) if row.conditional else model(x)
            terms = model.loss(x, out)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizer.step()
            if row.step_hook is not None:
                row.step_hook(model, x, step)
            step += 1
            total += float(terms.loss.detach()) * len(x)
            count += len(x)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        losses.append(total / count)
    model.eval()
    test = splits.eval.binarized(seed=1234)
    x, y = test.images, test.labels if row.conditional else None
    result: dict[str, Any] = {
        "seed": seed,
        "train_loss": losses,
        "seconds_per_epoch": statistics.median(wall),
        "cpu_seconds_per_epoch": statistics.median(cpu),
    }
    torch.manual_seed(10_000 + seed)
    with torch.no_grad():
        recon = []
        for start in range(0, len(x), 500):
            xb = x[start : start + 500]
            yb = None if y is None else y[start : start + 500]
            out = model(xb, yb) if yb is not None else model(xb)
            recon.append(model.reconstruction_term(xb, out))
        result["recon"] = float(torch.cat(recon).mean())
    if row.extras is not None:
        torch.manual_seed(20_000 + seed)
        result["extras"] = row.extras(model, splits, x, seed)
    with torch.no_grad():
        if row.deterministic:
            return result
        result["neg_elbo"] = float(-pyvae.evaluation.elbo(model, x, y=y).mean())
        xs, ys = x[:nll_limit], None if y is None else y[:nll_limit]
        result["nll"] = float(-pyvae.log_likelihood(model, xs, y=ys, k=k).mean())
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The median over seeds of each figure."""
    keys = ("neg_elbo", "recon", "nll", "seconds_per_epoch", "cpu_seconds_per_epoch")
    median: dict[str, Any] = {
        key: statistics.median(r[key] for r in runs) if all(key in r for r in runs) else None
        for key in keys
    }
    if all("extras" in r for r in runs):
        median["extras"] = {
            name: statistics.median(r["extras"][name] for r in runs) for name in runs[0]["extras"]
        }
    return median


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


HEADER = [
    "| family | config | -ELBO | recon | IW-NLL | s/epoch (wall) | CPU s/epoch |",
    "| --- | --- | --- | --- | --- | --- | --- |",
]


def table_row(key: str, entry: dict[str, Any]) -> str:
    if "skipped" in entry:
        return f"| {key} | – | – | – | – | – | skipped: {entry['skipped']} |"
    m = entry["median"]
    config = json.dumps(entry["config"], separators=(",", ":")).replace("|", "\\|")
    return (
        f"| {entry['label']} | `{config}` | {_fmt(m['neg_elbo'])} | {_fmt(m['recon'])} | "
        f"{_fmt(m['nll'])} | {_fmt(m['seconds_per_epoch'])} | "
        f"{_fmt(m['cpu_seconds_per_epoch'])} |"
    )


EXTRAS_HEADER = ["| family | figure | median |", "| --- | --- | --- |"]


def extras_rows(key: str, entry: dict[str, Any]) -> list[str]:
    """The family-specific figures of a row (none for most rows)."""
    extras = entry.get("median", {}).get("extras") or {}
    return [f"| {entry['label']} | {name} | {value:.2f} |" for name, value in extras.items()]


def table(results: dict[str, Any]) -> str:
    p = results["protocol"]
    lines = [
        f"Measured {results['finished']} with `{results['command']}`: seeds "
        f"{', '.join(map(str, p['seeds']))} (median over seeds), {p['epochs']} epochs on "
        f"{p['n_train']} training images, -ELBO and recon on {p['n_eval']} evaluation images, "
        f"IW-NLL (k={p['k']}) on the first {p['nll_examples']} of them; nats, lower is better. "
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"torch {results['machine']['torch']}, {results['machine']['torch threads']} thread; "
        f"load average (1, 5, 15 min) {results['load_at_start']} at the start and "
        f"{results['load_at_end']} at the end (the machine was shared: wall-clock times are "
        f"noisy, compare CPU times and ratios within this run).",
        "",
        *HEADER,
        *(table_row(key, entry) for key, entry in results["rows"].items()),
    ]
    extras = [line for key, entry in results["rows"].items() for line in extras_rows(key, entry)]
    if extras:
        lines += ["", "Family-specific figures (median over the same seeds):", "", *EXTRAS_HEADER]
        lines += extras
    return "\n".join(lines)


def write_page(results: dict[str, Any], path: Path, *, rows_only: bool = False) -> None:
    """Replace the table between the ``<!-- family-table -->`` markers of ``path`` (unless
    ``rows_only``: a run of some rows leaves the full table alone) and each family's row between
    its ``<!-- family-row:KEY -->`` markers (with its family-specific figures)."""
    text = path.read_text(encoding="utf-8")
    if not rows_only:
        text = _replace(text, "family-table", table(results))
    for key, entry in results["rows"].items():
        body = [*HEADER, table_row(key, entry)]
        extras = extras_rows(key, entry)
        if extras:
            body += ["", *EXTRAS_HEADER, *extras]
        if rows_only:
            body += ["", _provenance(results)]
        text = _replace(text, f"family-row:{key}", "\n".join(body))
    path.write_text(text, encoding="utf-8")


def _provenance(results: dict[str, Any]) -> str:
    p = results["protocol"]
    return (
        f"Measured {results['finished']} with `{results['command']}` (seeds "
        f"{', '.join(map(str, p['seeds']))}, median; IW-NLL on {p['nll_examples']} images; load "
        f"average {results['load_at_start']} at the start, {results['load_at_end']} at the end)."
    )


def _replace(text: str, marker: str, body: str) -> str:
    pattern = re.compile(
        rf"(<!-- {re.escape(marker)} -->\n).*?(\n<!-- /{re.escape(marker)} -->)", re.DOTALL
    )
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--nll-limit", type=int, default=2000, help="eval images scored by NLL")
    parser.add_argument("--data", type=Path, default=MNIST_DIR)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "families.json")
    parser.add_argument("--page", default=str(DOCS_PAGE), help="docs page, or 'none'")
    parser.add_argument("--quick", action="store_true", help="a pipeline check, not the numbers")
    parser.add_argument(
        "--rows-only", action="store_true", help="write only the rows' own sections of the page"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    splits = read_mnist_folder(args.data, eval_size=2000)
    if args.quick:
        splits = DataSplits(splits.name, splits.train.head(256), splits.eval.head(64), note="quick")
        args.epochs, args.k, args.seeds = 1, 4, [0]
    command = "python benchmarks/families.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "load_at_start": load_average(),
        "command": "OMP_NUM_THREADS=1 " + command.strip(),
        "protocol": {
            "epochs": args.epochs,
            "seeds": args.seeds,
            "k": args.k,
            "n_train": len(splits.train),
            "n_eval": len(splits.eval),
            "nll_examples": min(args.nll_limit, len(splits.eval)),
            "batch_size": 128,
            "lr": 1e-3,
            "data": splits.note,
        },
        "quick": args.quick,
        "rows": {},
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    for key in args.rows:
        reason = missing(ROWS[key])
        if reason is not None:
            results["rows"][key] = {"skipped": reason}
            print(f"{key}: skipped ({reason})", flush=True)
        else:
            runs[key] = []
    # seeds outermost: after each pass over the rows the table is complete and written, so a run
    # cut short still leaves a table (its seeds are the ones listed in it)
    for seed in args.seeds:
        for key in runs:
            row = ROWS[key]
            if "failed" in results["rows"].get(key, {}):
                continue
            try:
                runs[key].append(
                    train_and_score(
                        row,
                        splits,
                        epochs=args.epochs,
                        seed=seed,
                        k=args.k,
                        nll_limit=args.nll_limit,
                    )
                )
            except Exception as exc:  # one broken family must not cost the other rows
                results["rows"][key] = {"skipped": f"failed: {type(exc).__name__}: {exc}"}
                results["rows"][key]["failed"] = True
                print(f"{key} seed {seed}: FAILED {exc!r}", flush=True)
                continue
            print(f"{key} seed {seed}: {runs[key][-1]}", flush=True)
            results["rows"][key] = {
                "label": row.label,
                "config": row.config,
                "median": summarise(runs[key]),
                "runs": runs[key],
            }
        results["protocol"]["seeds"] = args.seeds[: args.seeds.index(seed) + 1]
        results["load_at_end"] = load_average()
        results["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        results["rows"] = {k: results["rows"][k] for k in args.rows}  # the table's order
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, allow_nan=False), encoding="utf-8")
        if args.page != "none":
            write_page(results, Path(args.page), rows_only=args.rows_only)
    print(table(results))
    return results


if __name__ == "__main__":
    main()

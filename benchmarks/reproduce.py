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
from pyvae.kl import KLMethod

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
    kl_method: KLMethod = "auto"
    notes: str = ""
    requires: tuple[str, ...] = field(default_factory=tuple)


#: KL warm-up: the KL weight rises linearly from 0 to 1 over 6,000 steps (10 epochs of 60,000
#: images in batches of 100).
WARMUP = {"name": "elbo", "schedule": {"name": "linear", "warmup_steps": 6000}}


def _burda(objective: Any = "elbo", **extra: Any) -> dict[str, Any]:
    """Burda et al. (2016)'s one-stochastic-layer architecture: 784-200-200-50 with tanh."""
    config: dict[str, Any] = {
        "name": "mlp",
        "latent_dim": 50,
        "hidden_dims": [200, 200],
        "activation": "tanh",
        "init": "he",  # with tanh's gain 5/3, as the rows were measured (pyvae 0.2's default)
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
    "vae_burda_mc": Entry(
        "VAE, Monte Carlo KL",
        _burda(),
        None,
        "the VAE row trained with the one-sample KL estimate that flow posteriors need (the "
        "comparison for the IAF row)",
        kl_method="monte_carlo",
    ),
    "vae_burda_warmup": Entry(
        "VAE, KL warm-up",
        _burda(WARMUP),
        None,
        "the VAE row with the VampPrior row's KL warm-up (the comparison for that row)",
    ),
    "vamp": Entry(
        "VampPrior, K=500, KL warm-up",
        _burda(WARMUP, prior={"name": "vamp", "n_components": 500}),
        85.57,
        "Tomczak and Welling 2018, Table 2 (VAE + VampPrior, one stochastic layer)",
        notes="the VAE row's networks (the paper: 300-300 gated layers, 40 latents), so that the "
        "prior is the only difference; KL warm-up over 10 epochs (the paper: 100), without which "
        "this configuration collapsed to KL = 0 within 100 steps",
    ),
    "iaf": Entry(
        "IAF posterior (2 steps)",
        _burda(posterior="iaf"),
        None,
        "Kingma et al. 2016 report IAF on MNIST with a ResNet VAE (79.88); no MLP figure",
        requires=("posterior:iaf",),
    ),
    "ladder": Entry(
        "Ladder VAE, 2 stochastic layers, KL warm-up",
        {
            "name": "ladder",
            "latent_dims": [64, 32],
            "objective": WARMUP,
        },
        81.74,
        "Sønderby et al. 2016, Table 1 (LVAE, 2 layers, with warm-up and batch normalisation)",
        notes="512-256 MLP, KL warm-up over 10 epochs, no batch normalisation",
        requires=("model:ladder",),
    ),
    "pyvae_mlp": Entry("pyvae.build('mlp') (defaults)", {"name": "mlp"}, None, "pyvae default"),
    "pyvae_mlp_lecun": Entry(
        "pyvae.build('mlp', init='lecun')",
        {"name": "mlp", "init": "lecun"},
        None,
        "the mlp default with LeCun initialisation (the conv's default)",
    ),
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


@torch.no_grad()
def per_image_scores(
    model: pyvae.BaseVAE, x: torch.Tensor, *, k: int, batch_size: int = 100
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per test image: the negative ELBO (one sample of z) and, for ``k > 0``, the NLL estimate
    ``-log p(x)`` with ``k`` importance samples; nats, shape (N,) each, in eval mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        neg_elbo = torch.cat([-pyvae.elbo(model, chunk) for chunk in x.split(batch_size)])
        nll = None
        if k > 0:
            nll = torch.cat([-pyvae.log_likelihood(model, c, k=k) for c in x.split(batch_size)])
    finally:
        for module, mode in modes:
            module.training = mode
    return neg_elbo, nll


def nll_estimates(
    neg_elbo: torch.Tensor, subset: torch.Tensor, nll_subset: torch.Tensor
) -> dict[str, float]:
    """The test NLL from the k-sample estimates on a random subset of the test images.

    ``nll_subset``: the mean over the subset, with the standard error of a mean over images.
    ``nll``: the difference estimator for the whole test set, mean over all images of the
    -ELBO minus the subset's mean gap (-ELBO - NLL): unbiased for the whole set's mean when the
    subset is drawn at random, and far tighter than the subset's mean, because the gap varies
    much less between images than the NLL does; its standard error is the gap's over the subset.
    """
    gap = neg_elbo[subset] - nll_subset
    n = len(subset)
    return {
        "neg_elbo": float(neg_elbo.mean()),
        "nll": float(neg_elbo.mean() - gap.mean()),
        "nll_stderr": float(gap.std() / n**0.5),
        "nll_subset": float(nll_subset.mean()),
        "nll_subset_stderr": float(nll_subset.std() / n**0.5),
        "gap": float(gap.mean()),
    }


def run_entry(
    entry: Entry,
    splits: pyvae.data.DataSplits,
    *,
    epochs: int,
    k: int,
    seed: int,
    device: torch.device,
    eval_images: int,
    checkpoints: tuple[int, ...] = (),
    log: Any = print,
) -> dict[str, Any]:
    """Train one entry with dynamic binarisation and score it on the fixed binarised test set:
    -ELBO on every test image, the k-sample NLL on a seeded random subset of ``eval_images``, at
    the end and at each checkpoint epoch (the training curve keeps each image's NLL, so entries
    with the same seed compare pairwise on the same images at the same epoch)."""
    torch.manual_seed(seed)
    model = pyvae.build(entry.config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=entry.lr)
    generator = torch.Generator().manual_seed(seed)
    loader = splits.train.loader(entry.batch_size, dynamic_binarization=True, generator=generator)
    test = splits.eval.binarized(seed=seed).images.to(device)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    subset = order[: min(eval_images, len(test))].sort().values
    curve: list[dict[str, Any]] = []
    train_seconds, steps = 0.0, 0
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        total, count = 0.0, 0
        for x, _ in loader:
            x = x.to(device)
            terms = model.loss(x, model(x), kl_method=entry.kl_method)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizer.step()
            total += float(terms.loss.detach()) * len(x)
            count += len(x)
            steps += 1
        train_seconds += time.perf_counter() - start
        point: dict[str, Any] = {"epoch": epoch, "train_loss": total / count}
        if epoch in checkpoints or epoch == epochs:
            start = time.perf_counter()
            neg_elbo, _ = per_image_scores(model, test, k=0)
            _, nll_subset = per_image_scores(model, test[subset], k=k)
            assert nll_subset is not None
            point.update(nll_estimates(neg_elbo, subset, nll_subset))
            point["eval_seconds"] = round(time.perf_counter() - start, 1)
            point["nll_per_image"] = [round(float(v), 3) for v in nll_subset]
        curve.append(point)
        log(
            f"  epoch {epoch}: "
            + ", ".join(
                f"{key} {value:.2f}" for key, value in point.items() if isinstance(value, float)
            )
        )
    final = curve[-1]
    scores = {
        key: final[key]
        for key in ("neg_elbo", "nll", "nll_stderr", "nll_subset", "nll_subset_stderr", "gap")
    }
    return {
        "label": entry.label,
        "config": entry.config,
        **scores,
        "k": k,
        "nll_images": len(subset),
        "test_images": len(test),
        "published_nll": entry.published_nll,
        "source": entry.source,
        "notes": entry.notes,
        "epochs": epochs,
        "steps": steps,
        "batch_size": entry.batch_size,
        "lr": entry.lr,
        "kl_method": entry.kl_method,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": final["eval_seconds"],
        "threads": torch.get_num_threads(),
        "seed": seed,
        "device": str(device),
        "train_curve": curve,
        # the scored test images; each scored curve point holds their NLLs, for paired
        # comparisons between entries (same seed: same images)
        "subset": subset.tolist(),
    }


#: The orderings the papers report, checked at the comparison epoch: (entry, reference).
#: Each entry's paired NLL difference to its reference should be negative and larger in size
#: than its standard error.
EXPECTED_ORDER = (
    ("iwae5_burda", "vae_burda", "Burda et al. 2016: IWAE k=5 < VAE"),
    ("iwae50_burda", "iwae5_burda", "Burda et al. 2016: IWAE k=50 < IWAE k=5"),
    ("vamp", "vae_burda_warmup", "Tomczak and Welling 2018: VampPrior < VAE (same warm-up)"),
    ("vamp", "vae_burda", "VampPrior < VAE"),
    ("iaf", "vae_burda_mc", "Kingma et al. 2016: IAF posterior < diagonal Gaussian (same MC KL)"),
    ("iaf", "vae_burda", "IAF posterior < diagonal Gaussian with its closed-form KL"),
    ("ladder", "vae_burda", "Sønderby et al. 2016: Ladder VAE (warm-up) < VAE"),
)

#: pythae's published VAE figure on binarised MNIST (its benchmark table), the target of the
#: plain VAE row ("within 1 nat or better").
PYTHAE_VAE = 89.78


def _command(key: str, row: dict[str, Any]) -> str:
    checkpoints = [p["epoch"] for p in row.get("train_curve", []) if "nll" in p]
    extra = checkpoints[:-1]
    flags = f" --checkpoints {' '.join(map(str, extra))}" if extra else ""
    return (
        f"`python benchmarks/reproduce.py --entries {key} --epochs {row['epochs']}{flags} "
        f"--k {row['k']} --eval-images {row['nll_images']} --threads {row['threads']} "
        f"--seed {row['seed']} --out {key}.json`"
    )


def _scored_epochs(row: dict[str, Any]) -> set[int]:
    return {p["epoch"] for p in row.get("train_curve", []) if "nll_per_image" in p}


def _orderings(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim of :data:`EXPECTED_ORDER` whose two entries were scored at a common epoch, at
    the latest such epoch (equal budget)."""
    rows = []
    for entry, reference, claim in EXPECTED_ORDER:
        a, b = results["entries"].get(entry, {}), results["entries"].get(reference, {})
        common = _scored_epochs(a) & _scored_epochs(b)
        if not common:
            continue
        epoch = max(common)
        pair = paired_differences(results, reference, epoch)[entry]
        holds = pair["difference"] < 0 and abs(pair["difference"]) > pair["stderr"]
        rows.append(
            {"entry": entry, "reference": reference, "claim": claim, **pair, "holds": holds}
        )
    return rows


def write_page(results: dict[str, Any], path: Path) -> None:
    """The docs page: one row per entry beside the published figure, the orderings the papers
    report at equal budget, the NLL against epochs of the entries scored on the way, and the
    command of each row."""
    order = [*ENTRIES, *(k for k in results["entries"] if k not in ENTRIES)]
    entries = {
        k: results["entries"][k]
        for k in order
        if k in results["entries"] and "skipped" not in results["entries"][k]
    }
    mach = results["machine"] or {}
    lines = [
        "# Reproducing published results",
        "",
        "The protocol of the VAE literature on complete MNIST (`../shared/data/mnist-full`, the",
        "official files; see [Checkpoints and data](api/io.md)): the 60,000 training images",
        "binarised dynamically",
        "(a fresh Bernoulli draw of every pixel at every pass, "
        "`ImageSet.loader(dynamic_binarization=True)`),",
        "the 10,000 test images binarised once (seeded, `ImageSet.binarized(seed)`), the test",
        "negative log-likelihood by importance sampling with k = 5000, in nats (lower is better).",
        "`benchmarks/reproduce.py` produces this page and the JSON beside it",
        "([reproducing.json](reproducing.json): every number, the training curves and each scored",
        "image's NLL).",
        "",
        "## How the NLL is estimated",
        "",
        "k = 5000 samples for each of the 10,000 test images is about 35 CPU minutes per model",
        "here, so each model is scored on a seeded random subset of the test images (the same",
        "subset for every entry) and the whole test set's mean is estimated by the difference",
        "estimator: the mean -ELBO over all 10,000 images minus the subset's mean gap",
        "(-ELBO - NLL). It is unbiased for the whole set's k = 5000 NLL (the subset is drawn at",
        "random) and far tighter than the subset's own mean, because the gap varies much less",
        "between images than the NLL does; ± is its standard error. The JSON also holds the",
        "subset's own mean (`nll_subset` ± `nll_subset_stderr`).",
        "",
        "## Results",
        "",
        f"Machine: {mach.get('cpu', '?')}, {mach.get('accelerator', '?')}, torch "
        f"{mach.get('torch', '?')}; one thread per run, two to four runs (and other work) at a "
        "time on the 2 cores, in one session: the budget is 50 to 100 epochs, where the papers "
        "trained for thousands (Burda et al. 3,280 passes), and the training minutes are wall "
        "time on that shared machine, not the speed of a run alone.",
        "",
        "| entry | epochs | -ELBO | NLL (k = 5000) | published | training | source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in entries.values():
        published = "–" if row["published_nll"] is None else f"{row['published_nll']:.2f}"
        minutes = row["train_seconds"] / 60
        lines.append(
            f"| {row['label']} | {row['epochs']} | {row['neg_elbo']:.2f} | "
            f"{row['nll']:.2f} ± {row['nll_stderr']:.2f} | {published} | "
            f"{row['steps']:,} steps, {minutes:.0f} min, {row['device']} | {row['source']} |"
        )
    notes = [f"- {row['label']}: {row['notes']}" for row in entries.values() if row["notes"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    skipped = [k for k, r in results["entries"].items() if "skipped" in r]
    not_run = [k for k in ENTRIES if k not in results["entries"]]
    if skipped or not_run:
        lines += ["", f"Not run in this session: {', '.join(skipped + not_run)}."]
    orderings = _orderings(results)
    results["orderings"] = orderings
    if orderings:
        lines += [
            "",
            "## Orderings at equal budget",
            "",
            "Paired over the same test images (same seed, same subset) at the same epoch (the",
            "latest at which both runs were scored): the entry's NLL minus the reference's, with",
            "the standard error of the mean paired difference. A claim holds when the difference",
            "is negative and larger than its standard error.",
            "",
            "| claim | epoch | entry − reference (nats) | difference / s.e. | holds |",
            "| --- | --- | --- | --- | --- |",
        ]
        for o in orderings:
            lines.append(
                f"| {o['claim']} | {o['epoch']} | {o['difference']:+.2f} ± {o['stderr']:.2f} "
                f"({o['images']} images) | {o['difference'] / o['stderr']:+.1f} | "
                f"{'yes' if o['holds'] else 'no'} |"
            )
    mc = paired_differences(results, "vae_burda", 50).get("vae_burda_mc")
    if mc is not None:
        lines += [
            "",
            "The Monte Carlo KL estimate alone (the VAE row trained with it instead of the",
            f"closed form) costs {mc['difference']:+.2f} ± {mc['stderr']:.2f} nats at epoch "
            f"{mc['epoch']}: flow posteriors (IAF) have no closed-form KL and pay this first.",
        ]
    plain = [(k, entries[k]) for k in ("vae_burda", "pyvae_mlp") if k in entries]
    if plain:
        lines += [
            "",
            f"The plain VAE against pythae's published {PYTHAE_VAE} nats (target: within 1 nat "
            "or better):",
            "",
        ]
        for _, row in plain:
            met = "met" if row["nll"] <= PYTHAE_VAE + 1 else "not met"
            lines.append(
                f"- {row['label']}: {row['nll']:.2f} ± {row['nll_stderr']:.2f} after "
                f"{row['epochs']} epochs: {met}."
            )
    curves = {k: r for k, r in entries.items() if sum("nll" in p for p in r["train_curve"]) > 1}
    if curves:
        lines += ["", "## NLL against epochs", ""]
        lines += [
            "The test NLL (estimated as above) at the epochs each run was scored; the gap to",
            "the published figures closes with training, as the slope shows.",
            "",
            "| entry | " + " | ".join(["epoch", "-ELBO", "NLL"]) + " |",
            "| --- | --- | --- | --- |",
        ]
        for row in curves.values():
            for point in row["train_curve"]:
                if "nll" in point:
                    lines.append(
                        f"| {row['label']} | {point['epoch']} | {point['neg_elbo']:.2f} | "
                        f"{point['nll']:.2f} ± {point['nll_stderr']:.2f} |"
                    )
    lines += ["", "## Commands", "", "Each row, alone (merge the JSON files with `--merge`):", ""]
    for key, row in entries.items():
        lines.append(f"- {row['label']}: {_command(key, row)}")
    lines += [
        "",
        "Merge them into this page: `python benchmarks/reproduce.py --merge *.json "
        "--out docs/reproducing.json --page docs/reproducing.md`.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _scored(row: dict[str, Any], epoch: int) -> dict[int, float] | None:
    """The per-image NLLs of an entry at an epoch (image index -> NLL), if it was scored then."""
    for point in row.get("train_curve", []):
        if point["epoch"] == epoch and "nll_per_image" in point:
            return dict(zip(row["subset"], point["nll_per_image"], strict=True))
    return None


def paired_differences(
    results: dict[str, Any], reference: str, epoch: int
) -> dict[str, dict[str, float]]:
    """Each entry's NLL minus the reference entry's at the same epoch, over the test images both
    scored, with the standard error of the mean paired difference (nats)."""
    base = _scored(results["entries"].get(reference, {}), epoch)
    if base is None:
        return {}
    out = {}
    for key, row in results["entries"].items():
        scored = _scored(row, epoch) if key != reference else None
        if scored is None:
            continue
        diff = torch.tensor([v - base[i] for i, v in scored.items() if i in base])
        if len(diff) < 2:
            continue
        out[key] = {
            "epoch": epoch,
            "difference": float(diff.mean()),
            "stderr": float(diff.std() / len(diff) ** 0.5),
            "images": len(diff),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", nargs="*", default=list(ENTRIES), choices=list(ENTRIES))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument(
        "--eval-images",
        type=int,
        default=10_000,
        help="score the k-sample NLL on this many test images (a seeded random "
        "subset); the -ELBO is always on all of them",
    )
    parser.add_argument(
        "--checkpoints",
        type=int,
        nargs="*",
        default=[],
        help="epochs at which to score the NLL too (as at the end)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--data", type=Path, default=MNIST_FULL)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reproducing.json")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        default=None,
        help="merge these result files into --out (and --page); train nothing",
    )
    parser.add_argument("--page", type=Path, default=None, help="docs page (default: none)")
    parser.add_argument("--quick", action="store_true", help="a pipeline check, not the numbers")
    args = parser.parse_args(argv)
    if args.merge is not None:
        results = {"machine": None, "quick": False, "entries": {}}
        for path in args.merge:
            part = json.loads(path.read_text(encoding="utf-8"))
            results["machine"] = results["machine"] or part["machine"]
            results["entries"].update(part["entries"])
        return _finish(results, args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    splits = read_mnist_folder(args.data)
    if args.quick:
        splits = pyvae.data.DataSplits(
            splits.name, splits.train.head(2000), splits.eval.head(200), note="quick"
        )
        args.epochs, args.k, args.eval_images, args.checkpoints = 1, 20, 50, []
    device = torch.device(args.device)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "entries": {}}
    for key in args.entries:
        entry = ENTRIES[key]
        reason = _missing(entry)
        if reason is not None:
            results["entries"][key] = {"skipped": reason, "epochs": args.epochs}
            print(f"{key}: skipped ({reason})", flush=True)
            continue
        print(f"{key}: training {args.epochs} epochs", flush=True)
        row = run_entry(
            entry,
            splits,
            epochs=args.epochs,
            k=args.k,
            seed=args.seed,
            device=device,
            eval_images=args.eval_images,
            checkpoints=tuple(args.checkpoints),
            log=lambda line: print(line, flush=True),
        )
        results["entries"][key] = row
        print(
            f"{key}: -ELBO {row['neg_elbo']:.2f}, NLL {row['nll']:.2f} ± {row['nll_stderr']:.2f}"
            f" (k={row['k']}), {row['train_seconds']} s",
            flush=True,
        )
        _write(results, args.out)  # after every entry: a long run keeps what it finished
    return _finish(results, args)


def _write(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, allow_nan=False), encoding="utf-8")


def _finish(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if args.page is not None:
        write_page(results, args.page)  # adds the orderings to results
    _write(results, args.out)
    return results


if __name__ == "__main__":
    main()

"""A beta-weighted VAE (Higgins et al., 2017): the KL weight trades reconstruction for a
simpler, more factorised latent code.

Trains the same conv VAE on scikit-learn's 8x8 digits (no download) with several values of beta
in ``model.loss(x, out, beta=...)`` (through ``pyvae.training.fit``) and compares, with
``pyvae.evaluate``, the reconstruction term, the KL term, the active units and the mutual
information, and the latent traversals. Larger beta: smaller KL (fewer nats of information in
z), blurrier reconstructions.

    python examples/beta_vae.py                 # about a minute on 2 CPU cores
    python examples/beta_vae.py --smoke         # a few seconds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import pyvae
from pyvae import viz
from pyvae.data import ImageSet, load_digits


def train_one(beta: float, train: ImageSet, epochs: int) -> pyvae.BaseVAE:
    torch.manual_seed(0)
    model = pyvae.build(
        "conv",
        input_shape=train.images.shape[1:],
        latent_dim=4,
        channels=[32, 64],
        hidden_dim=128,
        batch_norm=True,
    )
    loader = DataLoader(train.dataset(), batch_size=32, shuffle=True)
    # pyvae.training.fit is the plain loop (model.loss(x, model(x), beta=beta), backward, Adam
    # step) written once; see docs/training.md for the same loop by hand
    pyvae.training.fit(model, loader, epochs=epochs, lr=1e-3, beta=beta)
    return model.eval()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float | None]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.5, 1.0, 4.0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/beta_vae")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, a few seconds")
    args = parser.parse_args(argv)
    data = load_digits()
    train = data.train
    if args.smoke:
        train, args.epochs = train.head(480), 2
    out = Path(args.out)
    results: dict[str, dict[str, float | None]] = {}
    x = data.eval.images
    for beta in args.betas:
        model = train_one(beta, train, args.epochs)
        report = pyvae.evaluate(model, x, k=None)  # the true ELBO terms (beta = 1), diagnostics
        with torch.no_grad():
            z0 = model.encode(x[:1]).mean[0]
        results[str(beta)] = {
            "recon": report.recon,
            "kl": report.kl,
            "neg_elbo": report.neg_elbo,
            "active_units": report.active_units,
            "mutual_information": report.mutual_information,
        }
        r = results[str(beta)]
        print(
            f"beta {beta:>4}: recon {r['recon']:6.2f}  KL {r['kl']:5.2f}  "
            f"-ELBO {r['neg_elbo']:6.2f} nats; {r['active_units']} of 4 dimensions active, "
            f"I(x; z) {r['mutual_information']:.2f} nats"
        )
        fig = viz.plot_traversal(
            model,
            z0,
            values=[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5],
            title=f"latent traversals, beta = {beta}",
        )
        viz.save_figure(fig, out / f"traversal_beta{beta}.png")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out}/")
    return results


if __name__ == "__main__":
    main()

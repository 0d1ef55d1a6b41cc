"""A beta-weighted VAE (Higgins et al., 2017): the KL weight trades reconstruction for a
simpler, more factorised latent code.

Trains the same conv VAE on scikit-learn's 8x8 digits (no download) with several values of beta
in ``model.loss(x, out, beta=...)`` and compares the reconstruction term, the KL term and the
latent traversals. Larger beta: smaller KL (fewer nats of information in z), blurrier
reconstructions.

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
    model = pyvae.build("conv", input_shape=train.images.shape[1:], latent_dim=4, channels=[32, 64],
                        hidden_dim=128, batch_norm=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(train.dataset(), batch_size=32, shuffle=True)
    for _ in range(epochs):
        model.train()
        for x, _ in loader:
            terms = model.loss(x, model(x), beta=beta)  # mean of recon + beta * KL
            optimizer.zero_grad()
            terms.loss.backward()
            optimizer.step()
    return model.eval()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
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
    results: dict[str, dict[str, float]] = {}
    x = data.eval.images
    for beta in args.betas:
        model = train_one(beta, train, args.epochs)
        with torch.no_grad():
            terms = model.loss(x, model(x))  # evaluated with beta = 1: the true ELBO terms
            z0 = model.encode(x[:1]).mean[0]
        results[str(beta)] = {
            "recon": float(terms.recon.detach().mean()),
            "kl": float(terms.kl.detach().mean()),
            "neg_elbo": float((terms.recon + terms.kl).mean()),
        }
        r = results[str(beta)]
        print(f"beta {beta:>4}: recon {r['recon']:6.2f}  KL {r['kl']:5.2f}  "
              f"-ELBO {r['neg_elbo']:6.2f} nats")
        fig = viz.plot_traversal(model, z0, values=[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5],
                                 title=f"latent traversals, beta = {beta}")
        viz.save_figure(fig, out / f"traversal_beta{beta}.png")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out}/")
    return results


if __name__ == "__main__":
    main()

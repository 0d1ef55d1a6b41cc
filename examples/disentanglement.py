"""Disentanglement on sprites: train VAEs with two KL weights and score their codes.

Draws a dSprites-like data set with known factors (``pyvae.data.load_sprites``: shape, scale,
orientation, x and y position; no download), trains a conv VAE with ``pyvae.training.fit`` for
each beta, encodes the images to their posterior means and scores them with MIG, SAP, DCI and the
FactorVAE score (``pyvae.metrics``), beside the latent diagnostics of ``pyvae.evaluate``.

    python examples/disentanglement.py               # a few minutes on 2 CPU cores
    python examples/disentanglement.py --smoke       # a few seconds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import pyvae
from pyvae.latent import encode_loader
from pyvae.training import LatentDiagnostics, fit


def factorvae(codes: torch.Tensor, factors: torch.Tensor) -> float | None:
    """The FactorVAE score, or None when every dimension collapsed (nothing can vote)."""
    try:
        return pyvae.metrics.factorvae_score(codes, factors, n_votes=300)
    except ValueError as exc:
        if "standard deviation below" not in str(exc):
            raise
        return None


def main(argv: list[str] | None = None) -> dict[str, dict[str, float | None]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--n", type=int, default=10_000, help="sprites to draw")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--out", default="runs/disentanglement")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, a few seconds")
    args = parser.parse_args(argv)
    channels, hidden = [32, 64], 128
    if args.smoke:
        args.n, args.epochs, channels, hidden = 1000, 1, [8, 16], 32
    images, factors = pyvae.data.load_sprites(n=args.n, size=32, seed=0)
    split = int(0.8 * args.n)
    train = DataLoader(
        TensorDataset(images[:split]),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    held_out, held_factors = images[split:], factors[split:]
    results: dict[str, dict[str, float | None]] = {}
    for beta in args.betas:
        torch.manual_seed(0)
        model = pyvae.build(
            "conv",
            input_shape=(1, 32, 32),
            latent_dim=args.latent_dim,
            channels=channels,
            hidden_dim=hidden,
        )
        fit(
            model,
            train,
            epochs=args.epochs,
            lr=1e-3,
            beta=beta,
            callbacks=[LatentDiagnostics(held_out[:500], min_active=0)],
        )
        report = pyvae.evaluate(model, held_out, k=None)
        codes, _ = encode_loader(model, DataLoader(TensorDataset(held_out), batch_size=256))
        dci = pyvae.metrics.dci(codes, held_factors, estimator="random_forest", n_estimators=20)
        results[str(beta)] = {
            "neg_elbo": report.neg_elbo,
            "active_units": report.active_units,
            "mutual_information": report.mutual_information,
            "mig": pyvae.metrics.mig(codes, held_factors),
            "sap": pyvae.metrics.sap(codes, held_factors),
            "dci_disentanglement": dci["disentanglement"],
            "dci_completeness": dci["completeness"],
            "dci_informativeness": dci["informativeness"],
            "factorvae": factorvae(codes, held_factors),
        }
        r = results[str(beta)]
        fv = (
            "not defined (every dimension collapsed)"
            if r["factorvae"] is None
            else (f"{r['factorvae']:.3f}")
        )
        print(
            f"beta {beta:>4}: -ELBO {r['neg_elbo']:.1f} nats, {r['active_units']} active, "
            f"MIG {r['mig']:.3f}, SAP {r['sap']:.3f}, DCI D {r['dci_disentanglement']:.3f}, "
            f"FactorVAE {fv}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out}/results.json")
    return results


if __name__ == "__main__":
    main()

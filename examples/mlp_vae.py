"""A fully connected VAE (Kingma and Welling, 2014) on MNIST with a 16-D latent space.

With more than two latent dimensions the latent space is shown through PCA and t-SNE, and each
dimension's effect through a traversal.

    python examples/mlp_vae.py --download                 # MNIST via torchvision into ./data
    python examples/mlp_vae.py --data-dir ../shared/data/mnist --smoke
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import pyvae
from pyvae import viz
from pyvae.data import load_mnist
from pyvae.latent import encode_loader


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--out", default="runs/mlp")
    parser.add_argument(
        "--k",
        type=int,
        default=100,
        help="importance samples for the test NLL (papers use 5000; slow on a CPU)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny settings, a few seconds")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    data = load_mnist(args.data_dir, download=args.download)
    train, test = data.train, data.eval
    if args.smoke:
        train, test, args.epochs = train.head(256), test.head(64), 1
    loader = DataLoader(train.dataset(), batch_size=128, shuffle=True)

    model = pyvae.build("mlp", latent_dim=args.latent_dim, hidden_dims=[512, 256])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for x, _ in loader:
            terms = model.loss(x, model(x))
            optimizer.zero_grad()
            terms.loss.backward()
            optimizer.step()
        recon, kl = float(terms.recon.detach().mean()), float(terms.kl.detach().mean())
        print(
            f"epoch {epoch}: last batch -ELBO {recon + kl:.2f} nats (recon {recon:.2f}, "
            f"KL {kl:.2f})"
        )

    model.eval()
    nll = float(-model.log_likelihood(test.images, k=10 if args.smoke else args.k).mean())
    print(f"test NLL {nll:.2f} nats per image")

    out = Path(args.out)
    model.save(out / "model.safetensors")
    means, labels = encode_loader(model, DataLoader(test.dataset(), batch_size=500))
    # 16-D: one panel of PCA, one of t-SNE (on at most 1000 points, seeded)
    viz.save_figure(viz.plot_latent(means, labels, max_points=1000), out / "latent.png")
    # which digit features each latent dimension controls, around the first test image's code
    viz.save_figure(
        viz.plot_traversal(model, means[0], dims=range(min(8, args.latent_dim))),
        out / "traversal.png",
    )
    viz.save_figure(viz.plot_reconstructions(model, test.images[:16]), out / "reconstructions.png")
    results = {"test_nll": nll}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out}/")
    return results


if __name__ == "__main__":
    main()

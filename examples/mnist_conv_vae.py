"""A convolutional VAE on MNIST in a plain PyTorch training loop, then the usual pictures.

This is the whole story of the classic VAE tutorials: train a conv VAE with a 2-D latent space,
then look at reconstructions, samples from the prior, the latent space coloured by digit, the
decoded latent grid ("manifold") and an interpolation between two test digits.

    # MNIST through torchvision (downloaded once into ./data):
    python examples/mnist_conv_vae.py --download
    # or a folder of MNIST IDX files (a folder with only the t10k-* test files works too):
    python examples/mnist_conv_vae.py --data-dir ../shared/data/mnist
    # a few seconds, tiny settings (what the tests run):
    python examples/mnist_conv_vae.py --data-dir ../shared/data/mnist --smoke

Writes ``--out`` (default ``runs/mnist_conv``): the checkpoint and five PNG figures.
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
    parser.add_argument("--data-dir", default="data", help="MNIST folder (default ./data)")
    parser.add_argument("--download", action="store_true", help="download MNIST if missing")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--out", default="runs/mnist_conv")
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
    print(data.note)
    loader = DataLoader(train.dataset(), batch_size=128, shuffle=True)

    # 1. the model: MNIST-shaped input (1, 28, 28), Bernoulli likelihood, N(0, I) prior
    model = pyvae.build("conv", latent_dim=args.latent_dim, channels=[32, 64], batch_norm=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    # 2. the training loop: nothing pyvae-specific but model.loss
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for x, _ in loader:
            terms = model.loss(x, model(x))  # terms.loss: negative ELBO, batch mean, nats
            optimizer.zero_grad()
            terms.loss.backward()
            optimizer.step()
            total += float(terms.loss.detach()) * len(x)
        model.eval()
        with torch.no_grad():
            test_terms = model.loss(test.images, model(test.images))
        print(
            f"epoch {epoch}: train -ELBO {total / len(train):.2f}, "
            f"test -ELBO {float(test_terms.loss):.2f} nats"
        )

    # 3. evaluate: the importance-sampled test NLL (a tighter bound than the ELBO)
    model.eval()
    nll = float(-model.log_likelihood(test.images, k=10 if args.smoke else args.k).mean())
    print(f"test NLL {nll:.2f} nats per image")

    # 4. save (safetensors, no pickle) and look
    out = Path(args.out)
    model.save(out / "model.safetensors")
    x = test.images[:16]
    viz.save_figure(viz.plot_reconstructions(model, x), out / "reconstructions.png")
    viz.save_figure(
        viz.plot_samples(model, 64, generator=torch.Generator().manual_seed(0)), out / "samples.png"
    )
    means, labels = encode_loader(model, DataLoader(test.dataset(), batch_size=500))
    viz.save_figure(viz.plot_latent(means, labels, class_names=data.classes), out / "latent.png")
    viz.save_figure(viz.plot_manifold(model, 8 if args.smoke else 20), out / "manifold.png")
    viz.save_figure(
        viz.plot_interpolation(model, [(test.images[0], test.images[1])]), out / "interpolation.png"
    )
    results = {"test_neg_elbo": float(test_terms.loss), "test_nll": nll}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out}/")
    return results


if __name__ == "__main__":
    main()

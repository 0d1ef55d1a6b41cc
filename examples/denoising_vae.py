"""A denoising VAE (Im et al., 2017) on MNIST: the encoder sees corrupted digits, the decoder is
scored against the clean ones, so the model learns to reconstruct clean digits from noisy input.

The figure shows, for the same test digits: the clean image, the corrupted input, and the
model's reconstruction of the corrupted input.

    python examples/denoising_vae.py --download
    python examples/denoising_vae.py --data-dir ../shared/data/mnist --smoke
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


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--noise", type=float, default=0.3, help="salt-and-pepper probability (default 0.3)"
    )
    parser.add_argument("--out", default="runs/denoising")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, a few seconds")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    data = load_mnist(args.data_dir, download=args.download)
    train, test = data.train, data.eval
    if args.smoke:
        train, test, args.epochs = train.head(2048), test.head(64), 1
    loader = DataLoader(train.dataset(), batch_size=64, shuffle=True)

    # any registered model can be the backbone; the corruption is a swappable component
    model = pyvae.build(
        "denoising",
        backbone="conv",
        corruption={"name": "salt_and_pepper", "p": args.noise},
        latent_dim=16,
        channels=[32, 64],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, args.epochs + 1):
        model.train()  # training mode: the encoder sees model.corruption(x)
        for x, _ in loader:
            terms = model.loss(x, model(x))  # reconstruction scored against the clean x
            optimizer.zero_grad()
            terms.loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: last batch -ELBO {float(terms.loss.detach()):.2f} nats")

    # eval mode: no corruption inside the model, so corrupt the inputs ourselves
    model.eval()
    clean = test.images[:16]
    noisy = model.corruption(clean)
    denoised = model.reconstruct(noisy)
    fig = viz.plot_image_rows(
        [("clean", clean), ("noisy input", noisy), ("reconstruction", denoised)],
        title=f"denoising VAE: salt-and-pepper noise p = {args.noise}",
    )
    out = Path(args.out)
    viz.save_figure(fig, out / "denoising.png")
    model.save(out / "model.safetensors")
    x = test.images
    with torch.no_grad():
        results = {
            "mse_noisy_input": float(((model.corruption(x) - x) ** 2).mean()),
            "mse_reconstruction_of_noisy": float(
                ((model.reconstruct(model.corruption(x)) - x) ** 2).mean()
            ),
        }
    print(
        f"mean squared error to the clean digits: noisy input {results['mse_noisy_input']:.4f}, "
        f"reconstruction {results['mse_reconstruction_of_noisy']:.4f}"
    )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out}/")
    return results


if __name__ == "__main__":
    main()

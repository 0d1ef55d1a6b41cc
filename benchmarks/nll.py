"""Importance-sampled negative log-likelihood of MNIST images: pyvae's chunked
``model.log_likelihood`` against a straightforward per-image loop, throughput and peak memory.

Each measurement runs in a fresh process (``python -m benchmarks.nll --impl ... --k ...``); its
peak memory is the peak resident set size during the evaluation and a warm-up call of the same
shapes (Linux ``VmHWM``, reset just before through ``/proc/self/clear_refs``) minus the resident
size before them (model and data loaded): the evaluation's own memory. The model is pyvae's
default ``mlp``, trained briefly by :func:`prepare` on the other 8,000 test images.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal

import pyvae
from benchmarks.common import REPO, mnist_images

N_EVAL = 2000
IMPLEMENTATIONS = ["chunked", "loop"]


def prepare(path: Path, *, steps: int = 400, log: Any = print) -> None:
    """Train the default mlp for ``steps`` Adam steps (batch 128) and save its weights."""
    torch.manual_seed(0)
    model = pyvae.build("mlp")
    train = mnist_images()[N_EVAL:]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        x = train[torch.randint(0, train.shape[0], (128,))]
        terms = model.loss(x, model(x))
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
    log(f"  trained the mlp for {steps} steps: last loss {terms.loss.item():.1f} nats")
    torch.save(model.state_dict(), path)


@torch.no_grad()
def per_image_loop(model: pyvae.BaseVAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x) per image, the straightforward way: one image at a time, all k samples at once."""
    result = torch.empty(x.shape[0])
    prior = Independent(Normal(torch.zeros(model.latent_dim), torch.ones(model.latent_dim)), 1)
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        q = model.encode(xi)  # batch shape (1,)
        z = q.sample((k,))  # (k, 1, D)
        logits = model.decode(z.squeeze(1))  # (k, 1, 28, 28)
        log_px = (
            -F.binary_cross_entropy_with_logits(logits, xi.expand_as(logits), reduction="none")
            .flatten(1)
            .sum(1)
        )
        log_w = log_px + prior.log_prob(z.squeeze(1)) - q.log_prob(z).squeeze(1)
        result[i] = torch.logsumexp(log_w, 0) - math.log(k)
    return result


def _status_kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match is not None, field
    return int(match.group(1))


def measure(impl: str, k: int, weights: Path, n: int, chunk_size: int) -> dict[str, Any]:
    """Run one evaluation in this process; returns seconds, images/s, peak memory and mean NLL."""
    torch.manual_seed(0)
    model = pyvae.build("mlp")
    model.load_state_dict(torch.load(weights))
    model.eval()
    x = mnist_images(n)

    def evaluate(images: torch.Tensor, k: int) -> torch.Tensor:
        if impl == "chunked":
            return model.log_likelihood(images, k=k, chunk_size=chunk_size)
        return per_image_loop(model, images, k)

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size (Linux)
    baseline = _status_kib("VmRSS")
    # warm-up with the shapes of the timed run (kernels for those sizes); its memory counts too
    evaluate(x, 4) if impl == "chunked" else evaluate(x[:2], k)
    start = time.perf_counter()
    log_px = evaluate(x, k)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    return {
        "impl": impl,
        "k": k,
        "n": n,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "peak_extra_mib": (peak - baseline) / 1024,
        "baseline_mib": baseline / 1024,
        "nll": -log_px.mean().item(),
        "threads": torch.get_num_threads(),
    }


def run_in_subprocess(
    impl: str, k: int, weights: Path, n: int, chunk_size: int, threads: int
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.nll",
        "--impl",
        impl,
        "--k",
        str(k),
        "--weights",
        str(weights),
        "--n",
        str(n),
        "--chunk-size",
        str(chunk_size),
        "--threads",
        str(threads),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="one NLL measurement (used by benchmarks/run.py)")
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--n", type=int, default=N_EVAL)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args.impl, args.k, args.weights, args.n, args.chunk_size)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

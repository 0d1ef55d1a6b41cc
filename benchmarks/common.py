"""Shared helpers of the benchmarks: machine description, data, timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def mnist_images(n: int | None = None) -> torch.Tensor:
    """MNIST test images, (N, 1, 28, 28) float32 in [0, 1] (the files in ../shared/data/mnist)."""
    from pyvae.data import read_idx

    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz").unsqueeze(1).float() / 255
    return images if n is None else images[:n]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"
    return {
        "cpu": cpu_name(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "accelerator": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load average (1, 5, 15 min) at start": load_average(),
    }


def alternate(
    fns: dict[str, Callable[[], None]],
    *,
    steps: int,
    rounds: int,
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``rounds`` rounds, each timing ``steps`` calls of every
    function in turn (the order rotates between rounds), after ``warmup`` untimed calls each.
    ``clock=time.process_time`` measures this process's CPU time: with one thread, time lost to
    other processes on a busy machine does not count."""
    names = list(fns)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = fns[name]
            start = clock()
            for _ in range(steps):
                fn()
            sync()
            times[name].append((clock() - start) / steps)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)

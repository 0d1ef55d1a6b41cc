"""Host synchronisations per training step: at most one with value checks on (all checks read
back together), none with them off, for every model, likelihood and prior.

A read of a device value into Python (``Tensor.item``, ``tolist``, ``bool(t)``, ``float(t)``,
``numpy()``, ``nonzero``, ``torch.equal``, ...) waits for the device: on a GPU it stalls the
queue of kernels. The reads are counted by intercepting those methods; where a GPU is present,
CUDA's sync debug mode counts them too (no CI runner has one).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from tiny import SHAPE, pairs, tiny_model

import pyvae

pytestmark = pytest.mark.usefixtures("one_thread")

_TENSOR_READS = (
    "item",
    "tolist",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "__complex__",
    "numpy",
    "nonzero",
    "any",  # not a read itself, counted only when followed by one; kept out below
)
_TORCH_READS = ("equal", "allclose", "is_nonzero")


@contextmanager
def count_reads() -> Iterator[list[str]]:
    """Record every Python-level read of a tensor's value inside the block."""
    calls: list[str] = []
    saved: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return original(*args, **kwargs)

        saved.append((owner, name, original))
        setattr(owner, name, counted)

    for name in _TENSOR_READS:
        if name != "any":
            wrap(torch.Tensor, name)
    for name in _TORCH_READS:
        wrap(torch, name)
    try:
        yield calls
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def _data(model: pyvae.BaseVAE, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = torch.rand(batch, *SHAPE)
    if model.likelihood.support is torch.distributions.constraints.unit_interval:
        x = x.clamp(0, 1)
    y = None
    if getattr(model, "num_classes", None):
        y = torch.arange(batch) % model.num_classes
    return x, y


def _step(model: pyvae.BaseVAE, x: torch.Tensor, y: torch.Tensor | None) -> None:
    out = model(x) if y is None else model(x, y)
    terms = model.loss(x, out)
    terms.loss.backward()


@pytest.mark.parametrize(("name", "likelihood", "prior"), list(pairs()))
def test_one_read_with_checks_on_none_with_checks_off(
    name: str, likelihood: str, prior: str
) -> None:
    model = tiny_model(name, likelihood, prior)
    x, y = _data(model)
    _step(model, x, y)  # a first step outside the count (lazy initialisations)
    with count_reads() as reads:
        _step(model, x, y)
    assert len(reads) <= 1, reads
    model.validate_args = False
    with count_reads() as reads:
        _step(model, x, y)
    assert reads == []

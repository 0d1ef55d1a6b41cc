"""Input checks shared by models and components.

Structural checks (shape, dtype, device) are always on: they cost no GPU synchronisation. Value
checks (NaN, values outside a likelihood's support) read data back from the device, so, in the
spirit of ``torch.distributions.Distribution.set_default_validate_args``, they can be switched off
with :func:`set_validate_args` (globally) or per model (``model.validate_args = False``; ``None``
follows the global switch); they are skipped inside ``torch.compile`` (a data-dependent branch
would break the graph).

A training step reads values back at most once: :meth:`pyvae.BaseVAE.loss` gathers the minimum
and maximum of ``x`` (finiteness, the likelihood's support), of the labels, and the loss itself,
and reads them together with :func:`read_values`; components skip their own checks meanwhile
(:func:`deferred_checks`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch

__all__ = [
    "check_finite",
    "check_tensor",
    "deferred_checks",
    "read_values",
    "set_validate_args",
    "support_interval",
    "validate_args_enabled",
]

_VALIDATE_ARGS = True
_DEFERRED: ContextVar[bool] = ContextVar("pyvae_deferred_checks", default=False)


def set_validate_args(value: bool) -> None:
    """Switch pyvae's value checks (NaN inputs, likelihood support) on or off, globally."""
    global _VALIDATE_ARGS
    if not isinstance(value, bool):
        raise TypeError(f"set_validate_args: expected a bool, got {type(value).__name__}")
    _VALIDATE_ARGS = value


def validate_args_enabled(setting: bool | None = None) -> bool:
    """Whether value checks run now: ``setting`` (a model's own ``validate_args``) or, when it is
    ``None``, the global switch; never inside ``torch.compile`` tracing or :func:`deferred_checks`.
    """
    if torch.compiler.is_compiling() or _DEFERRED.get():
        return False
    return _VALIDATE_ARGS if setting is None else setting


@contextmanager
def deferred_checks() -> Iterator[None]:
    """Inside the block, :func:`validate_args_enabled` is false: components skip their own value
    checks because the caller checks the same values afterwards, in one read (as
    :meth:`pyvae.BaseVAE.loss` does)."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def read_values(*values: torch.Tensor) -> list[float]:
    """Scalar tensors (any dtypes, one device) as Python floats, read back to the host together:
    one synchronisation however many values (float64, float32 on MPS, which has no float64)."""
    dtype = torch.float32 if values[0].device.type == "mps" else torch.float64
    return torch.stack([v.detach().reshape(()).to(dtype) for v in values]).tolist()


def format_shape(shape: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def check_tensor(
    name: str,
    value: object,
    shape: Sequence[int | None],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Check that ``value`` is a floating tensor of ``shape`` (``None`` = any size).

    Raises:
        TypeError: not a tensor, a sparse (not strided) tensor, or not floating point / not
            ``dtype``.
        ValueError: wrong shape or device, or a tensor on the meta device (no values) while
            value checks are on.
    """
    expected = format_shape(["B" if s is None else s for s in shape])
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name}: expected a tensor of shape {expected}, got {type(value).__name__}"
        )
    if value.layout != torch.strided:
        raise TypeError(
            f"{name}: expected a dense (strided) tensor, got layout {value.layout}; convert it "
            f"with .to_dense()"
        )
    if value.device.type == "meta" and validate_args_enabled():
        raise ValueError(
            f"{name}: got a tensor on the meta device, which holds no values (only shapes), "
            f"while value checks are on; pass real data, or switch value checks off with "
            f"pyvae.set_validate_args(False) to trace shapes on the meta device"
        )
    if not value.is_floating_point():
        hint = " (for images in 0..255, use x.float() / 255)" if value.dtype == torch.uint8 else ""
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}{hint}")
    if (
        dtype is not None
        and value.dtype != dtype
        and not torch.is_autocast_enabled(value.device.type)
    ):
        raise TypeError(
            f"{name}: expected dtype {dtype} (the model's), got {value.dtype}; "
            f"convert the input with .to({dtype}) or the model with .to({value.dtype})"
        )
    if value.dim() != len(shape) or any(
        s is not None and s != v for s, v in zip(shape, value.shape, strict=False)
    ):
        raise ValueError(
            f"{name}: expected shape {expected}, got {format_shape(list(value.shape))}"
        )
    if device is not None and value.device != device:
        raise ValueError(
            f"{name}: expected a tensor on {device} (the model's device), got one on "
            f"{value.device}; move it with .to({str(device)!r})"
        )
    return value


def support_interval(support: object) -> tuple[float, float] | None:
    """``(lower, upper)`` of a ``torch.distributions`` constraint that is the real line or an
    interval (open ends as infinities), else ``None``."""
    from torch.distributions import constraints

    if support is constraints.real:
        return -math.inf, math.inf
    lower = getattr(support, "lower_bound", None)
    upper = getattr(support, "upper_bound", None)
    if lower is None and upper is None:
        return None
    return (
        -math.inf if lower is None else float(lower),
        math.inf if upper is None else float(upper),
    )


def in_range(value: torch.Tensor, lower: float = -math.inf, upper: float = math.inf) -> bool:
    """Whether every value is finite and within [lower, upper]: one ``aminmax`` pass and one read
    back to the host (NaN propagates through the minimum and maximum)."""
    if value.numel() == 0:
        return True
    low, high = torch.stack(torch.aminmax(value.detach())).tolist()
    return bool(math.isfinite(low) and math.isfinite(high) and lower <= low and high <= upper)


def check_finite(name: str, value: torch.Tensor, *, setting: bool | None = None) -> None:
    """Raise ``ValueError`` if ``value`` holds NaN or infinity (only when value checks run; see
    :func:`validate_args_enabled` for ``setting``)."""
    if validate_args_enabled(setting) and not in_range(value):
        bad = value[~torch.isfinite(value)]
        raise ValueError(
            f"{name}: expected finite values, got {bad.numel()} non-finite "
            f"(first: {bad.flatten()[0].item()})"
        )

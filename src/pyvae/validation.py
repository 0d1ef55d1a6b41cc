"""Input checks shared by models and components.

Structural checks (shape, dtype, device) are always on: they cost no GPU synchronisation. Value
checks (NaN, values outside a likelihood's support) read data back from the device, so, in the
spirit of ``torch.distributions.Distribution.set_default_validate_args``, they can be switched off
with :func:`set_validate_args`; they are skipped inside ``torch.compile`` (a data-dependent branch
would break the graph).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["check_finite", "check_tensor", "set_validate_args", "validate_args_enabled"]

_VALIDATE_ARGS = True


def set_validate_args(value: bool) -> None:
    """Switch pyvae's value checks (NaN inputs, likelihood support) on or off, globally."""
    global _VALIDATE_ARGS
    if not isinstance(value, bool):
        raise TypeError(f"set_validate_args: expected a bool, got {type(value).__name__}")
    _VALIDATE_ARGS = value


def validate_args_enabled() -> bool:
    """Whether value checks run now (on, and not inside ``torch.compile`` tracing)."""
    return _VALIDATE_ARGS and not torch.compiler.is_compiling()


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


def in_range(value: torch.Tensor, lower: float = -math.inf, upper: float = math.inf) -> bool:
    """Whether every value is finite and within [lower, upper]: one ``aminmax`` pass and one read
    back to the host (NaN propagates through the minimum and maximum)."""
    if value.numel() == 0:
        return True
    low, high = torch.stack(torch.aminmax(value.detach())).tolist()
    return bool(math.isfinite(low) and math.isfinite(high) and lower <= low and high <= upper)


def check_finite(name: str, value: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``value`` holds NaN or infinity (only when value checks run)."""
    if validate_args_enabled() and not in_range(value):
        bad = value[~torch.isfinite(value)]
        raise ValueError(
            f"{name}: expected finite values, got {bad.numel()} non-finite "
            f"(first: {bad.flatten()[0].item()})"
        )

"""Safe checkpoints: weights in safetensors, the build config and pyvae version as JSON metadata.

``model.save(path)`` writes one ``.safetensors`` file: the model's ``state_dict`` (every
parameter and persistent buffer, in its own dtype) and, in the file's metadata, the model's
``config`` (what :func:`pyvae.build` needs to build it again), the pyvae version and optional
user metadata, all as JSON. :func:`load` reads the metadata, rebuilds the model and copies the
weights in. No pickle is involved, so loading a file can never run code from it.

    >>> model.save("vae.safetensors")
    >>> same = pyvae.load("vae.safetensors")   # weights equal bit for bit, in eval mode
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pyvae.config import ConfigError
from pyvae.registry import UnknownNameError

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "CheckpointInfo", "load", "read_info", "save"]

#: The file name of the checkpoint inside a run folder (``pyvae.load(folder)`` looks for it).
CHECKPOINT_NAME = "model.safetensors"
FORMAT = "pyvae-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: corrupt, truncated, not a pyvae checkpoint, or not
    matching the model its config builds. The message names the file and what was expected."""


@dataclass
class CheckpointInfo:
    """What a checkpoint says about itself (read without loading the weights).

    Attributes:
        path: the checkpoint file.
        config: the model's build config (``pyvae.build(config)`` rebuilds it).
        pyvae_version: the pyvae version that wrote it.
        metadata: the user metadata given to :func:`save` (JSON values).
    """

    path: Path
    config: dict[str, Any]
    pyvae_version: str
    metadata: dict[str, Any] = field(default_factory=dict)


def save(
    model: BaseVAE,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and config to a safetensors file (atomically).

    Args:
        model: a pyvae model (its ``config`` must be JSON-serialisable, as all built-in ones are).
        path: the file to write, conventionally ``*.safetensors``; parent folders are created.
        metadata: optional JSON-serialisable values stored beside the config (training
            settings, metrics); read them back with :func:`read_info`.

    Returns:
        The path written.

    Raises:
        TypeError: the config or metadata is not JSON-serialisable.
    """
    from safetensors.torch import save_file

    from pyvae import __version__

    path = Path(path)
    try:
        config_json = json.dumps(model.config)
        metadata_json = json.dumps(dict(metadata or {}))
    except TypeError as exc:
        raise TypeError(
            f"save: the model config and metadata must be JSON-serialisable ({exc})"
        ) from None
    # Copies on the CPU: safetensors refuses tensors that share memory (tied weights).
    tensors = {
        name: t.detach().to("cpu", copy=True).contiguous() for name, t in model.state_dict().items()
    }
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "pyvae_version": __version__,
        "config": config_json,
        "metadata": metadata_json,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it normal rights
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _resolve(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir():
        candidate = path / CHECKPOINT_NAME
        if not candidate.is_file():
            raise FileNotFoundError(
                f"{path} is a folder without a checkpoint: expected {candidate}"
            )
        return candidate
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {path} (expected a .safetensors file written by "
            f"model.save, or a run folder holding {CHECKPOINT_NAME})"
        )
    return path


def _open(path: Path, device: str) -> tuple[dict[str, str], dict[str, torch.Tensor] | None]:
    """The header metadata and (unless device is empty) the tensors of a safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=device or "cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if device else None
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        size = path.stat().st_size
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({size} bytes; truncated or corrupt?): "
            f"{exc}. Expected a checkpoint written by model.save"
        ) from None
    return header, tensors


def _parse_header(path: Path, header: Mapping[str, str]) -> CheckpointInfo:
    if header.get("format") != FORMAT or "config" not in header:
        raise CheckpointError(
            f"{path}: a safetensors file without pyvae metadata (format "
            f"{header.get('format')!r}, expected {FORMAT!r}); it was not written by "
            f"model.save. For bare weights, build the model and call "
            f"model.load_state_dict(safetensors.torch.load_file(path))"
        )
    version = header.get("format_version", "?")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: checkpoint format version {version}, expected {FORMAT_VERSION} "
            f"(written by pyvae {header.get('pyvae_version', '?')}); upgrade pyvae"
        )
    try:
        config = json.loads(header["config"])
        metadata = json.loads(header.get("metadata", "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt JSON in the checkpoint metadata ({exc})") from None
    if not isinstance(config, dict) or "name" not in config or not isinstance(metadata, dict):
        raise CheckpointError(
            f"{path}: expected a model config dict with a 'name' key in the metadata, got "
            f"{type(config).__name__}"
        )
    return CheckpointInfo(path, config, header.get("pyvae_version", "?"), metadata)


def read_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """The config, pyvae version and user metadata of a checkpoint, without its weights.

    Args:
        path: a checkpoint file or a run folder holding ``model.safetensors``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a readable pyvae checkpoint.
    """
    resolved = _resolve(path)
    header, _ = _open(resolved, "")
    return _parse_header(resolved, header)


def load(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> BaseVAE:
    """Rebuild a model saved with ``model.save`` (or :func:`save`), weights and all.

    The model is built from the stored config (plug-in models must be importable/registered),
    converted to the stored floating-point dtype, filled with the stored weights (exactly) and
    returned in eval mode on ``map_location``.

    Args:
        path: a checkpoint file or a run folder holding ``model.safetensors``.
        map_location: the device to put the model on.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated or corrupt file, not a pyvae checkpoint, a model name that is
            not registered, or weights that do not match the model the config builds.
    """
    from pyvae.factory import build

    resolved = _resolve(path)
    header, tensors = _open(resolved, "cpu")
    assert tensors is not None
    info = _parse_header(resolved, header)
    try:
        model = build(info.config)
    except UnknownNameError as exc:
        raise CheckpointError(
            f"{resolved}: the checkpoint's model cannot be built: {exc} (a plug-in model must be "
            f"installed or its module imported before loading)"
        ) from None
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{resolved}: the stored config {info.config!r} does not build a model: {exc}"
        ) from None
    _check_tensors(resolved, model, tensors)
    float_dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(float_dtypes) == 1:
        model.to(float_dtypes.pop())
    model.load_state_dict(tensors, strict=True)
    return model.to(map_location).eval()


def _check_tensors(path: Path, model: BaseVAE, tensors: Mapping[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: expected shape {tuple(expected[k].shape)}, got {tuple(tensors[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if expected[k].shape != tensors[k].shape
    ]
    if not (missing or unexpected or wrong):
        return

    def listing(items: list[str]) -> str:
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        return ", ".join(items[:5]) + more

    problems = []
    if missing:
        problems.append(f"missing tensors: {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {listing(wrong)}")
    raise CheckpointError(
        f"{path}: the weights do not match the model built from its config "
        f"({_describe(model)}): " + "; ".join(problems)
    )


def _describe(model: BaseVAE) -> str:
    return f"{type(model).__name__} {json.dumps(model.config)}"

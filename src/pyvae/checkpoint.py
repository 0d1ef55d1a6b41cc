"""Safe checkpoints: weights in safetensors, the build config and pyvae version as JSON metadata.

``model.save(path)`` writes one ``.safetensors`` file: the model's ``state_dict`` (every
parameter and persistent buffer, in its own dtype) and, in the file's metadata, the model's
``config`` (what :func:`pyvae.build` needs to build it again), the pyvae version and optional
user metadata, all as JSON. :func:`load` reads the metadata, rebuilds the model and copies the
weights in. No pickle is involved, so loading a file can never run code from it.

A checkpoint is untrusted input. Before anything large is allocated, :func:`load` checks the
header (JSON nesting depth, size of the config), builds the model on PyTorch's ``meta`` device
(no memory), and compares its parameters and buffers with the file's tensors (names, shapes,
dtypes, total size); only a model that matches is built for real. Non-finite weights are
refused unless asked for. See the documentation page "Security and reliability".

    >>> model.save("vae.safetensors")
    >>> same = pyvae.load("vae.safetensors")   # weights equal bit for bit, in eval mode
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pyvae.config import ConfigError
from pyvae.registry import UnknownNameError, _out_of_memory

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "CheckpointInfo", "load", "read_info", "save"]

#: The file name of the checkpoint inside a run folder (``pyvae.load(folder)`` looks for it).
CHECKPOINT_NAME = "model.safetensors"
FORMAT = "pyvae-checkpoint"
FORMAT_VERSION = 1
#: The deepest nesting of JSON lists/objects accepted in a checkpoint's header (and written).
MAX_JSON_DEPTH = 32
#: The most JSON values a config may hold beyond one per stored tensor (a config describes its
#: tensors; a huge one only makes ``build`` spend memory and time).
CONFIG_SLACK = 256
#: The most modules, parameters and buffers a config may build beyond 8 per stored tensor
#: (checked while the model is built on the meta device).
MODULE_SLACK = 1024
#: The floating-point dtypes a model may be loaded in (a stored float tensor of another float
#: dtype among these is cast, as ``model.to(dtype)`` would).
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


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

    The file holds only standard JSON (no NaN or infinity) nested at most
    :data:`MAX_JSON_DEPTH` deep, and a model whose class is registered under its own name (the
    registry owns the names: an unregistered subclass of a registered model is refused, since
    :func:`load` would rebuild its parent).

    Args:
        model: a pyvae model (its ``config`` must be JSON-serialisable, as all built-in ones are).
        path: the file to write, conventionally ``*.safetensors``; parent folders are created.
            An existing folder is refused (give a file name inside it).
        metadata: optional JSON-serialisable values stored beside the config (training
            settings, metrics); read them back with :func:`read_info`. Keys are strings,
            numbers finite.

    Returns:
        The path written.

    Raises:
        TypeError: the config or metadata is not JSON-serialisable (the message names the entry).
        ValueError: NaN or infinity in the config or metadata, nesting deeper than
            :data:`MAX_JSON_DEPTH`, or a model (or component) class that is not registered under
            its own name.
        IsADirectoryError: ``path`` is an existing folder.
    """
    from safetensors.torch import save_file

    from pyvae import __version__
    from pyvae.models.base import BaseVAE

    if not isinstance(model, BaseVAE):
        raise TypeError(f"save: expected a pyvae model (BaseVAE), got {type(model).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"save: {path} is a folder; give a file name, e.g. {path / CHECKPOINT_NAME} "
            f"(which pyvae.load({str(path)!r}) finds)"
        )
    _check_registered(model)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata: expected a mapping (dict), got {type(metadata).__name__}")
    config_json = _dumps("the model config", model.config)
    metadata_json = _dumps("metadata", dict(metadata or {}))
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
        "weights_sha256": _digest(tensors),
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


def _check_registered(model: BaseVAE) -> None:
    """The model's class (and every component's) is the one its recorded name builds."""
    from pyvae.models.base import MODELS

    cls = type(model)
    name = cls.__dict__.get("registered_name")
    if name is None or name not in MODELS or MODELS.get(name) is not cls:
        parent = next((c for c in cls.__mro__[1:] if c.__dict__.get("registered_name")), None)
        parent_name = getattr(parent, "registered_name", None)
        hint = (
            f" (it derives from {parent.__name__}, registered as {parent_name!r}, "
            f"but pyvae.load would rebuild that class, not yours)"
            if parent is not None
            else ""
        )
        raise ValueError(
            f"save: the model class {cls.__module__}.{cls.__qualname__} is not registered under "
            f"its own name{hint}; register it with @pyvae.register_model('a-name') so that "
            f"pyvae.load can rebuild it"
        )
    for where, value in _components(model.__dict__.get("_init_config", {}), "config"):
        if type(value).__dict__.get("registered_name") is None:
            raise ValueError(
                f"save: {where} is a {type(value).__qualname__}, a class that is not registered "
                f"under its own name; register it (pyvae.register_likelihood, "
                f"register_prior, ...) so that pyvae.load can rebuild it"
            )


def _components(value: Any, where: str) -> list[tuple[str, Any]]:
    from pyvae.config import Configurable

    if isinstance(value, Configurable):
        return [(where, value), *_components(value.__dict__.get("_init_config", {}), where)]
    if isinstance(value, Mapping):
        return [c for k, v in value.items() for c in _components(v, f"{where}[{k!r}]")]
    if isinstance(value, (list, tuple)):
        return [c for i, v in enumerate(value) for c in _components(v, f"{where}[{i}]")]
    return []


def _dumps(what: str, value: Any) -> str:
    """Standard JSON of ``value``, or an error naming the offending entry."""
    problem = _json_problem(value, what, 0)
    if problem is not None:
        kind, message = problem
        raise kind(f"save: {message}")
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:  # anything the walk above did not foresee
        raise TypeError(f"save: {what} must be JSON-serialisable ({exc})") from None


def _json_problem(value: Any, where: str, depth: int) -> tuple[type[Exception], str] | None:
    if depth > MAX_JSON_DEPTH:
        return ValueError, f"{where} is nested deeper than {MAX_JSON_DEPTH} levels"
    if value is None or isinstance(value, (bool, str, int)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return ValueError, (
                f"{where} is {value}; JSON has no NaN or infinity (store a string or None)"
            )
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return TypeError, (
                    f"{where} has the key {k!r} of type {type(k).__name__}; JSON keys are strings"
                )
            problem = _json_problem(v, f"{where}[{k!r}]", depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            problem = _json_problem(v, f"{where}[{i}]", depth + 1)
            if problem is not None:
                return problem
        return None
    return TypeError, (
        f"{where} is a {type(value).__name__}, which is not JSON-serialisable "
        f"(use numbers, strings, booleans, None, lists and dicts)"
    )


def _resolve(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or Path), got {type(path).__name__}")
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


@dataclass
class _Stored:
    """What the file's header says about one tensor (nothing read yet)."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _itemsize(self.dtype)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    try:
        size = f"{path.stat().st_size} bytes"
    except OSError:
        size = "size unknown"
    return CheckpointError(
        f"{path}: not a readable safetensors file ({size}; truncated or corrupt?): {exc}. "
        f"Expected a checkpoint written by model.save"
    )


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, _Stored]]:
    """The header metadata and each tensor's shape and dtype; no tensor data is read."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = dict(f.metadata() or {})
            stored: dict[str, _Stored] = {}
            for name in f.keys():
                part = f.get_slice(name)
                code = part.get_dtype()
                if code not in _SAFETENSORS_DTYPES:
                    raise CheckpointError(
                        f"{path}: tensor {name!r} has the dtype {code}, which no pyvae model "
                        f"holds (expected one of {', '.join(_SAFETENSORS_DTYPES)})"
                    )
                stored[name] = _Stored(
                    tuple(int(s) for s in part.get_shape()), _SAFETENSORS_DTYPES[code]
                )
    except CheckpointError:
        raise
    except (SafetensorError, OSError, RuntimeError, ValueError, OverflowError) as exc:
        raise _unreadable(path, exc) from None
    return header, stored


def _read_tensors(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {name: f.get_tensor(name) for name in names}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise _unreadable(path, exc) from None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _json_depth(text: str) -> int:
    """How deep lists/objects nest in the JSON ``text`` (0 for a scalar); strings skipped."""
    import numpy as np

    stripped = _JSON_STRING.sub("", text).encode("ascii", "replace")
    chars = np.frombuffer(stripped, dtype=np.uint8)
    steps = np.isin(chars, (ord("["), ord("{"))).astype(np.int64) - np.isin(
        chars, (ord("]"), ord("}"))
    ).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def _loads(path: Path, what: str, text: str) -> Any:
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise CheckpointError(
            f"{path}: the {what} in the checkpoint header nests {depth} levels deep (at most "
            f"{MAX_JSON_DEPTH} accepted); the file is corrupt or hostile"
        )
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt JSON in the checkpoint {what} ({exc})") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name} (JSON has no NaN or infinity)")


def _count_values(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + sum(_count_values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count_values(v) for v in value)
    return 1


def _parse_header(path: Path, header: Mapping[str, str], n_tensors: int) -> CheckpointInfo:
    if header.get("format") != FORMAT or "config" not in header:
        raise CheckpointError(
            f"{path}: a safetensors file without pyvae metadata (format "
            f"{str(header.get('format'))[:40]!r}, expected {FORMAT!r}); it was not written by "
            f"model.save. For bare weights, build the model and call "
            f"model.load_state_dict(safetensors.torch.load_file(path))"
        )
    version = header.get("format_version", "?")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: checkpoint format version {_short(version, 20)}, expected {FORMAT_VERSION} "
            f"(written by pyvae {header.get('pyvae_version', '?')[:40]}); upgrade pyvae"
        )
    config = _loads(path, "config", header["config"])
    metadata = _loads(path, "metadata", header.get("metadata", "{}"))
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise CheckpointError(
            f"{path}: expected a model config dict with a 'name' string in the metadata, got "
            f"{type(config).__name__}"
        )
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{path}: expected the user metadata to be a JSON object, got {type(metadata).__name__}"
        )
    size = _count_values(config)
    if size > CONFIG_SLACK + 4 * n_tensors:
        raise CheckpointError(
            f"{path}: the stored config holds {size} JSON values for {n_tensors} tensors (at "
            f"most {CONFIG_SLACK} + 4 per tensor accepted); the file is corrupt or hostile"
        )
    return CheckpointInfo(path, config, str(header.get("pyvae_version", "?")), metadata)


def read_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """The config, pyvae version and user metadata of a checkpoint, without its weights.

    Args:
        path: a checkpoint file or a run folder holding ``model.safetensors``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a readable pyvae checkpoint.
    """
    resolved = _resolve(path)
    header, stored = _read_header(resolved)
    return _parse_header(resolved, header, len(stored))


def _check_device(map_location: object) -> torch.device:
    """``map_location`` as a device that exists here, or a ValueError that says why not."""
    if isinstance(map_location, bool) or not isinstance(map_location, (str, torch.device, int)):
        raise TypeError(
            f"map_location: expected a device such as 'cpu' or 'cuda:0', got "
            f"{type(map_location).__name__}"
        )
    try:
        device = torch.device(map_location)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(
            f"map_location: expected a device such as 'cpu', 'cuda' or 'cuda:0', got "
            f"{map_location!r} ({exc})"
        ) from None
    if device.type == "meta":
        raise ValueError(
            "map_location: 'meta' holds no values, so it cannot hold loaded weights; to inspect "
            "a checkpoint without loading it use pyvae.checkpoint.read_info"
        )
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise ValueError(
            f"map_location: the device {str(device)!r} is not usable here ({exc})"
        ) from None
    return device


def load(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    allow_non_finite: bool = False,
) -> BaseVAE:
    """Rebuild a model saved with ``model.save`` (or :func:`save`), weights and all.

    The stored config is first built on PyTorch's ``meta`` device (which allocates nothing) and
    its parameters and buffers compared with the file's tensors: names, shapes, dtypes (a stored
    float tensor may be any of :data:`FLOAT_DTYPES`; anything else must match exactly) and total
    size (at most 4 bytes of model per byte of stored tensors, a float16 to float64 cast). Only
    then is the model built, converted to the stored floating-point dtype, filled with the stored
    weights (exactly, checked finite) and returned in eval mode on ``map_location``. So a file
    never makes ``load`` allocate much more than a few times its own size (for built-in models,
    and plug-ins whose memory lives in parameters and buffers).

    Args:
        path: a checkpoint file or a run folder holding ``model.safetensors``.
        map_location: the device to put the model on.
        allow_non_finite: load NaN/inf weights instead of refusing them (for debugging a run
            that diverged).

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``map_location`` is not a usable device.
        CheckpointError: truncated, corrupt or hostile file, not a pyvae checkpoint, a model
            name that is not registered, weights that do not match the model the config builds,
            or non-finite weights.
    """
    device = _check_device(map_location)
    if not isinstance(allow_non_finite, bool):
        raise TypeError(f"allow_non_finite: expected a bool, got {allow_non_finite!r}")
    resolved = _resolve(path)
    header, stored = _read_header(resolved)
    info = _parse_header(resolved, header, len(stored))
    with torch.device("meta"), _registration_budget(resolved, len(stored)):
        skeleton = _build(resolved, info.config)
    dtype = _check_tensors(resolved, skeleton, stored)
    del skeleton
    try:
        tensors = _read_tensors(resolved, list(stored))
        if not allow_non_finite:
            _check_finite(resolved, tensors)
        expected_digest = header.get("weights_sha256")
        if expected_digest is not None and _digest(tensors) != expected_digest:
            raise CheckpointError(
                f"{resolved}: the weights do not match the checksum stored beside them "
                f"(weights_sha256): the file was damaged after it was written"
            )
        with torch.device("cpu"):
            model = _build(resolved, info.config)
        if dtype is not None:
            model.to(dtype)
        model.load_state_dict(tensors, strict=True)
        del tensors
        return model.to(device).eval()
    except (MemoryError, OverflowError) as exc:
        raise CheckpointError(
            f"{resolved}: out of memory or overflow while loading ({type(exc).__name__}: {exc})"
        ) from None
    except RuntimeError as exc:  # torch.OutOfMemoryError, or the CPU allocator's failure
        if not _out_of_memory(exc):
            raise
        raise CheckpointError(
            f"{resolved}: out of memory while loading on {device} "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None


class _TooManyParts(Exception):
    """Raised inside a build that registers more parts than the file can describe."""


@contextlib.contextmanager
def _registration_budget(path: Path, n_tensors: int) -> Iterator[None]:
    """Abort a build that registers more modules, parameters or buffers than the file's tensors
    could need: a single number in a config (``n_steps=10**6``) would otherwise make the meta
    build itself spend memory and time (Python objects), before any shape is compared."""
    from torch.nn.modules import module as torch_module

    limit = MODULE_SLACK + 8 * n_tensors
    count = 0
    owner = threading.get_ident()  # the hooks are global: count this thread's build only

    def hook(*args: Any) -> None:
        nonlocal count
        if threading.get_ident() != owner:
            return
        count += 1
        if count > limit:
            raise _TooManyParts

    handles = [
        torch_module.register_module_module_registration_hook(hook),
        torch_module.register_module_parameter_registration_hook(hook),
        torch_module.register_module_buffer_registration_hook(hook),
    ]
    try:
        yield
    except _TooManyParts:
        raise CheckpointError(
            f"{path}: the stored config builds more than {limit} modules, parameters and "
            f"buffers for {n_tensors} stored tensors (at most {MODULE_SLACK} + 8 per tensor); "
            f"the file is corrupt or hostile"
        ) from None
    finally:
        for handle in handles:
            handle.remove()


def _build(path: Path, config: dict[str, Any]) -> BaseVAE:
    from pyvae.factory import build
    from pyvae.models.base import MODELS

    try:
        upgraded = config  # an older checkpoint's config gains the arguments added since
        if config["name"] in MODELS:
            upgraded = MODELS.get(config["name"]).upgrade_config(config)
        return build(upgraded)
    except UnknownNameError as exc:
        raise CheckpointError(
            f"{path}: the checkpoint's model cannot be built: {exc} (a plug-in model must be "
            f"installed or its module imported before loading)"
        ) from None
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: the stored config {_short(config)} does not build a model: {exc}"
        ) from None
    except (MemoryError, OverflowError, RecursionError, RuntimeError, NotImplementedError) as exc:
        raise CheckpointError(
            f"{path}: the stored config {_short(config)} does not build a model "
            f"({type(exc).__name__}: {_short(str(exc))})"
        ) from None


def _short(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _check_tensors(
    path: Path, skeleton: BaseVAE, stored: Mapping[str, _Stored]
) -> torch.dtype | None:
    """Compare the meta-device model with the file's tensors; the float dtype to load in."""
    expected = skeleton.state_dict()
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    common = [k for k in expected if k in stored]
    wrong = [
        f"{k}: expected shape {tuple(expected[k].shape)}, got {stored[k].shape}"
        for k in common
        if tuple(expected[k].shape) != stored[k].shape
    ]
    dtypes = []
    for k in common:
        want, got = expected[k].dtype, stored[k].dtype
        if want.is_floating_point:
            if got not in FLOAT_DTYPES:
                dtypes.append(f"{k}: expected a floating-point tensor, got {got}")
        elif got != want:
            dtypes.append(f"{k}: expected {want}, got {got}")
    if missing or unexpected or wrong or dtypes:

        def listing(items: list[str]) -> str:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            return ", ".join(_short(i, 120) for i in items[:5]) + more

        problems = []
        if missing:
            problems.append(f"missing tensors: {listing(missing)}")
        if unexpected:
            problems.append(f"unexpected tensors: {listing(unexpected)}")
        if wrong:
            problems.append(f"wrong shapes: {listing(wrong)}")
        if dtypes:
            problems.append(f"wrong dtypes: {listing(dtypes)}")
        raise CheckpointError(
            f"{path}: the weights do not match the model built from its config "
            f"({_describe(skeleton)}): " + "; ".join(problems)
        )
    float_dtypes = {s.dtype for s in stored.values() if s.dtype.is_floating_point}
    dtype = float_dtypes.pop() if len(float_dtypes) == 1 else None
    # Everything the model holds (non-persistent buffers too), in the dtype it will have, is
    # bounded by the stored bytes: a float16 file loaded as float64 takes 4 times its size.
    stored_bytes = sum(s.nbytes for s in stored.values())
    model_bytes = 0
    for t in [*skeleton.parameters(), *skeleton.buffers()]:
        itemsize = (
            _itemsize(dtype) if dtype is not None and t.is_floating_point() else (t.element_size())
        )
        model_bytes += t.numel() * itemsize
    if model_bytes > 4 * stored_bytes + 2**20:
        raise CheckpointError(
            f"{path}: the model built from its config would hold {model_bytes} bytes for "
            f"{stored_bytes} bytes of stored tensors; refusing to allocate it"
        )
    return dtype


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: detects damage
    (bit rot, a bad copy), not tampering (whoever edits a file can recompute it)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _check_finite(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    for name, t in tensors.items():
        if not t.is_floating_point() or bool(torch.isfinite(t.sum(dtype=torch.float64))):
            continue  # any NaN or infinity makes the sum non-finite: one cheap reduction
        if not bool(torch.isfinite(t).all()):  # the sum overflowed, or a value is not finite
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(torch.isinf(t).sum())
            raise CheckpointError(
                f"{path}: tensor {name!r} holds non-finite values ({n_nan} NaN, {n_inf} inf of "
                f"{t.numel()}); the model was saved after training diverged, or the file is "
                f"damaged. Pass allow_non_finite=True to load it anyway (for debugging)"
            )


def _describe(model: BaseVAE) -> str:
    return f"{type(model).__name__} {_short(json.dumps(model.config))}"

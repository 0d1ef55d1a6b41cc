"""Latent samplers: generate from a trained model through a distribution fitted to its codes.

A VAE's samples are only as good as the match between its prior p(z) and the codes its encoder
actually uses (the "aggregate posterior"); a deterministic autoencoder has no prior at all. An
*ex-post* sampler fits a density to the posterior points of the training set (their means; see
:func:`pyvae.posteriors.latent_point`) after training and draws codes from it instead of p(z)
(Ghosh et al., 2020, https://arxiv.org/abs/1903.12436; Dai and Wipf, 2019,
https://arxiv.org/abs/1903.05789). It works for every model with continuous latents, the ``ae``
included; a VQ-VAE samples through its own code prior (``model.fit_prior(data)``).

    >>> sampler = pyvae.samplers.GaussianMixtureSampler(model, n_components=10).fit(loader)
    >>> images = sampler.sample(64, generator=torch.Generator().manual_seed(0))
    >>> sampler.save("gmm.safetensors")
    >>> sampler = pyvae.samplers.load("gmm.safetensors", model)

Registered: ``gmm`` (:class:`GaussianMixtureSampler`) and ``two_stage``
(:class:`TwoStageSampler`). Register a new one with :func:`register_sampler`: a subclass of
:class:`LatentSampler` defines ``_fit(codes)``, ``sample_latents(n, generator)`` and its tensors
(``state_tensors`` / ``load_state_tensors``).
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from pyvae.config import ConfigError, Configurable, check_positive_int
from pyvae.registry import Registry

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = [
    "SAMPLERS",
    "GaussianMixtureSampler",
    "LatentSampler",
    "SamplerError",
    "TwoStageSampler",
    "list_samplers",
    "load",
    "register_sampler",
]

FORMAT = "pyvae-sampler"
FORMAT_VERSION = "1"
S = TypeVar("S", bound="LatentSampler")
_C = TypeVar("_C", bound=type)


class SamplerError(ValueError):
    """A sampler file that cannot be loaded (not a sampler, corrupt, or made for another model)."""


class LatentSampler(Configurable, abc.ABC):
    """Base class of latent samplers: a density over a model's latent codes, fitted after
    training, decoded through the model.

    Args:
        model: a trained pyvae model with continuous latents (``latent_dim`` D). The sampler
            holds a reference to it; it is not part of the sampler's saved file.
    """

    #: Set by :meth:`fit` or :func:`load`.
    fitted: bool

    def __init__(self, model: BaseVAE) -> None:
        from pyvae.models.base import BaseVAE

        if not isinstance(model, BaseVAE):
            raise TypeError(f"model: expected a pyvae model, got {type(model).__name__}")
        if hasattr(model, "fit_prior"):
            raise ConfigError(
                f"model: {type(model).__name__} has discrete latents; fit its own code prior "
                f"with model.fit_prior(data) and call model.sample(n)"
            )
        self.model = model
        self.fitted = False

    @property
    def config(self) -> dict[str, Any]:
        """The registered name and the options (the model is not part of it)."""
        cfg = super().config
        cfg.pop("model", None)
        return cfg

    # -- fitting -------------------------------------------------------------------------------
    def fit(self: S, data: torch.Tensor | Iterable[Any], *, y: torch.Tensor | None = None) -> S:
        """Fit the sampler to the posterior points of ``data``; returns ``self``.

        Args:
            data: inputs, a tensor of shape (N, *input_shape), or an iterable (a DataLoader) of
                batches ``x`` or ``(x, y, ...)``.
            y: the labels of a tensor ``data`` for a conditional model, shape (N,) (a loader's
                batches carry their own).
        """
        codes = encode_points(self.model, data, y=y)
        if codes.shape[0] < 2:
            raise ValueError(f"data: expected at least 2 examples to fit to, got {codes.shape[0]}")
        self._fit(codes.double() if codes.dtype == torch.float64 else codes.float())
        self.fitted = True
        return self

    @abc.abstractmethod
    def _fit(self, codes: torch.Tensor) -> None:
        """Fit to codes of shape (N, D) (float32 or float64, on the CPU)."""

    # -- sampling ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _sample_latents(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """``n`` codes, shape (n, D), on the CPU in float32."""

    @torch.no_grad()
    def sample_latents(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes drawn from the fitted density, shape (n, latent_dim), on the model's device
        and in its dtype. Reproducible with a CPU ``generator`` (the global RNG is untouched)."""
        check_positive_int("n", n)
        if not self.fitted:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: call sampler.fit(data) (or "
                f"pyvae.samplers.load(path, model)) first"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator: expected a torch.Generator, got {type(generator).__name__}"
            )
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                f"generator: expected a CPU torch.Generator (codes are drawn on the CPU), got one "
                f"on {generator.device}"
            )
        z = self._sample_latents(n, generator)
        reference = next(self.model.parameters(), None)
        if reference is not None:
            z = z.to(reference.device, reference.dtype)
        return z

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` codes from the fitted density decoded to the mean of p(x|z): shape
        (n, *input_shape). The model runs in eval mode (its mode is restored).

        Args:
            n: the number of samples.
            y: for a conditional model, the class of each sample, shape (n,).
            generator: a CPU generator for reproducible draws.
        """
        z = self.sample_latents(n, generator=generator)
        model = self.model
        y = model.check_labels(y, n)
        was_training = model.training
        model.eval()
        try:
            return model.likelihood.mean(model._decode(z, y))
        finally:
            model.train(was_training)

    # -- tensors and files ---------------------------------------------------------------------
    @abc.abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The fitted state as named CPU tensors (what :meth:`save` writes)."""

    @abc.abstractmethod
    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each tensor :meth:`state_tensors` returns, from the config and the model
        alone (what :func:`load` checks a file against before using it)."""

    @abc.abstractmethod
    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore the fitted state from tensors of the shapes :meth:`expected_shapes` gives."""

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted sampler to a safetensors file (tensors, and its config as JSON
        metadata; no pickle). Load it with :func:`pyvae.samplers.load` and the same model."""
        from safetensors.torch import save_file

        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: nothing to save")
        if type(self).__dict__.get("registered_name") is None:
            raise ValueError(
                f"save: {type(self).__qualname__} is not registered under its own name; register "
                f"it with @pyvae.samplers.register_sampler('a-name') so that load can rebuild it"
            )
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"save: {path} is a folder; give a file name")
        tensors = {
            k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.state_tensors().items()
        }
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": json.dumps(self.config, allow_nan=False),
            "latent_dim": str(self.model.latent_dim),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=header)
        return path


SAMPLERS: Registry[LatentSampler] = Registry("sampler", LatentSampler, "pyvae.samplers")


def register_sampler(name: str, *, overwrite: bool = False) -> Callable[[_C], _C]:
    """Class decorator that registers a :class:`LatentSampler` subclass under ``name`` in
    :data:`SAMPLERS` (``SAMPLERS.register``; see :meth:`pyvae.Registry.register`)."""
    return SAMPLERS.register(name, overwrite=overwrite)


def list_samplers(pattern: str | None = None) -> list[str]:
    """Registered sampler names, sorted, optionally filtered by an fnmatch wildcard."""
    return SAMPLERS.names(pattern)


def encode_points(
    model: BaseVAE, data: torch.Tensor | Iterable[Any], *, y: torch.Tensor | None = None
) -> torch.Tensor:
    """The posterior points (:func:`pyvae.posteriors.latent_point`) of ``data``, shape (N, D), on
    the CPU: ``data`` a tensor (N, *input_shape) (with labels ``y`` (N,) for a conditional model)
    or an iterable of batches ``x`` / ``(x, y, ...)``."""
    from pyvae.latent import encode_loader

    if isinstance(data, torch.Tensor):
        if y is not None and not isinstance(y, torch.Tensor):
            raise TypeError(f"y: expected a tensor of labels, got {type(y).__name__}")
        if data.ndim == 0 or data.shape[0] == 0:
            raise ValueError(
                f"data: expected a non-empty batch of inputs, got shape {tuple(data.shape)}"
            )
        if y is not None and y.shape[:1] != data.shape[:1]:
            raise ValueError(
                f"y: expected {data.shape[0]} labels (one per example), got shape {tuple(y.shape)}"
            )
        step = 256
        batches: list[Any] = [
            data[i : i + step] if y is None else (data[i : i + step], y[i : i + step])
            for i in range(0, data.shape[0], step)
        ]
        if model.num_classes is not None and y is None:
            raise ValueError("y: a conditional model needs the labels of data: fit(data, y=labels)")
        for batch in batches:
            model.check_input(batch if y is None else batch[0])
        data = batches
    elif y is not None:
        raise ValueError("y: give labels only with a tensor; a loader's batches carry their own")
    elif not isinstance(data, Iterable):
        raise TypeError(
            f"data: expected a tensor or an iterable of batches (a DataLoader), got "
            f"{type(data).__name__}"
        )
    codes, _ = encode_loader(model, data)
    if not torch.isfinite(codes).all():
        raise ValueError("data: the model's codes of the data are not all finite")
    return codes


def load(path: str | os.PathLike[str], model: BaseVAE) -> LatentSampler:
    """A sampler written by :meth:`LatentSampler.save`, attached to ``model`` (the model it was
    fitted to, or one with the same latent size).

    The file is checked before use: its format tag, its config (a registered sampler and
    options its class accepts), and every tensor's name, shape and dtype against what the config
    and the model imply; nothing is allocated from numbers in the file beyond the file's own
    tensors (a sampler that holds a network builds it on the meta device first).

    Raises:
        SamplerError: the file is not a pyvae sampler, is damaged, or does not fit ``model``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            n_tensors = len(handle.keys())
    except (SafetensorError, OSError) as exc:
        raise SamplerError(f"{path}: not a readable safetensors file ({exc})") from exc
    if header.get("format") != FORMAT:
        raise SamplerError(f"{path}: not a pyvae sampler file (format {header.get('format')!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise SamplerError(
            f"{path}: sampler format version {header.get('format_version')!r}, this pyvae reads "
            f"{FORMAT_VERSION!r}"
        )
    from pyvae.checkpoint import MAX_JSON_DEPTH, _json_depth

    text = header.get("config", "")
    if _json_depth(text) > MAX_JSON_DEPTH:  # json.loads would recurse without bound
        raise SamplerError(
            f"{path}: the sampler config nests deeper than {MAX_JSON_DEPTH} levels; the file is "
            f"corrupt or hostile"
        )
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise SamplerError(f"{path}: the sampler config is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise SamplerError(f"{path}: the sampler config is not a dict with a 'name'")
    if header.get("latent_dim") != str(model.latent_dim):
        raise SamplerError(
            f"{path}: the sampler was fitted to codes of size {header.get('latent_dim')}, the "
            f"model's latent_dim is {model.latent_dim}"
        )
    try:
        sampler = SAMPLERS.build({**config, "model": model})
    except (ConfigError, TypeError, ValueError) as exc:
        raise SamplerError(f"{path}: the sampler config cannot be built: {exc}") from exc
    from pyvae.checkpoint import CheckpointError, _registration_budget

    try:
        with _registration_budget(path, n_tensors):  # a number in the config builds no more
            expected = sampler.expected_shapes()
    except CheckpointError as exc:
        raise SamplerError(str(exc)) from None
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise SamplerError(f"{path}: the tensors cannot be read ({exc})") from exc
    if set(tensors) != set(expected):
        raise SamplerError(
            f"{path}: expected tensors {sorted(expected)}, the file holds {sorted(tensors)}"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape or not tensors[name].is_floating_point():
            raise SamplerError(
                f"{path}: tensor {name!r} should be floating point of shape {shape}, got "
                f"{tensors[name].dtype} of shape {tuple(tensors[name].shape)}"
            )
        if not torch.isfinite(tensors[name]).all():
            raise SamplerError(f"{path}: tensor {name!r} holds non-finite values")
    try:
        sampler.load_state_tensors(tensors)
    except ValueError as exc:
        raise SamplerError(f"{path}: {exc}") from exc
    sampler.fitted = True
    return sampler


from pyvae.samplers.gmm import GaussianMixtureSampler  # noqa: E402  (registers "gmm")
from pyvae.samplers.two_stage import TwoStageSampler  # noqa: E402  (registers "two_stage")

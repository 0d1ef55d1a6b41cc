"""One generic registry, used for models, likelihoods, priors and corruptions.

A registry maps names to classes. Classes register themselves with a decorator when their module
is imported; third-party packages register theirs through an entry-point group, loaded lazily the
first time a name is looked up or listed. A plug-in that fails to import (whatever it raises, short
of a keyboard interrupt) gives a warning, whatever it registered before failing is rolled back,
and it is skipped: it never breaks pyvae.

The registry owns the names: a class's name is the one it was registered under, never one
inherited from a registered parent, so a checkpoint always records the exact class it holds.
Built-in names (classes defined in pyvae itself) cannot be replaced or removed.
:meth:`Registry.scoped` undoes every registration made inside a ``with`` block (tests, notebooks).
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import torch

from pyvae.config import ConfigError, Configurable

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T", bound=Configurable)
C = TypeVar("C", bound=type)


class UnknownNameError(ValueError, KeyError):
    """A name that is not in a registry. Subclasses ``ValueError`` (and ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would quote the message; show it as written.
        return str(self.args[0])


class Registry(Generic[T]):
    """Names -> classes of one kind (``kind``), with an entry-point group for plug-ins.

    Args:
        kind: what the registry holds, used in messages (``"model"``).
        base: the class every registered class must derive from.
        group: the entry-point group of plug-ins (``"pyvae.models"``).
    """

    def __init__(self, kind: str, base: type, group: str) -> None:
        self.kind = kind
        self.base = base
        self.group = group
        self._classes: dict[str, type[T]] = {}
        self._plugins_loaded = False
        _REGISTRIES.add(self)

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[C], C]:
        """Class decorator that registers a class under ``name``.

        The class's ``registered_name`` becomes ``name`` (its first name, if it is registered
        under several); subclasses do not inherit it: each class that should be saved and loaded
        is registered itself.

        Raises:
            ValueError: if ``name`` is taken by another class and ``overwrite`` is False, or if
                ``name`` is a built-in name (a class defined in pyvae), which nothing replaces.
            TypeError: if the class does not derive from the registry's base class.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name: expected a non-empty string, got {name!r}")

        def decorator(cls: C) -> C:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(
                    f"register {self.kind} {name!r}: expected a subclass of "
                    f"{self.base.__name__}, got {cls!r}"
                )
            existing = self._classes.get(name)
            if existing is not None and existing is not cls:
                if _is_builtin(existing):
                    raise ValueError(
                        f"{self.kind} {name!r} is a built-in name (registered by "
                        f"{_qualname(existing)}) and cannot be replaced; register "
                        f"{_qualname(cls)} under another name"
                    )
                if not overwrite:
                    raise ValueError(
                        f"{self.kind} {name!r} is already registered (by {_qualname(existing)}); "
                        f"pass overwrite=True to replace it"
                    )
                self._forget(name, existing)
            self._classes[name] = cls  # type: ignore[assignment]
            own = cls.__dict__.get("registered_name")
            if own is None or self._classes.get(own) is not cls:
                # a name written in the class body counts only if it is registered to the class
                cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    def unregister(self, name: str) -> type[T]:
        """Remove ``name`` and return the class it named (a plug-in's or a test's own name).

        Raises:
            UnknownNameError: no such name.
            ValueError: ``name`` is a built-in name.
        """
        cls = self.get(name)
        if _is_builtin(cls):
            raise ValueError(f"{self.kind} {name!r} is a built-in name and cannot be unregistered")
        del self._classes[name]
        self._forget(name, cls)
        return cls

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """A ``with`` block whose registrations (and removals) are undone when it ends.

        Plug-ins are loaded on entry, so that the names they register outlive the block. Use it
        in tests and notebooks that register throw-away classes::

            with pyvae.MODELS.scoped():
                pyvae.register_model("mine")(Mine)
                ...
            # "mine" is gone here, and Mine.registered_name is None again
        """
        self._load_plugins()
        saved = self._snapshot()
        try:
            yield self
        finally:
            self._restore(saved)

    def _snapshot(self) -> tuple[dict[str, type[T]], dict[type, str | None], bool]:
        names = {cls: cls.__dict__.get("registered_name") for cls in self._classes.values()}
        return dict(self._classes), names, self._plugins_loaded

    def _restore(self, saved: tuple[dict[str, type[T]], dict[type, str | None], bool]) -> None:
        classes, names, loaded = saved
        for cls in set(self._classes.values()) - set(classes.values()):
            if cls.__dict__.get("registered_name") in self._classes:
                cls.registered_name = None
        for cls, name in names.items():
            cls.registered_name = name
        self._classes.clear()
        self._classes.update(classes)
        self._plugins_loaded = loaded

    def _forget(self, name: str, cls: type) -> None:
        """``cls`` no longer answers to ``name``: its registered name moves to another name it
        still has here, or becomes None."""
        if cls.__dict__.get("registered_name") == name:
            others = [n for n, c in self._classes.items() if c is cls and n != name]
            cls.registered_name = others[0] if others else None  # type: ignore[attr-defined]

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted, optionally filtered by an fnmatch wildcard (``"c*"``)."""
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(
                f"pattern: expected an fnmatch wildcard string such as 'c*', got "
                f"{type(pattern).__name__}"
            )
        self._load_plugins()
        names = sorted(self._classes)
        return fnmatch.filter(names, pattern) if pattern else names

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return isinstance(name, str) and name in self._classes

    def get(self, name: str) -> type[T]:
        """The class registered under ``name``; an :class:`UnknownNameError` names close matches."""
        self._load_plugins()
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            pass
        known = sorted(self._classes)
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"Unknown {self.kind} {name!r}.{hint} Available {self.kind}s: {', '.join(known)}."
        )

    def build(self, spec: str | Mapping[str, Any] | T, **config: Any) -> T:
        """An instance from a name, a config dict (``{"name": ..., **kwargs}``) or an instance.

        Keyword arguments that are ``None`` are dropped, so that a caller's "not given" never
        overrides a class default. An instance is returned as it is (no keywords allowed then).
        """
        if isinstance(spec, self.base):
            if config:
                raise ConfigError(
                    f"{self.kind}: got an instance of {type(spec).__name__} and keyword "
                    f"arguments {sorted(config)}; configure the instance instead"
                )
            return spec  # type: ignore[return-value]
        if isinstance(spec, Mapping):
            spec = dict(spec)
            odd = [k for k in spec if not isinstance(k, str)]
            if odd:
                raise ConfigError(
                    f"{self.kind} config: expected string keys (argument names), got {odd[0]!r}"
                )
            if "name" not in spec:
                raise ConfigError(
                    f"{self.kind} config: expected a dict with a 'name' key, got keys "
                    f"{sorted(spec)}"
                )
            name = spec.pop("name")
            config = {**spec, **config}
        elif isinstance(spec, str):
            name = spec
        else:
            raise ConfigError(
                f"{self.kind}: expected a name, a config dict or a {self.base.__name__}, "
                f"got {type(spec).__name__}"
            )
        cls = self.get(name)
        config = {k: v for k, v in config.items() if v is not None}
        cls.check_config(config)
        try:
            return cls(**config)
        except (MemoryError, RuntimeError) as exc:
            if not (isinstance(exc, MemoryError) or _out_of_memory(exc)):
                raise
            raise MemoryError(
                f"{self.kind} {name!r}: not enough memory for its parameters with the arguments "
                f"{_short_config(config)} ({str(exc).splitlines()[0][:200]}); check the sizes"
            ) from None

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            # a plug-in may register in any registry: snapshot them all, to roll back a failure
            saved = [(registry, registry._snapshot()) for registry in list(_REGISTRIES)]
            try:
                ep.load()  # importing the plug-in registers its classes
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a broken plug-in never breaks pyvae
                for registry, snapshot in saved:
                    registry._restore(snapshot)
                self._plugins_loaded = True
                warnings.warn(
                    f"pyvae: could not load {self.kind} plug-in {ep.name!r} ({ep.value}) from "
                    f"entry-point group {self.group!r}: {type(exc).__name__}: {exc}; it was "
                    f"skipped and whatever it registered was removed",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def reload_plugins(self) -> None:
        """Look at the entry-point group again (after installing a plug-in at run time)."""
        self._plugins_loaded = False
        self._load_plugins()


_REGISTRIES: weakref.WeakSet[Registry[Any]] = weakref.WeakSet()


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failure (PyTorch's CPU allocator raises a RuntimeError, CUDA its own)."""
    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)


def _short_config(config: Mapping[str, Any]) -> str:
    text = repr(dict(config))
    return text if len(text) <= 200 else text[:200] + "..."


def _is_builtin(cls: type) -> bool:
    """A class defined in pyvae itself (its built-in names are protected)."""
    module = getattr(cls, "__module__", "") or ""
    return module == "pyvae" or module.startswith("pyvae.")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"

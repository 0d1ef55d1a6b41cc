"""Recording the configuration an object was built from, so that it can be built again.

Every model, likelihood, prior and corruption derives from :class:`Configurable`. When such an
object is constructed, the keyword arguments of its outermost ``__init__`` (defaults filled in) are
recorded; :attr:`Configurable.config` returns them as a JSON-ready dict with the registered name,
and ``registry.build(config)`` rebuilds an equal object. This is what checkpoints store.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = ["ConfigError", "Configurable", "check_positive_int", "check_positive_ints"]


class ConfigError(ValueError):
    """An invalid configuration: names the argument, what was expected and what was given."""


class Configurable:
    """Mixin that records the arguments of ``__init__`` (see the module docstring).

    Subclasses take keyword arguments whose values are JSON-like (numbers, strings, booleans,
    ``None``, lists/tuples, dicts) or other :class:`Configurable` objects, which are stored as
    their own config.
    """

    registered_name: ClassVar[str | None] = None
    _init_config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "registered_name" not in cls.__dict__:
            # The registry owns the names: a subclass is not its parent, so it has no name until
            # it is registered itself (a checkpoint must never record the parent's name).
            cls.registered_name = None
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Configurable, *args: Any, **kw: Any) -> None:
            if "_init_config" not in self.__dict__:  # only the outermost __init__ records
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                recorded: dict[str, Any] = {}
                for name, value in list(bound.arguments.items())[1:]:
                    kind = signature.parameters[name].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        recorded.update(value)
                    elif kind is not inspect.Parameter.VAR_POSITIONAL:
                        recorded[name] = value
                object.__setattr__(self, "_init_config", recorded)
            init(self, *args, **kw)

        cls.__init__ = recording_init  # type: ignore[assignment,method-assign]

    @property
    def config(self) -> dict[str, Any]:
        """The registered name and the constructor arguments, JSON-ready (tuples become lists)."""
        cfg: dict[str, Any] = {"name": type(self).registered_name}
        cfg.update({k: _to_jsonable(v) for k, v in self.__dict__.get("_init_config", {}).items()})
        return cfg

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` for a keyword that ``__init__`` does not take."""
        params = inspect.signature(cls.__init__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return  # the class forwards extra keywords and checks them itself
        accepted = [n for n in params if n != "self"]
        for key in config:
            if key not in accepted:
                close = difflib.get_close_matches(key, accepted, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{cls.__name__} got an unknown argument {key!r}.{hint} "
                    f"Accepted arguments: {', '.join(accepted)}."
                )


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Configurable):
        return value.config
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


def check_positive_int(name: str, value: object) -> int:
    """``value`` if it is a positive ``int`` (not a bool), else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return value


def check_positive_ints(name: str, values: object) -> tuple[int, ...]:
    """``values`` as a tuple if it is a non-empty sequence of positive ints (an int counts as
    one), else :class:`ConfigError`."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if (
        not isinstance(values, (list, tuple))
        or not values
        or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values)
    ):
        raise ConfigError(
            f"{name}: expected a non-empty sequence of positive integers, got {values!r}"
        )
    return tuple(values)

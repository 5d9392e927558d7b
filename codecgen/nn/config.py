"""Constructor records: every configurable module remembers how it was built.

DESIGN.md asks that checkpoints carry their own model arguments, with sub-modules
injected as ``class_path`` / ``init_args`` (the LightningCLI convention). The
``configurable`` class decorator records the bound constructor arguments of an
instance as such a spec; ``build`` turns a spec back into an object. Nested modules
(an encoder handed to a codec, a list of discriminators handed to a group) become
nested specs, so a whole model is one JSON-serialisable dict: no pickle needed.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

# Only our own classes (and torch's plain layers) may be named by a spec read from
# a file: importing an arbitrary module path from an untrusted config.json could
# run code.
ALLOWED_PREFIXES = ("codecgen.", "torch.nn.")


def configurable(cls):
    """Class decorator: record ``{"class_path", "init_args"}`` on every instance.

    The most-derived class's arguments win (a subclass's ``__init__`` runs first and
    records before calling ``super().__init__``).
    """
    original_init = cls.__init__
    signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        if "_init_spec" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            init_args = {}
            for name, value in list(bound.arguments.items())[1:]:
                param = signature.parameters[name]
                if param.kind is inspect.Parameter.VAR_KEYWORD:
                    init_args.update({k: to_spec(v) for k, v in value.items()})
                elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                    raise TypeError(f"{cls.__name__}: *args cannot be recorded in a spec")
                else:
                    init_args[name] = to_spec(value)
            spec = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
            # object.__setattr__: nn.Module.__init__ has not run yet.
            object.__setattr__(self, "_init_spec", spec)
        original_init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


def to_spec(value: Any) -> Any:
    """A constructor argument as JSON-able data (modules become nested specs)."""
    if hasattr(value, "_init_spec"):
        return value._init_spec
    if isinstance(value, (list, tuple)):
        return [to_spec(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_spec(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"cannot record constructor argument of type {type(value).__name__}: "
        "decorate its class with @configurable or pass plain data"
    )


def init_spec(module) -> dict:
    """The recorded spec of a module built from a @configurable class."""
    try:
        return module._init_spec
    except AttributeError:
        raise TypeError(f"{type(module).__name__} was not built from a @configurable class") from None


def _is_spec(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value and set(value) <= {"class_path", "init_args"}


def resolve_class(class_path: str):
    if not isinstance(class_path, str) or not class_path.startswith(ALLOWED_PREFIXES):
        raise ValueError(f"refusing to build {class_path!r}: only codecgen.* and torch.nn.* classes")
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"unknown class {class_path!r}: {error}") from None


def build(spec: Any) -> Any:
    """Instantiate a (possibly nested) spec; plain data passes through unchanged."""
    if _is_spec(spec):
        cls = resolve_class(spec["class_path"])
        kwargs = {k: build(v) for k, v in (spec.get("init_args") or {}).items()}
        return cls(**kwargs)
    if isinstance(spec, list):
        return [build(v) for v in spec]
    if isinstance(spec, dict):
        return {k: build(v) for k, v in spec.items()}
    return spec

"""Specs: every configurable module remembers how it was built, and only listed classes can be rebuilt.

Checkpoints carry their own model arguments, with sub-modules injected as
``class_path`` / ``init_args`` (the LightningCLI convention). ``configurable`` is a
class decorator that records the bound constructor arguments of each instance as such
a spec AND registers the class; ``build`` turns a spec back into an object.

A spec read from a file (a ``.cgc`` header, a ``config.json``, a ``.ckpt``) is
untrusted, so ``build`` instantiates only:

- classes decorated with ``@configurable`` (our own modules), found by their class
  path, or by the old path of a class that moved (``MOVED``);
- diffusers models and schedulers (``ConfigMixin`` subclasses under ``diffusers.``),
  recorded as their class path + their own config.

Never a function, never another package's class: a name that resolves to anything
else is refused with ``SpecError`` before anything is called. A ``.cgc`` decoder
spec is further restricted by its codec to the decoder classes it knows
(``build(spec, allowed=...)``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

# class path -> class, filled by @configurable when a module is imported
REGISTRY: dict[str, type] = {}

# Old class paths (files and shipped checkpoints written before a class moved or was
# renamed) -> where the class lives now. Only ever maps onto registered classes.
MOVED: dict[str, str] = {
    **{f"codecgen.nn.audio.{name}": f"codecgen.nn.hifigan.{name}"
       for name in ("ResBlock1", "MultiReceptiveFieldFusion", "HiFiGANGenerator", "HiFiCodecEncoder")},
    **{f"codecgen.nn.audio.{name}": f"codecgen.nn.seanet.{name}" for name in ("SEANetResidualUnit", "SEANetEncoder")},
    **{f"codecgen.nn.audio.{name}": f"codecgen.nn.vocos.{name}"
       for name in ("AdaLayerNorm", "VocosBackbone", "ISTFT", "ISTFTHead", "VocosDecoder")},
    "codecgen.nn.audio.ConvNeXtBlock": "codecgen.nn.vocos.VocosBlock",
    "codecgen.nn.nerv.NeRVGenerator": "codecgen.nn.nerv.NeRVDecoder",
    "codecgen.codecs.video.nerv_codec.NeRVVideoCodec": "codecgen.codecs.video.nerv.NeRVVideoCodec",
    "codecgen.generators.hallo2.frame_vae.FrameVAE": "codecgen.frame_vae.FrameVAE",
}

DIFFUSERS_PREFIX = "diffusers."


class SpecError(ValueError):
    """A spec names something that may not be built, or is malformed."""


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def configurable(cls):
    """Class decorator: register ``cls`` and record ``{"class_path", "init_args"}`` on every instance.

    The most-derived class's arguments win (a subclass's ``__init__`` runs first and
    records before calling ``super().__init__``). A subclass that passes ``**kwargs``
    up to its parent still records every argument: the parent's signature fills in
    what the subclass's ``**kwargs`` did not name.
    """
    original_init = cls.__init__
    signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        if "_init_spec" not in self.__dict__:
            init_args = _bound_arguments(cls, signature, self, args, kwargs)
            spec = {"class_path": class_path(cls), "init_args": init_args}
            # object.__setattr__: nn.Module.__init__ has not run yet.
            object.__setattr__(self, "_init_spec", spec)
        original_init(self, *args, **kwargs)

    cls.__init__ = __init__
    REGISTRY[class_path(cls)] = cls
    return cls


def _bound_arguments(cls, signature, self, args, kwargs) -> dict:
    bound = signature.bind(self, *args, **kwargs)
    bound.apply_defaults()
    init_args = {}
    extra = {}
    for name, value in list(bound.arguments.items())[1:]:
        param = signature.parameters[name]
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = dict(value)
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise TypeError(f"{cls.__name__}: *args cannot be recorded in a spec")
        else:
            init_args[name] = to_spec(value)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        # **kwargs passed up: record the parent's defaults for what was not given
        for parent in cls.__mro__[1:]:
            if "__init__" not in parent.__dict__ or parent.__init__ is object.__init__:
                continue
            parent_signature = inspect.signature(getattr(parent.__init__, "__wrapped__", parent.__init__))
            for name, param in list(parent_signature.parameters.items())[1:]:
                if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                    continue
                if name not in init_args and name not in extra and param.default is not inspect.Parameter.empty:
                    extra[name] = param.default
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parent_signature.parameters.values()):
                break
    init_args.update({k: to_spec(v) for k, v in extra.items()})
    return init_args


def to_spec(value: Any) -> Any:
    """A constructor argument as JSON-able data (modules become nested specs)."""
    if hasattr(value, "_init_spec"):
        return value._init_spec
    if _is_diffusers_object(value):
        return {"class_path": f"{DIFFUSERS_PREFIX}{type(value).__name__}", "init_args": _diffusers_config(value)}
    if isinstance(value, (list, tuple)):
        return [to_spec(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_spec(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"cannot record constructor argument of type {type(value).__name__}: "
        "a spec may only hold @configurable codecgen classes, diffusers models / schedulers and plain data"
    )


def _is_diffusers_object(value: Any) -> bool:
    return type(value).__module__.startswith(DIFFUSERS_PREFIX) and hasattr(value, "config") and hasattr(
        type(value), "config_name")


def _diffusers_config(value) -> dict:
    """A diffusers object's own config (``ConfigMixin``), less its private bookkeeping keys."""
    return {k: to_spec(list(v) if isinstance(v, tuple) else v) for k, v in dict(value.config).items()
            if not k.startswith("_")}


def init_spec(module) -> dict:
    """The recorded spec of a module built from a @configurable class."""
    try:
        return module._init_spec
    except AttributeError:
        raise TypeError(f"{type(module).__name__} was not built from a @configurable class") from None


def is_spec(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value and set(value) <= {"class_path", "init_args"}


def resolve_class(path: Any) -> type:
    """The class a spec names: a registered class of ours, or a diffusers model / scheduler."""
    if not isinstance(path, str) or not path:
        raise SpecError(f"class_path must be a non-empty string, got {path!r}")
    path = MOVED.get(path, path)
    if path in REGISTRY:
        return REGISTRY[path]
    if path.startswith("codecgen."):
        # Our modules register their classes when imported; importing one of our own
        # modules runs no user data. Anything not registered after that is refused.
        module_name = path.rpartition(".")[0]
        try:
            importlib.import_module(module_name)
        except ImportError:
            pass
        if path in REGISTRY:
            return REGISTRY[path]
        raise SpecError(f"refusing to build {path!r}: not a registered codecgen class")
    if path.startswith(DIFFUSERS_PREFIX):
        return _resolve_diffusers(path)
    raise SpecError(f"refusing to build {path!r}: only registered codecgen classes and diffusers models / schedulers")


def _resolve_diffusers(path: str) -> type:
    name = path[len(DIFFUSERS_PREFIX):]
    # only a plain attribute of the package or of diffusers.models / diffusers.schedulers
    module_name, _, attr = name.rpartition(".")
    if module_name not in ("", "models", "schedulers") or not attr.isidentifier() or attr.startswith("_"):
        raise SpecError(f"refusing to build {path!r}: use diffusers.<Class>, diffusers.models.<Class> "
                        "or diffusers.schedulers.<Class>")
    try:
        import diffusers
        from diffusers import ConfigMixin, ModelMixin, SchedulerMixin
    except ImportError:
        raise SpecError(f"{path!r} needs the diffusers package (pip install diffusers)") from None
    owner = importlib.import_module(f"diffusers.{module_name}") if module_name else diffusers
    try:
        obj = getattr(owner, attr)
    except AttributeError:
        raise SpecError(f"unknown diffusers class {path!r}") from None
    if not (inspect.isclass(obj) and issubclass(obj, ConfigMixin) and issubclass(obj, (ModelMixin, SchedulerMixin))):
        raise SpecError(f"refusing to build {path!r}: only diffusers models and schedulers")
    return obj


def build(spec: Any, allowed: tuple[type, ...] | None = None, everywhere: bool = False) -> Any:
    """Instantiate a (possibly nested) spec; plain data passes through unchanged.

    ``allowed``: the top-level spec must name a subclass of one of these; with
    ``everywhere`` every class named anywhere in the spec must (a file's decoder spec
    may only name its codec's decoders).
    """
    if allowed is not None and not is_spec(spec):
        raise SpecError("expected a module spec ({'class_path', 'init_args'})")
    return _build(spec, allowed, everywhere)


def _check_allowed(path: str, cls: type, allowed: tuple[type, ...] | None) -> None:
    if allowed is not None and not issubclass(cls, allowed):
        names = ", ".join(c.__name__ for c in allowed)
        raise SpecError(f"refusing to build {path!r} here: only {names}")


def _build(spec: Any, allowed: tuple[type, ...] | None = None, everywhere: bool = False) -> Any:
    inner = allowed if everywhere else None
    if is_spec(spec):
        cls = resolve_class(spec["class_path"])
        _check_allowed(spec["class_path"], cls, allowed)
        init_args = spec.get("init_args")
        if init_args is None:
            init_args = {}
        if not isinstance(init_args, dict) or not all(isinstance(k, str) and k.isidentifier() for k in init_args):
            raise SpecError(f"init_args of {spec['class_path']!r} must be a mapping of argument names")
        kwargs = {k: _build(v, inner, everywhere) for k, v in init_args.items()}
        if cls.__module__.startswith(DIFFUSERS_PREFIX):
            kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
            return cls.from_config(kwargs) if hasattr(cls, "from_config") else cls(**kwargs)
        try:
            return cls(**kwargs)
        except TypeError as error:  # an unknown or missing argument in a spec
            raise SpecError(f"cannot build {spec['class_path']}: {error}") from None
    if isinstance(spec, list):
        return [_build(v, inner, everywhere) for v in spec]
    if isinstance(spec, dict):
        return {k: _build(v, inner, everywhere) for k, v in spec.items()}
    return spec

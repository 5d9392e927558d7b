"""Load and export trained models with no config file.

- ``load(path)``: a Lightning ``.ckpt`` (read with ``torch.load(weights_only=True)``), a
  folder written by ``export`` (``config.json`` + ``model.safetensors``), or the name of
  a folder the project ships under ``checkpoints/`` (e.g. ``"hificodec-16k"``).
  The model is rebuilt from the spec it carries (``codecgen.config``) and returned
  in eval mode.
- ``export(model, folder)``: the inference weights only (no discriminators, no
  optimizer state) as safetensors, and the spec as JSON. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from codecgen.config import build
from codecgen.module import Module

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


class ModelNotFoundError(FileNotFoundError):
    pass


def shipped_models() -> list[str]:
    roots = [Path(os.environ["CODECGEN_CHECKPOINTS"])] if os.environ.get("CODECGEN_CHECKPOINTS") else []
    roots.append(SHIPPED_DIR)
    return sorted({p.name for root in roots if root.is_dir() for p in root.iterdir() if (p / CONFIG_NAME).is_file()})


def resolve(path: str | os.PathLike) -> Path:
    """A file or folder path as given, else a shipped checkpoint name."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    roots = [Path(os.environ["CODECGEN_CHECKPOINTS"])] if os.environ.get("CODECGEN_CHECKPOINTS") else []
    for root in roots + [SHIPPED_DIR]:
        if (root / str(path) / CONFIG_NAME).is_file():
            return root / str(path)
    names = ", ".join(shipped_models()) or "none shipped yet"
    raise ModelNotFoundError(f"no model at {path!r}: not a .ckpt file, an exported folder, or a shipped name ({names})")


def _load_ckpt(path: Path, map_location):
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise ValueError(f"cannot read checkpoint {path}: {error}") from None
    if not isinstance(checkpoint, dict) or "codecgen_spec" not in checkpoint:
        raise ValueError(f"{path} is not a codecgen checkpoint (no model spec inside)")
    model = build(checkpoint["codecgen_spec"], allowed=(Module,))
    missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
    # a checkpoint from before the model had a code prior: the prior stays unfitted
    missing = [k for k in missing if not k.startswith("code_prior.")]
    if missing or unexpected:
        raise ValueError(f"{path} does not match its model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _load_folder(path: Path, map_location):
    config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise ValueError(f"{path} is not an exported model: it needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(config_path.read_text())
        spec = config["spec"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path} is not a valid codecgen config: {error}") from None
    model = build(spec, allowed=(Module,))
    state = load_file(str(weights_path), device=str(map_location))
    missing, unexpected = model.load_state_dict(state, strict=False)
    inference_prefixes = tuple(f"{name}." for name in model.inference_modules)
    missing = [k for k in missing if k.startswith(inference_prefixes)]
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    expected_hash = config.get("weights_hash")
    if expected_hash and model.weights_hash() != expected_hash:
        raise ValueError(f"{weights_path} is corrupt: weights hash {model.weights_hash()} != {expected_hash}")
    return model


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild a trained model in eval mode from a .ckpt, an exported folder or a shipped name."""
    resolved = resolve(path)
    model = _load_folder(resolved, map_location) if resolved.is_dir() else _load_ckpt(resolved, map_location)
    return model.to(map_location).eval()


def inference_copy(model):
    """A fresh model built from ``model``'s inference spec (no discriminators, no EMA) holding its inference
    weights (an EMA's where it has one), in eval mode: what its export would load as, without the files; how
    a trained stage becomes part of an assembled model."""
    copy = build(model.spec(inference_only=True), allowed=(Module,))
    missing, unexpected = copy.load_state_dict(model.inference_state_dict(), strict=False)
    missing = [k for k in missing if k.startswith(tuple(f"{name}." for name in copy.inference_modules))]
    if missing or unexpected:
        raise ValueError(f"{type(model).__name__}'s inference weights do not fit its inference spec: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    return copy.eval()


def load_stage_weights(target: torch.nn.Module, path: str | os.PathLike, expected: type, role: str,
                       map_location: str | torch.device = "cpu", part: str | None = None) -> None:
    """Copy into ``target`` the weights of the model at ``path`` (a .ckpt, an export or a
    shipped name), which must be an ``expected`` with exactly ``target``'s weights (or, with
    ``part``, those of its sub-module ``part``): how a multi-stage model's fresh run takes a
    trained earlier stage (``role`` names the setting in errors, e.g. ``first_stage_ckpt``)."""
    source = load(path, map_location=map_location)
    if not isinstance(source, expected):
        raise ValueError(f"{role} {path} holds a {type(source).__name__}, not a {expected.__name__}")
    state = source.inference_state_dict()  # not its discriminators
    if part is not None:
        prefix = f"{part}."
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        target.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{role} {path} does not match the model's {expected.__name__}: "
                         f"{' '.join(str(error).split())[:400]}") from None


def load_model_weights(target, path: str | os.PathLike, role: str = "init_from",
                       map_location: str | torch.device = "cpu") -> None:
    """Start ``target`` (a codecgen Module) from the model at ``path`` of the same class: its
    inference weights (an EMA's where it has one), as a fresh run's ``init_from`` does. ValueError
    when it is another class or its weights do not fit ``target``'s inference modules."""
    source = load(path, map_location=map_location)
    if not isinstance(source, type(target)):
        raise ValueError(f"{role} {path} holds a {type(source).__name__}, not a {type(target).__name__}")
    try:
        missing, unexpected = target.load_state_dict(source.inference_state_dict(), strict=False)
    except RuntimeError as error:
        raise ValueError(f"{role} {path} does not fit this model: {' '.join(str(error).split())[:400]}") from None
    missing = [k for k in missing if k.startswith(tuple(f"{m}." for m in target.inference_modules))]
    if missing or unexpected:
        raise ValueError(f"{role} {path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def export(model, folder: str | os.PathLike, overwrite: bool = False, half: bool = False) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` (inference weights only).

    ``half`` stores float32 tensors as float16 (half the size). The model's own weights
    are rounded through float16 first, so the exported model, loaded back as float32,
    is bit-identical to ``model`` after this call and the weights hash matches it.
    Other dtypes (float64 code-prior counts, integer buffers) are kept exact.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists (use overwrite)")
    model = model.eval()
    if half:
        with torch.no_grad():
            for tensor in model.inference_state_dict().values():
                if tensor.dtype == torch.float32:
                    tensor.copy_(tensor.half().float())
        model._weights_hash = None
    config = {
        "codecgen_format": 1,
        "model": model.model_name,
        "modality": model.modality,
        "spec": model.spec(inference_only=True),
        "weights_hash": model.weights_hash(),
        "rate": model.nominal_rate(),  # {"value", "unit"}; None for a model without a fixed rate
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.inference_state_dict().items()}
        if half:
            tensors = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
        save_file(tensors, str(staging / WEIGHTS_NAME))
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        umask = os.umask(0)
        os.umask(umask)
        for path, mode in ((staging, 0o777), (staging / CONFIG_NAME, 0o666), (staging / WEIGHTS_NAME, 0o666)):
            path.chmod(mode & ~umask)  # mkdtemp makes private folders; an export is for sharing
        if folder.exists():
            for name in (CONFIG_NAME, WEIGHTS_NAME):  # keep other files (a model card) in place
                os.replace(staging / name, folder / name)
        else:
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder

"""Commands about files and models rather than codes: ``info`` (a ``.cgc`` header,
robust to headers that lie), ``export`` (a checkpoint -> safetensors folder) and
``fit-prior`` (an audio model's code prior from a folder of audio), ``fit-kmeans``
(SemantiCodec's semantic tokenizer from a folder of audio); and the model loading every
codec command shares."""

from __future__ import annotations

import json
import math
from pathlib import Path

from codecgen.cli.files import UserError, one_line, progress
from codecgen.codecs import bitstream

MODALITIES = ("audio", "image", "video")
_MAX_LIST, _MAX_TEXT, _MAX_DEPTH = 16, 200, 8


def load_model(name: str, modality: str | None, device: str):
    """``modality`` None: any model (the caller checks what it needs)."""
    from codecgen import hub

    model = hub.load(name, map_location=device)
    if modality is not None and model.modality != modality:
        raise UserError(f"{name} is a {model.modality} model; this needs an {modality} model")
    return model


def shipped_model_for(header: dict) -> str | None:
    """The shipped checkpoint whose weights wrote this file, if any (for error hints)."""
    from codecgen.hub import SHIPPED_DIR, shipped_models

    tag = header.get("weights_hash")
    if not isinstance(tag, str) or len(tag) < 8:
        return None
    for name in shipped_models():
        try:
            full = json.loads((SHIPPED_DIR / name / "config.json").read_text()).get("weights_hash", "")
        except (OSError, ValueError):
            continue
        if isinstance(full, str) and full.startswith(tag):
            return name
    return None


# ----------------------------------------------------------------------------- info
def _positive(header: dict, key: str, problems: list[str], kind=(int, float)):
    """``header[key]`` when it is a positive finite number of ``kind``, else None (and why)."""
    if key not in header:
        problems.append(f"{key} is missing")
        return None
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        wanted = "an integer" if kind is int else "a number"
        problems.append(f"{key} is a {type(value).__name__} ({json.dumps(value)[:40]}), not {wanted}")
        return None
    if not (math.isfinite(value) and value > 0):
        problems.append(f"{key} is {value}, not positive")
        return None
    return value


def _size(header: dict, problems: list[str]) -> tuple[int, int] | None:
    size = header.get("size")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        problems.append(f"size is {json.dumps(size)[:40] if 'size' in header else 'missing'}, not [width, height]")
        return None
    return size[0], size[1]


def _derived(header: dict, file_bytes: int) -> tuple[dict, list[str]]:
    """Duration, pixels and rate, each only when the fields it needs are sound."""
    problems: list[str] = []
    out: dict = {}
    modality = header.get("modality")
    if modality == "audio":
        length = _positive(header, "source_length", problems, int)
        rate = _positive(header, "source_sample_rate", problems, int)
        if length and rate:
            out["seconds"] = round(length / rate, 3)
            out["kbps"] = round(8 * file_bytes / (length / rate) / 1000, 3)
    elif modality == "image":
        size = _size(header, problems)
        if size:
            out["bpp"] = round(8 * file_bytes / (size[0] * size[1]), 5)
    elif modality == "video":
        frames = _positive(header, "frames", problems, int)
        size = _size(header, problems)
        fps = _positive(header, "fps", problems)
        if frames and size:
            out["bpp"] = round(8 * file_bytes / (frames * size[0] * size[1]), 5)
        if frames and fps:
            out["seconds"] = round(frames / fps, 3)
            out["kbps"] = round(8 * file_bytes / (frames / fps) / 1000, 3)
    else:
        known = ", ".join(MODALITIES)
        problems.append(f"modality is {json.dumps(modality)[:40]}, not one of {known}" if "modality" in header
                        else "modality is missing")
    return out, problems


def _elide(value, depth: int = 0):
    """A header fit to read: long lists and strings (counts, masks, tensor records) summarised."""
    if depth > _MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {str(k): _elide(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > _MAX_LIST:
            return f"<{len(value)} items>"
        return [_elide(v, depth + 1) for v in value]
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return f"<{len(value)} characters>"
    return value


def cmd_info(args) -> None:
    header, payload = bitstream.read(args.input)
    file_bytes = Path(args.input).stat().st_size
    derived, problems = _derived(header, file_bytes)
    summary = _elide(header) | {"payload_bytes": len(payload), "file_bytes": file_bytes} | derived
    if problems:
        summary["problems"] = problems
    print(json.dumps(summary, indent=2))


# ----------------------------------------------------------------------------- models
def cmd_export(args) -> None:
    from codecgen import hub

    model = hub.load(args.model)
    folder = Path(args.folder)
    if folder.exists() and not args.overwrite:
        raise UserError(f"{folder} exists; pass --overwrite to replace it")
    hub.export(model, folder, overwrite=args.overwrite, half=args.half)
    print(f"exported {model.model_name} ({model.weights_hash()}) to {folder}")


def cmd_fit_prior(args) -> None:
    import torch

    from codecgen import hub
    from codecgen.datamodules.audio import load_audio

    folder = Path(args.output)
    if folder.exists() and not args.overwrite:
        raise UserError(f"{folder} exists; pass --overwrite to replace it")
    model = load_model(args.model, "audio", args.device)
    files = _audio_files(args.data, args.max_files)
    with torch.inference_mode():
        waveforms = (load_audio(f, model.sample_rate)[None] for f in files)
        frames = model.fit_code_prior(progress(waveforms, len(files), "prior", args.quiet, unit="file"))
    hub.export(model, folder, overwrite=args.overwrite)
    print(f"code prior from {len(files)} files ({frames} frames) exported with the model to {folder}")


def _audio_files(data: str, max_files: int) -> list[Path]:
    """Up to ``max_files`` wav / flac / ogg files under ``data``, spread over the sorted list."""
    files = sorted(p for ext in ("wav", "flac", "ogg") for p in Path(data).rglob(f"*.{ext}"))
    files = files[:: max(1, len(files) // max_files)][:max_files]
    if not files:
        raise UserError(f"no wav/flac/ogg files under {data}")
    return files


def cmd_fit_kmeans(args) -> None:
    from codecgen import hub
    from codecgen.codecs.audio.semanticodec.mae import AudioMAEPretraining
    from codecgen.codecs.audio.semanticodec.tokenizer import SemanticTokenizer
    from codecgen.datamodules.audio import iter_audio_chunks

    for flag, value in (("--clusters", args.clusters), ("--max-files", args.max_files),
                        ("--max-vectors", args.max_vectors), ("--iters", args.iters)):
        if value < 1:
            raise UserError(f"{flag} must be positive, got {value}")
    folder = Path(args.output)
    if folder.exists() and not args.overwrite:
        raise UserError(f"{folder} exists; pass --overwrite to replace it")
    stage = load_model(args.model, None, args.device)
    if not isinstance(stage, AudioMAEPretraining):
        raise UserError(f"{args.model} is a {stage.model_name}; fit-kmeans needs a SemantiCodec stage-1 model "
                        "(AudioMAEPretraining, configs/semanticodec/mae_*.yaml)")
    try:
        tokenizer = SemanticTokenizer.from_pretraining(stage, args.tokens_per_second, args.clusters).to(args.device)
    except ValueError as error:
        raise UserError(str(error)) from None
    files = _audio_files(args.data, args.max_files)
    size, rate = tokenizer.window_samples, tokenizer.fbank.sample_rate

    def windows():
        for f in progress(files, len(files), "k-means features", args.quiet, unit="file"):
            try:
                for chunk, _, _ in iter_audio_chunks(f, rate, size):  # whole windows; the last one shorter
                    if chunk.shape[-1] >= tokenizer.fbank.window:
                        yield chunk.reshape(1, 1, -1).to(args.device)
            except (OSError, RuntimeError, ValueError) as error:
                raise UserError(f"cannot read {f}: {one_line(error)}") from None

    try:
        stats = tokenizer.fit_kmeans(windows(), args.max_vectors, args.iters, args.seed)
    except ValueError as error:
        raise UserError(str(error)) from None
    hub.export(tokenizer, folder, overwrite=args.overwrite)
    if not args.quiet:
        print(f"{args.clusters} centroids ({stats['used_clusters']} used) on {stats['vectors']} frames of "
              f"{len(files)} files, {args.tokens_per_second} tokens/s: tokenizer exported to {folder}")

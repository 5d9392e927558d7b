"""Audio on files: any rate and channel count -> ``.cgc`` (HiFi-Codec, Language-Codec,
SemantiCodec) and back at the source's rate and length, and SemantiCodec's tokens as ``.npy``.
Long files are coded in chunks (``chunk_plan``), so memory stays bounded whatever the length.
A diffusion decoder (SemantiCodec) samples with the settings in the file unless
``--steps`` / ``--guidance`` / ``--scheduler`` / ``--seed`` say otherwise."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from codecgen.cli.files import StepBar, UserError, check_output, decode_limits, progress, staged, temp_path
from codecgen.codecs import bitstream
from codecgen.codecs.base import CodecError

INPUTS = (".wav", ".flac", ".ogg")
OUTPUTS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
DEFAULT_FORMAT = "wav"


SAMPLER_FLAGS = {"steps": "--steps", "guidance": "--guidance", "scheduler": "--scheduler", "seed": "--seed"}


def _check_rate(model, args) -> None:
    """``--tokens-per-second``: SemantiCodec models only, and the one the model was trained for."""
    wanted = getattr(args, "tokens_per_second", None)
    if wanted is None:
        return
    rate = getattr(model, "tokens_per_second", None)
    if rate is None:
        raise UserError(f"--tokens-per-second applies to SemantiCodec models; {model.model_name} has no token rate")
    if rate != wanted:
        raise UserError(f"this model codes at {rate} tokens/s, not {wanted}: each SemantiCodec model is trained for "
                        "one rate; give a model trained for that rate")


def _codes(model, src: Path, args, quiet: bool):
    """(codes (1, n_q, frames), length at the model's rate, source rate, source frames)."""
    from codecgen.datamodules.audio import audio_info, iter_audio_chunks

    _check_rate(model, args)

    source_rate, source_frames, _ = audio_info(src)
    chunk, context = model.chunk_plan()
    n_chunks = math.ceil(math.ceil(source_frames * model.sample_rate / source_rate) / chunk)
    chunks = progress(iter_audio_chunks(src, model.sample_rate, chunk, context), n_chunks, "encode", quiet)
    codes, length = model.encode_chunks(chunks, n_q=getattr(args, "n_q", None))
    return codes, length, source_rate, source_frames


def _sampler_flags(model, args) -> dict:
    """The diffusion decode flags given, for a model that samples; refused for one that does not."""
    given = {k: getattr(args, k, None) for k in SAMPLER_FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    if not hasattr(model, "sampler_settings"):
        if given:
            raise UserError(f"{', '.join(SAMPLER_FLAGS[k] for k in given)}: {model.model_name} decodes without "
                            "sampling (these flags are for SemantiCodec files)")
        return {}
    if "scheduler" in given:
        given["name"] = given.pop("scheduler")
    model.sampler_settings(given.get("steps"), given.get("guidance"), given.get("name"), given.get("seed", 0))
    return given


@torch.inference_mode()
def encode(model, src: Path, dst: Path, args, quiet: bool) -> str:
    codes, length, source_rate, source_frames = _codes(model, src, args, quiet)
    header, payload = model.pack_codes(codes, length, source_rate, source_frames)
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    seconds, size = source_frames / source_rate, dst.stat().st_size
    return (f"{dst}: {size} bytes, {seconds:.2f} s, {8 * size / seconds / 1000:.3f} kbps "
            f"({codes.shape[1]} codebooks, {header['entropy']['kind']} code model)")


def _write(pieces, path: Path, sample_rate: int, total: int) -> None:
    import soundfile as sf

    fmt, subtype = OUTPUTS[path.suffix.lower()]
    written = 0
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, format=fmt, subtype=subtype) as f:
        for piece in pieces:
            piece = piece.reshape(-1)[: total - written]
            f.write(piece.clamp(-1.0, 1.0).numpy())
            written += piece.numel()
            if written >= total:
                break
        if written < total:  # a decoder that returned short: never emit a silently short file
            raise CodecError(f"decoded {written} samples, expected {total}")


@torch.inference_mode()
def decode(model, src: Path, dst: Path, header: dict, payload: bytes, args, quiet: bool) -> str:
    sampler = _sampler_flags(model, args)
    codes = model.unpack_codes(header, payload, limits=decode_limits(args))
    with StepBar("decode", quiet, unit="window") as bar, staged(dst) as final:
        if hasattr(model, "sampler_settings"):  # a diffusion decoder: the file's settings, flags over them
            pieces = model.decode_chunks(codes, header["length"], header, progress=bar.callback(), **sampler)
        else:
            chunk_frames = model.chunk_plan()[0] // model.hop_length
            pieces = progress(model.decode_chunks(codes, header["length"]), math.ceil(codes.shape[-1] / chunk_frames),
                              "decode", quiet)
        _write_decoded(model, pieces, header, dst, final)
    rate = header["source_sample_rate"]
    return f"{dst}: {header['source_length'] / rate:.2f} s at {rate} Hz"


def _write_decoded(model, pieces, header: dict, dst: Path, final: Path) -> None:
    """Waveform pieces at the model's rate -> ``final`` at the source's rate and length."""
    import soundfile as sf

    from codecgen.datamodules.audio import iter_audio_chunks

    rate = header["source_sample_rate"]
    if rate == model.sample_rate:
        _write(pieces, final, model.sample_rate, header["length"])
        return
    at_model_rate = temp_path(dst, ".wav")  # decode at the model's rate, then resample window by window
    try:
        with sf.SoundFile(str(at_model_rate), "w", samplerate=model.sample_rate, channels=1, subtype="FLOAT") as f:
            for piece in pieces:
                f.write(piece.reshape(-1).numpy())
        windows = iter_audio_chunks(at_model_rate, rate, 30 * rate, rate // 10)
        _write((w[:, left: left + n] for w, left, n in windows), final, rate, header["source_length"])
    finally:
        at_model_rate.unlink(missing_ok=True)


@torch.inference_mode()
def cmd_tokens(args) -> None:
    """``infer.py tokens``: one audio file -> an int64 (frames, 2) array in a ``.npy``."""
    import numpy as np

    from codecgen.cli.models import load_model

    src, dst = Path(args.input), Path(args.output)
    if dst.suffix.lower() != ".npy":
        raise UserError(f"the output must be a .npy file, got {dst.name}")
    if src.suffix.lower() not in INPUTS:
        raise UserError(f"{src.name}: not a {' / '.join(s.lstrip('.') for s in INPUTS)} file")
    check_output(dst, args.overwrite, [src])
    model = load_model(args.model, "audio", args.device)
    if not hasattr(model, "tokens"):
        raise UserError(f"{args.model} is a {model.model_name}; tokens come from a SemantiCodec model")
    try:
        codes, _, _, _ = _codes(model, src, args, args.quiet)
    except (OSError, RuntimeError) as error:
        raise UserError(f"cannot read {src}: {error}") from None
    tokens = codes[0].t().contiguous().cpu().numpy().astype(np.int64)
    with staged(dst) as tmp, open(tmp, "wb") as f:
        np.save(f, tokens)
    if not args.quiet:
        print(f"{dst}: {tokens.shape[0]} frames x (semantic, acoustic), {model.tokens_per_second} tokens/s")

"""Audio on files: any rate and channel count -> ``.cgc`` (HiFi-Codec, Language-Codec) and
back at the source's rate and length. Long files are coded in chunks with context
(``chunk_plan``), so memory stays bounded whatever the length."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from codecgen.cli.files import decode_limits, progress, staged, temp_path
from codecgen.codecs import bitstream
from codecgen.codecs.base import CodecError

INPUTS = (".wav", ".flac", ".ogg")
OUTPUTS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
DEFAULT_FORMAT = "wav"


@torch.inference_mode()
def encode(model, src: Path, dst: Path, args, quiet: bool) -> str:
    from codecgen.datamodules.audio import audio_info, iter_audio_chunks

    source_rate, source_frames, _ = audio_info(src)
    chunk, context = model.chunk_plan()
    n_chunks = math.ceil(math.ceil(source_frames * model.sample_rate / source_rate) / chunk)
    chunks = progress(iter_audio_chunks(src, model.sample_rate, chunk, context), n_chunks, "encode", quiet)
    codes, length = model.encode_chunks(chunks, n_q=getattr(args, "n_q", None))
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
    import soundfile as sf

    from codecgen.datamodules.audio import iter_audio_chunks

    codes = model.unpack_codes(header, payload, limits=decode_limits(args))
    chunk_frames = model.chunk_plan()[0] // model.hop_length
    pieces = progress(model.decode_chunks(codes, header["length"]), math.ceil(codes.shape[-1] / chunk_frames),
                      "decode", quiet)
    rate = header["source_sample_rate"]
    with staged(dst) as final:
        if rate == model.sample_rate:
            _write(pieces, final, model.sample_rate, header["length"])
        else:  # decode at the model's rate, then resample window by window to the source's
            at_model_rate = temp_path(dst, ".wav")
            try:
                with sf.SoundFile(str(at_model_rate), "w", samplerate=model.sample_rate, channels=1,
                                  subtype="FLOAT") as f:
                    for piece in pieces:
                        f.write(piece.reshape(-1).numpy())
                windows = iter_audio_chunks(at_model_rate, rate, 30 * rate, rate // 10)
                _write((w[:, left: left + n] for w, left, n in windows), final, rate, header["source_length"])
            finally:
                at_model_rate.unlink(missing_ok=True)
    return f"{dst}: {header['source_length'] / rate:.2f} s at {rate} Hz"

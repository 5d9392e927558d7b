"""Video on files with the NeRV family (NeRV, Chen et al. 2021; HNeRV, Chen et al. 2023;
the boost of Zhang et al. 2024): encoding fits a network to the clip and the ``.cgc``
is that network, so decoding needs no checkpoint. Decoding streams: frames are rendered
and written one by one, never held together."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from pathlib import Path

import torch

from codecgen.cli.files import UserError, check_output, decode_limits, progress, temp_path
from codecgen.codecs import bitstream

INPUTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m")
OUTPUTS = (".mkv", ".mp4")
DEFAULT_FORMAT = "mkv"
FORMATS = ("mkv", "mp4", "png")  # png: a folder of PNG frames


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} must be integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{what} must be positive integers, got {text!r}")
    return values


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _quiet_lightning() -> None:
    """Lightning's banners too, not only the progress bars."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def encode(arch: str, src: Path, dst: Path, args, quiet: bool) -> str:
    """Fit ``arch`` to the clip at ``src`` (gradients on: this trains), write its ``.cgc``."""
    from codecgen.codecs.video.nerv import fit_clip, recipe, with_audio
    from codecgen.datamodules.video import VideoDataModule, probe_video
    from codecgen.nn.nerv import ConvNeXtEncoder, hnerv_for_budget, nerv_for_budget

    size = _ints(args.size, "--size") if args.size else None
    if size is not None:
        if len(size) != 2:
            raise UserError(f"--size is WIDTHxHEIGHT, e.g. 320x240, got {args.size!r}")
        size = size[::-1]  # WIDTHxHEIGHT, as upscale, generate and ffmpeg write it; resize takes (H, W)
    strides = _ints(args.strides, "--strides")
    if not 0.0 <= args.prune < 1.0:
        raise UserError(f"--prune must be in [0, 1), got {args.prune}")
    data = VideoDataModule(video=str(src), resize=size, frames=args.frames, batch_size=args.batch_size)
    with warnings.catch_warnings(record=True) as caught:  # variable frame rate: said, not silent
        warnings.simplefilter("always")
        data.setup("fit")
    for warning in caught:
        _warn(str(warning.message))
    audio = None
    if not src.is_dir():
        others = list(probe_video(src).other_streams)
        audio_model = getattr(args, "audio_model", None)
        if audio_model:
            audio = _encode_audio(audio_model, src, dst, args, data.fps)
            if audio is None:
                _warn(f"{src}: no sound track in the frames coded: --audio-model {audio_model} has nothing to carry")
            else:
                others.remove(next(o for o in others if o.startswith("audio")))
        if others:
            hint = "" if audio_model or not any(o.startswith("audio") for o in others) else \
                " (--audio-model languagecodec-16k carries the sound)"
            _warn(f"{src}: the video codec codes the pictures only; dropping {', '.join(others)}{hint}")
    n, (h, w) = data.n_frames, data.frame_size
    factor = math.prod(strides)
    if h % factor or w % factor:
        raise UserError(f"frame size {h}x{w} is not divisible by prod(--strides) = {factor}: pass --size or --strides")
    plan = recipe(args.boosted, arch == "hnerv", len(strides))  # its decoder options hold for added stages
    if arch == "hnerv":
        decoder = hnerv_for_budget(args.model_size, n, (h, w), strides, embed_channels=args.embed_channels,
                                   **plan["decoder"])
        encoder = ConvNeXtEncoder(strides=decoder.strides, dims=64, depths=1, embed_channels=decoder.embed_channels)
    else:
        decoder, encoder = nerv_for_budget(args.model_size, (h, w), strides, **plan["decoder"]), None
    chosen = list(decoder.strides) != strides or getattr(decoder, "embed_channels", args.embed_channels) != \
        args.embed_channels
    if chosen and not quiet:  # the budget needed a smaller stem than the flags allow
        print(f"--model-size {args.model_size} needs --strides {','.join(map(str, decoder.strides))}"
              + (f" --embed-channels {decoder.embed_channels}" if arch == "hnerv" else "") + ": using them")
    if quiet:
        _quiet_lightning()
    start = time.perf_counter()
    codec = fit_clip(data, decoder, encoder, args.epochs, args.quant_epochs, lr=args.lr or plan["lr"],
                     optimizer=plan["optimizer"], loss_weights=plan["loss_weights"], prune_ratio=args.prune,
                     accelerator=args.device if args.device != "cpu" else "cpu", progress=not quiet)
    data = codec.compress()
    if audio is not None:
        data = with_audio(data, audio[0], args.audio_model, audio[1])
    header, payload = bitstream.unpack(data)
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    size_bytes = dst.stat().st_size
    return (f"{dst}: {size_bytes} bytes, {n} frames {w}x{h}, {8 * size_bytes / (n * h * w):.4f} bpp, "
            f"{codec.n_coded_params() / 1e6:.3f} M parameters, fitted in {time.perf_counter() - start:.0f} s")


def _audio_model(name: str):
    """A shipped audio model by name (the name is recorded in the file: decode loads it)."""
    from codecgen import hub
    from codecgen.cli.models import load_model

    if name not in hub.shipped_models():
        raise UserError(f"--audio-model must be a shipped audio model ({', '.join(hub.shipped_models())}), "
                        f"got {name!r}")
    return load_model(name, "audio", "cpu")


@torch.inference_mode()
def _encode_audio(name: str, src: Path, dst: Path, args, fps: float) -> tuple[bytes, float] | None:
    """The first sound track of ``src`` over the frames coded, as an audio ``.cgc`` file's
    bytes (coded by the shipped model ``name``) and its offset from the first frame."""
    from types import SimpleNamespace

    from codecgen.cli import audio
    from codecgen.datamodules.video import extract_audio, parse_frame_range

    model = _audio_model(name)
    start, stop = parse_frame_range(args.frames)
    wav, coded = temp_path(dst, ".wav"), temp_path(dst, ".cgc")
    try:
        offset = extract_audio(src, wav, start, stop, fps)
        if offset is None:
            return None
        audio.encode(model, wav, coded, SimpleNamespace(overwrite=True, n_q=None), quiet=True)
        return coded.read_bytes(), offset
    finally:
        wav.unlink(missing_ok=True)
        coded.unlink(missing_ok=True)


@torch.inference_mode()
def _decode_audio(sound: dict, dst: Path, args) -> Path:
    """The carried sound track decoded by the model the file names, to a .wav next to ``dst``."""
    from codecgen.cli import audio

    model = _audio_model(sound["model"])
    header, payload = bitstream.unpack(sound["file"])
    if header.get("modality") != "audio":
        raise bitstream.BitstreamError("the video's sound track is not an audio file")
    wav = temp_path(dst, ".wav")
    try:
        audio.decode(model, wav, wav, header, payload, args, quiet=True)
    except BaseException:
        wav.unlink(missing_ok=True)
        raise
    return wav


@torch.inference_mode()
def decode(src: Path, dst: Path, args, quiet: bool) -> str:
    """Render the frames of ``src`` straight into the writer (temp file + rename); a
    carried sound track is decoded and muxed in, time-aligned with the frames."""
    from codecgen.codecs.video.nerv import DecodedVideo
    from codecgen.datamodules.video import mux_audio, parse_frame_range, write_video

    video = DecodedVideo(src.read_bytes(), device=getattr(args, "device", "cpu"),
                         limits=decode_limits(args))
    start, stop = parse_frame_range(getattr(args, "frames", None))
    stop = video.n_frames if stop is None else stop
    if not 0 <= start < stop <= video.n_frames:
        raise UserError(f"--frames {args.frames} is outside 0:{video.n_frames}")
    began = time.perf_counter()
    frames = progress(video.frames(start, stop), stop - start, "decode", quiet, unit="frame")
    sound = video.audio
    if sound is not None and dst.suffix.lower() not in OUTPUTS:
        _warn(f"{src} carries a sound track; a folder of PNG frames cannot hold it (decode to .mkv or .mp4)")
        sound = None
    if sound is None:
        write_video(frames, dst, fps=video.fps)
    else:
        wav, pictures = _decode_audio(sound, dst, args), temp_path(dst, dst.suffix)
        try:
            write_video(frames, pictures, fps=video.fps)
            span = (start / video.fps, None if stop == video.n_frames else stop / video.fps)
            mux_audio(pictures, wav, dst, sound["offset"], span)
        finally:
            wav.unlink(missing_ok=True)
            pictures.unlink(missing_ok=True)
    seconds = time.perf_counter() - began
    return (f"{dst}: frames {start}:{stop} of {video.n_frames}, {video.width}x{video.height}"
            + (", with its sound track" if sound is not None else "")
            + f", decoded and written at {(stop - start) / seconds:.1f} fps")


@torch.inference_mode()
def cmd_pack_video(args) -> None:
    """A NeRV-family checkpoint trained with train.py -> the clip's .cgc file."""
    from codecgen.cli.models import load_model

    dst = Path(args.output)
    check_output(dst, args.overwrite)
    model = load_model(args.model, "video", "cpu")
    if model.hybrid and not bool(model.embeddings.abs().sum()):
        raise UserError(f"{args.model} holds no frame embeddings: finish the fit stage first")
    header, payload = bitstream.unpack(model.compress())
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    if not args.quiet:
        h, w = model.frame_size
        size, weights = dst.stat().st_size, "quantization-aware" if model.stage == "quantize" else "post-training"
        print(f"{dst}: {size} bytes, {8 * size / (model.n_frames * h * w):.4f} bpp "
              f"({weights} {model.weight_bits}-bit weights)")

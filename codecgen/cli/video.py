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

from codecgen.cli.files import UserError, check_output, decode_limits, progress
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
    from codecgen.codecs.video.nerv import fit_clip, recipe
    from codecgen.datamodules.video import VideoDataModule, probe_video
    from codecgen.nn.nerv import ConvNeXtEncoder, hnerv_for_budget, nerv_for_budget

    size = _ints(args.size, "--size") if args.size else None
    if size is not None and len(size) != 2:
        raise UserError("--size is HEIGHTxWIDTH")
    strides = _ints(args.strides, "--strides")
    if not 0.0 <= args.prune < 1.0:
        raise UserError(f"--prune must be in [0, 1), got {args.prune}")
    data = VideoDataModule(video=str(src), resize=size, frames=args.frames, batch_size=args.batch_size)
    with warnings.catch_warnings(record=True) as caught:  # variable frame rate: said, not silent
        warnings.simplefilter("always")
        data.setup("fit")
    for warning in caught:
        _warn(str(warning.message))
    if not src.is_dir():
        others = probe_video(src).other_streams
        if others:
            _warn(f"{src}: the video codec codes the pictures only; dropping {', '.join(others)}")
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
    header, payload = bitstream.unpack(codec.compress())
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    size_bytes = dst.stat().st_size
    return (f"{dst}: {size_bytes} bytes, {n} frames {w}x{h}, {8 * size_bytes / (n * h * w):.4f} bpp, "
            f"{codec.n_coded_params() / 1e6:.3f} M parameters, fitted in {time.perf_counter() - start:.0f} s")


@torch.inference_mode()
def decode(src: Path, dst: Path, args, quiet: bool) -> str:
    """Render the frames of ``src`` straight into the writer (temp file + rename)."""
    from codecgen.codecs.video.nerv import DecodedVideo
    from codecgen.datamodules.video import parse_frame_range, write_video

    video = DecodedVideo(src.read_bytes(), device=getattr(args, "device", "cpu"),
                         limits=decode_limits(args))
    start, stop = parse_frame_range(getattr(args, "frames", None))
    stop = video.n_frames if stop is None else stop
    if not 0 <= start < stop <= video.n_frames:
        raise UserError(f"--frames {args.frames} is outside 0:{video.n_frames}")
    began = time.perf_counter()
    write_video(progress(video.frames(start, stop), stop - start, "decode", quiet, unit="frame"), dst, fps=video.fps)
    seconds = time.perf_counter() - began
    return (f"{dst}: frames {start}:{stop} of {video.n_frames}, {video.width}x{video.height}, "
            f"decoded and written at {(stop - start) / seconds:.1f} fps")


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

"""Entry points: ``train.py`` (Lightning CLI) and ``infer.py`` (files in, files out).

Only this module wires file readers (``codecgen.datamodules``) to codecs, keeping the
library's arrows one-way (DESIGN.md). ``infer_main`` reports every user error as one
line on stderr with exit code 2; outputs are written to a temporary file and renamed
into place, so a failure never leaves a partial file and never touches an existing
one unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from codecgen import hub
from codecgen.codecs import bitstream
from codecgen.codecs.base import CodecError

AUDIO_OUTPUTS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


# ----------------------------------------------------------------------------- training
def train_main(args=None):
    """``python train.py fit --config configs/<model>/<variant>.yaml [overrides]``."""
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    torch.set_float32_matmul_precision("high")
    return LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


# ----------------------------------------------------------------------------- inference
class UserError(Exception):
    """Printed as one line; exit code 2."""


def _progress(iterable, total: int | None, desc: str, quiet: bool):
    if quiet:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="chunk", leave=False, file=sys.stderr)


def _check_output(path: Path, overwrite: bool, inputs: list[Path]) -> None:
    if any(path.resolve() == i.resolve() for i in inputs if i.exists()):
        raise UserError(f"output {path} is the same file as an input")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    if path.exists() and path.is_dir():
        raise UserError(f"{path} is a folder")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")


def _load_model(name: str, modality: str, device: str):
    model = hub.load(name, map_location=device)
    if model.modality != modality:
        raise UserError(f"{name} is a {model.modality} model, this command needs an {modality} model")
    return model


def _open_coded(args, outputs) -> tuple[Path, dict, bytes, object]:
    """A decode command's start: check the output (a form in ``outputs``, not an input, not
    overwritten unasked), read the .cgc and load the model for its modality."""
    src, dst = Path(args.input), Path(args.output)
    if dst.suffix.lower() not in outputs:
        raise UserError(f"unsupported output format {dst.suffix!r}: use one of {', '.join(outputs)}")
    _check_output(dst, args.overwrite, [src])
    header, payload = bitstream.read(src)
    return dst, header, payload, _load_model(args.model, header.get("modality", "?"), args.device)


def _temp_path(target: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(name)


def cmd_encode(args) -> None:
    from codecgen.datamodules.audio import audio_info, iter_audio_chunks

    src, dst = Path(args.input), Path(args.output)
    _check_output(dst, args.overwrite, [src])
    model = _load_model(args.model, "audio", args.device)
    source_rate, source_frames, _ = audio_info(src)
    chunk, context = model.chunk_plan()
    n_chunks = math.ceil(math.ceil(source_frames * model.sample_rate / source_rate) / chunk)
    chunks = _progress(iter_audio_chunks(src, model.sample_rate, chunk, context), n_chunks, "encode", args.quiet)
    codes, length = model.encode_chunks(chunks, n_q=args.n_q)
    header, payload = model.pack_codes(codes, length, source_rate, source_frames)
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    seconds = source_frames / source_rate
    size = dst.stat().st_size
    if not args.quiet:
        print(f"{dst}: {size} bytes, {seconds:.2f} s, {8 * size / seconds / 1000:.3f} kbps "
              f"({codes.shape[1]} codebooks, {header['entropy']['kind']} code model)")


def _write_audio(pieces, path: Path, sample_rate: int, total: int) -> None:
    import soundfile as sf

    fmt, subtype = AUDIO_OUTPUTS[path.suffix.lower()]
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


def cmd_decode(args) -> None:
    import soundfile as sf

    from codecgen.datamodules.audio import iter_audio_chunks

    dst, header, payload, model = _open_coded(args, AUDIO_OUTPUTS)
    codes = model.unpack_codes(header, payload)
    chunk_frames = model.chunk_plan()[0] // model.hop_length
    pieces = _progress(model.decode_chunks(codes, header["length"]), math.ceil(codes.shape[-1] / chunk_frames),
                       "decode", args.quiet)
    temps = []
    try:
        final = _temp_path(dst, dst.suffix)
        temps.append(final)
        if header["source_sample_rate"] == model.sample_rate:
            _write_audio(pieces, final, model.sample_rate, header["length"])
        else:  # decode at the model's rate, then resample window by window to the source's
            at_model_rate = _temp_path(dst, ".wav")
            temps.append(at_model_rate)
            with sf.SoundFile(str(at_model_rate), "w", samplerate=model.sample_rate, channels=1, subtype="FLOAT") as f:
                for piece in pieces:
                    f.write(piece.reshape(-1).numpy())
            rate = header["source_sample_rate"]
            resampled = (w[:, left : left + n] for w, left, n in iter_audio_chunks(at_model_rate, rate, 30 * rate, rate // 10))
            _write_audio(resampled, final, rate, header["source_length"])
        os.replace(final, dst)
        temps.remove(final)
    finally:
        for path in temps:
            path.unlink(missing_ok=True)
    if not args.quiet:
        print(f"{dst}: {header['source_length'] / header['source_sample_rate']:.2f} s at {header['source_sample_rate']} Hz")


def cmd_info(args) -> None:
    header, payload = bitstream.read(args.input)
    summary = dict(header)
    summary["payload_bytes"] = len(payload)
    summary["file_bytes"] = Path(args.input).stat().st_size
    if header.get("modality") == "audio" and header.get("source_sample_rate"):
        seconds = header["source_length"] / header["source_sample_rate"]
        summary["seconds"] = round(seconds, 3)
        summary["kbps"] = round(8 * summary["file_bytes"] / seconds / 1000, 3)
    if isinstance(summary.get("entropy"), dict) and "counts" in summary["entropy"]:
        summary["entropy"] = {k: v for k, v in summary["entropy"].items() if k != "counts"} | {"counts": "..."}
    print(json.dumps(summary, indent=2))


def cmd_export(args) -> None:
    model = hub.load(args.model)
    folder = Path(args.folder)
    if folder.exists() and not args.overwrite:
        raise UserError(f"{folder} exists; pass --overwrite to replace it")
    hub.export(model, folder, overwrite=args.overwrite, half=args.half)
    print(f"exported {model.model_name} ({model.weights_hash()}) to {folder}")


def cmd_fit_prior(args) -> None:
    from codecgen.datamodules.audio import load_audio

    folder = Path(args.output)
    if folder.exists() and not args.overwrite:
        raise UserError(f"{folder} exists; pass --overwrite to replace it")
    model = _load_model(args.model, "audio", args.device)
    files = sorted(p for ext in ("wav", "flac", "ogg") for p in Path(args.data).rglob(f"*.{ext}"))
    files = files[:: max(1, len(files) // args.max_files)][: args.max_files]  # spread over the whole folder
    if not files:
        raise UserError(f"no wav/flac/ogg files under {args.data}")
    waveforms = (load_audio(f, model.sample_rate)[None] for f in files)
    frames = model.fit_code_prior(_progress(waveforms, len(files), "prior", args.quiet))
    hub.export(model, folder, overwrite=args.overwrite)
    print(f"code prior from {len(files)} files ({frames} frames) exported with the model to {folder}")


IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _block_progress(total: int, desc: str, quiet: bool):
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="block", leave=False, file=sys.stderr)
    return bar.update, bar.close


def cmd_compress(args) -> None:
    from codecgen.datamodules.image import load_image_with_alpha

    src, dst = Path(args.input), Path(args.output)
    _check_output(dst, args.overwrite, [src])
    model = _load_model(args.model, "image", args.device)
    image, alpha, mode = load_image_with_alpha(src)
    update, close = _block_progress(model.n_blocks(*image.shape[-2:]), "compress", args.quiet)
    try:
        data = model.compress(image, args.codebook_size, args.entropy, mode, alpha, progress=update)
    finally:
        close()
    header, payload = bitstream.unpack(data)
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    h, w = image.shape[-2:]
    if not args.quiet:
        size = dst.stat().st_size
        from codecgen.codecs.image.vqgan_compression import index_payload_bytes

        codes_bytes = index_payload_bytes(header, payload)
        print(f"{dst}: {size} bytes, {w}x{h} {mode}, {8 * size / (h * w):.4f} bpp "
              f"(K={header['K']}, {header['entropy']} code model, index payload {8 * codes_bytes / (h * w):.4f} bpp)")


def cmd_decompress(args) -> None:
    from codecgen.datamodules.image import save_image

    dst, header, payload, model = _open_coded(args, IMAGE_OUTPUTS)
    grid, lost, alpha = model.unpack_grid(header, payload)
    (width, height), k, mode = header["size"], header["K"], header.get("mode", "RGB")
    if lost is not None:
        n_lost = int(lost.sum())
        if not args.quiet:
            action = "restoring them" if args.restore else "filling them with the most frequent index (--restore repairs them)"
            print(f"{args.input}: {n_lost} of {lost.numel()} indices were lost; {action}", file=sys.stderr)
        update, close = _block_progress(model.n_blocks(height, width), "restore", args.quiet)
        try:
            grid = model.fill_lost(grid, lost, k, args.restore, progress=update)
        finally:
            close()
    update, close = _block_progress(model.n_blocks(height, width), "decode", args.quiet)
    try:
        image = model.decode_image(grid, height, width, k, progress=update)
    finally:
        close()
    if mode == "RGBA" and alpha is None:
        alpha = torch.ones(1, *image.shape[-2:])
    final = _temp_path(dst, dst.suffix)
    try:
        save_image(image, final, mode=mode, alpha=alpha)
        os.replace(final, dst)
    finally:
        final.unlink(missing_ok=True)
    if not args.quiet:
        print(f"{dst}: {width}x{height} {mode}")


def cmd_damage(args) -> None:
    """Simulate index loss in transit: the output marks the lost positions."""
    src, dst = Path(args.input), Path(args.output)
    _check_output(dst, args.overwrite, [src])
    if not 0.0 <= args.loss < 1.0:
        raise UserError(f"--loss must be in [0, 1), got {args.loss}")
    header, _ = bitstream.read(src)
    model = _load_model(args.model, header.get("modality", "?"), args.device)
    from codecgen.codecs.image.loss_simulation import lost_positions

    if header.get("modality") != "image":
        raise UserError("damage works on image files")
    width, height = header["size"]
    lost = lost_positions(model.grid_shape(height, width), args.loss, args.pattern, seed=args.seed)
    data = model.damage(src.read_bytes(), lost)
    header, payload = bitstream.unpack(data)
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    if not args.quiet:
        print(f"{dst}: {int(lost.sum())} of {lost.numel()} indices marked lost ({args.pattern})")


VIDEO_OUTPUTS = (".mkv", ".mp4")


def _parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} must be integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{what} must be positive integers, got {text!r}")
    return values


def cmd_encode_video(args) -> None:
    from codecgen.codecs.video.nerv import fit_clip, recipe
    from codecgen.datamodules.video import VideoDataModule
    from codecgen.nn.nerv import ConvNeXtEncoder, hnerv_for_budget, nerv_for_budget

    src, dst = Path(args.input), Path(args.output)
    _check_output(dst, args.overwrite, [src])
    size = _parse_ints(args.size, "--size") if args.size else None
    if size is not None and len(size) != 2:
        raise UserError("--size is HEIGHTxWIDTH")
    strides = _parse_ints(args.strides, "--strides")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = VideoDataModule(video=str(src), resize=size, frames=args.frames, batch_size=args.batch_size)
    data.setup("fit")
    n, (h, w) = data.n_frames, data.frame_size
    factor = math.prod(strides)
    if h % factor or w % factor:
        raise UserError(f"frame size {h}x{w} is not divisible by prod(--strides) = {factor}: pass --size or --strides")
    plan = recipe(args.boosted, args.arch == "hnerv", len(strides))
    if args.arch == "hnerv":
        decoder = hnerv_for_budget(args.model_size, n, (h, w), strides, embed_channels=args.embed_channels,
                                   **plan["decoder"])
        encoder = ConvNeXtEncoder(strides=strides, dims=64, depths=1, embed_channels=args.embed_channels)
    else:
        decoder, encoder = nerv_for_budget(args.model_size, (h, w), strides, **plan["decoder"]), None
    start = time.perf_counter()
    if not 0.0 <= args.prune < 1.0:
        raise UserError(f"--prune must be in [0, 1), got {args.prune}")
    if args.quiet:  # Lightning's banners too, not only the progress bars
        import logging

        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)
    codec = fit_clip(data, decoder, encoder, args.epochs, args.quant_epochs, lr=args.lr or plan["lr"],
                     optimizer=plan["optimizer"], loss_weights=plan["loss_weights"],
                     prune_ratio=args.prune,
                     accelerator=args.device if args.device != "cpu" else "cpu", progress=not args.quiet)
    data_bytes = codec.compress()
    header, payload = bitstream.unpack(data_bytes)
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    if not args.quiet:
        bpp = 8 * dst.stat().st_size / (n * h * w)
        print(f"{dst}: {dst.stat().st_size} bytes, {n} frames {w}x{h}, {bpp:.4f} bpp, "
              f"{codec.n_coded_params() / 1e6:.3f} M parameters, fitted in {time.perf_counter() - start:.0f} s")


def cmd_pack_video(args) -> None:
    """A NeRV-family checkpoint trained with train.py -> the clip's .cgc file."""
    dst = Path(args.output)
    _check_output(dst, args.overwrite, [])
    model = _load_model(args.model, "video", "cpu")
    if model.hybrid and not bool(model.embeddings.abs().sum()):
        raise UserError(f"{args.model} holds no frame embeddings: finish the fit stage first")
    header, payload = bitstream.unpack(model.compress())
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    if not args.quiet:
        h, w = model.frame_size
        print(f"{dst}: {dst.stat().st_size} bytes, {8 * dst.stat().st_size / (model.n_frames * h * w):.4f} bpp "
              f"({'quantization-aware' if model.stage == 'quantize' else 'post-training'} {model.weight_bits}-bit weights)")


def cmd_decode_video(args) -> None:
    from codecgen.codecs.video.nerv import DecodedVideo
    from codecgen.datamodules.video import parse_frame_range, write_video

    src, dst = Path(args.input), Path(args.output)
    if dst.suffix and dst.suffix.lower() not in VIDEO_OUTPUTS:
        raise UserError(f"unsupported output {dst.suffix!r}: use .mkv (lossless), .mp4 (H.264) or a folder for PNGs")
    _check_output(dst, args.overwrite, [src])
    video = DecodedVideo(src.read_bytes(), device=args.device)
    start, stop = parse_frame_range(args.frames)
    stop = video.n_frames if stop is None else stop
    if not 0 <= start < stop <= video.n_frames:
        raise UserError(f"--frames {args.frames} is outside 0:{video.n_frames}")
    began = time.perf_counter()
    frames = torch.stack(list(_progress(video.frames(start, stop), stop - start, "decode", args.quiet)))
    seconds = time.perf_counter() - began
    write_video(frames, dst, fps=video.fps)  # temp + rename: an old file survives any failure
    if not args.quiet:
        print(f"{dst}: frames {start}:{stop} of {video.n_frames}, {video.width}x{video.height}, "
              f"decoded at {(stop - start) / seconds:.1f} fps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infer.py", description="Run codecgen models on files.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_arg(p):
        p.add_argument("--model", "--ckpt", dest="model", required=True,
                       help="a .ckpt file, an exported folder, or a shipped checkpoint name")
        p.add_argument("--device", default="cpu")

    def common(p):
        p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
        p.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    p = sub.add_parser("encode", help="audio file -> .cgc")
    model_arg(p)
    common(p)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--n-q", type=int, default=None, help="number of codebooks (lower bitrate)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help=".cgc -> audio file (.wav, .flac, .ogg)")
    model_arg(p)
    common(p)
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("compress", help="image file -> .cgc (VQGAN image codec)")
    model_arg(p)
    common(p)
    p.add_argument("input", help="png / jpg / webp / bmp / tiff; RGB, gray or RGBA, any size")
    p.add_argument("output")
    p.add_argument("--codebook-size", type=int, default=None, help="K: the rate (default: the trained codebook)")
    p.add_argument("--entropy", choices=("auto", "uniform", "prior", "context"), default="auto",
                   help="code model for the indices (auto: the smallest file)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help=".cgc -> image file (.png, .jpg, .webp, .bmp, .tif)")
    model_arg(p)
    common(p)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--restore", action="store_true", help="fill lost indices with the restoration transformer")
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("damage", help="simulate lost indices: write a copy of an image .cgc with positions marked lost")
    model_arg(p)
    common(p)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--loss", type=float, default=0.1, help="fraction of indices lost")
    p.add_argument("--pattern", choices=("random", "burst"), default="random")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_damage)

    p = sub.add_parser("encode-video", help="video -> .cgc by fitting a NeRV-family network to it")
    common(p)
    p.add_argument("input", help="video file (mp4, mkv, y4m, ...) or a folder of PNG frames")
    p.add_argument("output")
    p.add_argument("--model-size", type=float, default=0.5, help="millions of parameters, embeddings included")
    p.add_argument("--arch", choices=("hnerv", "nerv"), default="hnerv")
    p.add_argument("--boosted", action="store_true",
                   help="the conditional-decoder boost (TAT, sine blocks, FFT loss, Adan)")
    p.add_argument("--strides", default="4,2,2,2", help="decoder upscale factors; their product divides H and W")
    p.add_argument("--embed-channels", type=int, default=16)
    p.add_argument("--size", default=None, help="resize to HEIGHTxWIDTH first")
    p.add_argument("--frames", default=None, help="frame range, e.g. 0:100")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--quant-epochs", type=int, default=30)
    p.add_argument("--prune", type=float, default=0.0, help="fraction of decoder weights pruned before quantization")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=None, help="fitting lr (default: the paper's, 1e-3 or 3e-3 boosted)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_encode_video, trains=True)

    p = sub.add_parser("pack-video", help="NeRV-family checkpoint (train.py) -> the clip's .cgc file")
    model_arg(p)
    common(p)
    p.add_argument("output")
    p.set_defaults(func=cmd_pack_video)

    p = sub.add_parser("decode-video", help=".cgc -> .mkv (lossless FFV1), .mp4 (H.264) or a folder of PNGs")
    common(p)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--frames", default=None, help="decode only this range, e.g. 10:20")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_decode_video)

    p = sub.add_parser("info", help="print a .cgc file's header")
    p.add_argument("input")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fit-prior", help="count a model's codes over a folder of audio into its code prior, then export")
    model_arg(p)
    common(p)
    p.add_argument("data", help="folder of training audio (not the files you will benchmark on)")
    p.add_argument("output", help="exported folder to write")
    p.add_argument("--max-files", type=int, default=1000)
    p.set_defaults(func=cmd_fit_prior)

    p = sub.add_parser("export", help=".ckpt -> folder with config.json + model.safetensors")
    p.add_argument("model")
    p.add_argument("folder")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--half", action="store_true", help="store float32 weights as float16 (half the size)")
    p.set_defaults(func=cmd_export)
    return parser


def infer_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # encode-video fits a network: gradients on; every other command only runs models
        with contextlib.nullcontext() if getattr(args, "trains", False) else torch.inference_mode():
            args.func(args)
    except (UserError, CodecError, bitstream.BitstreamError, ValueError, FileNotFoundError, FileExistsError,
            IsADirectoryError, PermissionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0

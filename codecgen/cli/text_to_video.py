"""``text-to-video``: infer.py's command for VideoGen (Li et al. 2023, "VideoGen: A Reference-Guided Latent
Diffusion Approach for High Definition Text-to-Video Generation"): a prompt -> a video.

The prompt's words must all be in the model's vocabulary (the unknown ones are listed); the
reference image is drawn from the text (default), read from ``--reference`` (centre-cropped to a
square and resized to the model's frame size; at least half that size), or left out
(``--no-reference``). The video has ``--frames x --upsample`` frames at ``--fps`` (default: the key
frames' rate x upsample), streamed to the encoder as they are decoded; it is written under a
temporary name and renamed into place at the end, so a failure leaves no partial output and an
existing file untouched. Every argument is checked before the model loads.
"""

from __future__ import annotations

from pathlib import Path

from codecgen.cli.files import StepBar, UserError, check_output, staged

OUTPUTS = (".mp4", ".mkv")
MAX_STEPS = 1000
MAX_FRAMES = 256
MAX_UPSAMPLE = 16


def _check_args(args) -> None:
    if not args.prompt.strip():
        raise UserError("the prompt is empty")
    if not 1 <= args.frames <= MAX_FRAMES:
        raise UserError(f"--frames must be 1..{MAX_FRAMES}, got {args.frames}")
    if not 1 <= args.upsample <= MAX_UPSAMPLE or args.upsample & (args.upsample - 1):
        raise UserError(f"--upsample must be a power of two up to {MAX_UPSAMPLE} (1, 2, 4, ...), got {args.upsample}")
    if not 1 <= args.steps <= MAX_STEPS:
        raise UserError(f"--steps must be 1..{MAX_STEPS}, got {args.steps}")
    if not args.guidance >= 0:  # also refuses NaN
        raise UserError(f"--guidance must be >= 0, got {args.guidance}")
    if args.fps is not None and not 0 < args.fps <= 240:
        raise UserError(f"--fps must be in (0, 240], got {args.fps}")
    if args.reference and args.no_reference:
        raise UserError("--reference and --no-reference exclude each other")


def read_reference(path: Path, size: int):
    """An image file -> (3, size, size) in [-1, 1]: the centre square, resized (antialiased)."""
    import torch.nn.functional as F

    from codecgen.datamodules.image import load_image

    if not path.is_file():
        raise UserError(f"reference {path} is not a file")
    try:
        image, _ = load_image(path)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot read the reference image {path}: {err}") from None
    h, w = image.shape[-2:]
    side = min(h, w)
    if side < size // 2:
        raise UserError(f"the reference image {path} is {w}x{h}: too small for {size}-px frames "
                        f"(its shorter side must be at least {size // 2} px)")
    top, left = (h - side) // 2, (w - side) // 2
    square = image[:, top : top + side, left : left + side]
    return F.interpolate(square[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0] \
        .clamp(0, 1) * 2 - 1


def _load(name: str, device: str):
    from codecgen.cli.models import load_model
    from codecgen.generators.videogen.pipeline import VideoGen

    model = load_model(name, None, device)
    if not isinstance(model, VideoGen):
        raise UserError(f"{name} is not an assembled VideoGen model (python -m codecgen.generators.videogen.assemble)")
    return model.eval()


def cmd_text_to_video(args) -> int:
    import torch

    from codecgen.datamodules.video import write_video
    from codecgen.generators.videogen.pipeline import generate_video

    out = Path(args.output)
    if out.suffix.lower() not in OUTPUTS:
        raise UserError(f"unsupported video output {out.suffix or '(none)'!r} for {out}: use one of "
                        f"{', '.join(OUTPUTS)}")
    reference_path = Path(args.reference) if args.reference else None
    check_output(out, args.overwrite, inputs=[reference_path] if reference_path else [])
    _check_args(args)
    model = _load(args.model, args.device)
    unknown = model.keyframes.text_encoder.unknown_words(args.prompt)
    if unknown:
        raise UserError(f"words outside the model's vocabulary: {', '.join(unknown)} (it knows: "
                        f"{' '.join(model.keyframes.text_encoder.vocabulary[1:])})")
    try:
        model.keyframes.text_encoder.tokenize([args.prompt])
    except ValueError as err:
        raise UserError(str(err)) from None
    reference = read_reference(reference_path, model.frame_size) if reference_path else None
    fps = args.fps or model.output_fps(args.upsample)
    bars: dict[str, StepBar] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.quiet:
            return
        if stage not in bars:
            for bar in bars.values():
                bar.__exit__()
            bars[stage] = StepBar(stage, False, unit="frame" if stage == "decoding" else "step")
        bars[stage].callback()(done, total)

    frames = generate_video(model, args.prompt, args.frames, args.upsample, reference, not args.no_reference,
                            args.decoder, args.steps, args.guidance, args.seed, args.scheduler, progress)
    try:
        with staged(out) as target, torch.no_grad():
            write_video(frames, target, fps=fps)
    finally:
        for bar in bars.values():
            bar.__exit__()
    if not args.quiet:
        side = model.frame_size
        print(f"{out}: {args.frames * args.upsample} frames, {side}x{side}, at {fps:g} fps")
    return 0

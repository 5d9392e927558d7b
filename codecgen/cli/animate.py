"""``animate``: infer.py's command for Hallo2 (Cui et al. 2024, "Hallo2: Long-Duration and
High-Resolution Audio-Driven Portrait Image Animation"): a portrait image and a speech file ->
a talking-head video with the speech muxed in.

The portrait is framed as the training clips are: a square of 1.8 x the face's size centred on
the face (detected with scikit-image's LBP cascade, or ``--face-box`` in the image's pixels),
edge-padded where it runs past the image, resized to the model's frame size. The speech is read
at any rate and channel count, mixed to 16 kHz mono for the model; the output keeps the file's
own sound (up to two channels). Frames are generated clip by clip and streamed to the encoder,
so an hour of speech takes the memory of one clip. ``--upscale`` enlarges each clip ``scale``
times with a face restorer (``--restorer``: Hallo2's high-resolution stage,
``generators.hallo2.face_restorer``). Every argument is checked before the model loads; the
video is written under a temporary name and renamed into place at the end, so a failure leaves
no partial output and an existing file untouched.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from codecgen.cli.files import StepBar, UserError, check_output, staged

OUTPUTS = (".mp4", ".mkv")
MAX_STEPS = 1000
MIN_PORTRAIT_SIDE = 32
# The side of a frame over the face's larger side: 1.8-2.0 in the portrait corpus (face centred),
# 1.8 in clips imported by `prepare talking-heads` (square_crop_box).
FRAME_MARGIN = 1.8
MIN_SECONDS = 0.2
SILENCE_RMS = 1e-4  # -80 dBFS: digital silence or a dither floor


def _check_args(args) -> None:
    if not 1 <= args.steps <= MAX_STEPS:
        raise UserError(f"--steps must be in 1..{MAX_STEPS}, got {args.steps}")
    if not (math.isfinite(args.guidance) and args.guidance >= 0):
        raise UserError(f"--guidance must be a number >= 0, got {args.guidance}")
    if not 0 <= args.seed <= 2**62:
        raise UserError(f"--seed must be in 0..{2**62}, got {args.seed}")
    if args.frames_per_clip is not None and args.frames_per_clip < 1:
        raise UserError(f"--frames-per-clip must be >= 1, got {args.frames_per_clip}")
    if not args.max_seconds > 0:
        raise UserError(f"--max-seconds must be > 0, got {args.max_seconds}")


def read_speech(path: Path, max_seconds: float):
    """The speech as 16 kHz mono float32 (N,), checked: not empty, finite, not over ``max_seconds``."""
    import soundfile as sf
    import torch

    from codecgen.datamodules.audio import load_audio

    try:
        info = sf.info(str(path))
    except RuntimeError as error:
        raise UserError(f"cannot read speech {path}: {' '.join(str(error).split())}") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise UserError(f"speech file {path} contains no audio")
    if info.frames / info.samplerate > max_seconds:
        raise UserError(f"speech {path} lasts {info.frames / info.samplerate:.0f} s, over --max-seconds "
                        f"{max_seconds:g}")
    speech = load_audio(path, 16000)[0]
    if not torch.isfinite(speech).all():
        raise UserError(f"speech {path} has NaN or infinite samples")
    if speech.shape[0] < MIN_SECONDS * 16000:
        raise UserError(f"speech {path} lasts {speech.shape[0] / 16000:.3f} s; at least {MIN_SECONDS} s are needed")
    if float(speech.square().mean().sqrt()) < SILENCE_RMS:
        raise UserError(f"speech {path} is silent (RMS below {SILENCE_RMS:g})")
    return speech


def frame_portrait(path: Path, face_box: str | None, size: int):
    """The portrait as the model's (3, size, size) frame in [-1, 1] and its face box there: a square
    of ``FRAME_MARGIN`` x the face's larger side centred on the face (edge-padded past the image)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from codecgen.datamodules.face_detect import check_face_box, detect_face, parse_face_box
    from codecgen.datamodules.image import load_image
    from codecgen.nn.face_crop import crop_face

    image, _ = load_image(path)
    h, w = image.shape[-2:]
    if face_box is not None:
        box = parse_face_box(face_box)
        if box[2] > w or box[3] > h:
            raise UserError(f"--face-box {face_box} lies outside the {w}x{h} image")
    else:
        found = detect_face((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        if found is None:
            raise UserError(f"no face found in {path}; pass --face-box x0,y0,x1,y1 (pixels)")
        box = check_face_box(found)
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * FRAME_MARGIN
    if side < MIN_PORTRAIT_SIDE:
        raise UserError(f"the face in {path} is {max(x1 - x0, y1 - y0):.0f} px; at least "
                        f"{MIN_PORTRAIT_SIDE / FRAME_MARGIN:.0f} px are needed")
    if side > 2 * size:  # shrink with antialiasing first: the crop's bilinear sampling would alias
        factor = 2 * size / side
        image = F.interpolate(image[None], scale_factor=factor, mode="bilinear", antialias=True)[0]
        box, side = tuple(v * factor for v in box), side * factor
        x0, y0, x1, y1 = box
    frame = crop_face(image * 2 - 1, box, size, margin=FRAME_MARGIN).clamp(-1, 1)
    left, top, scale = (x0 + x1 - side) / 2, (y0 + y1 - side) / 2, size / side
    inside = torch.tensor([(x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale])
    return frame, inside


def _load_animator(name: str, device: str):
    from codecgen.cli.models import load_model
    from codecgen.generators.hallo2.animator import PortraitAnimator

    model = load_model(name, None, device)
    if not isinstance(model, PortraitAnimator) or model.stage != 2:
        raise UserError(f"{name} is not a trained Hallo2 animation model (a stage-2 PortraitAnimator)")
    return model.eval()


def cmd_animate(args) -> int:
    from codecgen.nn.expression_text import parse_expression_schedule

    portrait, speech_path, out = Path(args.image), Path(args.audio), Path(args.output)
    if out.suffix.lower() not in OUTPUTS:
        raise UserError(f"unsupported video output {out.suffix or '(none)'!r} for {out}: use one of "
                        f"{', '.join(OUTPUTS)}")
    for path in (portrait, speech_path):
        if not path.is_file():
            raise UserError(f"{path} is not a file")
    check_output(out, args.overwrite, inputs=(portrait, speech_path))
    _check_args(args)
    speech = read_speech(speech_path, args.max_seconds)
    seconds = speech.shape[0] / 16000
    labels = parse_expression_schedule(args.expression, seconds) if args.expression else None
    model = _load_animator(args.model, args.device)
    restorer = _load_restorer(args.restorer, args.device) if args.upscale else None
    size = model.frame_size
    frame, box = frame_portrait(portrait, args.face_box, size)
    if labels is not None:
        from codecgen.generators.hallo2.animate import clip_count

        total, _ = clip_count(speech.shape[0], 1)
        labels = (labels + [labels[-1]] * total)[:total]
    _render(model, restorer, frame, box, speech, labels, speech_path, out, args)
    if not args.quiet:
        side = size * (restorer.scale if restorer is not None else 1)
        print(f"{out}: {seconds:.2f} s at 25 fps, {side}x{side}, with the sound of {speech_path.name}")
    return 0


def _load_restorer(name: str | None, device: str):
    from codecgen.cli.models import load_model
    from codecgen.generators.hallo2.face_restorer import FaceRestorer

    if name is None:
        raise UserError("--upscale needs --restorer: a trained Hallo2 face restorer "
                        "(train.py with configs/hallo2/restorer_*)")
    model = load_model(name, None, device)
    if not isinstance(model, FaceRestorer):
        raise UserError(f"{name} is not a Hallo2 face restorer (a FaceRestorer)")
    return model.eval()


def _render(model, restorer, frame, box, speech, labels, speech_path: Path, out: Path, args) -> None:
    import torch

    from codecgen.datamodules.video import mux_audio, write_video
    from codecgen.generators.hallo2.animate import animate_portrait

    frames_per_clip = args.frames_per_clip or model.frames_per_clip
    with StepBar("animate", args.quiet, unit="clip") as bar, tempfile.TemporaryDirectory(dir=out.parent,
                                                                                        prefix=f".{out.stem}.") as tmp:
        silent = Path(tmp) / f"pictures{out.suffix}"
        chunks = animate_portrait(model, frame, box.tolist(), speech, labels, frames_per_clip, args.steps,
                                  args.guidance, args.seed, args.scheduler, augment=args.augment,
                                  progress=bar.callback())

        def pictures():
            for chunk in chunks:
                if restorer is not None:
                    chunk = restorer.enhance(chunk, box.tolist())
                for picture in chunk:
                    yield picture.permute(2, 0, 1).to(torch.float32) / 255

        with torch.no_grad():
            write_video(pictures(), silent, fps=25.0)
        with staged(out) as target:
            mux_audio(silent, speech_path, target)  # the file's own sound, not the model's 16 kHz mono

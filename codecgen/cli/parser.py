"""``infer.py``'s command line: every command, grouped in ``--help``, with an example each.

This module imports no torch, Lightning or model: commands are named as
``"module:function"`` and imported only once the arguments parse, so ``--help`` and
argument errors answer at once. Options that belong to one modality (``--n-q`` for
audio, ``--restore`` for images, ``--frames`` for video, ...) are recorded with it, and
giving one to the other modality is refused rather than ignored.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

from codecgen.cli.files import USER_ERRORS, UserError, one_line
from codecgen.cli.generate import DEFAULT_MAX_PIXELS, MAX_STEPS, SCHEDULERS
from codecgen.cli.verbs import VIDEO_ARCHS
from codecgen.codecs.limits import DEFAULT_LIMITS

PROG = "python infer.py"
VERBS = "codecgen.cli.verbs"

# (group, [(command, one-line summary)]), in the order --help lists them
GROUPS = [
    ("codecs", [
        ("encode", "audio / image -> .cgc with a trained model; video -> .cgc by fitting --model hnerv|nerv"),
        ("decode", ".cgc -> audio / image / video, by the file's modality (video needs no --model)"),
        ("tokens", "audio -> SemantiCodec's tokens as an int64 (frames, 2) .npy (semantic, acoustic)"),
    ]),
    ("images", [("damage", "simulate lost indices: a copy of an image .cgc with positions marked lost")]),
    ("video", [("pack-video", "a NeRV-family checkpoint trained with train.py -> the clip's .cgc")]),
    ("generators (arbitrary-scale diffusion)", [
        ("upscale", "an image -> the image at any scale or size (super-resolution by diffusion)"),
        ("generate", "sample new images at any sizes into a folder"),
    ]),
    ("generators (portrait animation)", [
        ("animate", "a portrait image + speech -> a talking-head video with the speech (Hallo2)"),
    ]),
    ("generators (text to video)", [
        ("text-to-video", "a prompt -> a video (VideoGen: reference image, key frames, flow upsampling)"),
    ]),
    ("files & models", [
        ("info", "print a .cgc file's header, with its duration / size and rate"),
        ("export", ".ckpt -> folder with config.json + model.safetensors"),
        ("fit-prior", "count an audio model's codes over a folder into its code prior, then export"),
        ("fit-kmeans", "SemantiCodec stage 2: k-means on an AudioMAE's features over a folder -> a tokenizer"),
    ]),
    ("aliases (older names, same flags as before)", [
        ("compress", "encode, with the image flags"),
        ("decompress", "decode, with the image flags"),
        ("encode-video", "encode with --arch instead of --model, with the video flags"),
        ("decode-video", "decode, with the video flags"),
    ]),
]

EXAMPLES = {
    "text-to-video": """\
  python infer.py text-to-video --model videogen-small "a red circle moves left" circle.mp4
  python infer.py text-to-video --model videogen-small "the camera pans up over a photo" pan.mp4 \\
      --reference photo.jpg --frames 8 --upsample 4 --steps 25 --guidance 3 --seed 1
""",
    "encode": """\
  python infer.py encode --model hificodec-16k speech.wav speech.cgc --n-q 2
  python infer.py encode --model vqgan-f16 photo.png photo.cgc --codebook-size 64
  python infer.py encode --model hnerv clip.mp4 clip.cgc --model-size 0.5 --boosted
  python infer.py encode --model hificodec-16k recordings/ coded/   # every wav/flac/ogg in the folder""",
    "decode": """\
  python infer.py decode --model hificodec-16k speech.cgc speech.wav
  python infer.py decode --model vqgan-f16 photo.cgc photo.png
  python infer.py decode clip.cgc clip.mkv --frames 10:20         # video files carry their decoder
  python infer.py decode --model vqgan-f16 coded/ decoded/ --format png""",
    "tokens": "  python infer.py tokens --model semanticodec-16k speech.wav speech_tokens.npy",
    "damage": """\
  python infer.py damage --model vqgan-f16 photo.cgc lost.cgc --loss 0.2 --pattern burst
  python infer.py decode --model vqgan-f16 lost.cgc repaired.png --restore""",
    "pack-video": "  python infer.py pack-video --model runs/.../last.ckpt clip.cgc",
    "upscale": """\
  python infer.py upscale --model arbitrary-sr photo.png big.png --scale 3.5
  python infer.py upscale --model arbitrary-sr photo.png wall.png --size 1920x1080 --steps 20 --tile 64
  python infer.py upscale --model arbitrary-sr photo.png take.png --scale 2 --samples 3   # take_0.png .. take_2.png""",
    "generate": """\
  python infer.py generate --model runs/.../last.ckpt --size 256x256 --size 640x480 --num 4 --seed 0 samples/""",
    "animate": """\
  python infer.py animate --model runs/.../last.ckpt --image portrait.png --audio speech.wav talk.mp4
  python infer.py animate --model runs/.../last.ckpt --image me.jpg --audio talk.flac talk.mkv \\
      --expression 'happy@0,sad@0:05' --face-box 120,80,260,240 --steps 25 --guidance 3.5 --seed 1""",
    "info": "  python infer.py info speech.cgc",
    "export": "  python infer.py export runs/.../last.ckpt my_codec/ [--half]",
    "fit-prior": "  python infer.py fit-prior --model my_codec/ data/speech/train my_codec_prior/",
    "fit-kmeans": ("  python infer.py fit-kmeans --model runs/semanticodec-mae-small/.../last.ckpt data/speech/train "
                   "tokenizer/ --tokens-per-second 50 --clusters 2048"),
    "compress": "  python infer.py compress --model vqgan-f16 photo.png photo.cgc --codebook-size 64",
    "decompress": "  python infer.py decompress --model vqgan-f16 photo.cgc photo.png [--restore]",
    "encode-video": "  python infer.py encode-video clip.mp4 clip.cgc --arch hnerv --model-size 0.5 [--boosted]",
    "decode-video": "  python infer.py decode-video clip.cgc back.mkv [--frames 10:20]",
}

FOLDER_NOTE = ("IN may be a folder: every supported file directly in it is coded into the folder OUT "
               "(created), names kept, one progress bar; a file that fails is reported and skipped, "
               "and the exit code is 2 if any failed.")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class _Options:
    """Adds a subcommand's options, recording which ones belong to one modality."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser
        self.owned: list[tuple[str, str, str, object]] = []

    def add(self, modality: str | None, *flags: str, group=None, **kwargs) -> None:
        action = (group or self.parser).add_argument(*flags, **kwargs)
        if modality is not None:
            self.owned.append((action.dest, flags[0], modality, action.default))

    def done(self, func: str) -> None:
        self.parser.set_defaults(func=func, modality_options=tuple(self.owned))


def _summary(name: str) -> str:
    return next(text for _, commands in GROUPS for command, text in commands if command == name)


def _command_list() -> str:
    lines = ["commands:"]
    for title, commands in GROUPS:
        lines.append(f"  {title}:")
        lines += [f"    {name:<14}{text}" for name, text in commands]
    lines.append(f"\n`{PROG} COMMAND --help` shows a command's options and examples.")
    return "\n".join(lines)


def _add(sub, name: str, description: str = "") -> _Options:
    text = _summary(name) + (f"\n\n{textwrap.fill(description, 79)}" if description else "")
    return _Options(sub.add_parser(name, description=text, formatter_class=_Formatter,
                                   epilog=f"example{'s' if EXAMPLES[name].count(chr(10)) else ''}:\n{EXAMPLES[name]}"))


def _io(o: _Options, input_help: str, output_help: str) -> None:
    o.add(None, "input", metavar="IN", help=input_help)
    o.add(None, "output", metavar="OUT", help=output_help)


def _model(o: _Options, required: bool, help: str) -> None:
    o.add(None, "--model", "--ckpt", dest="model", required=required, help=help)


def _common(o: _Options) -> None:
    o.add(None, "--device", default="cpu", help="cpu, cuda, ... (default: cpu)")
    o.add(None, "--overwrite", action="store_true", help="replace existing outputs")
    o.add(None, "--quiet", action="store_true", help="no progress bar or summary")


MODEL_HELP = "a .ckpt file, an exported folder, or a shipped checkpoint name (hificodec-16k, vqgan-f16, ...)"


def _audio_encode(o: _Options) -> None:
    g = o.parser.add_argument_group("audio models")
    o.add("audio", "--n-q", type=int, default=None, group=g, help="number of codebooks (fewer: lower bitrate)")
    o.add("audio", "--tokens-per-second", type=int, choices=(25, 50, 100), default=None, group=g,
          help="SemantiCodec: the rate the model must code at (each model is trained for one)")


def _image_encode(o: _Options) -> None:
    g = o.parser.add_argument_group("image models")
    o.add("image", "--codebook-size", type=int, default=None, group=g,
          help="K: the rate (default: the trained codebook)")
    o.add("image", "--entropy", choices=("auto", "uniform", "prior", "context"), default="auto", group=g,
          help="code model for the indices (default auto: the smallest file)")


def _video_encode(o: _Options) -> None:
    g = o.parser.add_argument_group("video (fitting a network to the clip)")
    o.add("video", "--model-size", type=float, default=0.5, group=g,
          help="millions of parameters, embeddings included (default: 0.5)")
    o.add("video", "--boosted", action="store_true", group=g,
          help="the conditional-decoder boost (TAT, sine blocks, FFT loss, Adan)")
    o.add("video", "--strides", default="4,2,2,2", group=g,
          help="decoder upscale factors; their product divides H and W (default: 4,2,2,2)")
    o.add("video", "--embed-channels", type=int, default=16, group=g, help="HNeRV embedding channels (default: 16)")
    o.add("video", "--size", default=None, group=g, help="resize to WIDTHxHEIGHT first (e.g. 320x240)")
    o.add("video", "--frames", default=None, group=g, help="frame range to code, e.g. 0:100")
    o.add("video", "--epochs", type=int, default=300, group=g, help="fitting epochs (default: 300)")
    o.add("video", "--quant-epochs", type=int, default=30, group=g,
          help="quantization-aware epochs (default: 30)")
    o.add("video", "--prune", type=float, default=0.0, group=g,
          help="fraction of decoder weights pruned before quantization")
    o.add("video", "--batch-size", type=int, default=2, group=g, help="(default: 2)")
    o.add("video", "--audio-model", default=None, group=g,
          help="carry the clip's sound track in the .cgc, coded by this shipped audio model (e.g. "
               "languagecodec-16k); decode muxes it back into .mkv (FLAC) / .mp4 (AAC). Default: the sound "
               "is dropped, with a warning")
    o.add("video", "--lr", type=float, default=None, group=g,
          help="fitting lr (default: the paper's, 1e-3 or 3e-3 boosted)")


def _diffusion_decode(o: _Options) -> None:
    g = o.parser.add_argument_group("audio decoded by diffusion (SemantiCodec; default: the file's settings)")
    o.add("audio", "--steps", type=int, default=None, group=g, help=f"denoising steps, 1..{MAX_STEPS}")
    o.add("audio", "--guidance", type=float, default=None, group=g, help="classifier-free guidance scale, >= 0")
    o.add("audio", "--scheduler", choices=("ddim", "dpm", "ddpm"), default=None, group=g, help="the sampler")
    o.add("audio", "--seed", type=int, default=None, group=g, help="the noise seed")


def _decode_limits(o: _Options) -> None:
    g = o.parser.add_argument_group("decode limits (what a file may ask for; raise them for files you trust)")
    o.add(None, "--max-seconds", type=float, default=None, group=g,
          help=f"audio duration (default: {DEFAULT_LIMITS.max_seconds:g})")
    o.add(None, "--max-pixels", type=int, default=None, group=g,
          help=f"image pixels (default: {DEFAULT_LIMITS.max_pixels})")
    o.add(None, "--max-frames", type=int, default=None, group=g,
          help=f"video frames (default: {DEFAULT_LIMITS.max_frames})")


def _format(o: _Options) -> None:
    o.add(None, "--format", default=None,
          help="folder mode: the output extension (default: wav / png / mkv by modality; png on video: "
               "a folder of PNG frames per file)")


def _restore(o: _Options) -> None:
    g = o.parser.add_argument_group("image files")
    o.add("image", "--restore", action="store_true", group=g,
          help="fill lost indices with the restoration transformer")


def _frame_range(o: _Options) -> None:
    g = o.parser.add_argument_group("video files")
    o.add("video", "--frames", default=None, group=g, help="decode only this range, e.g. 10:20")


UPSCALE_NOTE = ("Give --scale or --size. Grey images stay grey; an alpha channel is resized (bicubic) beside "
                "the model; files with more than 8 bits per channel are written with 8, with a note. The output "
                "may be at most --max-pixels; a scale above the largest the model was trained for is sampled with "
                "a warning. Every argument is checked before the model loads.")
ANIMATE_NOTE = ("The portrait is framed head and shoulders around its face, as the model's training clips are, and "
                "the video has 25 fps, the model's frame size, and the speech file's own sound. Frames are made "
                "clip by clip and streamed to the file, so memory does not grow with the length. Every argument "
                "is checked before the model loads; nothing is written unless the whole video is.")
TEXT_TO_VIDEO_NOTE = ("The prompt's words must be in the model's vocabulary (unknown words are listed). The video has "
                      "--frames x --upsample frames: key frames from the reference-guided video diffusion, the frames "
                      "between them by optical flow, decoded by the temporal video decoder (--decoder video) or frame "
                      "by frame (--decoder image). Every argument is checked before the model loads; nothing is "
                      "written unless the whole video is.")
GENERATE_NOTE = ("Writes OUTDIR/{i:03d}_{W}x{H}.png for each image i at each --size; OUTDIR may exist, but no "
                 "file in it is replaced without --overwrite (all names are checked first, and the files are moved "
                 "into place together at the end).")


def _sampling(o: _Options) -> None:
    g = o.parser.add_argument_group("sampling")
    o.add(None, "--steps", type=int, default=50, group=g, help=f"denoising steps, 1..{MAX_STEPS} (default: 50)")
    o.add(None, "--scheduler", choices=SCHEDULERS, default=None, group=g,
          help="sampler on the model's noise schedule (default: the model's own)")
    o.add(None, "--seed", type=int, default=0, group=g, help="the same seed gives the same image (default: 0)")
    o.add(None, "--max-pixels", type=int, default=None, group=g,
          help=f"pixel budget of each output image (default: {DEFAULT_MAX_PIXELS})")


ENCODE_IN = "audio (wav/flac/ogg, any rate and channels), image (png/jpg/webp/bmp/tiff) or video file, or a folder"
DECODE_OUT = "audio: .wav/.flac/.ogg; image: .png/.jpg/.webp/.bmp/.tif; video: .mkv/.mp4 or a folder of PNGs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Run codecgen models on files.",
                                     formatter_class=_Formatter, epilog=_command_list())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="command",
                                help="one of the commands below")

    o = _add(sub, "encode", FOLDER_NOTE)
    _io(o, ENCODE_IN, ".cgc file (a folder when IN is one)")
    _model(o, True, f"{MODEL_HELP}; for video, an architecture: {' or '.join(VIDEO_ARCHS)}")
    _common(o)
    _audio_encode(o)
    _image_encode(o)
    _video_encode(o)
    o.done(f"{VERBS}:cmd_encode")

    o = _add(sub, "decode", FOLDER_NOTE)
    _io(o, ".cgc file, or a folder of them", DECODE_OUT + " (a folder when IN is one)")
    _model(o, False, "the model that encoded the file (audio and image files; video files need none)")
    _common(o)
    _format(o)
    _restore(o)
    _frame_range(o)
    _diffusion_decode(o)
    _decode_limits(o)
    o.done(f"{VERBS}:cmd_decode")

    o = _add(sub, "tokens")
    _io(o, "wav / flac / ogg file (any rate, mono or not)", ".npy file: int64 (frames, 2)")
    _model(o, True, "a SemantiCodec model")
    _common(o)
    o.done("codecgen.cli.audio:cmd_tokens")

    o = _add(sub, "damage")
    _io(o, "image .cgc file", ".cgc file with the lost positions marked")
    _model(o, True, MODEL_HELP)
    _common(o)
    o.add(None, "--loss", type=float, default=0.1, help="fraction of indices lost (default: 0.1)")
    o.add(None, "--pattern", choices=("random", "burst"), default="random")
    o.add(None, "--seed", type=int, default=0)
    o.done("codecgen.cli.image:cmd_damage")

    o = _add(sub, "pack-video")
    _model(o, True, "a NeRV-family checkpoint (train.py)")
    _common(o)
    o.add(None, "output", metavar="OUT", help=".cgc file")
    o.done("codecgen.cli.video:cmd_pack_video")

    o = _add(sub, "upscale", UPSCALE_NOTE)
    _io(o, "image file (png/jpg/webp/bmp/tiff; RGB, grey or RGBA, 8 or 16 bits)",
        "image file (.png/.jpg/.webp/.bmp/.tif); with --samples K, OUT_0 .. OUT_{K-1} (the index after the stem)")
    _model(o, True, "an arbitrary-scale super-resolution model: a .ckpt, an exported folder or a shipped name")
    _common(o)
    g = o.parser.add_argument_group("output size (one of)")
    o.add(None, "--scale", default=None, group=g, help="factor on both sides, any number above 0 (e.g. 3.5)")
    o.add(None, "--size", default=None, group=g, help="WIDTHxHEIGHT in pixels (e.g. 1024x768)")
    _sampling(o)
    o.add(None, "--samples", type=int, default=1, help="write K images, seeds --seed .. --seed+K-1 (default: 1)")
    o.add(None, "--no-diffusion", action="store_true",
          help="skip the diffusion: the model's deterministic upsampling (fast, smoother)")
    o.add(None, "--tile", type=int, default=None,
          help="sample in tiles of this size, so memory stays bounded on large outputs (default: the model's)")
    o.add(None, "--guidance", type=float, default=1.0, help="classifier-free guidance scale (default: 1, none)")
    o.done("codecgen.cli.generate:cmd_upscale")

    o = _add(sub, "generate", GENERATE_NOTE)
    _model(o, True, "an arbitrary-scale generation model: a .ckpt, an exported folder or a shipped name")
    _common(o)
    o.add(None, "output", metavar="OUTDIR", help="folder to write (created if missing; its parent must exist)")
    o.add(None, "--size", action="append", default=None, help="WIDTHxHEIGHT; repeat for several sizes")
    o.add(None, "--num", type=int, default=1, help="images at each size (default: 1)")
    _sampling(o)
    o.done("codecgen.cli.generate:cmd_generate")

    o = _add(sub, "animate", ANIMATE_NOTE)
    _model(o, True, "a Hallo2 animation model (stage 2): a .ckpt, an exported folder or a shipped name")
    _common(o)
    o.add(None, "--image", required=True, help="the portrait: an image with one face (png/jpg/webp/bmp/tiff)")
    o.add(None, "--audio", required=True, help="the speech (wav/flac/ogg/mp3; any rate and channels)")
    o.add(None, "output", metavar="OUT", help=".mp4 (H.264 + AAC) or .mkv (FFV1 + FLAC: the sound bit-exact)")
    o.add(None, "--face-box", default=None, help="x0,y0,x1,y1 of the face in the portrait's pixels "
                                                  "(default: found by a face detector)")
    o.add(None, "--expression", default=None,
          help="expression labels over time, e.g. 'happy@0:00,neutral@0:05' (neutral, happy, sad, surprised, "
               "angry; default: neutral)")
    g = o.parser.add_argument_group("sampling")
    o.add(None, "--steps", type=int, default=25, group=g, help=f"denoising steps, 1..{MAX_STEPS} (default: 25)")
    o.add(None, "--scheduler", choices=SCHEDULERS, default=None, group=g,
          help="sampler on the model's noise schedule (default: the model's own, DDIM)")
    o.add(None, "--guidance", type=float, default=3.5, group=g,
          help="classifier-free guidance on speech, identity and expression (default: 3.5, the authors')")
    o.add(None, "--seed", type=int, default=0, group=g, help="the same seed gives the same video (default: 0)")
    o.add(None, "--frames-per-clip", type=int, default=None, group=g,
          help="frames denoised together (default: the model's)")
    o.add(None, "--augment", choices=("patch", "pixel", "none"), default=None, group=g,
          help="how the motion frames are corrupted before each clip, besides the schedule's noise: the model's "
               "training mode by default, as the authors' inference does")
    o.add(None, "--upscale", action="store_true",
          help="enlarge the video with Hallo2's high-resolution stage: the face restored by --restorer")
    o.add(None, "--restorer", default=None, help="a trained face restorer (FaceRestorer) for --upscale")
    o.add(None, "--max-seconds", type=float, default=3600.0, help="refuse longer speech (default: 3600)")
    o.done("codecgen.cli.animate:cmd_animate")

    o = _add(sub, "text-to-video", TEXT_TO_VIDEO_NOTE)
    _model(o, True, "an assembled VideoGen model: an exported folder, a .ckpt or a shipped name")
    _common(o)
    o.add(None, "prompt", help='the text, e.g. "a red circle moves left"')
    o.add(None, "output", metavar="OUT", help=".mp4 (H.264) or .mkv (FFV1, lossless)")
    g = o.parser.add_argument_group("reference image (default: drawn from the text)")
    o.add(None, "--reference", default=None, group=g, help="an image to start from (centre square, resized)")
    o.add(None, "--no-reference", action="store_true", group=g, help="no reference image: from the text alone")
    g = o.parser.add_argument_group("video")
    o.add(None, "--frames", type=int, default=8, group=g, help="key frames (default: 8)")
    o.add(None, "--upsample", type=int, default=4, group=g,
          help="frame-rate factor by optical flow: 1, 2, 4, ... (default: 4)")
    o.add(None, "--fps", type=float, default=None, group=g,
          help="frames a second of the file (default: the key frames' training rate x --upsample)")
    o.add(None, "--decoder", choices=("video", "image"), default="video", group=g,
          help="the temporal video decoder or the frame-by-frame image decoder (default: video)")
    g = o.parser.add_argument_group("sampling")
    o.add(None, "--steps", type=int, default=25, group=g, help=f"denoising steps, 1..{MAX_STEPS} (default: 25)")
    o.add(None, "--scheduler", choices=SCHEDULERS, default=None, group=g,
          help="sampler on the model's noise schedule (default: the model's own)")
    o.add(None, "--guidance", type=float, default=3.0, group=g, help="classifier-free guidance (default: 3)")
    o.add(None, "--seed", type=int, default=0, group=g, help="the same seed gives the same video (default: 0)")
    o.done("codecgen.cli.text_to_video:cmd_text_to_video")

    o = _add(sub, "info")
    o.add(None, "input", metavar="IN", help=".cgc file")
    o.done("codecgen.cli.models:cmd_info")

    o = _add(sub, "export")
    o.add(None, "model", help="a .ckpt file, an exported folder, or a shipped checkpoint name")
    o.add(None, "folder", help="folder to write")
    o.add(None, "--overwrite", action="store_true")
    o.add(None, "--half", action="store_true", help="store float32 weights as float16 (half the size)")
    o.done("codecgen.cli.models:cmd_export")

    o = _add(sub, "fit-prior")
    _model(o, True, MODEL_HELP)
    _common(o)
    o.add(None, "data", help="folder of training audio (not the files you will benchmark on)")
    o.add(None, "output", help="exported folder to write")
    o.add(None, "--max-files", type=int, default=1000, help="(default: 1000)")
    o.done("codecgen.cli.models:cmd_fit_prior")

    o = _add(sub, "fit-kmeans")
    _model(o, True, "a SemantiCodec stage-1 model (AudioMAE pre-training .ckpt or export folder)")
    _common(o)
    o.add(None, "data", help="folder of training audio (not the files you will benchmark on)")
    o.add(None, "output", help="exported folder to write: the semantic tokenizer")
    o.add(None, "--tokens-per-second", type=int, choices=(25, 50, 100), default=100,
          help="SemantiCodec's token rate, both streams (default: 100)")
    o.add(None, "--clusters", type=int, default=1024, help="semantic vocabulary (default: 1024)")
    o.add(None, "--max-files", type=int, default=1000, help="(default: 1000)")
    o.add(None, "--max-vectors", type=int, default=200_000,
          help="frames k-means sees, spread over the files (default: 200000)")
    o.add(None, "--iters", type=int, default=30, help="Lloyd iterations (default: 30)")
    o.add(None, "--seed", type=int, default=0)
    o.done("codecgen.cli.models:cmd_fit_kmeans")

    # aliases: the verbs above, each with the flags it had before the verbs existed
    o = _add(sub, "compress", FOLDER_NOTE)
    _io(o, "png / jpg / webp / bmp / tiff; RGB, grey or RGBA, any size; or a folder", ".cgc file (or folder)")
    _model(o, True, MODEL_HELP)
    _common(o)
    _image_encode(o)
    o.done(f"{VERBS}:cmd_encode")

    o = _add(sub, "decompress", FOLDER_NOTE)
    _io(o, ".cgc file, or a folder of them", ".png / .jpg / .webp / .bmp / .tif (any .cgc decodes: " + DECODE_OUT + ")")
    _model(o, True, "the model that encoded the file")
    _common(o)
    _format(o)
    _restore(o)
    _decode_limits(o)
    o.done(f"{VERBS}:cmd_decode")

    o = _add(sub, "encode-video", FOLDER_NOTE)
    _io(o, "video file (mp4, mkv, y4m, ...), a folder of PNG frames (with OUT ending in .cgc), or a folder of "
           "videos", ".cgc file (or folder)")
    o.add(None, "--arch", choices=VIDEO_ARCHS, default="hnerv", help="(default: hnerv)")
    _common(o)
    _video_encode(o)
    o.done(f"{VERBS}:cmd_encode")

    o = _add(sub, "decode-video", FOLDER_NOTE)
    _io(o, ".cgc video file, or a folder of them", ".mkv (lossless FFV1), .mp4 (H.264) or a folder of PNGs")
    _common(o)
    _format(o)
    _frame_range(o)
    _decode_limits(o)
    o.done(f"{VERBS}:cmd_decode")
    return parser


def infer_main(argv: list[str] | None = None) -> int:
    """``infer.py``: every user error is one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    module, _, name = args.func.partition(":")
    try:
        return getattr(importlib.import_module(module), name)(args) or 0
    except (UserError, *USER_ERRORS) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `infer.py info x.cgc | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's documented recipe
        return 141

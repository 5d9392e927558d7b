"""``upscale`` and ``generate``: infer.py's commands for the arbitrary-scale diffusion
generators (Kim & Kim, "Arbitrary-Scale Image Generation and Upsampling using Latent
Diffusion Model and Implicit Neural Decoder", CVPR 2024).

``upscale`` runs a super-resolution model (``model.task == "upscale"``) on one image, to a
scale or an output size: grey stays grey (sampled as three identical channels), an alpha
plane is resized beside the model (antialiased bicubic), ``--samples K`` writes one image
per seed. ``generate`` samples ``--num`` images at each ``--size`` from a generation model
(``model.task == "generate"``) into a folder. Every argument and the pixel budget are
checked before the model loads; outputs are staged and moved into place together at the
end. Nothing heavy is imported until a command runs: the parser reads this module.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections import Counter
from pathlib import Path

from codecgen.cli.files import StepBar, UserError, check_output, check_suffix, staged_all

DEFAULT_MAX_PIXELS = 64_000_000
MAX_STEPS = 1000
SCHEDULERS = ("ddim", "dpm", "ddpm")
# what each generator's ``task`` class attribute names, and the command that runs it
TASKS = {"upscale": "an upscaling (arbitrary-scale super-resolution) model",
         "generate": "an image generation model"}
_SIZE = re.compile(r"(\d+)[xX](\d+)")


# ----------------------------------------------------------------------------- arguments
def parse_size(text: str) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` -> ``(height, width)``, both at least 1."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or min(int(match[1]), int(match[2])) < 1:
        raise UserError(f"--size is WIDTHxHEIGHT in pixels, both at least 1 (e.g. 1024x768), got {text!r}")
    return int(match[2]), int(match[1])


def parse_scale(text: str) -> float:
    try:
        scale = float(text)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise UserError(f"--scale must be a number above 0 (e.g. 3.5), got {text!r}")
    return scale


def _check_sampling(args, seeds: int) -> int:
    """Check what both commands share; return the pixel budget."""
    if not 1 <= args.steps <= MAX_STEPS:
        raise UserError(f"--steps must be in 1..{MAX_STEPS}, got {args.steps}")
    if not 0 <= args.seed <= 2**63 - seeds:
        raise UserError(f"--seed must be in 0..{2**63 - seeds}, got {args.seed}")
    budget = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    if budget < 1:
        raise UserError(f"--max-pixels must be at least 1, got {budget}")
    return budget


def _check_budget(height: int, width: int, budget: int, what: str) -> None:
    if height * width > budget:
        raise UserError(f"{what} would be {width}x{height} = {height * width} pixels, over the budget of {budget} "
                        f"(raise it with --max-pixels)")


def run_hint(task: str, name: str) -> str:
    return f"run it with `python infer.py {task} --model {name} ...`"


def load_generator(name: str, task: str, device: str):
    """The model at ``name``, refused in one line unless its ``task`` is ``task``."""
    from codecgen.cli.models import load_model

    model = load_model(name, None, device)
    found = getattr(model, "task", None)
    if found == task and callable(getattr(model, "pipeline", None)):
        return model
    other = f": it is {TASKS[found]}; {run_hint(found, name)}" if found in TASKS else ""
    raise UserError(f"{name} is not {TASKS[task]}{other}")


# ----------------------------------------------------------------------------- upscale
def sample_paths(path: Path, samples: int) -> list[Path]:
    """``out.png`` for one sample; ``out_0.png`` .. ``out_{K-1}.png`` for ``K``."""
    if samples == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{k}{path.suffix}") for k in range(samples)]


def _target(args) -> tuple[float | None, tuple[int, int] | None]:
    """(scale, None) or (None, (height, width)): exactly one of ``--scale`` / ``--size``."""
    if (args.scale is None) == (args.size is None):
        raise UserError("give exactly one of --scale (e.g. 3.5) and --size (WIDTHxHEIGHT)")
    if args.scale is not None:
        return parse_scale(args.scale), None
    return None, parse_size(args.size)


def _check_upscale(args) -> None:
    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    if args.samples > 1 and args.no_diffusion:
        raise UserError("--no-diffusion gives one image whatever the seed: drop --samples")
    if args.tile is not None and args.tile < 1:
        raise UserError(f"--tile must be at least 1, got {args.tile}")
    if not (math.isfinite(args.guidance) and args.guidance >= 0):
        raise UserError(f"--guidance must be a number >= 0, got {args.guidance}")


def _read_image(src: Path):
    from codecgen.datamodules.image import load_image_with_alpha

    if src.is_dir():
        raise UserError(f"{src} is a folder; upscale takes one image file")
    try:
        return load_image_with_alpha(src)
    except (ValueError, FileNotFoundError) as error:
        raise UserError(str(error)) from None


def _deeper_than_8_bits(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as img:  # the loader read it already: the header is sound
        return img.mode in ("I", "F") or img.mode.startswith("I;16") or any(";16" in str(t.args) for t in img.tile)


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_upscale(args) -> int:
    src, dst = Path(args.input), Path(args.output)
    scale, size = _target(args)
    _check_upscale(args)
    budget = _check_sampling(args, seeds=args.samples)
    from codecgen.cli.image import OUTPUTS  # torch: after the checks that need none

    check_suffix(dst, OUTPUTS, "image")
    targets = sample_paths(dst, args.samples)
    for target in targets:
        check_output(target, args.overwrite, [src])
    image, alpha, mode = _read_image(src)
    if alpha is not None and dst.suffix.lower() in (".jpg", ".jpeg"):
        raise UserError(f"{src} has an alpha channel and JPEG has none: write .png or .webp")
    h, w = image.shape[-2:]
    out_h, out_w = size or (round(h * scale), round(w * scale))
    if min(out_h, out_w) < 1:
        raise UserError(f"--scale {scale:g} makes the {w}x{h} image {out_w}x{out_h}")
    _check_budget(out_h, out_w, budget, "the output")

    model = load_generator(args.model, "upscale", args.device)
    asked = scale or max(out_h / h, out_w / w)
    trained = getattr(model, "max_trained_scale", None)
    if trained is not None and asked > trained:
        _note(f"warning: scale {asked:g} is above the largest the model was trained for ({trained:g}); "
              f"expect blur or artefacts")
    if _deeper_than_8_bits(src):
        _note(f"note: {src} has more than 8 bits per channel; the output has 8 (the image writer's depth)")
    _upscale(model, args, image, alpha, mode, scale, size, targets)
    if not args.quiet:
        names = targets[0] if len(targets) == 1 else f"{targets[0]} .. {targets[-1].name}"
        print(f"{names}: {w}x{h} -> {out_w}x{out_h} {mode}")
    return 0


def _upscale(model, args, image, alpha, mode, scale, size, targets: list[Path]) -> None:
    """Sample one image per target (seeds ``--seed`` + k) into staged files."""
    import torch

    from codecgen.datamodules.image import resize_image, save_image

    pipe = model.pipeline(args.scheduler)
    out_alpha = None
    # no_grad: whatever the pipeline does outside its own sampling context builds no graph
    with torch.no_grad(), staged_all(targets) as temps, StepBar("upscale", args.quiet, runs=len(targets)) as bar:
        for k, temp in enumerate(temps):
            out = pipe(image.to(args.device), scale=scale, size=size, num_steps=args.steps, seed=args.seed + k,
                       guidance=args.guidance, diffusion=not args.no_diffusion, tile=args.tile,
                       progress=bar.callback(k))
            result = out.images[0].cpu()
            if alpha is not None and out_alpha is None:  # the same plane for every sample
                out_alpha = resize_image(alpha, *result.shape[-2:])
            save_image(result, temp, mode=mode, alpha=out_alpha)


# ----------------------------------------------------------------------------- generate
def generated_paths(folder: Path, sizes: list[tuple[int, int]], num: int) -> list[Path]:
    """``folder/{i:03d}_{W}x{H}.png``: every image ``i`` at every size, size by size."""
    return [folder / f"{i:03d}_{w}x{h}.png" for h, w in sizes for i in range(num)]


def _check_folder(folder: Path, targets: list[Path], overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file; generate writes into a folder")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise UserError(f"folder {folder.parent} does not exist")
        return
    for target in targets:
        check_output(target, overwrite)


def cmd_generate(args) -> int:
    import torch

    from codecgen.datamodules.image import save_image

    folder = Path(args.output)
    if not args.size:
        raise UserError("generate needs at least one --size WIDTHxHEIGHT (e.g. --size 256x256)")
    sizes = [parse_size(text) for text in args.size]
    twice = [f"{w}x{h}" for (h, w), n in Counter(sizes).items() if n > 1]
    if twice:
        raise UserError(f"--size {twice[0]} is given twice")
    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    budget = _check_sampling(args, seeds=1)
    for h, w in sizes:
        _check_budget(h, w, budget, "each image")
    targets = generated_paths(folder, sizes, args.num)
    _check_folder(folder, targets, args.overwrite)

    model = load_generator(args.model, "generate", args.device)
    with torch.no_grad(), StepBar("generate", args.quiet) as bar:
        out = model.pipeline(args.scheduler)(num_images=args.num, sizes=sizes, num_steps=args.steps, seed=args.seed,
                                             progress=bar.callback())
    images = [image for batch in out.images for image in batch]
    if len(images) != len(targets):  # a short list would otherwise leave empty files behind
        raise RuntimeError(f"the model returned {len(images)} images for {args.num} at each of {len(sizes)} sizes")
    created = not folder.exists()
    folder.mkdir(exist_ok=True)
    try:
        with staged_all(targets) as temps:
            for temp, image in zip(temps, images):
                save_image(image.cpu(), temp)
    except BaseException:
        if created:  # no partial output: not even the empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if not args.quiet:
        print(f"{len(targets)} images ({args.num} at each of {', '.join(f'{w}x{h}' for h, w in sizes)}) "
              f"written to {folder}")
    return 0

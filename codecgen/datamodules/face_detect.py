"""Finding the face in a talking-head video, and the square crop around it.

Hallo2 ("Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait Image Animation",
Cui et al. 2024) trains on talking-head videos cropped to a square around the face, at
25 fps with 16 kHz audio. A user's own videos are framed anyhow, so the importer
(:mod:`codecgen.datamodules.corpora.talking_heads`) finds the face first:

- :func:`detect_face`: the face box in one picture, from scikit-image's LBP frontal-face
  cascade (no network, no weights to download; frontal faces only).
- :func:`median_face_box`: one box for a whole clip, the per-coordinate median over up to
  ``max_samples`` frames spread over it (robust to a few missed or false detections; a
  face found in under a quarter of them is taken for a false detection).
- :func:`square_crop_box`: the square crop (head and a little of the shoulders) around a box.
- :func:`parse_face_box`: ``"x0,y0,x1,y1"`` from a command line, checked
  (:func:`check_face_box` checks a tuple the same way).

Boxes are ``(x0, y0, x1, y1)`` in pixels, x to the right and y down, ``x1``/``y1``
exclusive. Only numpy and scikit-image are imported: no torch, no Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

__all__ = [
    "DETECT_MAX_SIDE",
    "MIN_FACE",
    "check_face_box",
    "detect_face",
    "median_face_box",
    "parse_face_box",
    "square_crop_box",
]

Box = tuple[float, float, float, float]

DETECT_MAX_SIDE = 512  # pictures are shrunk to this longer side before detection (speed)
MIN_FACE = 24  # the cascade's window: smaller faces (in the shrunk picture) are not found
_SCALE_FACTOR = 1.2  # window growth per scale step (scikit-image's example value)


@lru_cache(maxsize=1)
def _cascade():
    """The LBP frontal-face cascade shipped with scikit-image (loaded once: parsing the XML costs)."""
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def _grey(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) or (H, W) -> float64 grey in [0, 1]."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"detect_face needs a uint8 (H, W, 3) or (H, W) image, got {dtype} {shape}")
    if image.ndim == 2:
        return image.astype(np.float64) / 255.0
    from skimage.color import rgb2gray

    return rgb2gray(image)


def detect_face(image: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> Box | None:
    """The face box (x0, y0, x1, y1) in ``image``'s pixels, or None when no face is found.

    ``image`` is uint8 RGB (H, W, 3) or grey (H, W). Pictures whose longer side exceeds
    ``max_side`` are shrunk to it (antialiased) before detection, for speed, and the box
    is mapped back; faces smaller than ``MIN_FACE`` pixels in the shrunk picture are
    missed. Of several detections the largest wins (the speaker in a talking-head video
    is the biggest face, and the cascade's false positives are mostly small); among
    detections of equal size, the one whose centre is nearest the picture's centre.
    """
    if max_side < MIN_FACE:
        raise ValueError(f"max_side must be at least the detector's window, {MIN_FACE} px, got {max_side}")
    grey = _grey(image)
    h, w = grey.shape
    factor = max(1.0, max(h, w) / max_side)
    if factor > 1.0:
        from skimage.transform import resize

        grey = resize(grey, (max(1, round(h / factor)), max(1, round(w / factor))), anti_aliasing=True)
    gh, gw = grey.shape
    if min(gh, gw) < MIN_FACE:
        return None
    detections = _cascade().detect_multi_scale(
        img=grey, scale_factor=_SCALE_FACTOR, step_ratio=1, min_size=(MIN_FACE, MIN_FACE), max_size=(gh, gw))
    if not detections:
        return None

    def rank(d: dict) -> tuple[float, float]:
        centre_x, centre_y = d["c"] + d["width"] / 2, d["r"] + d["height"] / 2
        return -d["width"] * d["height"], math.hypot(centre_x - gw / 2, centre_y - gh / 2)

    best = min(detections, key=rank)
    # Map back through the exact per-axis factors (rounding made them differ slightly).
    fx, fy = w / gw, h / gh
    x0, y0 = best["c"] * fx, best["r"] * fy
    x1, y1 = (best["c"] + best["width"]) * fx, (best["r"] + best["height"]) * fy
    return float(x0), float(y0), float(min(x1, w)), float(min(y1, h))


def _spread(frames: Iterable[np.ndarray], count: int) -> list[np.ndarray]:
    """Up to ``count`` frames evenly spread over ``frames``.

    A sequence (list, array) is indexed directly. Any other iterable is read once with
    bounded memory: every ``stride``-th frame is kept, and whenever more than
    ``2 * count`` are held, every other one is dropped and the stride doubles, so the
    frames kept stay evenly spread over everything read so far.
    """
    if isinstance(frames, (Sequence, np.ndarray)):
        n = len(frames)
        if n == 0:
            return []
        picks = np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))
        return [frames[int(i)] for i in picks]
    kept: list[np.ndarray] = []
    stride = 1
    for index, frame in enumerate(frames):
        if index % stride == 0:
            kept.append(frame)
            if len(kept) > 2 * count:
                kept = kept[::2]
                stride *= 2
    if len(kept) <= count:
        return kept
    return [kept[int(i)] for i in np.unique(np.linspace(0, len(kept) - 1, count).round().astype(int))]


def median_face_box(frames: Iterable[np.ndarray], max_samples: int = 16,
                    min_fraction: float = 0.25) -> Box | None:
    """One face box for a clip: the median of each coordinate over the frames (up to
    ``max_samples``, spread over the clip) where :func:`detect_face` finds a face.

    None when it finds none, or finds one in fewer than ``min_fraction`` of the frames
    looked at: the cascade gives no confidence, and on a video without a face it
    still fires now and then on some texture (FFmpeg's ``testsrc2`` pattern: once in
    16 frames), while a talking head's frontal face is found in most frames. The
    median ignores a minority of false detections and misses.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    looked = _spread(frames, max_samples)
    boxes = [box for box in (detect_face(frame) for frame in looked) if box is not None]
    if not boxes or len(boxes) < min_fraction * len(looked):
        return None
    x0, y0, x1, y1 = (float(v) for v in np.median(np.asarray(boxes, dtype=np.float64), axis=0))
    return x0, y0, x1, y1


def check_face_box(box: Sequence[float], what: str = "face box") -> Box:
    """``box`` as four floats, checked: finite, non-negative, x1 > x0 and y1 > y0 (ValueError
    saying which rule fails, the box named ``what``)."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be four numbers x0, y0, x1, y1, got {box!r}") from err
    if len(values) != 4:
        raise ValueError(f"{what} must be four numbers x0, y0, x1, y1, got {len(values)}: {box!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be finite numbers, got {box!r}")
    x0, y0, x1, y1 = values
    if min(values) < 0:
        raise ValueError(f"{what} coordinates must be >= 0 (pixels from the top-left corner), got {box!r}")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{what} must have x1 > x0 and y1 > y0 (x0, y0, x1, y1), got {box!r}")
    return x0, y0, x1, y1


def square_crop_box(box: Sequence[float], width: int, height: int, scale: float = 1.8,
                    shift_up: float = 0.1) -> tuple[int, int, int, int]:
    """The square crop (x0, y0, x1, y1), integer pixels, around face ``box`` in a
    ``width`` x ``height`` frame.

    Its side is ``scale`` times the box's larger side; its centre is the box's centre
    moved up by ``shift_up`` times that larger side. A frontal-face detector's box runs
    from the brows to the chin, so centring a little above it keeps the forehead and
    hair in view while the 1.8x margin still shows the neck and the top of the
    shoulders: the head-and-shoulders framing of Hallo's training crops. The square is
    shifted (not shrunk) to stay inside the frame; when the frame is too small for it,
    it is the largest square that fits (side = the frame's shorter side), as centred on
    the face as the frame allows.
    """
    x0, y0, x1, y1 = check_face_box(box)
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if not (scale > 0 and math.isfinite(scale)) or not math.isfinite(shift_up):
        raise ValueError(f"scale must be positive and shift_up finite, got scale={scale}, shift_up={shift_up}")
    face = max(x1 - x0, y1 - y0)
    side = int(min(max(1, round(scale * face)), width, height))
    centre_x = (x0 + x1) / 2
    centre_y = (y0 + y1) / 2 - shift_up * face
    left = int(min(max(round(centre_x - side / 2), 0), width - side))
    top = int(min(max(round(centre_y - side / 2), 0), height - side))
    return left, top, left + side, top + side


def parse_face_box(text: str) -> Box:
    """``"x0,y0,x1,y1"`` (pixels; spaces allowed) -> (x0, y0, x1, y1) floats.

    ValueError, saying what is wrong, for anything but four comma-separated finite
    non-negative numbers with x1 > x0 and y1 > y0.
    """
    if not isinstance(text, str):  # one error type for every bad box, as a command line reports it
        raise ValueError(f"face box must be a string 'x0,y0,x1,y1', got {type(text).__name__}")  # noqa: TRY004
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"face box must be 'x0,y0,x1,y1' (four comma-separated numbers), got {text!r} "
                         f"({len(parts)} part{'s' if len(parts) != 1 else ''})")
    values = []
    for name, part in zip(("x0", "y0", "x1", "y1"), parts):
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(f"face box {text!r}: {name} = {part!r} is not a number") from None
    return check_face_box(values, f"face box {text!r}")

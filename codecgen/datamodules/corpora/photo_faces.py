"""Real photo faces made to talk: a landmark template placed on a photo, moved, and warped.

Serves Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait
Image Animation", 2024), next to the drawn faces of :mod:`.faces`: photographs give the
generator real skin, hair and lighting, which drawings lack. The photos that ship with our
packages are scikit-image's colour ``astronaut`` portrait and the 100 face crops of its
``lfw_subset`` (25 x 25 grey crops from Labeled Faces in the Wild).

Each photo gets the neutral landmark template of :mod:`.faces`, fitted to its face box (the
LBP cascade's box for the astronaut, the crop itself for LFW faces). A frame moves the
template as a drawn face would (visemes, blink, pose, expression) and warps the photo
piecewise-affinely from the rest template to the moved one, over a Delaunay triangulation
of the rest points made ONCE (so triangles never flip between frames), with a fixed ring of
anchor points around the head so the background stays put. The open mouth is painted in
(a warp can only stretch closed lips) as in the drawings.

Limits, said plainly: the template is placed by a box, not fitted to the photo's own eyes
and lips, so the photo's lips can sit a few pixels off the annotated lip mask (exact for
the warp, approximate for the photo); LFW faces are 25-pixel grey crops upscaled, so they
are blurry and colourless (tinted with a sampled skin tone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from codecgen.datamodules.corpora.faces import (
    _FOREHEAD_POINTS,
    SUPERSAMPLE,
    DrawnFrame,
    FaceIdentity,
    FaceMotion,
    _forehead_3d,
    annotate,
    landmarks_3d,
    paint_mouth_opening,
    project,
    sample_skin,
)

LFW_FACES = 100  # the first 100 crops of lfw_subset.npy are faces, the rest are not
LFW_USED = 12  # how many LFW faces become identities (blurry: a minority next to the drawn faces)


def photo_face_names() -> list[str]:
    """The photo identities: ``astronaut`` and ``lfw_000`` .. ``lfw_011``."""
    return ["astronaut"] + [f"lfw_{i:03d}" for i in range(LFW_USED)]


def _template(centre: tuple[float, float], face_width: float) -> FaceIdentity:
    """The mean face of :class:`FaceIdentity` (geometry only; colours unused)."""
    grey = np.full(3, 0.5)
    return FaceIdentity(
        face_width=face_width, centre=centre, face_height=0.75, chin=0.5, eye_spacing=0.215, eye_size=1.0,
        brow_arch=0.025, brow_thickness=0.03, nose_length=0.35, nose_width=0.1, mouth_width=0.17,
        lip_thickness=0.035, skin=grey, hair=grey, iris=grey, lips=grey, clothes=grey, hair_style="bald", light=0.0,
    )


def _fit_template(box: tuple[float, float, float, float]) -> FaceIdentity:
    """A template whose brows-to-chin span and jaw width fill ``box`` (frame units)."""
    x0, y0, x1, y1 = box
    unit = _template((0.0, 0.0), 1.0)
    lm = project(landmarks_3d(unit, FaceMotion()), unit, FaceMotion(), 1.0)
    top, bottom = lm[17:27, 1].min(), lm[:17, 1].max()
    width = lm[:17, 0].max() - lm[:17, 0].min()
    scale = min((y1 - y0) / (bottom - top), (x1 - x0) / width)
    return _template(((x0 + x1) / 2, y0 - top * scale), scale)


@dataclass
class _Warp:
    """A piecewise-affine warp over a fixed triangulation of the rest points."""

    rest: np.ndarray  # (P, 2) pixels
    triangles: np.ndarray  # (T, 3) indices

    @classmethod
    def over(cls, rest: np.ndarray) -> _Warp:
        from scipy.spatial import Delaunay

        return cls(rest, Delaunay(rest).simplices)

    def __call__(self, image: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """``image`` (H, W, 3) float, whose points sit at ``rest``, with them moved to ``moved``."""
        from scipy.ndimage import map_coordinates

        h, w = image.shape[:2]
        index = Image.new("I", (w, h), -1)
        draw = ImageDraw.Draw(index)
        for k, tri in enumerate(self.triangles):
            draw.polygon([tuple(p) for p in moved[tri]], fill=k, outline=k)
        which = np.asarray(index, dtype=np.int64)
        # For each triangle, the affine map moved -> rest, as a (T, 2, 3) matrix.
        src = np.concatenate([moved[self.triangles], np.ones((len(self.triangles), 3, 1))], axis=2)  # (T, 3, 3)
        dst = self.rest[self.triangles]  # (T, 3, 2)
        affine = np.linalg.solve(src, dst).transpose(0, 2, 1)  # (T, 2, 3)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        inside = which >= 0
        a = affine[np.where(inside, which, 0)]
        sx = a[..., 0, 0] * xs + a[..., 0, 1] * ys + a[..., 0, 2]
        sy = a[..., 1, 0] * xs + a[..., 1, 1] * ys + a[..., 1, 2]
        sx, sy = np.where(inside, sx, xs), np.where(inside, sy, ys)
        return np.stack([map_coordinates(image[..., c], [sy, sx], order=1, mode="nearest") for c in range(3)], -1)


class PhotoFace:
    """One photo identity: its picture over a background, its fitted template, and the warp."""

    def __init__(self, name: str, face: np.ndarray, box: tuple[float, float, float, float], alpha: np.ndarray | None,
                 tint: np.ndarray | None = None) -> None:
        self.name, self.face, self.box, self.alpha, self.tint = name, face, box, alpha, tint
        self.template = _fit_template(box)
        self._cache: tuple[Image.Image, int, np.ndarray, _Warp] | None = None
        self._anchors = np.zeros((0, 2))

    def _source(self, canvas: Image.Image, size: int) -> tuple[np.ndarray, _Warp]:
        """The photo composed over this clip's background at ``size``, and the warp (cached for
        the canvas last used: the cache holds the canvas itself, so it cannot mistake another)."""
        if self._cache is not None and self._cache[0] is canvas and self._cache[1] == size:
            return self._cache[2], self._cache[3]
        background = np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        face = np.asarray(Image.fromarray(self.face).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
        if self.tint is not None:
            face = face.mean(-1, keepdims=True) * (0.35 + 0.9 * self.tint)
        if self.alpha is None:
            image = face
        else:
            alpha = np.asarray(Image.fromarray((self.alpha * 255).astype(np.uint8)).resize((size, size),
                                                                                           Image.BILINEAR)) / 255.0
            image = alpha[..., None] * face + (1 - alpha[..., None]) * background
        self._anchors = self._still_points(size)
        warp = _Warp.over(self._points(FaceMotion(), size))
        self._cache = (canvas, size, np.clip(image, 0, 1), warp)
        return self._cache[2], warp

    def _still_points(self, size: int) -> np.ndarray:
        """A ring around the head at rest and the frame's border: control points that never move
        (the background stays still)."""
        still = FaceMotion()
        centre = project(landmarks_3d(self.template, still), self.template, still, size).mean(0)
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        radius = 1.05 * self.template.face_width * size
        ring = centre + radius * np.stack([np.cos(angles), 1.15 * np.sin(angles)], 1)
        edge = np.linspace(0, size - 1, 5)
        border = np.array([[x, y] for x in edge for y in edge if x in (0, size - 1) or y in (0, size - 1)])
        return np.concatenate([ring, border])

    def _points(self, motion: FaceMotion, size: int) -> np.ndarray:
        """The warp's control points for ``motion``: landmarks, head top, then the still anchors."""
        lm = project(landmarks_3d(self.template, motion), self.template, motion, size)
        top = project(_forehead_3d(self.template), self.template, motion, size)
        return np.concatenate([lm, top, self._anchors]).astype(np.float64)

    def draw(self, motion: FaceMotion, canvas: Image.Image, size: int) -> DrawnFrame:
        """One frame: the photo warped to ``motion`` over the clip's background ``canvas``."""
        image, warp = self._source(canvas, size)
        moved = self._points(motion, size)
        out = warp(image, moved)
        # The opening of the mouth is drawn at 3x, as in the drawings, then reduced.
        big = Image.fromarray((out * 255).round().astype(np.uint8)).resize((size * SUPERSAMPLE,) * 2, Image.BICUBIC)
        scale = self.template.face_width * size
        paint_mouth_opening(big, moved[60:68] * SUPERSAMPLE, scale * SUPERSAMPLE)
        pixels = np.asarray(big.resize((size, size), Image.LANCZOS)).copy()
        return annotate(pixels, moved[:68], moved[68 : 68 + _FOREHEAD_POINTS], scale)


# --------------------------------------------------------------------------- the photos


def _lfw() -> np.ndarray:
    from skimage import data

    return np.load(os.path.join(os.path.dirname(data.__file__), "lfw_subset.npy"))


@lru_cache(maxsize=1)
def _astronaut_box() -> tuple[float, float, float, float]:
    """The LBP cascade's face box in scikit-image's astronaut photo."""
    from skimage import data

    from codecgen.datamodules.face_detect import detect_face

    box = detect_face(data.astronaut())
    if box is None:
        raise RuntimeError("the LBP cascade found no face in scikit-image's astronaut")
    return box


def photo_face(name: str) -> PhotoFace:
    """The photo identity ``name`` (see :func:`photo_face_names`)."""
    if name == "astronaut":
        from skimage import data

        x0, y0, x1, y1 = _astronaut_box()
        side = int(round(2.4 * (y1 - y0)))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.25 * (y1 - y0)
        left, top = int(np.clip(cx - side / 2, 0, 512 - side)), int(np.clip(cy - side / 2, 0, 512 - side))
        crop = data.astronaut()[top : top + side, left : left + side]
        box = ((x0 - left) / side, (y0 - top) / side, (x1 - left) / side, (y1 - top) / side)
        return PhotoFace(name, np.ascontiguousarray(crop), box, alpha=None)
    if name.startswith("lfw_") and name[4:].isdigit() and int(name[4:]) < LFW_FACES:
        index = int(name[4:])
        grey = (_lfw()[index] * 255).astype(np.uint8)
        # The crop is placed in the middle of a frame twice its size, faded out at its edges.
        side = 50
        face = np.zeros((side, side, 3), np.uint8)
        face[12:37, 12:37] = grey[..., None]
        yy, xx = np.mgrid[0:side, 0:side]
        alpha = np.clip(2.2 - 2.0 * np.hypot((xx - 24.5) / 11.5, (yy - 24.5) / 13.0), 0.0, 1.0)
        tint = sample_skin(np.random.default_rng(index))
        box = (13.5 / side, 15.0 / side, 35.5 / side, 38.0 / side)
        return PhotoFace(name, face, box, alpha=alpha, tint=tint)
    raise ValueError(f"unknown photo face {name!r}; known: astronaut, lfw_000 .. lfw_{LFW_FACES - 1:03d}")


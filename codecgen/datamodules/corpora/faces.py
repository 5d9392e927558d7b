"""Procedurally drawn talking portraits with exact landmarks and face / lip masks.

Serves Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait
Image Animation", 2024). Hallo2 trains on talking-head videos (HDTF, VFHQ) with face and lip
masks for its hierarchical audio attention; none of those videos can be fetched here. So
the corpus draws faces whose every parameter is known: a 68-point 3-D landmark template in
the iBUG order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips
60-67) is shaped by an identity (:class:`FaceIdentity`: head shape, chin, eye spacing and
size, brow arch, nose, mouth and lip sizes, skin, hair, eye, lip and clothes colours, hair
style, light direction), moved by one frame's :class:`FaceMotion` (jaw opening, mouth width,
lip rounding from the viseme track, blink, head yaw / pitch / roll, expression weights),
rotated and projected orthographically, and drawn with PIL at 3x the output size (for
anti-aliasing) over a real photo background. The same projected landmarks give the face
and lip masks, so they are exact, not estimated.

Colours come from real photographs where we have them: skin tones are pixels of the
portrait in scikit-image (``astronaut``), darkened or lightened along a melanin-like
scale; hair colours start from that photo's hair and are varied from black to blond and
grey. What this cannot give is photo-realism: the faces are flat-shaded drawings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from codecgen.datamodules.portrait_clips import EXPRESSIONS, N_LANDMARKS

SUPERSAMPLE = 3
JAW, RIGHT_BROW, LEFT_BROW = slice(0, 17), slice(17, 22), slice(22, 27)
NOSE_BRIDGE, NOSE_BASE = slice(27, 31), slice(31, 36)
RIGHT_EYE, LEFT_EYE = slice(36, 42), slice(42, 48)  # the subject's right eye is on the image's left
OUTER_LIPS, INNER_LIPS = slice(48, 60), slice(60, 68)
UPPER_OUTER, LOWER_OUTER = (49, 50, 51, 52, 53), (55, 56, 57, 58, 59)
UPPER_INNER, LOWER_INNER = (61, 62, 63), (65, 66, 67)
CHIN = 8
_FOREHEAD_POINTS = 13


# --------------------------------------------------------------------------- colours from photos


@lru_cache(maxsize=1)
def _photo_colours() -> tuple[np.ndarray, np.ndarray]:
    """(skin pixels, hair pixels) of scikit-image's astronaut portrait, as float RGB in [0, 1]."""
    from skimage import data

    photo = data.astronaut().astype(np.float32) / 255.0
    skin = photo[105:145, 185:235].reshape(-1, 3)  # cheeks and nose
    hair = photo[55:90, 150:185].reshape(-1, 3)  # the hair left of her forehead
    keep = lambda x: x[(x.max(1) - x.min(1)) < 0.5]  # noqa: E731  (drop the odd specular or flag pixel)
    return keep(skin), keep(hair)


def sample_skin(rng: np.random.Generator) -> np.ndarray:
    """A skin colour: a photo pixel scaled along a melanin-like axis (darker and redder-browner)."""
    skin, _ = _photo_colours()
    base = skin[rng.integers(len(skin))]
    depth = rng.uniform(0.0, 1.0) ** 0.8  # 0 = the photo's tone, 1 = deep brown
    brown = np.array([0.36, 0.23, 0.16])
    return np.clip((1 - depth) * base + depth * brown * rng.uniform(0.8, 1.2), 0.04, 1.0)


def sample_hair(rng: np.random.Generator) -> np.ndarray:
    _, hair = _photo_colours()
    base = hair[rng.integers(len(hair))]
    kind = rng.choice(["photo", "black", "blond", "red", "grey"], p=[0.35, 0.3, 0.15, 0.1, 0.1])
    shifted = {
        "photo": base, "black": base * 0.25, "blond": np.clip(base * 1.8 + [0.1, 0.08, 0.0], 0, 1),
        "red": np.clip(base * [1.5, 0.8, 0.5], 0, 1), "grey": np.full(3, base.mean() * 1.6 + 0.2),
    }[kind]
    return np.clip(shifted * rng.uniform(0.8, 1.15), 0.02, 1.0)


def _rgb(colour: np.ndarray, scale: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(round(v)) for v in np.clip(np.asarray(colour) * scale * 255.0, 0, 255))


# --------------------------------------------------------------------------- identity and motion


@dataclass(frozen=True)
class FaceIdentity:
    """Everything that stays fixed for one drawn person (units: face width = 1)."""

    face_width: float  # of the output frame's side
    centre: tuple[float, float]  # head centre (eye line) in frame units
    face_height: float  # eye line -> chin
    chin: float  # 0 round .. 1 pointed
    eye_spacing: float
    eye_size: float
    brow_arch: float
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    clothes: np.ndarray
    hair_style: str  # "short", "long", "bald", "bun"
    light: float  # -1 lit from the image's left .. 1 from the right

    @classmethod
    def sample(cls, rng: np.random.Generator) -> FaceIdentity:
        skin = sample_skin(rng)
        irises = np.array([[0.25, 0.15, 0.07], [0.35, 0.45, 0.6], [0.3, 0.4, 0.22], [0.12, 0.08, 0.05]])
        return cls(
            face_width=rng.uniform(0.44, 0.52),
            centre=(rng.uniform(0.46, 0.54), rng.uniform(0.38, 0.44)),
            face_height=rng.uniform(0.68, 0.82),
            chin=rng.uniform(0.0, 1.0),
            eye_spacing=rng.uniform(0.19, 0.24),
            eye_size=rng.uniform(0.85, 1.2),
            brow_arch=rng.uniform(0.0, 0.05),
            brow_thickness=rng.uniform(0.018, 0.04),
            nose_length=rng.uniform(0.3, 0.4),
            nose_width=rng.uniform(0.08, 0.13),
            mouth_width=rng.uniform(0.14, 0.2),
            lip_thickness=rng.uniform(0.025, 0.05),
            skin=skin,
            hair=sample_hair(rng),
            iris=np.clip(irises[rng.integers(len(irises))] * rng.uniform(0.8, 1.2), 0, 1),
            lips=np.clip(skin * [0.95, 0.62, 0.62] * rng.uniform(0.8, 1.0), 0, 1),
            clothes=rng.uniform(0.05, 0.9, size=3),
            hair_style=str(rng.choice(["short", "long", "bald", "bun"], p=[0.45, 0.35, 0.1, 0.1])),
            light=rng.uniform(-1.0, 1.0),
        )


@dataclass(frozen=True)
class FaceMotion:
    """One frame's motion: visemes and blink in [0, 1], pose in radians, head shift in frame
    units, and a weight per expression (:data:`EXPRESSIONS`; all zero = neutral)."""

    jaw: float = 0.05
    width: float = 0.4
    round: float = 0.0
    blink: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    expression: dict[str, float] = field(default_factory=dict)

    def weight(self, label: str) -> float:
        return float(self.expression.get(label, 0.0))


# --------------------------------------------------------------------------- the 3-D template


def _mouth(identity: FaceIdentity, motion: FaceMotion) -> tuple[np.ndarray, np.ndarray]:
    """Outer (12) and inner (8) lip points (x, y, z) for this frame's visemes and expression."""
    happy, sad = motion.weight("happy"), motion.weight("sad")
    surprised, angry = motion.weight("surprised"), motion.weight("angry")
    jaw = min(1.0, motion.jaw + 0.35 * surprised)
    half = identity.mouth_width * (0.82 + 0.4 * motion.width) * (1 - 0.35 * motion.round) * (1 + 0.18 * happy)
    half *= 1 - 0.1 * angry
    cy = 0.56 * identity.face_height / 0.75
    corner_lift = 0.045 * happy - 0.04 * sad
    lip = identity.lip_thickness * (1 + 0.4 * motion.round) * (1 - 0.4 * angry)
    gap = 0.004 + 0.2 * jaw * (1 - 0.3 * angry)
    pout = 0.04 * motion.round
    # The opening gets rounder (its corners move in) as the lips round.
    inner_half = half * (0.8 - 0.35 * motion.round)
    s = np.array([-1.0, -0.55, -0.2, 0.0, 0.2, 0.55, 1.0])  # positions along the mouth, corner to corner
    arch = 1 - s**2
    corner_y = cy - corner_lift - 0.01 * jaw
    upper_inner_y = corner_y + (cy - corner_y) * arch - 0.002
    upper_y = upper_inner_y - lip * arch ** 0.6
    lower_inner_y = upper_inner_y + gap * arch ** 0.7
    lower_y = lower_inner_y + lip * 1.15 * arch ** 0.6 + 0.004
    z = 0.2 + pout * arch
    outer = np.stack([  # 48 corner, 49-53 upper, 54 corner, 55-59 lower (right to left in the image)
        [-half, corner_y, 0.17 + 0.5 * pout],
        *[[half * v, y, zz] for v, y, zz in zip(s[1:6], upper_y[1:6], z[1:6])],
        [half, corner_y, 0.17 + 0.5 * pout],
        *[[half * v, y, zz] for v, y, zz in zip(s[5:0:-1], lower_y[5:0:-1], z[5:0:-1])],
    ])
    t = np.array([-1.0, -0.45, 0.0, 0.45, 1.0])
    tarch = 1 - t**2
    ui = corner_y + (cy - corner_y) * tarch - 0.002
    li = ui + gap * tarch ** 0.7
    inner = np.stack([  # 60 corner, 61-63 upper, 64 corner, 65-67 lower
        [-inner_half, corner_y, 0.18],
        *[[inner_half * v, y, 0.19 + pout] for v, y in zip(t[1:4], ui[1:4])],
        [inner_half, corner_y, 0.18],
        *[[inner_half * v, y, 0.19 + pout] for v, y in zip(t[3:0:-1], li[3:0:-1])],
    ])
    return outer, inner


def landmarks_3d(identity: FaceIdentity, motion: FaceMotion) -> np.ndarray:
    """The 68 template points (x right, y down, z towards the camera; face width 1) for one frame."""
    happy, sad = motion.weight("happy"), motion.weight("sad")
    surprised, angry = motion.weight("surprised"), motion.weight("angry")
    jaw_open = min(1.0, motion.jaw + 0.35 * surprised)
    h = identity.face_height
    pts = np.zeros((N_LANDMARKS, 3))
    # Jaw: from the right ear (image left) under the chin to the left ear; it drops as the jaw opens.
    phi = np.linspace(0.0, math.pi, 17)
    side = np.sin(phi)
    pts[JAW, 0] = -0.5 * np.cos(phi) * (1 - 0.12 * side**2)
    pts[JAW, 1] = 0.05 + (h - 0.05) * side ** (0.9 + 0.8 * identity.chin)
    pts[JAW, 1] += 0.14 * jaw_open * side**3
    pts[JAW, 2] = 0.05 - 0.35 * np.cos(phi) ** 2
    # Brows: outer -> inner on the image's left, inner -> outer on its right.
    t = np.linspace(0.0, 1.0, 5)
    brow_y = -0.17 - identity.brow_arch * np.sin(math.pi * (0.3 + 0.7 * t)) - 0.07 * surprised
    inner_raise = 0.04 * sad - 0.045 * angry  # sad: inner ends up; angry: inner ends down
    brow_y = brow_y - inner_raise * t**2
    xs = -0.38 + 0.3 * t
    pts[RIGHT_BROW] = np.stack([xs + 0.02 * angry * t**2, brow_y, 0.14 - 0.2 * np.abs(xs)], 1)
    pts[LEFT_BROW] = np.stack([-xs[::-1] - 0.02 * angry * t[::-1] ** 2, brow_y[::-1], 0.14 - 0.2 * np.abs(xs[::-1])], 1)
    # Nose.
    nl, nw = identity.nose_length, identity.nose_width
    pts[NOSE_BRIDGE] = np.stack([np.zeros(4), np.linspace(-0.05, nl - 0.04, 4), np.linspace(0.2, 0.36, 4)], 1)
    pts[NOSE_BASE] = np.stack([np.array([-1, -0.5, 0, 0.5, 1]) * nw, nl + np.array([0.0, 0.015, 0.025, 0.015, 0.0]),
                               np.array([0.22, 0.26, 0.3, 0.26, 0.22])], 1)
    # Eyes: corners and lids; a blink brings the upper lid down to the lower one.
    size = identity.eye_size * (1 + 0.25 * surprised - 0.15 * happy - 0.1 * angry)
    for eye, sign in ((RIGHT_EYE, -1.0), (LEFT_EYE, 1.0)):
        centre = sign * identity.eye_spacing * 0.5 + sign * 0.1
        half_w = 0.09 * identity.eye_size
        bottom = 0.028 * size * (1 - 0.2 * happy)
        top = -0.04 * size + motion.blink * (0.04 * size + 0.9 * bottom)  # a blink brings it onto the lower lid
        xs = centre + np.array([-1.0, -0.35, 0.35, 1.0, 0.35, -0.35]) * half_w
        ys = np.array([0.0, top, top, 0.0, bottom, bottom])
        pts[eye] = np.stack([xs, ys, 0.13 - 0.15 * np.abs(xs)], 1)
    outer, inner = _mouth(identity, motion)
    pts[OUTER_LIPS], pts[INNER_LIPS] = outer, inner
    return pts


def _forehead_3d(identity: FaceIdentity) -> np.ndarray:
    """The top of the head, ear to ear over the crown (not landmarks: for the outline and hair)."""
    phi = np.linspace(0.0, math.pi, _FOREHEAD_POINTS)
    return np.stack([-0.5 * np.cos(phi) * 1.02, 0.05 - 0.62 * np.sin(phi) ** 0.8, 0.05 - 0.35 * np.cos(phi) ** 2], 1)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def project(points: np.ndarray, identity: FaceIdentity, motion: FaceMotion, size: float) -> np.ndarray:
    """Template points -> pixel coordinates in a ``size`` x ``size`` frame (orthographic)."""
    rotated = points @ _rotation(motion.yaw, motion.pitch, motion.roll).T
    scale = identity.face_width * size
    cx = (identity.centre[0] + motion.shift[0]) * size
    cy = (identity.centre[1] + motion.shift[1]) * size
    return np.stack([cx + scale * rotated[:, 0], cy + scale * rotated[:, 1]], 1)


# --------------------------------------------------------------------------- drawing


@dataclass
class DrawnFrame:
    """One rendered frame and its exact annotations (pixel coordinates of the output size)."""

    image: np.ndarray  # uint8 (S, S, 3)
    landmarks: np.ndarray  # float32 (68, 2)
    face_mask: np.ndarray  # bool (S, S): the skin of the face, hairline to chin
    lip_mask: np.ndarray  # bool (S, S): the outer lip contour
    face_box: np.ndarray  # float32 (4,): x0, y0, x1, y1 around the face and forehead


def _poly(points: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points]


def _mask(size: int, polygon: np.ndarray) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(_poly(polygon), fill=255)
    return mask


def _paste_clipped(canvas: Image.Image, polygon: np.ndarray, fill: tuple[int, int, int],
                   paint=None, blur: float = 0.0) -> None:
    """Fill ``polygon`` on ``canvas`` with ``fill`` (and whatever ``paint(draw, offset)`` adds),
    clipped to the polygon; the work is done in the polygon's bounding box only."""
    pad = int(2 * blur) + 2
    x0, y0 = np.floor(polygon.min(0)).astype(int) - pad
    x1, y1 = np.ceil(polygon.max(0)).astype(int) + pad
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, canvas.width), min(y1, canvas.height)
    if x1 <= x0 or y1 <= y0:
        return
    offset = np.array([x0, y0])
    layer = Image.new("RGB", (x1 - x0, y1 - y0), fill)
    if paint is not None:
        paint(ImageDraw.Draw(layer), offset)
    mask = Image.new("L", layer.size, 0)
    ImageDraw.Draw(mask).polygon(_poly(polygon - offset), fill=255)
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    canvas.paste(layer, (x0, y0), mask)


def background_canvas(background: np.ndarray, size: int) -> Image.Image:
    """A background photo (uint8 RGB, any size) resized to the drawing size of a ``size`` frame
    (make it once per clip and pass it to :func:`draw_face`)."""
    big = size * SUPERSAMPLE
    return Image.fromarray(background).convert("RGB").resize((big, big), Image.BILINEAR)


def draw_face(identity: FaceIdentity, motion: FaceMotion, background: np.ndarray | Image.Image,
              size: int) -> DrawnFrame:
    """Draw one frame at ``size`` x ``size`` over ``background``: a uint8 RGB photo of any size
    (resized), or the :func:`background_canvas` of one (faster for many frames)."""
    big = size * SUPERSAMPLE
    if isinstance(background, Image.Image) and background.size == (big, big):
        canvas = background.copy()
    else:
        canvas = background_canvas(np.asarray(background), size)
    draw = ImageDraw.Draw(canvas)
    lm = project(landmarks_3d(identity, motion), identity, motion, big)
    top = project(_forehead_3d(identity), identity, motion, big)
    scale = identity.face_width * big
    skin, hair = identity.skin, identity.hair
    head = np.concatenate([lm[JAW], top[::-1][1:-1]])
    centre = lm[27]
    # The neck, shoulders and long hair hang from where the chin is with the mouth closed: they
    # must not move when the jaw opens.
    closed = replace(motion, jaw=0.0, expression={})
    chin = project(landmarks_3d(identity, closed)[CHIN : CHIN + 1], identity, closed, big)[0]
    # Hair behind the head, then the neck and shoulders.
    if identity.hair_style == "long":
        drop = np.array([[lm[0, 0] - 0.12 * scale, chin[1] + 0.35 * scale], [lm[16, 0] + 0.12 * scale,
                                                                             chin[1] + 0.35 * scale]])
        draw.polygon(_poly(np.concatenate([top[:1] + [-0.1 * scale, 0], drop, top[-1:] + [0.1 * scale, 0]])),
                     fill=_rgb(hair, 0.8))
    neck_w = 0.2 * scale
    neck = np.array([[chin[0] - neck_w, chin[1] - 0.25 * scale], [chin[0] + neck_w, chin[1] - 0.25 * scale],
                     [chin[0] + neck_w * 1.05, chin[1] + 0.35 * scale], [chin[0] - neck_w * 1.05, chin[1] + 0.35 * scale]])
    draw.polygon(_poly(neck), fill=_rgb(skin, 0.8))
    shoulders = np.array([[chin[0] - 1.4 * scale, big * 1.2], [chin[0] - 0.9 * scale, chin[1] + 0.3 * scale],
                          [chin[0] + 0.9 * scale, chin[1] + 0.3 * scale], [chin[0] + 1.4 * scale, big * 1.2]])
    draw.polygon(_poly(shoulders), fill=_rgb(identity.clothes))
    # The head, lit from one side (a soft horizontal gradient inside the head's outline).
    def lighting(draw: ImageDraw.ImageDraw, offset: np.ndarray) -> None:
        width, height = draw.im.size
        for x in range(0, width, SUPERSAMPLE):  # vertical bands, brighter towards the light
            u = (x + offset[0] - centre[0]) / scale
            draw.rectangle([x, 0, x + SUPERSAMPLE, height], fill=_rgb(skin, float(np.clip(1 + 0.22 * identity.light
                                                                                           * u, 0.75, 1.15))))

    _paste_clipped(canvas, head, _rgb(skin), lighting, blur=SUPERSAMPLE * 0.5)
    draw = ImageDraw.Draw(canvas)
    # Hair on top: a cap over the crown down to a hairline above the brows.
    if identity.hair_style != "bald":
        hairline = project(_forehead_3d(identity) * [1.0, 0.62, 1.0] + [0, -0.06, 0.03], identity, motion, big)
        outer = project(_forehead_3d(identity) * [1.12, 1.15, 1.0] + [0, 0.02, 0], identity, motion, big)
        cap = np.concatenate([outer, hairline[::-1]])
        draw.polygon(_poly(cap), fill=_rgb(hair))
        if identity.hair_style == "bun":
            bun_c, r = outer[len(outer) // 2], 0.16 * scale
            draw.ellipse([bun_c[0] - r, bun_c[1] - 1.6 * r, bun_c[0] + r, bun_c[1] + 0.4 * r], fill=_rgb(hair, 0.9))
    # Brows.
    width = max(1, int(identity.brow_thickness * scale))
    for brow in (RIGHT_BROW, LEFT_BROW):
        draw.line(_poly(lm[brow]), fill=_rgb(hair, 0.7), width=width, joint="curve")
    # Eyes: white, iris clipped to the lids, a lid line.
    r = 0.045 * identity.eye_size * scale
    for eye in (RIGHT_EYE, LEFT_EYE):
        pts = lm[eye]
        c = pts.mean(0) + [motion.yaw * 0.05 * scale, 0]

        def iris(draw: ImageDraw.ImageDraw, offset: np.ndarray, c: np.ndarray = c) -> None:
            x, y = c - offset
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_rgb(identity.iris))
            draw.ellipse([x - 0.45 * r, y - 0.45 * r, x + 0.45 * r, y + 0.45 * r], fill=(15, 12, 10))

        _paste_clipped(canvas, pts, _rgb([0.93, 0.92, 0.9]), iris)
        draw.line(_poly(pts[[0, 1, 2, 3]]), fill=_rgb(skin, 0.35), width=max(1, int(0.012 * scale)), joint="curve")
    # Nose: a shaded bridge on the side away from the light, nostrils.
    bridge_side = -np.sign(identity.light or 1.0) * 0.03 * scale
    draw.line(_poly(lm[NOSE_BRIDGE] + [bridge_side, 0]), fill=_rgb(skin, 0.82), width=max(1, int(0.02 * scale)))
    draw.line(_poly(lm[NOSE_BASE]), fill=_rgb(skin, 0.7), width=max(1, int(0.012 * scale)), joint="curve")
    for k in (32, 34):
        nx, ny = lm[k]
        rr = 0.018 * scale
        draw.ellipse([nx - rr, ny - 0.6 * rr, nx + rr, ny + 0.6 * rr], fill=_rgb(skin, 0.4))
    # Mouth: lips, then the opening (dark) with the upper teeth.
    draw.polygon(_poly(lm[OUTER_LIPS]), fill=_rgb(identity.lips))
    inner = lm[INNER_LIPS]
    paint_mouth_opening(canvas, inner, scale)
    draw.line(_poly(inner[[0, 1, 2, 3, 4]]), fill=_rgb(identity.lips, 0.55), width=max(1, int(0.008 * scale)))
    if motion.weight("happy") > 0.3:  # raised cheeks: a soft blush
        rr = 0.07 * scale
        for k in (3, 13):
            c = lm[k] * 0.55 + lm[30] * 0.45
            x0, y0, x1, y1 = (int(v) for v in (*(c - 2 * rr), *(c + 2 * rr)))
            region = canvas.crop((x0, y0, x1, y1))
            blend = Image.new("RGB", region.size, _rgb(identity.skin * [1.05, 0.8, 0.8]))
            m = Image.new("L", region.size, 0)
            ImageDraw.Draw(m).ellipse([rr, rr, 3 * rr, 3 * rr], fill=int(70 * motion.weight("happy")))
            region.paste(blend, (0, 0), m.filter(ImageFilter.GaussianBlur(rr / 2)))
            canvas.paste(region, (x0, y0))
    image = np.asarray(canvas.resize((size, size), Image.LANCZOS))
    f = 1.0 / SUPERSAMPLE
    return annotate(image.copy(), lm * f, top * f, scale * f)


def paint_mouth_opening(canvas: Image.Image, inner: np.ndarray, scale: float) -> None:
    """Paint the open mouth (dark, with the upper teeth) inside the inner lip contour, if it is open."""
    gap = inner[[5, 6, 7], 1].mean() - inner[[1, 2, 3], 1].mean()
    if gap <= 0.004 * scale:
        return
    teeth_top = inner[1:4, 1].min()

    def teeth(draw: ImageDraw.ImageDraw, offset: np.ndarray) -> None:
        y = teeth_top - offset[1]
        draw.rectangle([0, y - scale, draw.im.size[0], y + 0.035 * scale], fill=(235, 232, 220))

    _paste_clipped(canvas, inner, (45, 12, 14), teeth)


def annotate(image: np.ndarray, landmarks: np.ndarray, top: np.ndarray, scale: float) -> DrawnFrame:
    """A frame's exact annotations from its projected landmarks and head top (output pixels;
    ``scale`` = face width in pixels): the face is the head's skin from the hairline down."""
    size = image.shape[0]
    hairline_y = landmarks[RIGHT_BROW.start : LEFT_BROW.stop, 1].min() - 0.15 * scale
    face_poly = np.concatenate([landmarks[JAW], top[::-1][1:-1]])
    face_poly[:, 1] = np.maximum(face_poly[:, 1], hairline_y)
    # Drawn at 4x and reduced, so a mask pixel is in when most of it is covered.
    face_mask = np.asarray(_mask(4 * size, 4 * face_poly).resize((size, size), Image.BOX)) > 127
    lip_mask = np.asarray(_mask(4 * size, 4 * landmarks[OUTER_LIPS]).resize((size, size), Image.BOX)) > 127
    box_pts = np.concatenate([landmarks, face_poly])
    box = np.array([*box_pts.min(0), *box_pts.max(0)], dtype=np.float32).clip(0, size)
    return DrawnFrame(image, landmarks.astype(np.float32), face_mask, lip_mask, box)


def expression_weights(label: str, intensity: float = 1.0) -> dict[str, float]:
    """The :class:`FaceMotion` expression weights of one label (neutral = none)."""
    if label not in EXPRESSIONS:
        raise ValueError(f"unknown expression {label!r}; known: {', '.join(EXPRESSIONS)}")
    return {} if label == "neutral" else {label: float(intensity)}

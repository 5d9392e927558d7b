"""The motion of a drawn talking portrait that is not speech: head pose, blinks, expressions.

Serves Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait
Image Animation", 2024): its generator must learn that the lips follow the audio while the
head moves and the eyes blink on their own, and (the paper's text-label extension) that an
expression label changes the face. The corpus therefore draws

* head pose as an Ornstein-Uhlenbeck walk per angle (yaw, pitch, roll), low-passed so it is
  smooth from frame to frame: slow, bounded drift around the frontal pose, with a small head
  shift that follows it;
* blinks as a Poisson process (about one every three seconds, as people blink at rest),
  each a quick close and a slower open, ~0.2 s in all;
* expression labels (:data:`EXPRESSIONS`) per time range, with a short ramp between them so
  a change of label is visible as a change of face, not a cut.
"""

from __future__ import annotations

import math

import numpy as np

from codecgen.datamodules.corpora.faces import FaceMotion
from codecgen.datamodules.portrait_clips import EXPRESSIONS, TimedLabel

POSE_STD = (0.12, 0.06, 0.04)  # radians: yaw, pitch, roll around frontal
POSE_TIME = 1.5  # seconds: the walk's correlation time
SMOOTH_SECONDS = 0.12  # the low-pass that makes it smooth from frame to frame
SHIFT_PER_RADIAN = (0.08, 0.06)  # head shift (frame units) per radian of yaw / pitch
BLINK_RATE = 0.33  # per second
BLINK_CLOSE, BLINK_OPEN = 0.06, 0.14  # seconds
EXPRESSION_RAMP = 0.3  # seconds to blend from one label into the next


def pose_walk(frames: int, fps: float, rng: np.random.Generator, std: tuple[float, float, float] = POSE_STD,
              tau: float = POSE_TIME) -> np.ndarray:
    """(frames, 3) yaw, pitch, roll: a stationary Ornstein-Uhlenbeck process per angle, Gaussian-smoothed
    (``SMOOTH_SECONDS``) and rescaled to the standard deviations ``std``."""
    a = math.exp(-1.0 / (fps * tau))
    margin = int(3 * SMOOTH_SECONDS * fps) + 1
    n = frames + 2 * margin
    noise = rng.standard_normal((n, 3)) * math.sqrt(1 - a * a)
    walk = np.empty((n, 3))
    walk[0] = rng.standard_normal(3)
    for i in range(1, n):
        walk[i] = a * walk[i - 1] + noise[i]
    # An OU path is rough frame to frame; heads move smoothly: low-pass it, then restore its std.
    sigma = SMOOTH_SECONDS * fps
    taps = np.exp(-0.5 * (np.arange(-margin, margin + 1) / sigma) ** 2)
    taps /= taps.sum()
    smooth = np.stack([np.convolve(walk[:, k], taps, mode="valid") for k in range(3)], 1)[:frames]
    gain = 1.0 / math.sqrt(np.sum(np.convolve(taps, taps) * a ** np.abs(np.arange(-2 * margin, 2 * margin + 1))))
    return (smooth * gain * np.asarray(std)).astype(np.float32)


def blink_track(frames: int, fps: float, rng: np.random.Generator, rate: float = BLINK_RATE) -> np.ndarray:
    """(frames,) eyelid closure in [0, 1] from Poisson blinks (a fast close, a slower open)."""
    seconds = frames / fps
    t = np.arange(frames) / fps
    out = np.zeros(frames)
    start = rng.exponential(1.0 / rate)
    while start < seconds:
        closing = (t - start) / BLINK_CLOSE
        opening = 1.0 - (t - start - BLINK_CLOSE) / BLINK_OPEN
        shape = np.where(t < start + BLINK_CLOSE, closing, opening)
        out = np.maximum(out, np.clip(shape, 0.0, 1.0))
        start += BLINK_CLOSE + BLINK_OPEN + rng.exponential(1.0 / rate)
    return out.astype(np.float32)


def expression_schedule(seconds: float, rng: np.random.Generator, max_labels: int = 3,
                        neutral_share: float = 0.3) -> list[TimedLabel]:
    """Expression labels covering ``[0, seconds)``: one to ``max_labels`` ranges of at least 1.5 s,
    each label different from the one before; neutral about ``neutral_share`` of the time."""
    count = int(rng.integers(1, max(1, min(max_labels, int(seconds // 1.5))) + 1))
    cuts = np.sort(rng.uniform(0.0, seconds, count - 1)) if count > 1 else np.array([])
    edges = [0.0, *cuts.tolist(), seconds]
    if min(np.diff(edges)) < 1.5:  # too short to see: one label instead
        edges = [0.0, seconds]
    labels: list[TimedLabel] = []
    for start, end in zip(edges[:-1], edges[1:]):
        previous = labels[-1].label if labels else None
        choices = [e for e in EXPRESSIONS if e != previous]
        weights = np.array([neutral_share if e == "neutral" else 1.0 for e in choices])
        label = str(rng.choice(choices, p=weights / weights.sum()))
        labels.append(TimedLabel(label, float(start), float(end)))
    return labels


def expression_weights_track(schedule: list[TimedLabel], frames: int, fps: float,
                             ramp: float = EXPRESSION_RAMP) -> list[dict[str, float]]:
    """Per frame, a weight per non-neutral label: 1 inside its range, ramping linearly over
    ``ramp`` seconds into the next label (so weights sum to at most 1)."""
    out = []
    for i in range(frames):
        t = (i + 0.5) / fps
        weights: dict[str, float] = {}
        for item in schedule:
            rise = np.clip((t - item.start) / ramp + 0.5, 0.0, 1.0) if item.start > 0 else 1.0
            fall = np.clip((item.end - t) / ramp + 0.5, 0.0, 1.0) if item.end < frames / fps else 1.0
            w = float(min(rise, fall))
            if w > 0 and item.label != "neutral":
                weights[item.label] = weights.get(item.label, 0.0) + w
        out.append(weights)
    return out


def frame_motions(visemes: np.ndarray, pose: np.ndarray, blink: np.ndarray,
                  expressions: list[dict[str, float]]) -> list[FaceMotion]:
    """Per-frame :class:`FaceMotion` from the viseme (F, 3), pose (F, 3) and blink (F,) tracks."""
    frames = len(visemes)
    if not (len(pose) == len(blink) == len(expressions) == frames):
        raise ValueError("the motion tracks must have one entry per frame")
    sx, sy = SHIFT_PER_RADIAN
    return [
        FaceMotion(jaw=float(v[0]), width=float(v[1]), round=float(v[2]), blink=float(b), yaw=float(p[0]),
                   pitch=float(p[1]), roll=float(p[2]), shift=(sx * float(p[0]), sy * float(p[1])), expression=e)
        for v, p, b, e in zip(visemes, pose, blink, expressions)
    ]

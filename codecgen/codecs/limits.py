"""Decode limits: how much a ``.cgc`` file may ask a decoder to produce.

A file's header says how long the audio is, how large the image, how many video
frames; a few hundred hostile bytes can claim hours or gigapixels (a decompression
bomb). Where the entropy model bounds the size by the payload (a uniform code costs
log2 K bits a symbol) the reader checks that; where it cannot (an adaptive model can
code a symbol in almost no bits) these limits apply, as PIL's ``MAX_IMAGE_PIXELS``
does for images. ``infer.py`` raises them with ``--max-seconds``, ``--max-pixels`` and
``--max-frames``; in Python pass ``limits=DecodeLimits(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecodeLimits:
    max_seconds: float = 3 * 3600.0  # audio: three hours
    max_pixels: int = 100_000_000  # image: 100 megapixels (PIL refuses 2 x 89 M)
    max_frames: int = 20_000  # video: frames in one file
    max_frame_pixels: int = 3840 * 2160  # video: one 4K frame

    def __post_init__(self):
        for name in ("max_seconds", "max_pixels", "max_frames", "max_frame_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")


DEFAULT_LIMITS = DecodeLimits()

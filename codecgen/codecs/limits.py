"""Decode limits: how much a ``.cgc`` file may ask a decoder to produce.

A file's header says how long the audio is, how large the image, how many video
frames; a few hundred hostile bytes can claim hours or gigapixels (a decompression
bomb). Where the entropy model bounds the size by the payload (a uniform code costs
log2 K bits a symbol) the reader checks that; where it cannot (an adaptive model can
code a symbol in almost no bits) these limits apply, as PIL's ``MAX_IMAGE_PIXELS``
does for images. ``infer.py`` raises them with ``--max-seconds``, ``--max-pixels`` and
``--max-frames``; in Python pass ``limits=DecodeLimits(...)``. A file over a limit is
refused with a ``DecodeLimitError`` naming the limit and the flag that raises it,
before anything is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from codecgen.codecs.bitstream import BitstreamError

# the infer.py flag that raises each limit (named in every refusal)
FLAGS = {
    "max_seconds": "--max-seconds",
    "max_pixels": "--max-pixels",
    "max_frames": "--max-frames",
    "max_frame_pixels": "--max-pixels",
}


class DecodeLimitError(BitstreamError):
    """A file asks for more than the decode limits allow; raising the limit decodes it."""


def _amount(x: float, digits: int = 3) -> str:
    return f"{x:.0f}" if x >= 10**digits else f"{x:.{digits}g}"


def _amounts(claim: float, limit: float) -> tuple[str, str]:
    """Both numbers, the claim with enough digits to read as more than the limit."""
    for digits in (3, 6, 9, 17):
        if _amount(claim, digits) != _amount(limit, digits):
            break
    return _amount(claim, digits), _amount(limit, digits)


def _durations(claim: float, limit: float) -> tuple[str, str]:
    """Two durations in seconds, in the one unit that suits the limit."""
    size, unit = next(((s, u) for s, u in ((3600.0, "h"), (60.0, "min"), (1.0, "s")) if limit >= s), (1.0, "s"))
    a, b = _amounts(claim / size, limit / size)
    return f"{a} {unit}", f"{b} {unit}"


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

    @staticmethod
    def _over(claim: str, limit: str, name: str) -> DecodeLimitError:
        return DecodeLimitError(f"the file claims {claim}, over the {limit} limit ({FLAGS[name]})")

    def check_seconds(self, seconds: float, what: str = "audio") -> None:
        if seconds > self.max_seconds:
            claim, limit = _durations(seconds, self.max_seconds)
            raise self._over(f"{claim} of {what}", limit, "max_seconds")

    def check_pixels(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            claim, limit = _amounts(width * height / 1e6, self.max_pixels / 1e6)
            raise self._over(f"a {width}x{height} image ({claim} megapixels)", f"{limit} megapixel", "max_pixels")

    def check_frames(self, n_frames: int) -> None:
        if n_frames > self.max_frames:
            claim, limit = _amounts(n_frames, self.max_frames)
            raise self._over(f"{claim} frames", f"{limit} frame", "max_frames")

    def check_frame_pixels(self, width: int, height: int) -> None:
        if width * height > self.max_frame_pixels:
            claim, limit = _amounts(width * height / 1e6, self.max_frame_pixels / 1e6)
            raise self._over(f"{width}x{height} frames ({claim} megapixels)", f"{limit} megapixel frame",
                             "max_frame_pixels")


DEFAULT_LIMITS = DecodeLimits()


def resolve(limits: DecodeLimits | None) -> DecodeLimits:
    """A reader's ``limits`` argument: None means ``DEFAULT_LIMITS``."""
    if limits is None:
        return DEFAULT_LIMITS
    if not isinstance(limits, DecodeLimits):
        raise TypeError(f"limits must be a DecodeLimits, got {type(limits).__name__}")
    return limits

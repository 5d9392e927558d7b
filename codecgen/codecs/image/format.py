"""The image codec's file: header, index payload, lost-position mask and alpha plane.

What a VQGAN image ``.cgc`` holds (the model, ``vqgan_compression``, makes and reads the
index grid; this module only packs and checks the file around it). A compact header (at
256 x 256 pixels every 8 bytes cost 0.001 bpp)::

    modality     "image"
    weights_hash first HASH_CHARS hex digits of the model's weights hash
    size         [width, height]
    K            codebook size (the rate)
    entropy      the index code model: "uniform", "prior" or "context"
    mode         optional, "L" or "RGBA" (absent: "RGB")
    lost         optional: base64(zlib(packbits)) of the grid positions lost in transit
    codes_bytes  optional, only when an alpha plane follows the indices in the payload

The payload is the range-coded indices (lost positions skipped), then, for a
non-opaque RGBA image, the zlib-compressed 8-bit alpha plane. The grid follows from the
size and the model's factor; the coding block size is covered by the weights hash.

Reading trusts nothing: ``check_header`` applies ``IMAGE_SCHEMA`` and the decode limits
(``max_pixels``) before the model does anything; ``read_payload`` inflates the mask and
the alpha plane with their exact sizes as bounds (no zlib bomb).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from codecgen.codecs import bitstream
from codecgen.codecs.limits import DecodeLimits
from codecgen.codecs.limits import resolve as resolve_limits
from codecgen.nn import entropy

__all__ = [
    "MODES", "ENTROPY_KINDS", "HASH_CHARS", "MAX_SIDE", "IMAGE_SCHEMA", "ImagePayload",
    "make_header", "check_header", "read_payload", "index_payload_bytes",
]

MODES = ("RGB", "L", "RGBA")
ENTROPY_KINDS = ("uniform", "prior", "context")
HASH_CHARS = 8  # 32 bits of the weights hash: enough to refuse the wrong model
MAX_SIDE = 1 << 16

IMAGE_SCHEMA = bitstream.Object(
    {
        "modality": bitstream.Str(choices=("image",)),
        "weights_hash": bitstream.Str(min_len=HASH_CHARS, max_len=64),
        "size": bitstream.List(bitstream.Int(1, MAX_SIDE), 2, 2),
        "K": bitstream.Int(2, entropy.MAX_CODEBOOK_SIZE),
        "entropy": bitstream.Str(choices=ENTROPY_KINDS),
        "mode": bitstream.Str(choices=MODES),
        "lost": bitstream.Str(max_len=bitstream.MAX_HEADER_BYTES),
        "codes_bytes": bitstream.Int(0, bitstream.MAX_PAYLOAD_BYTES),
    },
    optional=("mode", "lost", "codes_bytes"),
)


# --------------------------------------------------------------------------- writing


def make_header(weights_hash: str, width: int, height: int, k: int, entropy_kind: str, codes: bytes,
                mode: str = "RGB", alpha: Tensor | None = None, lost: Tensor | None = None) -> tuple[dict, bytes]:
    """(header, payload) of an image file whose index payload is ``codes``; ``alpha`` (any
    shape of ``height * width`` values in [0, 1]) is stored only for RGBA and when not opaque."""
    header = {
        "modality": "image",
        "weights_hash": weights_hash[:HASH_CHARS],
        "size": [int(width), int(height)],
        "K": k,
        "entropy": entropy_kind,
    }
    if mode != "RGB":
        header["mode"] = mode
    payload = codes
    if lost is not None and lost.any():
        header["lost"] = _pack_mask(lost)
    if alpha is not None and mode == "RGBA" and bool((alpha < 1).any()):
        plane = (alpha.reshape(height, width) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        payload += zlib.compress(plane.tobytes(), 9)
        header["codes_bytes"] = len(codes)
    return header, payload


def _pack_mask(mask: Tensor) -> str:
    bits = np.packbits(mask.reshape(-1).cpu().numpy().astype(np.uint8))
    return base64.b64encode(zlib.compress(bits.tobytes(), 9)).decode("ascii")


# --------------------------------------------------------------------------- reading


def check_header(header: dict, limits: DecodeLimits | None = None) -> None:
    """Every field's type and range (``IMAGE_SCHEMA``) and the image size against
    ``limits`` (default ``DEFAULT_LIMITS``), before the model looks at the file."""
    bitstream.check_header(header, IMAGE_SCHEMA, "image")
    resolve_limits(limits).check_pixels(*header["size"])


def index_payload_bytes(header: dict, payload: bytes) -> int:
    """Bytes of the entropy-coded indices: the header's ``codes_bytes`` when an alpha plane
    follows them, else the whole payload."""
    codes_bytes = header.get("codes_bytes", len(payload))
    if isinstance(codes_bytes, bool) or not isinstance(codes_bytes, int) or not 0 <= codes_bytes <= len(payload):
        raise bitstream.BitstreamError("codes_bytes must be an int no larger than the payload")
    return codes_bytes


@dataclass
class ImagePayload:
    codes: bytes  # the range-coded indices
    lost: Tensor | None  # (gh, gw) bool, True where the index was lost
    alpha: Tensor | None  # (1, H, W) float in [0, 1]


def read_payload(header: dict, payload: bytes, grid_shape: tuple[int, int]) -> ImagePayload:
    """Split a checked header's payload into indices, lost mask and alpha plane."""
    width, height = header["size"]
    codes_bytes = index_payload_bytes(header, payload)
    lost = _unpack_mask(header["lost"], *grid_shape) if "lost" in header else None
    rest = payload[codes_bytes:]
    alpha = None
    if rest:
        if header.get("mode", "RGB") != "RGBA":
            raise bitstream.BitstreamError("data after the codes in a file without alpha")
        alpha = _unpack_alpha(rest, height, width)
    return ImagePayload(payload[:codes_bytes], lost, alpha)


def _inflate_exactly(raw: bytes, n: int, what: str) -> bytes:
    """zlib data that must inflate to exactly ``n`` bytes; never inflates more than n + 1."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, n + 1)
    except zlib.error as error:
        raise bitstream.BitstreamError(f"corrupt {what}: {error}") from None
    if len(out) != n:
        raise bitstream.BitstreamError(f"{what} has the wrong size")
    return out


def _unpack_mask(text: str, h: int, w: int) -> Tensor:
    try:
        packed = base64.b64decode(text, validate=True)
    except ValueError as error:
        raise bitstream.BitstreamError(f"corrupt lost-position mask: {error}") from None
    raw = _inflate_exactly(packed, (h * w + 7) // 8, "lost-position mask")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[: h * w]
    return torch.from_numpy(bits.astype(bool)).reshape(h, w)


def _unpack_alpha(raw: bytes, h: int, w: int) -> Tensor:
    plane = _inflate_exactly(raw, h * w, "alpha plane")
    return torch.from_numpy(np.frombuffer(plane, dtype=np.uint8).copy()).reshape(1, h, w).float() / 255

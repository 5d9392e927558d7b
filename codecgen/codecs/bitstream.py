"""The ``.cgc`` container: a small, versioned, self-checking file format for codes.

Every compressed file (audio, image or video) has this layout; all integers are
little-endian::

    offset      size  field
    0           4     magic  b"CGC\\x00"
    4           2     format version (uint16), currently 1
    6           4     header length H (uint32), at most MAX_HEADER_BYTES
    10          H     header: UTF-8 JSON object (model name, weights hash, shapes,
                      sample rate / fps, codebook sizes, entropy model, ...)
    10+H        8     payload length P (uint64), at most MAX_PAYLOAD_BYTES
    18+H        P     payload: the entropy-coded codes (``codecgen.nn.entropy``)
    18+H+P      4     CRC32 (zlib.crc32) of every byte before it

Why this shape: the magic and version let a reader reject foreign or future files
with a clear message; explicit lengths let it bound every allocation by the real file
size before reading (a reader never trusts a header field); JSON, never pickle, keeps
the header inspectable and safe to parse; the trailing CRC catches bit rot and
truncation that the lengths alone would miss. Every failure is one ``BitstreamError``.
"""

from __future__ import annotations

import io
import json
import math
import operator
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "BitstreamError",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MAX_PAYLOAD_BYTES",
    "pack",
    "unpack",
    "write",
    "read",
    "validate_header",
    "check_shape",
]

MAGIC = b"CGC\x00"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 4 << 20
MAX_PAYLOAD_BYTES = 1 << 34
MAX_SHAPE_DIMS = 8

_PREFIX = struct.Struct("<4sHI")  # magic, version, header length
_PAYLOAD_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
FIXED_BYTES = _PREFIX.size + _PAYLOAD_LEN.size + _CRC.size  # 22: a file with H = P = 0
_CHUNK = 1 << 20  # read/CRC large payloads piecewise


class BitstreamError(ValueError):
    """A ``.cgc`` file or header is malformed, truncated, corrupt or foreign."""


# --------------------------------------------------------------------------- writing


def _encode_header(header: dict[str, Any]) -> bytes:
    if not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    try:
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BitstreamError(f"header is not JSON-serialisable: {exc}") from exc
    raw = text.encode("utf-8")
    if len(raw) > MAX_HEADER_BYTES:
        raise BitstreamError(f"header is {len(raw)} bytes, more than {MAX_HEADER_BYTES}")
    return raw


def _write_to(f: BinaryIO, header: dict[str, Any], payload: bytes) -> None:
    """Stream the container into ``f`` (no copy of the payload is made)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    payload = memoryview(payload).cast("B")
    if payload.nbytes > MAX_PAYLOAD_BYTES:
        raise BitstreamError(f"payload is {payload.nbytes} bytes, more than {MAX_PAYLOAD_BYTES}")
    raw_header = _encode_header(header)
    crc = 0
    for part in (
        _PREFIX.pack(MAGIC, FORMAT_VERSION, len(raw_header)),
        raw_header,
        _PAYLOAD_LEN.pack(payload.nbytes),
        payload,
    ):
        f.write(part)
        crc = zlib.crc32(part, crc)
    f.write(_CRC.pack(crc))


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    """Header + payload -> the bytes of a ``.cgc`` file."""
    buf = io.BytesIO()
    _write_to(buf, header, payload)
    return buf.getvalue()


def write(path: str | os.PathLike, header: dict[str, Any], payload: bytes, overwrite: bool = False) -> None:
    """Write a ``.cgc`` file atomically: readers see the old file or the whole new one.

    The data goes to a temporary file in the target's folder (so ``os.replace`` is a
    same-filesystem rename), is fsynced, then renamed over the target. Any failure
    removes the temporary file. The exists-check and the rename are two steps, so a
    file created in between by another process would be replaced.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    tmp = tempfile.NamedTemporaryFile(
        delete=False, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with tmp:
            _write_to(tmp, header, payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        # NamedTemporaryFile creates mode 0600; give the file the mode a plain open() would.
        os.chmod(tmp.name, 0o666 & ~_umask())
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); best effort where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading


class _Reader:
    """Reads exact-size fields from a stream of known size, keeping a running CRC."""

    def __init__(self, f: BinaryIO, size: int, source: str) -> None:
        self.f, self.remaining, self.source, self.crc = f, size, source, 0

    def fail(self, message: str) -> BitstreamError:
        return BitstreamError(f"{self.source}: {message}")

    def take(self, n: int, what: str, checksum: bool = True) -> bytes:
        if n > self.remaining:
            raise self.fail(f"truncated: {what} needs {n} bytes but only {self.remaining} remain")
        parts, left = [], n
        while left:
            part = self.f.read(min(left, _CHUNK))
            if not part:  # the file shrank while we read it
                raise self.fail(f"truncated while reading {what}")
            parts.append(part)
            left -= len(part)
            if checksum:
                self.crc = zlib.crc32(part, self.crc)
        self.remaining -= n
        return b"".join(parts)


def _parse(f: BinaryIO, size: int, source: str) -> tuple[dict[str, Any], bytes]:
    """Validate and split a container; each length is checked before it is used."""
    r = _Reader(f, size, source)
    if size < len(MAGIC):
        raise r.fail(f"truncated: {size} bytes is too short for a codecgen file")
    magic = r.take(len(MAGIC), "magic")
    if magic != MAGIC:
        raise r.fail(f"not a codecgen file (bad magic {magic!r}, expected {MAGIC!r})")
    if size < FIXED_BYTES:
        raise r.fail(f"truncated: {size} bytes, a codecgen file has at least {FIXED_BYTES}")
    version, header_len = struct.unpack("<HI", r.take(_PREFIX.size - len(MAGIC), "version"))
    if not 1 <= version <= FORMAT_VERSION:
        raise r.fail(
            f"unsupported format version {version} (this codecgen reads up to {FORMAT_VERSION})"
        )
    if header_len > MAX_HEADER_BYTES:
        raise r.fail(f"header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if header_len > r.remaining - _PAYLOAD_LEN.size - _CRC.size:
        raise r.fail(
            f"truncated: header says {header_len} bytes but only "
            f"{r.remaining - _PAYLOAD_LEN.size - _CRC.size} remain"
        )
    raw_header = r.take(header_len, "header")
    (payload_len,) = _PAYLOAD_LEN.unpack(r.take(_PAYLOAD_LEN.size, "payload length"))
    if payload_len > MAX_PAYLOAD_BYTES:
        raise r.fail(f"payload length {payload_len} exceeds the limit of {MAX_PAYLOAD_BYTES} bytes")
    available = r.remaining - _CRC.size
    if payload_len > available:
        raise r.fail(f"truncated: payload says {payload_len} bytes but only {available} remain")
    if payload_len < available:
        raise r.fail(f"{available - payload_len} unexpected trailing bytes after the payload")
    payload = r.take(payload_len, "payload")
    computed = r.crc
    (stored,) = _CRC.unpack(r.take(_CRC.size, "CRC", checksum=False))
    if stored != computed:
        raise r.fail(f"CRC mismatch: file is corrupt (stored {stored:08x}, computed {computed:08x})")
    # Parsed only after the CRC passed: a flipped byte is reported as corruption.
    return _decode_header(raw_header, r), payload


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _decode_header(raw: bytes, r: _Reader) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise r.fail(f"header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise r.fail(f"header must be a JSON object, got {type(header).__name__}")
    return header


def unpack(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The bytes of a ``.cgc`` file -> (header, payload); BitstreamError if invalid."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = memoryview(data).cast("B")
    return _parse(io.BytesIO(data), data.nbytes, "<bytes>")


def read(path: str | os.PathLike) -> tuple[dict[str, Any], bytes]:
    """Read and validate a ``.cgc`` file -> (header, payload).

    A missing or unreadable file raises the usual ``OSError``; a file that is there
    but is not a valid ``.cgc`` raises ``BitstreamError``.
    """
    with open(path, "rb") as f:
        return _parse(f, os.fstat(f.fileno()).st_size, str(path))


# --------------------------------------------------------------------------- header helpers


def validate_header(header: dict[str, Any], required: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """Check that each ``required`` key exists with the given type(s); return ``header``.

    JSON has no int/bool/float distinction the way Python does, so: ``bool`` never
    counts as ``int``; an ``int`` is accepted where ``float`` is asked for.
    """
    if not isinstance(header, dict):
        raise BitstreamError(f"header must be a JSON object, got {type(header).__name__}")
    for key, expected in required.items():
        if key not in header:
            raise BitstreamError(f"header field {key!r} missing")
        types = expected if isinstance(expected, tuple) else (expected,)
        if not _is_instance(header[key], types):
            names = " or ".join(t.__name__ for t in types)
            raise BitstreamError(
                f"header field {key!r} must be {names}, got {type(header[key]).__name__}"
            )
    return header


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def check_shape(shape: Any, max_elements: int = 2**31, name: str = "codes_shape") -> tuple[int, ...]:
    """A header's shape as a tuple of non-negative ints with a bounded product."""
    if not isinstance(shape, (list, tuple)):
        raise BitstreamError(f"{name} must be a list of ints, got {type(shape).__name__}")
    if len(shape) > MAX_SHAPE_DIMS:
        raise BitstreamError(f"{name} has {len(shape)} dims, at most {MAX_SHAPE_DIMS} allowed")
    dims = []
    for i, s in enumerate(shape):
        if isinstance(s, bool):
            raise BitstreamError(f"{name}[{i}] must be an int, got bool")
        try:
            s = operator.index(s)
        except TypeError:
            raise BitstreamError(f"{name}[{i}] must be an int, got {type(s).__name__}") from None
        if s < 0:
            raise BitstreamError(f"{name}[{i}] must be non-negative, got {s}")
        dims.append(s)
    if math.prod(dims) > max_elements:
        raise BitstreamError(f"{name} {dims} has more than {max_elements} elements")
    return tuple(dims)

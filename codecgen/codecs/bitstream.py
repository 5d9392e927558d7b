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

The container checks its own fields; what a header *says* is checked by each file
kind's reader against a declarative schema (``Object`` of ``Int``, ``Number``, ``Str``,
``List``, ... applied by ``check_header``) before anything is built or allocated from
it: ``AUDIO_SCHEMA`` (``codecs/audio/base.py``), ``IMAGE_SCHEMA``
(``codecs/image/format.py``), ``VIDEO_SCHEMA`` (``codecs/video/nerv.py``). How much a
file may ask a decoder to produce is bounded by ``codecs/limits.py``.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
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
    "check_header",
    "Field",
    "Int",
    "Number",
    "Bool",
    "Str",
    "Maybe",
    "List",
    "Object",
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


# --------------------------------------------------------------------------- header schemas
#
# A header is untrusted JSON: every field a reader uses is checked for type and range
# before anything is built or allocated from it. Each file kind declares its header once
# as a schema (``Object`` of ``Field``s) and its reader applies it with ``check_header``.
# JSON's types map onto Python's loosely, so the rules are explicit: a bool is never a
# number; an int is accepted where a float is asked for; NaN and infinities (Python's
# json reads ``1e999`` as inf) are not numbers; strings, lists and objects have bounded
# sizes; an object with a key its schema does not name is refused (a field this reader
# does not know could change what the file means).

MAX_STRING = 256  # default bound on a header string (names, hashes, enum values)


class Field:
    """One header value's allowed type and range."""

    def check(self, value: Any, path: str) -> Any:
        """``value`` if it is allowed, else a ``BitstreamError`` naming ``path``."""
        raise NotImplementedError

    @staticmethod
    def fail(path: str, message: str) -> BitstreamError:
        return BitstreamError(f"header field {path!r} {message}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Int(Field):
    """An integer in [lo, hi] (bools refused)."""

    lo: int
    hi: int

    def check(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an int, got {_type_name(value)}")
        if not self.lo <= value <= self.hi:
            raise self.fail(path, f"must be in [{self.lo}, {self.hi}], got {_short(value)}")
        return value


@dataclass(frozen=True)
class Number(Field):
    """A finite int or float in [lo, hi], or in (lo, hi] with ``open_lo``."""

    lo: float
    hi: float
    open_lo: bool = False

    def check(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"must be a number, got {_type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):  # (an int is exact, however large)
            raise self.fail(path, f"must be a finite number, got {value}")
        low_ok = value > self.lo if self.open_lo else value >= self.lo
        if not (low_ok and value <= self.hi):
            raise self.fail(path, f"must be in {'(' if self.open_lo else '['}{self.lo}, {self.hi}], got {_short(value)}")
        return value


@dataclass(frozen=True)
class Bool(Field):
    def check(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {_type_name(value)}")
        return value


@dataclass(frozen=True)
class Str(Field):
    """A string of ``min_len`` to ``max_len`` characters, one of ``choices`` when given."""

    max_len: int = MAX_STRING
    choices: tuple[str, ...] | None = None
    min_len: int = 0

    def check(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {_type_name(value)}")
        if self.choices is not None and value not in self.choices:
            raise self.fail(path, f"must be one of {list(self.choices)}, got {value[:MAX_STRING]!r}")
        if not self.min_len <= len(value) <= self.max_len:
            raise self.fail(path, f"is {len(value)} characters long, must be {self.min_len} to {self.max_len}")
        return value


@dataclass(frozen=True)
class Maybe(Field):
    """``null`` or a value of ``field``."""

    field: Field

    def check(self, value: Any, path: str) -> Any:
        return None if value is None else self.field.check(value, path)


@dataclass(frozen=True)
class List(Field):
    """A list of ``min_len`` to ``max_len`` items, each a valid ``item``."""

    item: Field
    min_len: int = 0
    max_len: int = MAX_SHAPE_DIMS

    def check(self, value: Any, path: str) -> list:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, got {_type_name(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise self.fail(path, f"must hold {self.min_len} to {self.max_len} items, got {len(value)}")
        for i, v in enumerate(value):
            self.item.check(v, f"{path}[{i}]")
        return value


@dataclass(frozen=True)
class Object(Field):
    """A JSON object with exactly the keys of ``fields``, less any of ``optional``.
    ``open``: other keys are allowed too (their values unchecked, at most ``max_keys``)."""

    fields: dict[str, Field]
    optional: tuple[str, ...] = ()
    open: bool = False
    max_keys: int = 64

    def check(self, value: Any, path: str = "") -> dict:
        if not isinstance(value, dict):
            what = f"header field {path!r}" if path else "header"
            raise BitstreamError(f"{what} must be a JSON object, got {_type_name(value)}")
        for key, field in self.fields.items():
            sub = f"{path}.{key}" if path else key
            if key in value:
                field.check(value[key], sub)
            elif key not in self.optional:
                raise BitstreamError(f"header field {sub!r} missing")
        extra = [k for k in value if k not in self.fields]
        if extra and not self.open:
            raise BitstreamError(
                f"header{f' field {path!r}' if path else ''} has unknown field(s) "
                f"{sorted(k[:MAX_STRING] for k in extra)[:8]}"
            )
        if len(value) > self.max_keys:
            raise self.fail(path, f"has {len(value)} keys, at most {self.max_keys} allowed")
        return value


def check_header(header: Any, schema: Object, modality: str) -> dict[str, Any]:
    """Apply a file kind's schema to a header. A file of another kind is named as such
    ("this file holds 'image' data, not audio") rather than failing on its first odd field."""
    if isinstance(header, dict) and isinstance(header.get("modality"), str) and header["modality"] != modality:
        raise BitstreamError(f"this file holds {header['modality'][:MAX_STRING]!r} data, not {modality}")
    return schema.check(header)

"""Lossless entropy coding of quantizer codes: integer codes <-> bytes.

Codes follow the quantizer contract (DESIGN.md): an integer array ``(B, n_codebooks,
*spatial)`` where codebook ``i`` has the alphabet ``{0, ..., K_i - 1}``. They are range
coded (constriction's ``RangeEncoder`` with ``Categorical(perfect=False)`` /
``Uniform`` models; Duda-style ANS would do as well, a range coder is chosen because
its queue order makes the symbol order easy to document) under one of two
``EntropyModel`` kinds:

- ``uniform``: every symbol costs ``log2(K_i)`` bits; nothing to transmit but the sizes.
- ``histogram``: a static histogram per codebook: either the model's own prior
  (``CodePrior``: counted over training data, kept in the checkpoint, nothing sent),
  or a per-file histogram per codebook, fitted on the codes
  themselves (``fit_histogram``) and stored in the file header. Counts are quantized
  to a log scale (4 levels per octave, 20 octaves of dynamic range) so the table is
  about one byte per symbol before zlib; the quantized counts *are* the model, so
  encoder and decoder see the same table and coding stays lossless. The rounding costs
  well under 0.01 bit per symbol.

Payload layout: one range-coded stream. Symbols are coded codebook-major: all symbols
of codebook 0 in C order over ``(B, *spatial)``, then codebook 1, ... (one batched
``encode`` call per codebook is ~100x faster than symbol-by-symbol calls). Codebooks
with ``K_i == 1`` carry no information and are skipped. The stream's 32-bit words are
written big-endian and up to 3 trailing zero bytes of the final word are dropped (the
decoder pads them back), so a single symbol costs 1 byte, not 4.

Decoding trusts no size: every symbol costs at least ``min_symbol_bits`` (fixed by the
model's largest probability and the coder's 24-bit precision), so ``decode`` refuses a
shape that the payload's length cannot hold before it allocates anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import operator
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import constriction
import numpy as np
import torch
from torch import nn

__all__ = [
    "EntropyModel",
    "uniform_model",
    "fit_histogram",
    "quantize_counts",
    "encode",
    "decode",
    "information_bits",
    "best_model",
    "CodePrior",
    "RangeWriter",
    "RangeReader",
    "min_symbol_bits",
    "check_capacity",
]

MAX_CODEBOOKS = 4096
MAX_CODEBOOK_SIZE = 2**20
MAX_SYMBOLS = 2**31
MAX_NDIM = 8
KINDS = ("uniform", "histogram")

# Log-scale count levels: level q <-> count (4 + q % 4) << (q // 4), i.e. a tiny float
# with a 2-bit mantissa. Integer-only, so every platform rebuilds identical counts.
_MANTISSA_BITS = 2
_OCTAVES = 20
MAX_LEVEL = _OCTAVES << _MANTISSA_BITS  # 80: counts span 4 .. 4 << 20

# constriction's models on its range coder quantize probabilities to multiples of 2^-24,
# every symbol keeping at least one quantum; a sealed stream can be shorter than its
# symbols' information by at most the coder's 64-bit state, and ``getvalue`` trims up to
# 3 more bytes. These bound how many symbols a payload of a given size can hold.
CODER_PRECISION = 24
CODER_SLACK_BITS = 64 + 24 + 32  # state, trimmed bytes, margin

_queue = constriction.stream.queue
_models = constriction.stream.model


def _level_counts() -> np.ndarray:
    """All representable counts, indexed by level (strictly increasing int64)."""
    q = np.arange(MAX_LEVEL + 1, dtype=np.int64)
    one = 1 << _MANTISSA_BITS
    return (one + (q & (one - 1))) << (q >> _MANTISSA_BITS)


_LEVEL_COUNTS = _level_counts()
_LOG_LEVEL_COUNTS = np.log2(_LEVEL_COUNTS.astype(np.float64))


@dataclass
class EntropyModel:
    """A static per-codebook probability model.

    ``counts[i]`` (histogram only) holds ``codebook_sizes[i]`` positive integers; the
    probability of symbol ``s`` is ``counts[i][s] / sum(counts[i])``.
    """

    kind: str
    codebook_sizes: list[int]
    counts: list[list[int]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"entropy model kind must be one of {KINDS}, got {self.kind!r}")
        self.codebook_sizes = _check_codebook_sizes(self.codebook_sizes)
        if self.kind == "uniform":
            if self.counts is not None:
                raise ValueError("a uniform entropy model takes no counts")
            return
        self.counts = _check_counts(self.counts, self.codebook_sizes)

    def probabilities(self, i: int) -> np.ndarray:
        """Probability table of codebook ``i`` (float64, sums to 1)."""
        k = self.codebook_sizes[i]
        if self.kind == "uniform":
            return np.full(k, 1.0 / k)
        counts = np.asarray(self.counts[i], dtype=np.float64)
        return counts / counts.sum()

    def to_header(self) -> dict[str, Any]:
        """A compact JSON-serialisable description (inverse: ``from_header``).

        Histogram counts are stored as their log-scale levels, one byte per symbol,
        all codebooks concatenated, zlib-compressed and base64-encoded (``"levels"``).
        """
        header: dict[str, Any] = {"kind": self.kind, "codebook_sizes": list(self.codebook_sizes)}
        if self.kind == "histogram":
            levels = [_counts_to_levels(np.asarray(c, dtype=np.int64)) for c in self.counts]
            raw = np.concatenate(levels).astype(np.uint8).tobytes()
            header["levels"] = base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
        return header

    @classmethod
    def from_header(cls, d: Any) -> EntropyModel:
        """Rebuild a model from ``to_header()``'s dict, trusting nothing in it."""
        if not isinstance(d, dict):
            raise ValueError(f"entropy model header must be a JSON object, got {type(d).__name__}")
        kind = d.get("kind")
        if kind not in KINDS:
            raise ValueError(f"entropy model header: 'kind' must be one of {KINDS}, got {kind!r}")
        expected = {"kind", "codebook_sizes"} | ({"levels"} if kind == "histogram" else set())
        if set(d) != expected:
            raise ValueError(
                f"entropy model header: expected keys {sorted(expected)}, got {sorted(d)}"
            )
        sizes = _check_codebook_sizes(d["codebook_sizes"])
        if kind == "uniform":
            return cls("uniform", sizes)
        levels = _unpack_levels(d["levels"], sum(sizes))
        counts, start = [], 0
        for k in sizes:
            counts.append(_LEVEL_COUNTS[levels[start : start + k]].tolist())
            start += k
        return cls("histogram", sizes, counts)

    def header_bytes(self) -> int:
        """Size of ``to_header()`` as compact JSON, in bytes."""
        return len(json.dumps(self.to_header(), separators=(",", ":")).encode("utf-8"))


# --------------------------------------------------------------------------- validation


def _as_int(value: Any, what: str) -> int:
    """``value`` as a Python int; bools and floats are refused (JSON may hold either)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {type(value).__name__}") from None


def _check_codebook_sizes(sizes: Any) -> list[int]:
    if not isinstance(sizes, (list, tuple)):
        raise ValueError(f"codebook_sizes must be a list of ints, got {type(sizes).__name__}")
    if not 1 <= len(sizes) <= MAX_CODEBOOKS:
        raise ValueError(f"number of codebooks must be in [1, {MAX_CODEBOOKS}], got {len(sizes)}")
    out = [_as_int(k, f"codebook_sizes[{i}]") for i, k in enumerate(sizes)]
    for i, k in enumerate(out):
        if not 1 <= k <= MAX_CODEBOOK_SIZE:
            raise ValueError(f"codebook_sizes[{i}] must be in [1, 2**20], got {k}")
    return out


def _check_counts(counts: Any, sizes: list[int]) -> list[list[int]]:
    if not isinstance(counts, (list, tuple)) or len(counts) != len(sizes):
        raise ValueError(f"histogram model needs one counts list per codebook ({len(sizes)})")
    out = []
    for i, (c, k) in enumerate(zip(counts, sizes)):
        arr = np.asarray(c)
        if arr.ndim != 1 or arr.shape[0] != k:
            raise ValueError(f"counts[{i}] must hold {k} entries, got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise ValueError(f"counts[{i}] must be integers, got dtype {arr.dtype}")
        if k and arr.min() < 1:
            raise ValueError(f"counts[{i}] must be positive (every symbol must be encodable)")
        out.append(arr.astype(np.int64).tolist())
    return out


def _unpack_levels(text: Any, n: int) -> np.ndarray:
    """base64(zlib(level bytes)) -> ``n`` levels; bounded so a zip bomb cannot expand."""
    if not isinstance(text, str):
        raise ValueError(f"entropy model header: 'levels' must be a string, got {type(text).__name__}")
    try:
        packed = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"entropy model header: 'levels' is not valid base64 ({exc})") from None
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(packed, n + 1)  # one extra byte reveals an over-long table
    except zlib.error as exc:
        raise ValueError(f"entropy model header: 'levels' is not valid zlib data ({exc})") from None
    if len(raw) != n or not inflater.eof or inflater.unused_data:
        raise ValueError(
            f"entropy model header: 'levels' must decode to exactly {n} bytes "
            f"(one per symbol), got {len(raw)}{'+' if inflater.unconsumed_tail else ''}"
        )
    levels = np.frombuffer(raw, dtype=np.uint8)
    if n and levels.max() > MAX_LEVEL:
        raise ValueError(f"entropy model header: level {levels.max()} exceeds {MAX_LEVEL}")
    return levels.astype(np.int64)


def _counts_to_levels(counts: np.ndarray) -> np.ndarray:
    """Exact inverse of the level table; counts off the table cannot be stored."""
    levels = np.searchsorted(_LEVEL_COUNTS, counts)
    inside = levels <= MAX_LEVEL
    exact = inside & (_LEVEL_COUNTS[np.minimum(levels, MAX_LEVEL)] == counts)
    if not exact.all():
        raise ValueError(
            "histogram counts are not on the log-scale level table; build the model with "
            "fit_histogram() or pass counts through quantize_counts()"
        )
    return levels


def _check_codes(codes: Any, model: EntropyModel) -> np.ndarray:
    """Codes as a C-contiguous int64 numpy array, or ValueError saying what is wrong."""
    if isinstance(codes, torch.Tensor):
        if codes.dtype == torch.bool or codes.is_floating_point() or codes.is_complex():
            raise ValueError(f"codes must have an integer dtype, got {codes.dtype}")
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"codes must have an integer dtype, got {arr.dtype}")
    if not 2 <= arr.ndim <= MAX_NDIM:
        raise ValueError(f"codes must be (B, n_codebooks, *spatial) with 2..{MAX_NDIM} dims, got {arr.shape}")
    if arr.shape[1] != len(model.codebook_sizes):
        raise ValueError(
            f"codes have {arr.shape[1]} codebooks (axis 1) but the model has {len(model.codebook_sizes)}"
        )
    if arr.size > MAX_SYMBOLS:
        raise ValueError(f"codes hold {arr.size} symbols, more than {MAX_SYMBOLS}")
    if arr.size:
        per_cb = _codebook_major(arr)
        lo, hi = per_cb.min(axis=1), per_cb.max(axis=1)
        for i, k in enumerate(model.codebook_sizes):
            if lo[i] < 0 or hi[i] >= k:
                raise ValueError(
                    f"codebook {i} holds values in [{int(lo[i])}, {int(hi[i])}], outside [0, {k})"
                )
    return arr.astype(np.int64, copy=False)


def _check_decode_shape(shape: Any, model: EntropyModel) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)):
        raise ValueError(f"shape must be a tuple of ints, got {type(shape).__name__}")
    if not 2 <= len(shape) <= MAX_NDIM:
        raise ValueError(f"shape must have 2..{MAX_NDIM} dims, got {len(shape)}")
    dims = tuple(_as_int(s, f"shape[{i}]") for i, s in enumerate(shape))
    if any(s < 0 for s in dims):
        raise ValueError(f"shape must be non-negative, got {dims}")
    if dims[1] != len(model.codebook_sizes):
        raise ValueError(f"shape has {dims[1]} codebooks but the model has {len(model.codebook_sizes)}")
    if math.prod(dims) > MAX_SYMBOLS:
        raise ValueError(f"shape {dims} holds more than {MAX_SYMBOLS} symbols")
    return dims


# --------------------------------------------------------------------------- models


def uniform_model(codebook_sizes: Sequence[int]) -> EntropyModel:
    """Every symbol of codebook ``i`` costs ``log2(K_i)`` bits."""
    return EntropyModel("uniform", list(codebook_sizes))


def quantize_counts(counts: Any) -> list[int]:
    """Snap non-negative counts to the nearest (in log scale) storable level counts.

    The largest count maps to the top level; zeros and counts more than 20 octaves
    below it map to the bottom level, so every symbol stays encodable.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or (c.size and c.min() < 0):
        raise ValueError("counts must be a 1-D array of finite non-negative numbers")
    levels = np.zeros(c.shape, dtype=np.int64)
    seen = c > 0
    if seen.any():
        target = np.log2(c[seen] / c.max()) + _LOG_LEVEL_COUNTS[-1]
        hi = np.clip(np.searchsorted(_LOG_LEVEL_COUNTS, target), 1, MAX_LEVEL)
        # nearest of the two neighbouring levels, measured in log2 (bits of code length)
        pick_lo = (target - _LOG_LEVEL_COUNTS[hi - 1]) < (_LOG_LEVEL_COUNTS[hi] - target)
        levels[seen] = np.where(pick_lo, hi - 1, hi)
    return _LEVEL_COUNTS[levels].tolist()


def fit_histogram(codes: Any, codebook_sizes: Sequence[int]) -> EntropyModel:
    """Per-codebook histogram of ``codes``, quantized to storable counts (all >= 1)."""
    sizes = _check_codebook_sizes(list(codebook_sizes))
    arr = _check_codes(codes, EntropyModel("uniform", sizes))
    per_cb = _codebook_major(arr)
    counts = [quantize_counts(np.bincount(per_cb[i], minlength=k)) for i, k in enumerate(sizes)]
    return EntropyModel("histogram", sizes, counts)


def best_model(codes: Any, codebook_sizes: Sequence[int]) -> EntropyModel:
    """Histogram or uniform, whichever makes payload + header smaller (estimated)."""
    candidates = [uniform_model(codebook_sizes), fit_histogram(codes, codebook_sizes)]
    return min(candidates, key=lambda m: information_bits(codes, m) / 8 + m.header_bytes())


def information_bits(codes: Any, model: EntropyModel) -> float:
    """Ideal code length ``-sum log2 p(code)`` of ``codes`` under ``model``, in bits."""
    arr = _check_codes(codes, model)
    per_cb = _codebook_major(arr)
    total = 0.0
    for i, k in enumerate(model.codebook_sizes):
        if k == 1 or per_cb.shape[1] == 0:
            continue
        if model.kind == "uniform":
            total += per_cb.shape[1] * math.log2(k)
        else:
            hist = np.bincount(per_cb[i], minlength=k)
            total -= float(hist @ np.log2(model.probabilities(i)))
    return total


# --------------------------------------------------------------------------- coding


def _codebook_major(arr: np.ndarray) -> np.ndarray:
    """(B, n_cb, *spatial) -> (n_cb, B * prod(spatial)): the coding order."""
    return np.moveaxis(arr, 1, 0).reshape(arr.shape[1], -1)


def _coder_model(model: EntropyModel, i: int) -> Any:
    """The constriction model for codebook ``i`` (built identically on both sides)."""
    k = model.codebook_sizes[i]
    if model.kind == "uniform":
        return _models.Uniform(k)
    return _models.Categorical(np.asarray(model.counts[i], dtype=np.float64), perfect=False)


class RangeWriter:
    """A range-coded stream written piece by piece, each piece under its own model.

    For context-adaptive coding (the image codec's transformer context model): the
    reader decodes the pieces in the same order, so a piece's probabilities may depend
    on every symbol read before it. ``probabilities`` is either one table (K,) shared by
    all symbols of the piece, or one row per symbol (n, K), float64; both sides must pass
    bit-identical tables.
    """

    def __init__(self) -> None:
        self._encoder = _queue.RangeEncoder()

    def write(self, symbols: Any, probabilities: Any) -> None:
        symbols = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
        if symbols.size == 0:
            return
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim == 1:
            self._encoder.encode(symbols, _models.Categorical(probabilities, perfect=False))
        else:
            self._encoder.encode(symbols, _models.Categorical(perfect=False), probabilities)

    def write_with(self, symbols: Any, coder_model: Any) -> None:
        """Symbols under any constriction model (e.g. ``QuantizedGaussian`` for weights)."""
        symbols = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
        if symbols.size:
            self._encoder.encode(symbols, coder_model)

    def write_model(self, symbols: Any, model: EntropyModel, i: int) -> None:
        """Symbols of codebook ``i`` under a static ``EntropyModel``."""
        if model.codebook_sizes[i] > 1:  # a 1-symbol alphabet carries no information (and constriction needs K >= 2)
            symbols = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
            if symbols.size:
                self._encoder.encode(symbols, _coder_model(model, i))

    def getvalue(self) -> bytes:
        words = np.asarray(self._encoder.get_compressed(), dtype=">u4").tobytes()
        # The sealed stream's last word usually ends in zero bytes; the reader pads them back.
        trim = min(len(words) - len(words.rstrip(b"\x00")), 3)
        return words[: len(words) - trim]


class RangeReader:
    """Reads what ``RangeWriter`` wrote, piece by piece; ValueError when corrupt."""

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"payload must be bytes, got {type(data).__name__}")
        data = bytes(data)
        padded = data + b"\x00" * (-len(data) % 4)
        self._decoder = _queue.RangeDecoder(np.frombuffer(padded, dtype=">u4").astype(np.uint32))

    def _guard(self, fn):
        try:
            return fn()
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except BaseException as exc:  # constriction raises Rust panics as BaseException
            raise ValueError(f"corrupt payload: range decoder failed ({exc})") from exc

    def read(self, n: int, probabilities: Any) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim == 1:
            out = self._guard(lambda: self._decoder.decode(_models.Categorical(probabilities, perfect=False), n))
        else:
            out = self._guard(lambda: self._decoder.decode(_models.Categorical(perfect=False), probabilities))
        return np.asarray(out, dtype=np.int64)

    def read_with(self, n: int, coder_model: Any) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._guard(lambda: self._decoder.decode(coder_model, n)), dtype=np.int64)

    def read_model(self, n: int, model: EntropyModel, i: int) -> np.ndarray:
        if model.codebook_sizes[i] == 1 or n == 0:
            return np.zeros(n, dtype=np.int64)
        return np.asarray(self._guard(lambda: self._decoder.decode(_coder_model(model, i), n)), dtype=np.int64)

    def finish(self) -> None:
        """A valid stream is fully consumed once its symbols are decoded; leftovers mean
        the payload, its shape or its model is wrong (range coding cannot catch all cases)."""
        if not self._guard(self._decoder.maybe_exhausted):
            raise ValueError("corrupt payload: data left over after decoding all symbols")


def min_symbol_bits(model: EntropyModel, i: int) -> float:
    """A lower bound on the bits the range coder spends on any one symbol of codebook ``i``.

    Uniform: each symbol gets ``ceil(2^24 / K)`` quanta at most. Histogram: the most
    probable symbol is the cheapest; after quantization it keeps at most ``1 - (K - 1)``
    quanta and at most its own probability plus ``K`` quanta (rounding moves it by less).
    A codebook with one entry costs nothing (and is not coded)."""
    k = model.codebook_sizes[i]
    if k == 1:
        return 0.0
    quantum = 2.0**-CODER_PRECISION
    if model.kind == "uniform":
        p = math.ceil(2**CODER_PRECISION / k) * quantum
    else:
        counts = model.counts[i]
        p = min(1.0 - (k - 1) * quantum, max(counts) / sum(counts) + k * quantum)
    return -math.log2(min(p, 1.0))


def check_capacity(n_bytes: int, symbols: Sequence[tuple[int, EntropyModel, int]]) -> None:
    """ValueError unless ``n_bytes`` of range-coded payload can hold ``symbols``: ``(n,
    model, i)`` for n symbols of codebook ``i`` under ``model``. A cheap check before any
    decoding or allocation, so a header cannot claim more codes than its payload codes."""
    need = sum(n * min_symbol_bits(model, i) for n, model, i in symbols)
    if need > 8 * n_bytes + CODER_SLACK_BITS:
        raise ValueError(
            f"a {n_bytes}-byte payload cannot hold the codes the header claims "
            f"(they need at least {math.ceil(need / 8)} bytes under its code model)"
        )


def encode(codes: Any, model: EntropyModel) -> bytes:
    """Range-code ``codes`` (B, n_codebooks, *spatial) under ``model`` into bytes."""
    arr = _check_codes(codes, model)
    if arr.size == 0:
        return b""
    per_cb = _codebook_major(arr)
    writer = RangeWriter()
    for i in range(len(model.codebook_sizes)):
        writer.write_model(per_cb[i], model, i)
    return writer.getvalue()


def decode(data: bytes, shape: Sequence[int], model: EntropyModel) -> torch.Tensor:
    """Inverse of ``encode``: bytes -> int64 tensor of ``shape``; ValueError if corrupt."""
    dims = _check_decode_shape(shape, model)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"payload must be bytes, got {type(data).__name__}")
    n_per_cb = math.prod(dims) // dims[1] if dims[1] else 0
    coded = [i for i, k in enumerate(model.codebook_sizes) if k > 1]
    check_capacity(memoryview(data).nbytes, [(n_per_cb, model, i) for i in coded])
    out = np.zeros((dims[1], n_per_cb), dtype=np.int64)
    if n_per_cb == 0 or not coded:
        if data:
            raise ValueError(f"corrupt payload: {len(data)} bytes for codes that need none")
        return _to_layout(out, dims)
    reader = RangeReader(data)
    for i in coded:
        out[i] = reader.read_model(n_per_cb, model, i)
    reader.finish()
    return _to_layout(out, dims)


def _to_layout(per_cb: np.ndarray, dims: tuple[int, ...]) -> torch.Tensor:
    """(n_cb, B * prod(spatial)) -> (B, n_cb, *spatial) LongTensor."""
    cb_first = per_cb.reshape((dims[1], dims[0]) + dims[2:])
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(cb_first, 0, 1)))


# --------------------------------------------------------------------------- model prior


class CodePrior(nn.Module):
    """Each codebook's code histogram over training data, kept inside the model.

    A static prior in the style of CompressAI's entropy bottleneck tables: files coded
    with it carry no table (their header says ``{"kind": "prior"}``), and since it is a
    buffer of the model, the weights hash that a file records covers it. Zero counts
    mean "not fitted"; ``update`` accumulates codes, ``entropy_model`` quantizes the
    counts (+1 each, so every code stays encodable) into an ``EntropyModel``.
    """

    def __init__(self, codebook_sizes: Sequence[int]):
        super().__init__()
        self.codebook_sizes = _check_codebook_sizes(list(codebook_sizes))
        self.register_buffer("counts", torch.zeros(len(self.codebook_sizes), max(self.codebook_sizes), dtype=torch.float64))

    @property
    def fitted(self) -> bool:
        return bool(self.counts.sum() > 0)

    @torch.no_grad()
    def update(self, codes: torch.Tensor) -> None:
        """Add the codes ``(B, n, *spatial)`` (n <= number of codebooks) to the counts."""
        for i in range(codes.shape[1]):
            k = self.codebook_sizes[i]
            self.counts[i, :k] += torch.bincount(codes[:, i].reshape(-1).cpu(), minlength=k).to(self.counts)

    def entropy_model(self, n_codebooks: int) -> EntropyModel:
        if not self.fitted:
            raise ValueError("this model has no fitted code prior")
        sizes = self.codebook_sizes[:n_codebooks]
        counts = [quantize_counts(self.counts[i, :k].cpu().numpy() + 1.0) for i, k in enumerate(sizes)]
        return EntropyModel("histogram", sizes, counts)

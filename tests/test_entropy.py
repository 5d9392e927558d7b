"""Tests for codecgen.nn.entropy: lossless range coding of codes, model headers, sizes."""

from __future__ import annotations

import base64
import json
import math
import zlib

import numpy as np
import pytest
import torch

from codecgen.nn import entropy as E

torch.set_num_threads(1)

MIXED_SIZES = [2, 1024, 16384, 1]
SHAPES = {  # (B, n_codebooks, *spatial) for 1-D, 2-D and 3-D codes
    "1d": (2, 4, 300),
    "2d": (2, 4, 12, 10),
    "3d": (1, 4, 3, 8, 6),
}


def random_codes(shape, sizes, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.empty(shape, dtype=torch.long)
    for i, k in enumerate(sizes):
        codes[:, i] = torch.randint(0, k, codes[:, i].shape, generator=gen)
    return codes


def geometric_codes(shape, k, p, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.minimum(rng.geometric(p, size=shape) - 1, k - 1)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("layout", list(SHAPES))
@pytest.mark.parametrize("kind", ["uniform", "histogram"])
def test_round_trip_mixed_sizes(layout, kind):
    codes = random_codes(SHAPES[layout], MIXED_SIZES, seed=len(layout))
    model = E.uniform_model(MIXED_SIZES) if kind == "uniform" else E.fit_histogram(codes, MIXED_SIZES)
    data = E.encode(codes, model)
    back = E.decode(data, tuple(codes.shape), model)
    assert back.dtype == torch.long and back.shape == codes.shape
    assert torch.equal(back, codes)


@pytest.mark.parametrize("kind", ["uniform", "histogram"])
def test_round_trip_through_header_json(kind):
    codes = random_codes((1, 4, 7, 9), MIXED_SIZES, seed=3)
    model = E.uniform_model(MIXED_SIZES) if kind == "uniform" else E.fit_histogram(codes, MIXED_SIZES)
    data = E.encode(codes, model)
    rebuilt = E.EntropyModel.from_header(json.loads(json.dumps(model.to_header())))
    assert rebuilt == model
    assert torch.equal(E.decode(data, codes.shape, rebuilt), codes)


@pytest.mark.parametrize(
    "shape, sizes",
    [
        ((1, 1, 1), [2]),  # one symbol
        ((1, 1, 1), [1]),  # one symbol that carries no information
        ((1, 2, 5), [1, 1]),  # only K = 1 codebooks
        ((1, 1, 2000), [2**16]),
        ((1, 1, 64), [2**20]),
        ((3, 2), [5, 7]),  # no spatial axes
    ],
)
@pytest.mark.parametrize("kind", ["uniform", "histogram"])
def test_round_trip_edge_cases(shape, sizes, kind):
    codes = random_codes(shape, sizes, seed=7)
    model = E.uniform_model(sizes) if kind == "uniform" else E.fit_histogram(codes, sizes)
    assert torch.equal(E.decode(E.encode(codes, model), shape, model), codes)


@pytest.mark.parametrize("shape", [(0, 2, 5), (1, 2, 0), (2, 2, 3, 0)])
def test_empty_codes_give_empty_payload(shape):
    model = E.uniform_model([4, 8])
    assert E.encode(torch.zeros(shape, dtype=torch.long), model) == b""
    out = E.decode(b"", shape, model)
    assert out.shape == shape and out.dtype == torch.long


def test_numpy_input_and_all_zero_codes():
    codes = np.zeros((1, 2, 500), dtype=np.int32)
    model = E.fit_histogram(codes, [1024, 3])
    data = E.encode(codes, model)
    assert len(data) < 20  # a near-certain symbol costs almost nothing
    assert np.array_equal(E.decode(data, codes.shape, model).numpy(), codes)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("k", [2, 3, 1024, 16384])
def test_uniform_payload_near_log2k_bound(k):
    codes = random_codes((2, 1, 2500), [k], seed=k)
    data = E.encode(codes, E.uniform_model([k]))
    bound = codes.numel() * math.log2(k) / 8
    assert bound - 1 <= len(data) <= bound * 1.01 + 8


def test_histogram_beats_uniform_on_skewed_codes():
    sizes = [1024] * 4
    codes = geometric_codes((1, 4, 6000), 1024, p=0.02)
    hist, uni = E.fit_histogram(codes, sizes), E.uniform_model(sizes)
    hist_bytes, uni_bytes = len(E.encode(codes, hist)), len(E.encode(codes, uni))
    assert hist_bytes + hist.header_bytes() < uni_bytes
    assert E.best_model(codes, sizes).kind == "histogram"
    # the ideal code length predicts the real size closely
    ideal = E.information_bits(codes, hist) / 8
    assert abs(hist_bytes - ideal) <= 0.02 * ideal + 8
    # and the quantized table costs little over the empirical entropy
    empirical = 0.0
    for i in range(4):
        p = np.bincount(codes[0, i], minlength=1024) / codes.shape[-1]
        p = p[p > 0]
        empirical -= codes.shape[-1] * float(p @ np.log2(p)) / 8
    assert ideal <= empirical * 1.005


def test_best_model_prefers_uniform_for_short_uniform_codes():
    codes = random_codes((1, 4, 50), [1024] * 4)
    assert E.best_model(codes, [1024] * 4).kind == "uniform"


def test_histogram_header_is_compact():
    codes = geometric_codes((1, 4, 20000), 1024, p=0.005, seed=1)
    header = E.fit_histogram(codes, [1024] * 4).to_header()
    assert set(header) == {"kind", "codebook_sizes", "levels"}
    assert len(json.dumps(header)) < 4000  # a plain JSON list of counts is ~20 KB


def test_information_bits_uniform_is_exact():
    codes = random_codes((2, 2, 10), [8, 1])
    assert E.information_bits(codes, E.uniform_model([8, 1])) == pytest.approx(2 * 10 * 3)


def test_quantize_counts_keeps_every_symbol_encodable():
    counts = E.quantize_counts([0, 1, 10**9, 5, 0])
    assert all(c >= 1 for c in counts)
    assert counts[2] == max(counts) and counts[0] == counts[4] == min(counts)


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    "codes",
    [
        torch.tensor([[[0, 4]]]),  # value >= K
        torch.tensor([[[0, -1]]]),  # negative
        torch.tensor([[[0.0, 1.0]]]),  # float dtype
        torch.tensor([[[True, False]]]),  # bool dtype
        torch.zeros(1, 2, 3, dtype=torch.long),  # wrong codebook count
        torch.zeros(4, dtype=torch.long),  # no codebook axis
    ],
)
def test_invalid_codes_raise(codes):
    model = E.uniform_model([4])
    with pytest.raises(ValueError):
        E.encode(codes, model)
    with pytest.raises(ValueError):
        E.information_bits(codes, model)


def test_invalid_codes_for_fit_histogram():
    with pytest.raises(ValueError):
        E.fit_histogram(np.array([[[5]]]), [4])


@pytest.mark.parametrize(
    "shape",
    [(1, 2, 3), (1,), (1, 1, -3), (1, 1, 2.0), (1, 1, True), "abc", (2**20, 1, 2**20), (1,) * 9],
)
def test_decode_rejects_bad_shapes(shape):
    with pytest.raises(ValueError):
        E.decode(b"\x00", shape, E.uniform_model([4]))


def _levels(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw)).decode()


@pytest.mark.parametrize(
    "header",
    [
        None,
        [],
        {"kind": "gaussian", "codebook_sizes": [4]},
        {"kind": "uniform"},
        {"kind": "uniform", "codebook_sizes": 4},
        {"kind": "uniform", "codebook_sizes": []},
        {"kind": "uniform", "codebook_sizes": [0]},
        {"kind": "uniform", "codebook_sizes": [2**20 + 1]},
        {"kind": "uniform", "codebook_sizes": [4.0]},
        {"kind": "uniform", "codebook_sizes": [True]},
        {"kind": "uniform", "codebook_sizes": ["4"]},
        {"kind": "uniform", "codebook_sizes": [2] * 4097},
        {"kind": "uniform", "codebook_sizes": [4], "extra": 1},
        {"kind": "histogram", "codebook_sizes": [4]},
        {"kind": "histogram", "codebook_sizes": [4], "levels": 7},
        {"kind": "histogram", "codebook_sizes": [4], "levels": "not base64!"},
        {"kind": "histogram", "codebook_sizes": [4], "levels": base64.b64encode(b"notzlib").decode()},
        {"kind": "histogram", "codebook_sizes": [4], "levels": _levels(b"\x00" * 3)},  # short
        {"kind": "histogram", "codebook_sizes": [4], "levels": _levels(b"\x00" * 5)},  # long
        {"kind": "histogram", "codebook_sizes": [4], "levels": _levels(b"\x00" * 10**7)},  # bomb
        {"kind": "histogram", "codebook_sizes": [4], "levels": _levels(b"\x00\x01\x02\xff")},
        {"kind": "histogram", "codebook_sizes": [4], "levels": _levels(b"\x00" * 4) + "AAAA"},
    ],
)
def test_from_header_rejects_corrupt_dicts(header):
    with pytest.raises(ValueError):
        E.EntropyModel.from_header(header)


def test_model_constructor_validates_counts():
    with pytest.raises(ValueError):
        E.EntropyModel("histogram", [3], [[1, 0, 2]])  # zero count: symbol not encodable
    with pytest.raises(ValueError):
        E.EntropyModel("histogram", [3], [[1, 2]])  # wrong length
    with pytest.raises(ValueError):
        E.EntropyModel("histogram", [3], None)
    with pytest.raises(ValueError):  # counts off the storable table cannot be serialised
        E.EntropyModel("histogram", [3], [[1, 3, 1000003]]).to_header()


@pytest.mark.parametrize("kind", ["uniform", "histogram"])
def test_decoding_garbage_raises_or_returns(kind):
    rng = np.random.default_rng(0)
    codes = geometric_codes((1, 2, 400), 256, p=0.05)
    model = E.uniform_model([256, 256]) if kind == "uniform" else E.fit_histogram(codes, [256, 256])
    valid = E.encode(codes, model)
    candidates = [rng.bytes(n) for n in (0, 1, 3, 17, 500, 5000)]
    candidates += [valid[: len(valid) // 2], valid + b"\x01\x02\x03\x04" * 4]
    for data in candidates:
        try:
            out = E.decode(data, codes.shape, model)
        except ValueError:
            continue
        assert out.shape == codes.shape
        assert int(out.min()) >= 0 and int(out.max()) < 256


# --------------------------------------------------------------------------- the payload bounds the symbols


def test_cheapest_possible_payloads_still_decode():
    """The capacity bound never refuses a real file: codes made only of each model's
    cheapest symbol, under tables as skewed as the level table allows."""
    rng = np.random.default_rng(0)
    for trial in range(40):
        k = int(rng.choice([2, 3, 8, 64, 1024]))
        n = int(rng.integers(1, 300_000))
        counts = np.exp(rng.normal(0, rng.uniform(0.1, 8), k))
        counts[rng.integers(k)] *= 10 ** rng.uniform(0, 8)
        model = E.EntropyModel("histogram", [k], [E.quantize_counts(counts)])
        top = int(np.argmax(model.counts[0]))
        codes = np.full((1, 1, n), top)
        data = E.encode(codes, model)
        assert 8 * len(data) + E.CODER_SLACK_BITS >= n * E.min_symbol_bits(model, 0)
        assert torch.equal(E.decode(data, codes.shape, model), torch.from_numpy(codes))
    for k in (2, 3, 7, 1000, 2**20):
        codes = np.zeros((1, 1, 50_000), dtype=np.int64)
        data = E.encode(codes, E.uniform_model([k]))
        assert torch.equal(E.decode(data, codes.shape, E.uniform_model([k])), torch.from_numpy(codes))


def test_a_shape_the_payload_cannot_hold_is_refused_before_allocating():
    import tracemalloc

    model = E.uniform_model([64, 64])
    data = E.encode(torch.randint(0, 64, (1, 2, 40)), model)
    tracemalloc.start()
    with pytest.raises(ValueError, match="cannot hold"):
        E.decode(data, (1, 2, 10**9), model)  # was a 16 GB array
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    skewed = E.EntropyModel("histogram", [64, 64], [E.quantize_counts([1000] + [1] * 63)] * 2)
    with pytest.raises(ValueError, match="cannot hold"):
        E.decode(data, (1, 2, 10**6), skewed)
    assert E.min_symbol_bits(E.uniform_model([1]), 0) == 0.0  # a 1-entry codebook is not coded


def test_min_symbol_bits_matches_the_model():
    assert E.min_symbol_bits(E.uniform_model([1024]), 0) == pytest.approx(10.0)
    assert E.min_symbol_bits(E.uniform_model([3]), 0) == pytest.approx(np.log2(3), abs=1e-6)
    model = E.EntropyModel("histogram", [4], [E.quantize_counts([8, 4, 2, 2])])
    p = max(model.counts[0]) / sum(model.counts[0])
    assert -np.log2(p) - 1e-4 < E.min_symbol_bits(model, 0) <= -np.log2(p)

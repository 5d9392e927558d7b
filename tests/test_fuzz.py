"""Fuzzing the file readers (audio, SemantiCodec, image, video) with mutated ``.cgc`` files.

Seed files are made by tiny models with random weights (the tiny configs), then mutated
(seeded): bit flips and truncations (the CRC catches them), foreign and garbage files,
payloads and headers edited with the CRC recomputed (numbers replaced by 0, -1, huge,
NaN, infinity, strings, lists, nested junk; fields deleted or added), and decompression
bombs (a few hundred bytes claiming hours of audio, gigapixel images, 10^5 video frames).

Every mutant must either decode or be refused with one clean ``BitstreamError`` or
``CodecError``, within ``MAX_DECODE_SECONDS`` and ``MAX_DECODE_MB`` of memory growth
(peak RSS of the process, which covers torch and numpy, reset before each decode).
``CODECGEN_FUZZ_N`` sets the mutants per file kind (default 500; thousands for a long
local run; a fifth of it for SemantiCodec, whose decodes sample) and ``CODECGEN_FUZZ_SEED`` the seed.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import struct
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from codecgen.codecs import bitstream
from codecgen.codecs.base import CodecError
from codecgen.codecs.limits import DEFAULT_LIMITS, DecodeLimitError, DecodeLimits
from codecgen.config import build
from codecgen.nn import entropy

ROOT = Path(__file__).resolve().parent.parent
N_MUTANTS = int(os.environ.get("CODECGEN_FUZZ_N", "500"))
SEED = int(os.environ.get("CODECGEN_FUZZ_SEED", "0"))
MAX_DECODE_SECONDS = 5.0
MAX_DECODE_MB = 300
# the seeds are tiny: limits a little above them keep every accepted mutant cheap to decode
LIMITS = DecodeLimits(max_seconds=4.0, max_pixels=160 * 160, max_frames=32, max_frame_pixels=64 * 64)
CLEAN = (bitstream.BitstreamError, CodecError)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- measuring


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """Peak RSS growth (MB) over a block: Linux's resettable high-water mark (VmHWM,
    reset through /proc/self/clear_refs), else the process's ru_maxrss (new peaks only)."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.base, self.exact = _status_kb("VmRSS"), True
        except OSError:
            self.base, self.exact = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
        return self

    def __exit__(self, *exc):
        peak = _status_kb("VmHWM") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.mb = max(0, peak - self.base) / 1024
        return False


def attempt(decode, data: bytes, what: str) -> str:
    """Decode one mutant: 'decoded', or 'refused' with a clean error; anything else, or
    too much time or memory, fails with ``what`` (the mutation) in the message."""
    began = time.perf_counter()
    with PeakMemory() as memory:
        try:
            decode(data)
            outcome = "decoded"
        except CLEAN:
            outcome = "refused"
        except Exception:
            raise AssertionError(f"{what}: unclean error\n{traceback.format_exc()}") from None
    seconds = time.perf_counter() - began
    assert seconds < MAX_DECODE_SECONDS, f"{what}: decoding took {seconds:.1f} s"
    assert memory.mb < MAX_DECODE_MB, f"{what}: decoding grew memory by {memory.mb:.0f} MB"
    return outcome


# ----------------------------------------------------------------------------- mutations

BIG = "__1e999__"  # written as the JSON number 1e999, which Python's json reads as inf
JUNK = [0, -1, 1, 2, 3, 255, 65536, 2**31, 2**63, 10**30, 10**400, 1e308, -1e308, 0.5, -0.5, 1e-300,
        float("nan"), float("inf"), BIG, True, False, None, "", "x", "audio", "image", "video", "prior",
        "context", "a" * 5000, "\udbff", [], [0], [1, 2, 3], [-1], [[]], [None] * 50, {}, {"a": 1},
        {"class_path": "os.system", "init_args": {"command": "true"}},
        {"class_path": "codecgen.nn.nerv.HNeRVDecoder", "init_args": {}}, [[[[[[[[[[1]]]]]]]]]]]


def _container(raw_header: bytes, payload: bytes) -> bytes:
    """A container with a correct CRC around any header bytes."""
    body = bitstream.MAGIC + struct.pack("<HI", bitstream.FORMAT_VERSION, len(raw_header)) + raw_header
    body += struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def _repack(header, payload: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":"), allow_nan=True, ensure_ascii=False)
    raw = text.replace(json.dumps(BIG), "1e999").encode("utf-8", "surrogatepass")
    return _container(raw, payload)


def _children(node) -> list:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


def _mutate_header(rng: random.Random, header: dict) -> tuple[dict, str]:
    """One edit at a random place of a deep copy: a top-level field, then deeper with
    probability 0.6 a level (so every field is hit, not mostly the longest lists)."""
    header = json.loads(json.dumps(header))
    parent, key = header, rng.choice(_children(header))
    path = [key]
    while _children(parent[key]) and rng.random() < 0.6:
        parent, key = parent[key], rng.choice(_children(parent[key]))
        path.append(key)
    value, where = parent[key], ".".join(map(str, path))
    op = rng.random()
    if op < 0.45:
        parent[key] = rng.choice(JUNK)
        return header, f"{where} = {str(parent[key])[:40]}"
    if op < 0.6:
        del parent[key]
        return header, f"delete {where}"
    if op < 0.7 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = rng.choice([value + 1, value - 1, value * 2, value * 1000, -value, value / 3, value * 10**9])
        return header, f"{where}: {value} -> {parent[key]}"
    if op < 0.8 and isinstance(value, str) and value:
        i = rng.randrange(len(value))
        parent[key] = value[:i] + rng.choice(["", "A", "/", "=", "\u00e9"]) + value[i + 1:]
        return header, f"{where}: edit character {i}"
    if op < 0.9 and isinstance(value, list):
        parent[key] = value + [rng.choice(value)] if value and rng.random() < 0.5 else value[: rng.randrange(len(value) + 1)]
        return header, f"{where}: list of {len(value)} -> {len(parent[key])}"
    target = value if isinstance(value, dict) else header
    target[rng.choice(["extra", "K", "mode", "kept", "levels", "init_args"])] = rng.choice(JUNK)
    return header, f"add a field under {where if target is value else 'the header'}"


def _grown(rng: random.Random, value: int, targets: list[int]) -> int:
    """A larger size: the seed's times a small factor, or one of the bombs' ``targets``."""
    return rng.choice([value * 2, value * 3, value * 1000, *targets])


def grow_audio(rng: random.Random, header: dict) -> dict:
    """A bomb: more frames, with the lengths made to agree (a lie no single edit makes)."""
    b, n, frames = header["codes_shape"]
    hop = math.ceil(header["length"] / frames)  # the seeds' hop (their lengths end within a frame)
    frames = _grown(rng, frames, [10**5, 10**6, 10**9, 2**31 // n])
    length = frames * hop - rng.randrange(hop)
    return {**header, "codes_shape": [b, n, frames], "length": length, "source_length": length}


def grow_image(rng: random.Random, header: dict) -> dict:
    w, h = header["size"]
    return {**header, "size": rng.choice([[w * 2, h], [w * 16, h * 16], [65536, 16384], [16384, 16384],
                                          [10000, 10000], [160, 160], [161, 160]])}


def grow_video(rng: random.Random, header: dict) -> dict:
    """More frames or larger ones, with the decoder spec and the embeddings' record made to agree."""
    header = json.loads(json.dumps(header))
    if rng.random() < 0.5:
        header["frames"] = _grown(rng, header["frames"], [32, 33, 10**5, 10**6])
    else:
        factor = rng.choice([2, 3, 1000, 4096])
        header["size"] = [v * factor for v in header["size"]]
        args = header["decoder"]["init_args"]
        if "frame_size" in args:
            args["frame_size"] = [v * factor for v in args["frame_size"]]
    for record in header["tensors"]:
        if record["name"] == "embeddings":
            f = math.prod(header["decoder"]["init_args"]["strides"])
            record["shape"] = [header["frames"], record["shape"][1], header["size"][1] // f, header["size"][0] // f]
    return header


def mutate(rng: random.Random, data: bytes, foreign: list[bytes], grow) -> tuple[bytes, str]:
    op = rng.random()
    if op < 0.12:  # flipped bits, CRC left as is
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out), "flipped bits"
    if op < 0.2:
        n = rng.randrange(len(data))
        return data[:n], f"truncated to {n} bytes"
    if op < 0.26:
        choice = rng.randrange(4)
        if choice == 0:
            return rng.choice(foreign), "a file of another kind"
        if choice == 1:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(200))), "random bytes"
        if choice == 2:
            return b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40), "a WAV header"
        return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))), "trailing garbage"
    header, payload = bitstream.unpack(data)
    if op < 0.4:  # the payload edited, CRC recomputed: reaches the range decoder
        payload = bytearray(payload)
        edit = rng.randrange(3)
        if edit == 0 and payload:
            for _ in range(rng.randint(1, 4)):
                payload[rng.randrange(len(payload))] = rng.randrange(256)
            what = "payload bytes replaced"
        elif edit == 1:
            payload = payload[: rng.randrange(len(payload) + 1)]
            what = f"payload truncated to {len(payload)} bytes"
        else:
            payload += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            what = "payload extended"
        return _repack(header, bytes(payload)), what + " (CRC recomputed)"
    if op < 0.48:
        return _repack(grow(rng, header), payload), "a bomb: sizes grown together (CRC recomputed)"
    header, what = _mutate_header(rng, header)
    if rng.random() < 0.25:  # two edits at once
        header, more = _mutate_header(rng, header)
        what += "; " + more
    return _repack(header, payload), what + " (CRC recomputed)"


def run_fuzz(decode, seeds: list[bytes], foreign: list[bytes], grow, n: int, seed: int) -> Counter:
    for i, data in enumerate(seeds):
        assert attempt(decode, data, f"seed {i}") == "decoded"
    rng = random.Random(seed)
    outcomes = Counter()
    for i in range(n):
        source = rng.randrange(len(seeds))
        data, what = mutate(rng, seeds[source], foreign, grow)
        outcomes[attempt(decode, data, f"mutant {i} of seed {source}: {what}")] += 1
    return outcomes


# ----------------------------------------------------------------------------- tiny models and seed files


def _tiny(config: str):
    spec = yaml.safe_load(open(ROOT / "configs" / config))["model"]
    spec["init_args"]["discriminator"] = None
    return build(spec).eval()


def _audio_file(model, codes: torch.Tensor, kind: str, trim: int = 100) -> bytes:
    sizes = model.quantizer.codebook_sizes[: codes.shape[1]]
    models = {"uniform": lambda: entropy.uniform_model(sizes), "histogram": lambda: entropy.fit_histogram(codes, sizes),
              "prior": lambda: model.code_prior.entropy_model(codes.shape[1])}
    code_model = models[kind]()
    length = codes.shape[-1] * model.hop_length - trim
    header = model.header(codes, length, model.sample_rate, length, code_model)
    if kind == "prior":
        header["entropy"] = {"kind": "prior"}
    return bitstream.pack(header, entropy.encode(codes, code_model))


@pytest.fixture(scope="module")
def audio():
    torch.manual_seed(SEED)
    model = _tiny("hificodec/tiny.yaml")
    k = model.quantizer.codebook_sizes[0]
    skewed = torch.where(torch.rand(1, 4, 30) < 0.9, 0, torch.randint(0, k, (1, 4, 30)))
    model.code_prior.update(skewed)
    model._weights_hash = None
    seeds = [
        model.compress(0.3 * torch.randn(1, 3000)),
        _audio_file(model, torch.randint(0, k, (1, 4, 20)), "uniform"),
        _audio_file(model, skewed[:, :2], "histogram"),
        _audio_file(model, skewed[:, :2, :25], "prior", trim=5),
    ]
    return model, seeds


@pytest.fixture(scope="module")
def image():
    from codecgen.codecs.image.loss_simulation import lost_positions

    torch.manual_seed(SEED)
    model = _tiny("vqgan/tiny.yaml")
    model._shrink_codebooks()
    for k in model.codebook_sizes:
        model.priors[str(k)].update(torch.where(torch.rand(4, 1, 8, 8) < 0.7, 1, torch.randint(0, k, (4, 1, 8, 8))))
    model._weights_hash = None
    picture = torch.rand(3, 40, 56)
    seeds = [model.compress(picture, k, entropy_kind=kind) for k, kind in ((64, "uniform"), (16, "prior"), (8, "context"))]
    seeds.append(model.compress(torch.rand(3, 33, 20), 16, mode="RGBA", alpha=torch.rand(1, 33, 20)))
    seeds.append(model.compress(picture, 64, mode="L"))
    seeds.append(model.damage(seeds[1], lost_positions(model.grid_shape(40, 56), 0.3, "burst", seed=0)))
    return model, seeds


def _video_codec(hybrid: bool):
    from codecgen.codecs.video.nerv import NeRVVideoCodec
    from codecgen.nn.nerv import ConvNeXtEncoder, HNeRVDecoder, NeRVDecoder

    if hybrid:
        decoder = HNeRVDecoder(embed_channels=2, strides=(2, 2), stem_channels=8, min_channels=4, boosted=True,
                               n_freqs=8)
        encoder = ConvNeXtEncoder(strides=(2, 2), dims=4, depths=1, embed_channels=2)
    else:
        decoder, encoder = NeRVDecoder(frame_size=(16, 24), strides=(2, 2), stem_channels=8, min_channels=4,
                                       n_freqs=8), None
    codec = NeRVVideoCodec(decoder, encoder, n_frames=5, frame_size=(16, 24), fps=12.5, stage="quantize")
    codec.embeddings.data.normal_()
    return codec


@pytest.fixture(scope="module")
def video():
    torch.manual_seed(SEED)
    seeds = []
    for hybrid in (True, False):
        codec = _video_codec(hybrid)
        codec.build_quantizers()
        seeds.append(codec.compress())
        codec.prune(0.4)
        seeds.append(codec.compress())
    return seeds


def decode_video(data: bytes, limits: DecodeLimits = LIMITS) -> None:
    from codecgen.codecs.video.nerv import DecodedVideo

    video = DecodedVideo(data, limits=limits)
    for frame in video.frames():  # a lying file may decode to garbage, but of the size it claims
        assert frame.shape == (3, video.height, video.width)


# ----------------------------------------------------------------------------- the fuzz runs


def _report(kind: str, outcomes: Counter, began: float) -> None:
    print(f"\n{kind}: {sum(outcomes.values())} mutants, {dict(outcomes)}, {time.perf_counter() - began:.1f} s")


def test_fuzz_audio(audio, image, video):
    model, seeds = audio
    began = time.perf_counter()
    outcomes = run_fuzz(lambda d: model.decompress(d, limits=LIMITS), seeds, [image[1][0], video[0]], grow_audio,
                        N_MUTANTS, SEED)
    _report("audio", outcomes, began)
    assert outcomes["refused"] and outcomes["decoded"]


@pytest.fixture(scope="module")
def semantic():
    """A tiny untrained SemantiCodec (k-means fitted on its own features) and two files."""
    torch.manual_seed(SEED)
    model = build(yaml.safe_load(open(ROOT / "configs" / "semanticodec" / "tiny.yaml"))["model"]).eval()
    model.tokenizer.fit_kmeans([0.3 * torch.randn(2, 1, model.window_samples) for _ in range(2)], iters=3)
    seeds = [model.compress(0.3 * torch.randn(1, 3000), steps=2), model.compress(0.3 * torch.randn(1, 12000))]
    return model, seeds


def test_fuzz_semanticodec(semantic, audio, image):
    model, seeds = semantic
    began = time.perf_counter()
    # one sampling step whatever the file asks for (a valid file may ask for 1000: slow, not hostile)
    outcomes = run_fuzz(lambda d: model.decompress(d, limits=LIMITS, steps=1), seeds, [audio[1][0], image[1][0]],
                        grow_audio, max(50, N_MUTANTS // 5), SEED)
    _report("semanticodec", outcomes, began)
    assert outcomes["refused"] and outcomes["decoded"]


def test_fuzz_image(audio, image, video):
    model, seeds = image
    began = time.perf_counter()
    rng = random.Random(SEED)
    outcomes = run_fuzz(lambda d: model.decompress(d, restore=rng.random() < 0.5, limits=LIMITS), seeds,
                        [audio[1][0], video[0]], grow_image, N_MUTANTS, SEED + 1)
    _report("image", outcomes, began)
    assert outcomes["refused"] and outcomes["decoded"]


def test_fuzz_video(audio, image, video):
    began = time.perf_counter()
    outcomes = run_fuzz(decode_video, video, [audio[1][0], image[1][0]], grow_video, N_MUTANTS, SEED + 2)
    _report("video", outcomes, began)
    assert outcomes["refused"] and outcomes["decoded"]


# ----------------------------------------------------------------------------- bombs and lies, by name


def _refused(decode, data: bytes, error=bitstream.BitstreamError, match: str | None = None) -> str:
    """``decode(data)`` must fail with ``error`` quickly and without a memory spike."""
    began = time.perf_counter()
    with PeakMemory() as memory:
        with pytest.raises(error, match=match) as info:
            decode(data)
    assert time.perf_counter() - began < MAX_DECODE_SECONDS and memory.mb < MAX_DECODE_MB
    return str(info.value)


def test_audio_bombs_are_refused_before_decoding(audio):
    model, seeds = audio
    header, payload = bitstream.unpack(seeds[1])  # uniform code: 6 bits a symbol

    def claiming(frames: int, **extra) -> bytes:
        length = frames * model.hop_length
        return bitstream.pack({**header, "codes_shape": [1, 4, frames], "length": length, "source_length": length,
                               **extra}, payload)

    decode = model.decompress
    # 10^9 frames: 5.6 years of audio from a 300-byte file (was a 16 GiB allocation)
    message = _refused(decode, claiming(10**9), DecodeLimitError, "--max-seconds")
    assert "over the 3 h limit" in message
    assert "5.56 h of audio" in _refused(decode, claiming(10**6), DecodeLimitError)
    # within the time limit, the payload bounds the frames: 6 bits x 4 codebooks a frame
    for frames in (10**5, 10**7):
        _refused(lambda d: model.decompress(d, limits=DecodeLimits(max_seconds=1e12)), claiming(frames),
                 match="cannot hold")
    histogram = bitstream.unpack(seeds[2])[0]  # a table whose cheapest symbol still costs something
    data = bitstream.pack({**histogram, "codes_shape": [1, 2, 10**6], "length": 10**6 * model.hop_length,
                           "source_length": 10**6 * model.hop_length}, bitstream.unpack(seeds[2])[1])
    _refused(lambda d: model.decompress(d, limits=DecodeLimits(max_seconds=1e12)), data, match="cannot hold")
    # lies the schema refuses
    for field, value in (("source_sample_rate", 0), ("source_length", 10**12), ("length", 1.5), ("length", True),
                         ("codes_shape", [1, 4]), ("codes_shape", [1, 4, -1]), ("entropy", {"kind": "prior", "x": 1}),
                         ("entropy", {"kind": "uniform", "levels": 5}), ("sample_rate", BIG), ("extra", 1)):
        _refused(decode, _repack({**header, field: value}, payload))
    _refused(decode, _repack({k: v for k, v in header.items() if k != "length"}, payload), match="'length' missing")
    # source and model-rate lengths that disagree (a decode that would stop short)
    _refused(decode, bitstream.pack({**header, "source_length": header["length"] * 50}, payload), match="does not match")


def test_image_bombs_are_refused_before_decoding(image):
    model, seeds = image
    header, payload = bitstream.unpack(seeds[0])  # K=64, uniform
    message = _refused(model.decompress, bitstream.pack({**header, "size": [65536, 16384]}, payload),
                       DecodeLimitError, "--max-pixels")
    assert "65536x16384" in message and "100 megapixel limit" in message
    # 100 megapixels is within the default limit, but a 6-bit index a 16 x 16 block is 293 KB
    _refused(model.decompress, bitstream.pack({**header, "size": [10000, 10000]}, payload), match="cannot hold")
    context = bitstream.unpack(seeds[2])
    _refused(model.decompress, bitstream.pack({**context[0], "size": [10000, 10000]}, context[1]), match="cannot hold")
    # a zlib bomb as the alpha plane: inflating stops one byte past the plane's size
    rgba_header, rgba_payload = bitstream.unpack(seeds[3])
    bomb = zlib.compress(bytes(50_000_000), 9)
    bombed = rgba_payload[: rgba_header["codes_bytes"]] + bomb
    _refused(model.decompress, bitstream.pack(rgba_header, bombed), match="alpha plane")
    for field, value in (("size", [64, 64, 3]), ("size", [0, 64]), ("K", 5), ("K", 64.0), ("weights_hash", "0"),
                         ("mode", "CMYK"), ("codes_bytes", -1), ("lost", 7), ("entropy", None)):
        _refused(model.decompress, _repack({**header, field: value}, payload))


def test_video_lies_are_refused_before_allocating(video):
    header, payload = bitstream.unpack(video[0])  # HNeRV
    nerv_header, nerv_payload = bitstream.unpack(video[2])  # NeRV
    spec, args = header["decoder"], header["decoder"]["init_args"]

    def bad(**fields):
        return bitstream.pack({**header, **fields}, payload)

    decode = decode_video
    assert "--max-frames" in _refused(lambda d: decode(d, DEFAULT_LIMITS), bad(frames=10**5), DecodeLimitError)
    assert "--max-pixels" in _refused(lambda d: decode(d, DEFAULT_LIMITS), bad(size=[16384, 16384]), DecodeLimitError)
    nerv_spec = nerv_header["decoder"]
    huge_nerv = {**nerv_header, "decoder": {**nerv_spec, "init_args": {**nerv_spec["init_args"],
                                                                       "frame_size": [10**9, 10**9]}}}
    _refused(decode, bitstream.pack(huge_nerv, nerv_payload), match="frame_size")
    for fps in (0, -1, 1e308, 1001):
        _refused(decode, bad(fps=fps), match="fps")
    cases = [
        {**spec, "init_args": [1, 2]},
        {**spec, "init_args": {**args, "strides": {"class_path": "codecgen.nn.nerv.HNeRVDecoder", "init_args": {}}}},
        {**spec, "init_args": {**args, "stem_channels": {"a": 1}}},
        {**spec, "init_args": {**args, "stem_channels": 4096, "strides": [16] * 8}},
        {**spec, "init_args": {**args, "reduction": 0.1, "strides": [2] * 8}},
        {**spec, "init_args": {**args, "k_min": 4}},
        {**spec, "init_args": {**args, "unknown": 1}},
        {"class_path": "codecgen.nn.nerv.ConvNeXtEncoder", "init_args": {}},
        {"class_path": "os.system", "init_args": {"command": "true"}},
        {"class_path": 5, "init_args": {}},
    ]
    for decoder in cases:
        _refused(decode, bad(decoder=decoder))
    records = header["tensors"]
    embedding = next(i for i, r in enumerate(records) if r["name"] == "embeddings")

    def with_record(i, **fields):
        return bad(tensors=records[:i] + [{**records[i], **fields}] + records[i + 1:])

    shape = records[embedding]["shape"]
    for wrong in (shape[:2], shape + [1], [shape[0] + 1] + shape[1:], [1] * 4):  # wrong rank or size
        _refused(decode, with_record(embedding, shape=wrong), match="shape")
    _refused(decode, bad(tensors=records + [records[0]]), match="twice")
    _refused(decode, bad(tensors=records[:-1]), match="missing")
    for field, value in (("std", 0), ("std", -1.0), ("mean", 1e6), ("step", 0), ("bits", 40), ("kept", 10**9)):
        _refused(decode, with_record(0, **{field: value}))


def test_valid_files_at_the_limits_decode(audio, image, video):
    """A file exactly at a limit decodes; one sample / pixel / frame more is refused."""
    model, seeds = audio
    header = bitstream.unpack(seeds[1])[0]
    seconds = header["length"] / model.sample_rate
    model.decompress(seeds[1], limits=DecodeLimits(max_seconds=seconds))
    _refused(lambda d: model.decompress(d, limits=DecodeLimits(max_seconds=seconds * 0.999)), seeds[1],
             DecodeLimitError)
    model, seeds = image
    model.decompress(seeds[0], limits=DecodeLimits(max_pixels=40 * 56))
    _refused(lambda d: model.decompress(d, limits=DecodeLimits(max_pixels=40 * 56 - 1)), seeds[0], DecodeLimitError)
    decode_video(video[0], DecodeLimits(max_frames=5, max_frame_pixels=16 * 24))
    for limits in (DecodeLimits(max_frames=4), DecodeLimits(max_frame_pixels=16 * 24 - 1)):
        _refused(lambda d: decode_video(d, limits), video[0], DecodeLimitError)
    codec = _video_codec(hybrid=False)  # any video codec reads any video file: the file is the decoder
    decoded = codec.decompress(video[0], limits=DecodeLimits(max_frames=5))
    assert decoded.shape == (5, 3, 16, 24) and torch.stack(list(decoded)).shape == decoded.shape
    _refused(lambda d: codec.decompress(d, limits=DecodeLimits(max_frames=4)), video[0], DecodeLimitError)


def test_decoder_schemas_name_every_constructor_argument():
    import inspect

    from codecgen.codecs.video.nerv import DECODER_SCHEMAS

    for cls, schema in DECODER_SCHEMAS.items():
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert set(schema.fields) == params, cls.__name__
        assert set(schema.optional) == params  # a file may omit any: the default stands in

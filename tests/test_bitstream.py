"""Tests for codecgen.codecs.bitstream: the .cgc container and its validation."""

from __future__ import annotations

import json
import os
import struct
import zlib

import pytest
import torch

from codecgen.codecs import bitstream as bs
from codecgen.codecs.bitstream import BitstreamError

torch.set_num_threads(1)

HEADER = {"model": "tiny", "codes_shape": [1, 2, 3], "sample_rate": 16000, "name": "é"}
PAYLOAD = bytes(range(40))


def build(header_raw: bytes, payload: bytes, version: int = 1, magic: bytes = bs.MAGIC) -> bytes:
    """A container with a correct CRC around arbitrary fields (to test each check alone)."""
    body = magic + struct.pack("<HI", version, len(header_raw)) + header_raw
    body += struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_pack_unpack_round_trip():
    data = bs.pack(HEADER, PAYLOAD)
    assert data[:4] == b"CGC\x00" and struct.unpack("<H", data[4:6]) == (1,)
    assert data == build(json.dumps(HEADER, separators=(",", ":"), ensure_ascii=False).encode(), PAYLOAD)
    assert bs.unpack(data) == (HEADER, PAYLOAD)
    assert bs.unpack(bs.pack({}, b"")) == ({}, b"")


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "x.cgc"
    bs.write(path, HEADER, bytearray(PAYLOAD))
    assert bs.read(path) == (HEADER, PAYLOAD)
    assert bs.read(str(path)) == (HEADER, PAYLOAD)
    assert os.listdir(tmp_path) == ["x.cgc"]


def test_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "x.cgc"
    bs.write(path, HEADER, PAYLOAD)
    with pytest.raises(FileExistsError):
        bs.write(path, {"other": 1}, b"new")
    assert bs.read(path) == (HEADER, PAYLOAD)
    bs.write(path, {"other": 1}, b"new", overwrite=True)
    assert bs.read(path) == ({"other": 1}, b"new")
    assert os.listdir(tmp_path) == ["x.cgc"]


@pytest.mark.parametrize(
    "header, payload",
    [(HEADER, "not bytes"), (HEADER, [1, 2]), ("not a dict", b""), ({"x": object()}, b""), ({"x": float("nan")}, b"")],
)
def test_failed_write_leaves_nothing(tmp_path, header, payload):
    path = tmp_path / "x.cgc"
    with pytest.raises((TypeError, BitstreamError)):
        bs.write(path, header, payload)
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_old_file(tmp_path):
    path = tmp_path / "x.cgc"
    bs.write(path, HEADER, PAYLOAD)
    with pytest.raises(TypeError):
        bs.write(path, HEADER, "not bytes", overwrite=True)
    assert os.listdir(tmp_path) == ["x.cgc"]
    assert bs.read(path) == (HEADER, PAYLOAD)


def test_every_truncation_is_rejected(tmp_path):
    data = bs.pack({"a": [1, 2]}, b"payload!")
    path = tmp_path / "t.cgc"
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            bs.unpack(data[:n])
        path.write_bytes(data[:n])
        with pytest.raises(BitstreamError, match="t.cgc"):
            bs.read(path)


def test_every_flipped_byte_is_rejected():
    data = bs.pack({"a": [1, 2]}, b"payload!")
    for i in range(len(data)):
        for mask in (0x01, 0x80):
            corrupt = bytearray(data)
            corrupt[i] ^= mask
            with pytest.raises(BitstreamError):
                bs.unpack(bytes(corrupt))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"RIFF" + bytes(40), "bad magic"),
        (build(b"{}", b"", magic=b"CGC\x01"), "bad magic"),
        (build(b"{}", b"", version=2), "unsupported format version 2"),
        (build(b"{}", b"", version=0), "unsupported format version 0"),
        (bs.MAGIC + struct.pack("<HI", 1, 0xFFFFFFFF) + bytes(20), "exceeds the limit"),
        (bs.MAGIC + struct.pack("<HI", 1, 1000) + bytes(20), "truncated"),
        (bs.MAGIC + struct.pack("<HI", 1, 2) + b"{}" + struct.pack("<Q", 2**40) + bytes(8), "exceeds"),
        (bs.MAGIC + struct.pack("<HI", 1, 2) + b"{}" + struct.pack("<Q", 1000) + bytes(8), "only 4 remain"),
        (build(b"{}", b"abc") + b"junk", "trailing"),
        (build(b"{}", b"abc")[:-4] + b"\x00\x00\x00\x00", "CRC mismatch"),
        (build(b"not json", b""), "JSON"),
        (build(b"\xff\xfe", b""), "JSON"),
        (build(b"[1, 2]", b""), "JSON object"),
        (build(b'{"a": NaN}', b""), "JSON"),
        (build(b"[" * 100000 + b"]" * 100000, b""), "JSON"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, data, message):
    with pytest.raises(BitstreamError, match=message):
        bs.unpack(data)
    path = tmp_path / "bad.cgc"
    path.write_bytes(data)
    with pytest.raises(BitstreamError, match="bad.cgc"):
        bs.read(path)


def test_pack_rejects_oversized_header():
    with pytest.raises(BitstreamError):
        bs.pack({"x": "a" * (bs.MAX_HEADER_BYTES + 1)}, b"")


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        bs.read(tmp_path / "nope.cgc")


SCHEMA = bs.Object(
    {
        "n": bs.Int(1, 10),
        "rate": bs.Number(0.0, 100.0, open_lo=True),
        "flag": bs.Bool(),
        "kind": bs.Str(choices=("a", "b")),
        "name": bs.Str(max_len=5, min_len=1),
        "shape": bs.List(bs.Int(0, 9), 1, 3),
        "opt": bs.Maybe(bs.Int(0, 1)),
        "inner": bs.Object({"x": bs.Int(0, 1)}, optional=("x",)),
    },
    optional=("opt",),
)
GOOD = {"n": 3, "rate": 2, "flag": False, "kind": "a", "name": "hey", "shape": [1, 2], "opt": None, "inner": {}}


def test_schema_accepts_a_valid_header_unchanged():
    assert bs.check_header(GOOD, SCHEMA, "test") is GOOD
    assert SCHEMA.check({**GOOD, "rate": 99.5, "opt": 1, "inner": {"x": 0}})
    assert SCHEMA.check({k: v for k, v in GOOD.items() if k != "opt"})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n", True, "'n' must be an int, got bool"),
        ("n", 3.0, "'n' must be an int, got float"),
        ("n", 11, r"'n' must be in \[1, 10\], got 11"),
        ("n", 10**400, "must be in"),
        ("n", None, "got null"),
        ("rate", 0, r"must be in \(0.0, 100.0\]"),
        ("rate", float("nan"), "finite"),
        ("rate", float("inf"), "finite"),
        ("rate", 10**400, "must be in"),
        ("rate", False, "must be a number, got bool"),
        ("rate", "1", "must be a number, got str"),
        ("flag", 0, "true or false"),
        ("kind", "c", r"one of \['a', 'b'\]"),
        ("name", "toolong", "7 characters"),
        ("name", "", "0 characters"),
        ("name", ["x"], "must be a string"),
        ("shape", [], "1 to 3 items"),
        ("shape", [1, 2, 3, 4], "1 to 3 items"),
        ("shape", [1, -1], r"'shape\[1\]' must be in"),
        ("shape", [[1]], r"'shape\[0\]' must be an int, got list"),
        ("shape", {"0": 1}, "must be a list, got dict"),
        ("opt", 2, "'opt' must be in"),
        ("inner", {"x": 2}, "'inner.x' must be in"),
        ("inner", {"y": 0}, r"'inner' has unknown field\(s\) \['y'\]"),
        ("inner", [], "'inner' must be a JSON object"),
        ("extra", 1, r"header has unknown field\(s\) \['extra'\]"),
    ],
)
def test_schema_refuses_each_lie(field, value, message):
    with pytest.raises(BitstreamError, match=message):
        SCHEMA.check({**GOOD, field: value})


def test_schema_missing_fields_and_foreign_kinds():
    for field in GOOD:
        header = {k: v for k, v in GOOD.items() if k != field}
        if field == "opt":
            SCHEMA.check(header)
        else:
            with pytest.raises(BitstreamError, match=f"'{field}' missing"):
                SCHEMA.check(header)
    with pytest.raises(BitstreamError, match="header must be a JSON object, got list"):
        SCHEMA.check([1])
    with pytest.raises(BitstreamError, match="holds 'image' data, not audio"):
        bs.check_header({**GOOD, "modality": "image"}, SCHEMA, "audio")

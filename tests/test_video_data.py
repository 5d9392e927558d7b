"""Video reader/writer, VideoDataModule and the video corpus builder."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("av")

from codecgen.datamodules.video import (  # noqa: E402
    VideoDataModule,
    classical_round_trip,
    load_video,
    parse_frame_range,
    probe_video,
    write_video,
)

T, H, W = 8, 64, 96  # x265 needs frames of at least its 64-px CTU (see classical_round_trip)


def _clip(n: int = T, h: int = H, w: int = W) -> torch.Tensor:
    """A smooth moving gradient, (n, 3, h, w), already on the 8-bit grid."""
    t = torch.arange(n, dtype=torch.float32)[:, None, None]
    y = torch.linspace(0, 1, h)[None, :, None]
    x = torch.linspace(0, 1, w)[None, None, :]
    r = 0.5 + 0.3 * torch.sin(2 * math.pi * (0.5 * x + 0.05 * t)) + 0 * y
    g = 0.5 + 0.3 * torch.cos(2 * math.pi * (0.5 * y - 0.04 * t)) + 0 * x
    b = 0.3 + 0.4 * x * y + 0.01 * t
    return (torch.stack([r, g, b], 1) * 255).round() / 255


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    x = _clip()
    paths = {"mkv": d / "a.mkv", "mp4": d / "a.mp4", "png": d / "frames"}
    for p in paths.values():
        write_video(x, p, fps=25.0)
    return x, paths


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def test_round_trips(clips):
    x, paths = clips
    assert torch.equal(load_video(paths["mkv"]), x)  # FFV1 RGB: lossless
    assert torch.equal(load_video(paths["png"]), x)
    assert sorted(p.name for p in paths["png"].iterdir())[0] == "frame_00000.png"
    y = load_video(paths["mp4"])
    assert y.shape == x.shape and y.dtype == torch.float32
    assert _psnr(y, x) > 35
    for p in paths.values():  # no temporary files left behind
        assert not [q for q in p.parent.iterdir() if q.name.startswith(".")]


def test_classical_round_trip_quality_falls_with_crf(clips, tmp_path):
    x, paths = clips
    results = {}
    for crf in (10, 40):
        coded, decoded, encode_s, decode_s = classical_round_trip(paths["mkv"], tmp_path, "libx265", crf)
        assert decoded.shape == x.shape and encode_s > 0 and decode_s > 0
        results[crf] = (coded.stat().st_size, _psnr(decoded, x))
    assert results[10][0] > results[40][0] and results[10][1] > results[40][1] > 20
    with pytest.raises(ValueError, match="libx264 or libx265"):
        classical_round_trip(paths["mkv"], tmp_path, "libvpx", 30)


def test_classical_round_trip_pads_small_frames(tmp_path):
    """Debian 12's libx265 corrupts its heap on 48x32 frames (narrower than its 64-px CTU);
    whether it aborts depends on the heap's layout, which the length of the paths changes: the
    runs use output folders of different lengths. The frames are coded padded to 64x64 and
    cropped back. Odd sizes, which 4:2:0 cannot code, are padded too."""
    small = _clip(6, 32, 48)
    src = write_video(small, tmp_path / "small.mkv")
    for run in range(5):
        out = tmp_path / ("o" * (run + 1))
        out.mkdir()
        coded, decoded, _, _ = classical_round_trip(src, out, "libx265", 18)
        assert decoded.shape == small.shape and _psnr(decoded, small) > 30
        info = probe_video(coded)
        assert (info.height, info.width) == (64, 64)
    odd = _clip(4, 33, 47)
    src = write_video(odd, tmp_path / "odd.mkv")
    coded, decoded, _, _ = classical_round_trip(src, tmp_path, "libx264", 18)
    assert decoded.shape == odd.shape and _psnr(decoded, odd) > 30
    info = probe_video(coded)
    assert (info.height, info.width) == (64, 64)


def test_probe(clips):
    _, paths = clips
    for p in paths.values():
        info = probe_video(p)
        assert (info.frames, info.height, info.width) == (T, H, W)
        assert info.fps == pytest.approx(25.0)


def test_range_and_resize(clips):
    x, paths = clips
    for p in (paths["mkv"], paths["png"]):
        assert torch.equal(load_video(p, start=2, stop=5), x[2:5])
        assert torch.equal(load_video(p, start=6, stop=100), x[6:])
        y = load_video(p, size=(16, 24))
        assert y.shape == (T, 3, 16, 24) and 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError):
        load_video(paths["mkv"], start=T)
    with pytest.raises(ValueError):
        load_video(paths["mkv"], start=3, stop=3)


def test_memory_bound(clips):
    _, paths = clips
    with pytest.raises(ValueError, match="frame range"):
        load_video(paths["mkv"], max_bytes=1000)


def test_bad_files(clips, tmp_path):
    _, paths = clips
    data = paths["mkv"].read_bytes()
    bad = {
        "empty.mkv": b"",
        "text.mp4": b"this is not a video at all\n" * 10,
        "corrupt.mkv": data[:40] + bytes(range(256)) * 8,
        "truncated.mkv": data[: len(data) // 2],
        "truncated.mp4": paths["mp4"].read_bytes()[: 600],
    }
    for name, content in bad.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(ValueError, match=name):
            load_video(p)
    Image.new("RGB", (8, 8)).save(tmp_path / "still.png")  # an image, not a video: fine as one frame
    wav = tmp_path / "sound.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="no video stream"):
        load_video(wav)
    with pytest.raises(FileNotFoundError):
        load_video(tmp_path / "missing.mkv")
    with pytest.raises(ValueError, match="suffix"):
        write_video(torch.zeros(2, 3, 8, 8), tmp_path / "x.avi")


def test_folder_errors(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    Image.new("RGB", (16, 16)).save(d / "f0.png")
    Image.new("RGB", (16, 18)).save(d / "f1.png")
    with pytest.raises(ValueError, match="mixed"):
        load_video(d)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_video(empty)


def test_frame_range_parse():
    assert parse_frame_range(None) == (0, None)
    assert parse_frame_range("0:100") == (0, 100)
    assert parse_frame_range("5:") == (5, None)
    assert parse_frame_range("7") == (0, 7)
    with pytest.raises(ValueError):
        parse_frame_range("9:3")


def test_datamodule(clips):
    x, paths = clips
    dm = VideoDataModule(str(paths["mkv"]), frames="1:7", batch_size=4, epoch_repeats=2)
    dm.setup("fit")
    assert (dm.n_frames, dm.frame_size, dm.fps) == (6, (H, W), pytest.approx(25.0))
    seen = []
    for batch in dm.train_dataloader():
        assert batch["frame"].shape[1:] == (3, H, W)
        assert batch["t"].dtype == torch.float32
        torch.testing.assert_close(batch["t"], batch["index"].float() / 5)
        for f, i in zip(batch["frame"], batch["index"]):
            assert torch.equal(f, x[1 + int(i)])
        seen += batch["index"].tolist()
    assert sorted(seen) == sorted(list(range(6)) * 2)  # every frame, epoch_repeats times
    val = list(dm.val_dataloader())
    assert torch.cat([b["index"] for b in val]).tolist() == list(range(6))
    assert torch.equal(torch.cat([b["frame"] for b in val]), x[1:7])

    small = VideoDataModule(str(paths["png"]), resize=(16, 24), frames="3:4")
    small.setup()
    item = small.val_set[0]
    assert item["frame"].shape == (3, 16, 24) and item["index"] == 0 and float(item["t"]) == 0.0
    with pytest.raises(RuntimeError):
        VideoDataModule(str(paths["mkv"])).n_frames


def test_corpus_builder(tmp_path):
    from codecgen.datamodules import prepare

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for split, n in (("val", 2), ("train", 2)):
        (images / split).mkdir(parents=True)
        for i in range(n):
            base = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
            Image.fromarray(base).resize((80, 64), Image.BICUBIC).save(images / split / f"photo{i}.png")
    (images / ".complete").write_text("{}")
    out = tmp_path / "video"
    argv = ["video", "--out", str(out), "--images", str(images), "--size", "32", "--frames", "6",
            "--max-clips", "3", "--workers", "2"]
    prepare.main(argv)
    train, val = sorted((out / "train").glob("*.mkv")), sorted((out / "val").glob("*.mkv"))
    assert len(train) + len(val) == 3 and train and val
    assert all(p.name.startswith(("pan_", "zoom_")) for p in val)
    for p in train + val:
        x = load_video(p)
        assert x.shape == (6, 3, 32, 32)
        assert (x[1:] - x[:-1]).abs().mean() > 0  # it moves
    readme = (out / "README.md").read_text()
    assert all(p.name in readme for p in train + val)
    summary = json.loads((out / ".complete").read_text())
    assert len(summary["clips"]) == 3
    stamp = (out / ".complete").stat().st_mtime_ns
    prepare.main(argv)  # already built: returns at once
    assert (out / ".complete").stat().st_mtime_ns == stamp


def test_the_demo_zoom_is_always_a_val_clip(tmp_path):
    """However many photos the image corpus holds out (and in whatever hash order), the
    video corpus's val clips include the held-out zoom that `make demo` codes."""
    from codecgen.datamodules.corpora.video import DEMO_PHOTO, _photo_clips

    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for split, names in (("val", [f"photo{i}" for i in range(9)] + [DEMO_PHOTO]), ("train", ["a", "b", "c", "d"])):
        (images / split).mkdir(parents=True)
        for name in names:
            Image.fromarray(rng.uniform(0, 255, (64, 80, 3)).astype(np.uint8)).save(images / split / f"{name}.png")
    warnings = []
    groups = _photo_clips(images, 32, 6, type("Build", (), {"warn": lambda self, msg: warnings.append(msg)})())
    val = [clip.name for clip in groups["photo-val"]]
    assert len(val) == 6 and f"zoom_{DEMO_PHOTO}" in val, val
    assert sum(name.startswith("pan_") for name in val) == 3 and not warnings

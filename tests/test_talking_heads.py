"""Importing users' talking-head videos for Hallo2 (Cui et al. 2024, "Hallo2: Long-Duration and
High-Resolution Audio-Driven Portrait Image Animation"): the face detector, the square crop,
and the importer (25 fps constant rate from any input timing, 16 kHz mono sound, clips, splits)."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codecgen.datamodules.corpora.talking_heads import import_talking_heads
from codecgen.datamodules.face_detect import (
    detect_face,
    median_face_box,
    parse_face_box,
    square_crop_box,
)
from codecgen.datamodules.portrait_clips import (
    CLIP_FPS,
    CLIP_SAMPLE_RATE,
    read_clip_meta,
)
from codecgen.datamodules.video import load_video

WIDTH, HEIGHT = 320, 240  # not square: the crop has to pick its square
TONE = 440.0


def _astronaut(height: int) -> np.ndarray:
    from skimage.data import astronaut
    from skimage.transform import resize

    return (resize(astronaut(), (height, height), anti_aliasing=True) * 255).round().astype(np.uint8)


def write_talking_head(path: Path, gaps: list[int] | None = None, frames: int = 75, sound: bool = True,
                       face: bool = True, fps: int = 25, tone_start: float = 0.0, sideways: bool = False,
                       sound_seconds: float | None = None) -> float:
    """An mp4 (libx264 + aac) of the astronaut drifting sideways, with a 440 Hz tone at
    44.1 kHz stereo under it from ``tone_start`` seconds (silence before), for the video's
    duration or ``sound_seconds``; return the video's duration in seconds.

    ``gaps``: per-frame durations in 1/600 s, cycled (variable frame rate), instead of a
    constant ``fps``. ``face=False``: flat grey frames. ``sideways``: stored turned a quarter
    turn clockwise with a display rotation tag that turns it back (as phones store portrait
    video). Every frame carries its index in
    the grey level of its top-left 16 x 16 block (``16 + 3 * index``), outside the face crop.
    """
    import av

    portrait = _astronaut(HEIGHT)
    time_base = Fraction(1, 600)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = (HEIGHT, WIDTH, "yuv420p") if sideways else (WIDTH, HEIGHT,
                                                                                                  "yuv420p")
        if sideways:
            video.set_display_rotation(90)  # shown turned a quarter turn counter-clockwise
        video.options = {"preset": "ultrafast", "crf": "4"}  # near lossless: the frame stamps read back
        if gaps:
            video.time_base = video.codec_context.time_base = time_base
        audio = container.add_stream("aac", rate=44100, layout="stereo") if sound else None
        pts = 0
        for i in range(frames):
            canvas = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
            if face:
                left = 30 + 2 * (i % 10)  # a small sideways drift, as a speaker moves
                canvas[:, left : left + HEIGHT] = portrait
            canvas[:16, :16] = (16 + 3 * i) % 256  # (wraps past frame 79: only short videos read it)
            stored = np.ascontiguousarray(np.rot90(canvas, -1)) if sideways else canvas
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if gaps:
                frame.pts, frame.time_base = pts, time_base
                pts += gaps[i % len(gaps)]
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        seconds = pts / 600 if gaps else frames / fps
        if audio is not None:
            t = np.arange(round((sound_seconds or seconds) * 44100)) / 44100
            tone = np.where(t >= tone_start, 0.5 * np.sin(2 * np.pi * TONE * (t - tone_start)), 0.0).astype(np.float32)
            stereo = np.stack([tone, 0.5 * tone])  # unequal channels: the mono mix is their mean
            for i in range(0, stereo.shape[1], 1024):
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, i : i + 1024]), format="fltp",
                                                   layout="stereo")
                piece.sample_rate, piece.pts, piece.time_base = 44100, i, Fraction(1, 44100)
                container.mux(audio.encode(piece))
            container.mux(audio.encode(None))
    return seconds


def source_frame(index: int) -> np.ndarray:
    """Frame ``index`` of :func:`write_talking_head` (before H.264), uint8 (H, W, 3)."""
    canvas = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    left = 30 + 2 * (index % 10)
    canvas[:, left : left + HEIGHT] = _astronaut(HEIGHT)
    canvas[:16, :16] = (16 + 3 * index) % 256
    return canvas


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    x, rate = sf.read(str(path), dtype="float32")
    return x, rate


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


# --------------------------------------------------------------------------- the face detector


def test_detect_face_finds_the_astronaut_and_nothing_in_a_blank_image():
    from skimage.data import astronaut

    image = astronaut()  # 512 x 512, her face at about x 170-250, y 60-160
    box = detect_face(image)
    assert box is not None
    x0, y0, x1, y1 = box
    assert 150 <= x0 <= 195 and 235 <= x1 <= 280 and 45 <= y0 <= 95 and 135 <= y1 <= 180, box
    assert detect_face(np.zeros((256, 256, 3), np.uint8)) is None
    assert detect_face(np.full((200, 300), 200, np.uint8)) is None
    assert detect_face(np.zeros((10, 10, 3), np.uint8)) is None  # smaller than the cascade's window

    # A picture over the detector's working size is shrunk, and the box mapped back.
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # 1024 x 1024
    big_box = detect_face(big)
    assert big_box is not None
    assert np.allclose(np.asarray(big_box) / 2, box, atol=12), (big_box, box)
    grey_box = detect_face((image.mean(axis=2)).astype(np.uint8))  # grey (H, W) works too
    assert grey_box is not None and np.allclose(grey_box, box, atol=12)

    with pytest.raises(ValueError, match="uint8"):
        detect_face(image.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        detect_face(np.zeros((64, 64, 4), np.uint8))


def test_median_face_box_over_frames_lists_and_generators():
    portrait = _astronaut(256)
    blank = np.zeros_like(portrait)
    box = detect_face(portrait)
    assert box is not None
    # A blank frame among faces is ignored; the median is the faces' box.
    assert np.allclose(median_face_box([portrait, blank, portrait]), box)
    assert median_face_box([blank, blank]) is None
    # A face in under a quarter of the frames is taken for a false detection.
    assert median_face_box([portrait] + [blank] * 4) is None
    assert np.allclose(median_face_box([portrait] + [blank] * 4, min_fraction=0.2), box)
    assert median_face_box([]) is None
    # A generator is read once, thinned as it goes: only max_samples frames are looked at.
    seen = []

    def frames():
        for i in range(100):
            seen.append(i)
            yield portrait if i % 2 == 0 else blank

    assert np.allclose(median_face_box(frames(), max_samples=3), box)
    assert len(seen) == 100
    with pytest.raises(ValueError, match="max_samples"):
        median_face_box([portrait], max_samples=0)


def test_square_crop_box():
    # 1.8 x the face's larger side, centred 0.1 x that side above the face's centre.
    assert square_crop_box((100, 100, 150, 160), 640, 480) == (71, 70, 179, 178)
    x0, y0, x1, y1 = square_crop_box((100.4, 100.2, 150.7, 160.9), 640, 480)
    assert all(isinstance(v, int) for v in (x0, y0, x1, y1)) and x1 - x0 == y1 - y0
    # Near an edge the square shifts into the frame, keeping its size.
    assert square_crop_box((0, 0, 50, 50), 640, 480) == (0, 0, 90, 90)
    assert square_crop_box((600, 440, 640, 480), 640, 480) == (568, 408, 640, 480)
    # A frame too small for it: the largest square that fits, centred on the face.
    assert square_crop_box((200, 10, 300, 90), 640, 100) == (200, 0, 300, 100)
    assert square_crop_box((0, 10, 100, 90), 640, 100) == (0, 0, 100, 100)
    assert square_crop_box((10, 10, 20, 20), 8, 30) == (0, 10, 8, 18)
    with pytest.raises(ValueError):
        square_crop_box((10, 10, 5, 20), 640, 480)


def test_parse_face_box():
    assert parse_face_box("10,20,110,140") == (10.0, 20.0, 110.0, 140.0)
    assert parse_face_box(" 10.5 , 20 ,110, 140.25 ") == (10.5, 20.0, 110.0, 140.25)
    for text, message in [
        ("10,20,110", "four comma-separated"),
        ("10,20,110,140,5", "four comma-separated"),
        ("", "four comma-separated"),
        ("10,twenty,110,140", "y0 = 'twenty' is not a number"),
        ("110,20,10,140", "x1 > x0"),
        ("10,140,110,140", "y1 > y0"),
        ("-5,20,110,140", ">= 0"),
        ("10,20,nan,140", "finite"),
        ("10,20,inf,140", "finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_face_box(text)


# --------------------------------------------------------------------------- the importer


def test_import_gives_25_fps_clips_with_the_sound_under_them(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    seconds = write_talking_head(src / "alice.mp4", frames=75, tone_start=1.0)
    out = tmp_path / "out"
    start = time.perf_counter()
    clips = import_talking_heads(src, out, size=64, clip_seconds=10.0, face_samples=4)
    took = time.perf_counter() - start
    assert len(clips) == 1 and clips[0].name == "alice_000" and clips[0].parent.parent == out
    meta = read_clip_meta(clips[0])
    assert abs(meta.frames - round(seconds * CLIP_FPS)) <= 1
    assert (meta.identity, meta.source, meta.size, meta.fps) == ("alice", "alice.mp4", 64, CLIP_FPS)
    assert meta.expressions == [] and meta.phonemes == [] and not (clips[0] / "tracks.npz").exists()
    x0, y0, x1, y1 = meta.face_box
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    # The face box is about 1 / 1.8 of the crop, centred, a little below the middle.
    assert 25 < x1 - x0 < 45 and 20 < (x0 + x1) / 2 < 44 and 25 < (y0 + y1) / 2 < 48

    frames = load_video(clips[0] / "video.mkv")
    assert frames.shape == (meta.frames, 3, 64, 64)
    # Frame 0 is the square crop of source frame 0, resized.
    import torch
    import torch.nn.functional as F

    built = json.loads((out / ".complete").read_text())
    left, top, right, bottom = built["files"]["alice.mp4"]["crop"]
    crop = torch.from_numpy(source_frame(0)[top:bottom, left:right]).permute(2, 0, 1)[None].float() / 255
    expected = F.interpolate(crop, size=(64, 64), mode="bilinear", antialias=True)[0]
    assert (frames[0] - expected).abs().mean() < 0.03

    audio, rate = read_wav(clips[0] / "audio.wav")
    assert rate == CLIP_SAMPLE_RATE and audio.ndim == 1
    assert abs(len(audio) - meta.frames / CLIP_FPS * rate) <= rate / CLIP_FPS
    assert abs(dominant_hz(audio[rate:], rate) - 440.0) < 3.0
    # Mono is the channels' mean (0.5 and 0.25 amplitude); the tone starts at 1 s, in sync.
    assert 0.33 < np.abs(audio[rate + 800 :]).max() < 0.42
    assert np.abs(audio[: rate - 320]).max() < 0.02
    onset = int(np.argmax(np.abs(audio) > 0.1))
    assert abs(onset - rate) <= 0.005 * rate, onset

    readme = (out / "README.md").read_text()
    assert "alice.mp4" in readme and "face box" in readme
    assert took < 10, took

    # A second run returns at once, without touching the clips; force rebuilds.
    written = (clips[0] / "meta.json").stat().st_mtime_ns
    start = time.perf_counter()
    again = import_talking_heads(src, out, size=64, clip_seconds=10.0, face_samples=4)
    assert time.perf_counter() - start < 0.5 and again == clips
    assert (clips[0] / "meta.json").stat().st_mtime_ns == written
    box = (100, 20, 180, 100)
    assert import_talking_heads(src, out, size=32, face_box=box, force=True) == clips
    assert read_clip_meta(clips[0]).size == 32
    assert json.loads((out / ".complete").read_text())["files"]["alice.mp4"]["found_by"] == "given"


def test_variable_frame_rate_video_imports_at_25_fps(tmp_path):
    from codecgen.datamodules.corpora.talking_heads import _constant_rate_frames

    gaps = [20, 30]  # 1/30 s then 1/20 s, in 1/600 s
    path = tmp_path / "bob.mp4"
    seconds = write_talking_head(path, gaps=gaps, frames=75)
    assert abs(seconds - sum(gaps[i % 2] for i in range(75)) / 600) < 1e-9  # 3.117 s

    # Each output frame i at i / 25 s is the source frame whose timestamp is nearest.
    shown = np.cumsum([0] + [gaps[i % 2] for i in range(74)]) / 600
    stamps = [round((rgb[2:14, 2:14].mean() - 16) / 3) for _, rgb in _constant_rate_frames(path, CLIP_FPS)]
    assert len(stamps) == round(seconds * CLIP_FPS)
    for i, got in enumerate(stamps):
        t = i / CLIP_FPS
        distance = np.abs(shown - t)
        nearest = np.flatnonzero(distance <= distance.min() + 1e-9)
        assert got in nearest or (got == 74 and t > shown[-1]), (i, got, nearest)

    clips = import_talking_heads(path, tmp_path / "out", size=48, face_samples=4)
    meta = read_clip_meta(clips[0])
    assert abs(meta.frames - round(seconds * CLIP_FPS)) <= 1 and meta.frames > 75  # 3.125 s: 78 frames
    assert load_video(clips[0] / "video.mkv").shape[0] == meta.frames
    audio, rate = read_wav(clips[0] / "audio.wav")
    assert abs(len(audio) - meta.frames / CLIP_FPS * rate) <= rate / CLIP_FPS
    assert abs(dominant_hz(audio, rate) - 440.0) < 3.0


def test_phone_video_stored_sideways_is_turned_upright(tmp_path):
    path = tmp_path / "phone.mp4"
    write_talking_head(path, frames=50, sideways=True)
    clips = import_talking_heads(path, tmp_path / "out", size=64, face_samples=3)
    built = json.loads((tmp_path / "out" / ".complete").read_text())["files"]["phone.mp4"]
    x0, y0, x1, y1 = built["face_box"]  # found upright, where write_talking_head drew her face
    assert 100 < x0 < 140 and 140 < x1 < 180 and 15 < y0 < 50 and 60 < y1 < 95, built["face_box"]
    left, top, right, bottom = built["crop"]
    frames = load_video(clips[0] / "video.mkv")
    expected = source_frame(0)[top:bottom, left:right]
    from skimage.transform import resize

    expected = resize(expected, (64, 64), anti_aliasing=True)
    assert np.abs(frames[0].permute(1, 2, 0).numpy() - expected).mean() < 0.03


def test_pictures_after_the_sound_ends_are_not_imported(tmp_path):
    path = tmp_path / "short_sound.mp4"
    write_talking_head(path, frames=125, sound_seconds=3.0)  # 5 s of pictures, 3 s of sound
    box = (60, 40, 160, 140)
    # Clips of 2 s: the first is whole; the second would have 1 s of sound: dropped.
    clips = import_talking_heads(path, tmp_path / "two", size=16, clip_seconds=2.0, face_box=box)
    assert [read_clip_meta(c).frames for c in clips] == [50]
    assert "the sound ends at" in (tmp_path / "two" / "README.md").read_text()
    # One clip of 10 s: cut where the sound ends (3 s, at least 2 s: kept).
    clips = import_talking_heads(path, tmp_path / "one", size=16, clip_seconds=10.0, face_box=box)
    meta = read_clip_meta(clips[0])
    assert meta.frames == 75
    audio, rate = read_wav(clips[0] / "audio.wav")
    assert len(audio) == 75 * rate // 25 and np.abs(audio[-rate // 10 :]).max() > 0.2  # sound to the end


def test_videos_without_sound_or_face_are_skipped(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    write_talking_head(src / "mute.mp4", frames=60, sound=False)
    write_talking_head(src / "blank.mp4", frames=60, face=False)
    with pytest.raises(ValueError, match="could be imported") as err:
        import_talking_heads(src, tmp_path / "out", face_samples=4)
    assert "mute.mp4" in str(err.value) and "no audio" in str(err.value)
    assert "blank.mp4" in str(err.value) and "no face" in str(err.value)
    assert not (tmp_path / "out" / ".complete").exists()

    # With a face box given, the blank video imports; the silent one is still skipped.
    clips = import_talking_heads(src, tmp_path / "out", size=32, face_box=(60, 40, 160, 140))
    assert [c.name for c in clips] == ["blank_000"]
    meta = read_clip_meta(clips[0])
    assert meta.frames == 60 and 0 <= meta.face_box[0] < meta.face_box[2] <= 32
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Skipped files" in readme and "mute.mp4" in readme
    assert "mute.mp4" in json.loads((tmp_path / "out" / ".complete").read_text())["skipped"]


def test_clips_are_cut_and_split_by_file(tmp_path):
    from codecgen.datamodules.corpora.common import hash01

    src = tmp_path / "videos"
    src.mkdir()
    names = ["ann.mp4", "ben.mkv", "cat.mov"]
    for name in names:  # 5 s each: clips of 2 s, 2 s, and a last 1 s piece (dropped)
        write_talking_head(src / name, frames=125)
    write_talking_head(src / "ann.avi", frames=50)  # the same stem: folders ann_avi_*, ann_mp4_*
    (src / "notes.txt").write_text("not a video")
    (src / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska" * 50)
    out = tmp_path / "out"
    clips = import_talking_heads(src, out, size=16, clip_seconds=2.0, face_box=(60, 40, 160, 140),
                                 val_fraction=0.1)
    by_video: dict[str, set[str]] = {}
    for clip in clips:
        meta = read_clip_meta(clip)
        assert meta.frames == 50
        by_video.setdefault(meta.source, set()).add(clip.parent.name)
    assert sorted(by_video) == ["ann.avi", *names]
    assert all(len(splits) == 1 for splits in by_video.values())  # one video, one split
    assert sum(1 for c in clips if c.parent.name == "val") >= 2  # at least one val file (two clips)
    assert any(c.parent.name == "train" for c in clips)
    assert len(clips) == 7
    assert sorted(c.name for c in clips if c.name.startswith("ann")) == ["ann_avi_000", "ann_mp4_000", "ann_mp4_001"]
    assert {read_clip_meta(c).identity for c in clips if c.name.startswith("ann")} == {"ann"}
    everything = ["ann.avi", *names]
    expected_val = min(everything, key=hash01) if all(hash01(n) >= 0.1 for n in everything) else None
    if expected_val is not None:
        assert by_video[expected_val] == {"val"}
    assert "broken.webm" in json.loads((out / ".complete").read_text())["skipped"]

    # A last piece of at least 2 s is kept.
    clips = import_talking_heads(src / "ann.mp4", tmp_path / "one", size=16, clip_seconds=3.0,
                                 face_box=(60, 40, 160, 140))
    assert [read_clip_meta(c).frames for c in clips] == [75, 50]


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        import_talking_heads(tmp_path / "missing", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no videos here")
    with pytest.raises(ValueError, match=f"folder {empty} holds no video files"):
        import_talking_heads(empty, tmp_path / "out")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mp4").write_bytes(b"garbage" * 100)
    (broken / "b.mkv").write_bytes(b"")
    with pytest.raises(ValueError, match="could be imported"):
        import_talking_heads(broken, tmp_path / "out")
    good = tmp_path / "good.mp4"
    write_talking_head(good, frames=50)
    for kwargs, message in [
        ({"size": 4}, "size"),
        ({"clip_seconds": 0.0}, "clip_seconds"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"face_box": (10, 10, 5, 20)}, "x1 > x0"),
        ({"face_samples": 0}, "face_samples"),
    ]:
        with pytest.raises(ValueError, match=message):
            import_talking_heads(good, tmp_path / "out", **kwargs)
    # A face box outside the frame: that file is skipped (here: every file).
    with pytest.raises(ValueError, match="outside"):
        import_talking_heads(good, tmp_path / "out", face_box=(400, 300, 500, 400))

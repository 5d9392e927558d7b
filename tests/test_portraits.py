"""The talking-portrait corpus (Hallo2's training data): clip layout, drawn and photo faces,
motion tracks, and a tiny build whose frames, audio, masks and labels line up."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from codecgen.datamodules.corpora.face_motion import (
    blink_track,
    expression_schedule,
    expression_weights_track,
    pose_walk,
)
from codecgen.datamodules.corpora.faces import (
    INNER_LIPS,
    RIGHT_EYE,
    FaceIdentity,
    FaceMotion,
    background_canvas,
    draw_face,
    expression_weights,
)
from codecgen.datamodules.portrait_clips import (
    EXPRESSIONS,
    ClipMeta,
    TimedLabel,
    list_clips,
    load_clip_tracks,
    read_clip_meta,
    unpack_masks,
    write_portrait_clip,
)
from codecgen.datamodules.video import load_video


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


@pytest.fixture(scope="module")
def canvas():
    from skimage import data

    return background_canvas(data.coffee(), 96)


def _tracks(frames: int, size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "landmarks": rng.uniform(0, size, (frames, 68, 2)), "visemes": rng.uniform(0, 1, (frames, 3)),
        "pose": np.zeros((frames, 3)), "blink": np.zeros(frames), "face_box": np.tile([4.0, 4, 20, 20], (frames, 1)),
        "face_mask": rng.random((frames, size, size)) > 0.5, "lip_mask": rng.random((frames, size, size)) > 0.9,
    }


# --------------------------------------------------------------------------- clip layout


def test_clip_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, 4000).astype(np.float32)
    meta = ClipMeta(frames=6, size=24, identity="x", source="test", face_box=(2.0, 3.0, 20.0, 22.0),
                    expressions=[TimedLabel("happy", 0.0, 0.12), TimedLabel("sad", 0.12, 0.24)],
                    phonemes=[TimedLabel("m", 0.01, 0.05)], text="hm")
    tracks = _tracks(6, 24)
    write_portrait_clip(tmp_path / "c", frames, audio, meta, tracks)
    assert read_clip_meta(tmp_path / "c") == meta
    back = load_clip_tracks(tmp_path / "c")
    assert np.array_equal(unpack_masks(back["face_mask"], 24), tracks["face_mask"])
    assert np.allclose(back["landmarks"], tracks["landmarks"].astype(np.float32))
    video = load_video(tmp_path / "c" / "video.mkv")
    assert np.array_equal((video * 255).round().byte().permute(0, 2, 3, 1).numpy(), frames)
    wav, sr = sf.read(tmp_path / "c" / "audio.wav", dtype="float32")
    assert sr == 16000 and len(wav) == 6 * 640 and np.abs(wav - audio[:3840]).max() < 1e-4
    assert read_clip_meta(tmp_path / "c").expression_at(0.15) == "sad"
    assert list_clips(tmp_path) == [tmp_path / "c"]


def test_clip_writer_refuses_mismatches_and_leaves_nothing(tmp_path):
    meta = ClipMeta(frames=4, size=16, identity="x", source="t", face_box=(1.0, 1.0, 15.0, 15.0))
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="frames"):
        write_portrait_clip(tmp_path / "c", frames[:3], np.zeros(4000), meta)
    with pytest.raises(ValueError, match="audio"):
        write_portrait_clip(tmp_path / "c", frames, np.zeros(100), meta)
    bad = _tracks(4, 16)
    bad["visemes"] = bad["visemes"][:, :2]
    with pytest.raises(ValueError, match="visemes"):
        write_portrait_clip(tmp_path / "c", frames, np.zeros(4000), meta, bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change, message", [
    ({"frames": -1}, "frames"), ({"frames": 10**9}, "frames"), ({"frames": "6"}, "frames"),
    ({"size": 10**6}, "size"), ({"fps": float("nan")}, "fps"), ({"version": 99}, "version"),
    ({"face_box": [0, 0, 999, 5]}, "face_box"), ({"face_box": "all"}, "face_box"),
    ({"expressions": [{"label": "smug", "start": 0, "end": 1}]}, "smug"),
    ({"expressions": [{"label": "happy", "start": 1.0, "end": 0.5}]}, "end"),
    ({"phonemes": "m"}, "phonemes"), ({"identity": None}, "identity"),
])
def test_hostile_clip_metadata_is_refused(tmp_path, change, message):
    meta = ClipMeta(frames=6, size=24, identity="x", source="t", face_box=(2.0, 3.0, 20.0, 22.0))
    write_portrait_clip(tmp_path / "c", np.zeros((6, 24, 24, 3), np.uint8), np.zeros(4000), meta, _tracks(6, 24))
    record = json.loads((tmp_path / "c" / "meta.json").read_text())
    record.update(change)
    (tmp_path / "c" / "meta.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message):
        read_clip_meta(tmp_path / "c")


def test_truncated_or_foreign_tracks_are_refused(tmp_path):
    meta = ClipMeta(frames=6, size=24, identity="x", source="t", face_box=(2.0, 3.0, 20.0, 22.0))
    write_portrait_clip(tmp_path / "c", np.zeros((6, 24, 24, 3), np.uint8), np.zeros(4000), meta, _tracks(6, 24))
    data = (tmp_path / "c" / "tracks.npz").read_bytes()
    (tmp_path / "c" / "tracks.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="tracks"):
        load_clip_tracks(tmp_path / "c")
    tracks = _tracks(6, 24)
    tracks["blink"] = np.full(6, np.nan)
    np.savez(tmp_path / "c" / "tracks.npz", **{k: (np.packbits(v.reshape(6, -1), axis=1) if "mask" in k else v)
                                               for k, v in tracks.items()})
    with pytest.raises(ValueError, match="NaN"):
        load_clip_tracks(tmp_path / "c")


# --------------------------------------------------------------------------- drawn faces


def test_drawn_face_annotations_follow_the_motion(canvas):
    identity = FaceIdentity.sample(np.random.default_rng(3))
    rest = draw_face(identity, FaceMotion(), canvas, 96)
    opened = draw_face(identity, FaceMotion(jaw=0.9), canvas, 96)
    blink = draw_face(identity, FaceMotion(blink=1.0), canvas, 96)
    assert rest.image.shape == (96, 96, 3) and rest.image.dtype == np.uint8
    assert (rest.landmarks >= 0).all() and (rest.landmarks < 96).all()
    # An open jaw opens the inner lips and lowers the chin; a blink closes the eye.
    assert _polygon_area(opened.landmarks[INNER_LIPS]) > 10 * _polygon_area(rest.landmarks[INNER_LIPS])
    assert opened.landmarks[8, 1] > rest.landmarks[8, 1] + 2
    assert _polygon_area(blink.landmarks[RIGHT_EYE]) < 0.2 * _polygon_area(rest.landmarks[RIGHT_EYE])
    # The masks: the lips are inside the face, and the mouth's pixels changed where it opened.
    assert rest.lip_mask.sum() > 10 and (rest.lip_mask & ~rest.face_mask).sum() <= 2
    changed = np.abs(opened.image.astype(int) - rest.image.astype(int)).sum(-1) > 30
    x0, y0, x1, y1 = opened.face_box
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 20 and (xs >= x0 - 1).all() and (xs <= x1 + 1).all() and (ys <= y1 + 1).all()
    assert not changed[:10].any()  # the background above the head is untouched


def test_expressions_change_the_face(canvas):
    identity = FaceIdentity.sample(np.random.default_rng(4))
    lm = {e: draw_face(identity, FaceMotion(expression=expression_weights(e)), canvas, 96).landmarks
          for e in EXPRESSIONS}
    corners = {e: lm[e][[48, 54], 1].mean() for e in EXPRESSIONS}
    brows = {e: lm[e][17:27, 1].mean() for e in EXPRESSIONS}
    assert corners["happy"] < corners["neutral"] - 1 < corners["sad"] - 2  # smile up, frown down (y grows down)
    assert brows["surprised"] < brows["neutral"] - 2
    assert lm["angry"][21, 1] > lm["neutral"][21, 1]  # inner brow ends lowered
    with pytest.raises(ValueError, match="unknown expression"):
        expression_weights("smug")


def test_identities_differ_and_are_reproducible(canvas):
    a = draw_face(FaceIdentity.sample(np.random.default_rng(5)), FaceMotion(), canvas, 96)
    b = draw_face(FaceIdentity.sample(np.random.default_rng(5)), FaceMotion(), canvas, 96)
    c = draw_face(FaceIdentity.sample(np.random.default_rng(6)), FaceMotion(), canvas, 96)
    assert np.array_equal(a.image, b.image)
    assert np.abs(a.image.astype(int) - c.image.astype(int)).mean() > 5


# --------------------------------------------------------------------------- photo faces


def test_photo_face_warp_moves_the_mouth_and_keeps_the_background(canvas):
    from codecgen.datamodules.corpora.photo_faces import photo_face, photo_face_names

    assert "astronaut" in photo_face_names() and len(photo_face_names()) > 10
    face = photo_face("astronaut")
    rest = face.draw(FaceMotion(), canvas, 96)
    again = face.draw(FaceMotion(), canvas, 96)
    opened = face.draw(FaceMotion(jaw=0.9), canvas, 96)
    assert np.array_equal(rest.image, again.image)
    diff = np.abs(opened.image.astype(int) - rest.image.astype(int)).sum(-1)
    lips = opened.lip_mask | rest.lip_mask
    assert diff[lips].mean() > 40  # the mouth opened
    border = np.ones_like(lips)
    border[8:-8, 8:-8] = False
    assert diff[border].max() == 0  # the background (outside the anchor ring) did not move
    lfw = photo_face("lfw_003").draw(FaceMotion(), canvas, 96)
    assert lfw.image.shape == (96, 96, 3) and lfw.lip_mask.any()
    with pytest.raises(ValueError, match="unknown photo face"):
        photo_face("lfw_500")


# --------------------------------------------------------------------------- motion


def test_pose_walk_blinks_and_expression_schedule():
    rng = np.random.default_rng(0)
    pose = pose_walk(25 * 200, 25.0, rng)
    assert pose.shape == (5000, 3) and 0.06 < pose[:, 0].std() < 0.2
    assert np.abs(np.diff(pose[:, 0])).max() < 0.05  # smooth: no jumps between frames
    blink = blink_track(25 * 120, 25.0, rng)
    onsets = np.sum((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert 20 <= onsets <= 60 and blink.min() == 0 and blink.max() > 0.9  # ~one every 3 s
    for seed in range(20):
        labels = expression_schedule(7.0, np.random.default_rng(seed))
        assert labels[0].start == 0 and labels[-1].end == 7.0
        assert all(a.end == b.start and a.label != b.label for a, b in zip(labels, labels[1:]))
        assert all(x.label in EXPRESSIONS for x in labels)
    weights = expression_weights_track([TimedLabel("happy", 0, 2), TimedLabel("sad", 2, 4)], 100, 25.0)
    assert weights[10] == {"happy": 1.0} and weights[90] == {"sad": 1.0}
    assert 0 < weights[50].get("happy", 0) < 1 and 0 < weights[50].get("sad", 0) < 1


# --------------------------------------------------------------------------- a tiny build


def _envelope(audio: np.ndarray, frames: int) -> np.ndarray:
    hop = 16000 // 25
    return np.array([np.sqrt(np.mean(audio[i * hop : (i + 1) * hop] ** 2)) for i in range(frames)])


def test_tiny_portrait_build_lines_up_frames_audio_masks_and_labels(tiny_portraits, tmp_path):
    from codecgen.datamodules.corpora.portraits import build_portraits

    out = tiny_portraits
    clips = list_clips(out)
    assert len(clips) == 4 and {c.parent.name for c in clips} == {"train", "val"}
    readme = (out / "README.md").read_text()
    assert "What it cannot show" in readme and "no image corpus" in readme
    for clip in clips:
        meta = read_clip_meta(clip)
        audio, sr = sf.read(clip / "audio.wav", dtype="float32")
        assert sr == 16000 and len(audio) == meta.frames * 640  # the sound spans the frames exactly
        video = load_video(clip / "video.mkv")
        assert video.shape == (meta.frames, 3, 48, 48)
        tracks = load_clip_tracks(clip, meta)
        face, lips = unpack_masks(tracks["face_mask"], 48), unpack_masks(tracks["lip_mask"], 48)
        assert lips.any(axis=(1, 2)).all() and (lips & ~face).sum() <= 2 * meta.frames
        assert meta.expressions[0].start == 0 and abs(meta.expressions[-1].end - meta.seconds) < 1e-6
        assert meta.phonemes and all(0 <= p.start < p.end <= meta.seconds + 1e-6 for p in meta.phonemes)
        # The mouth opens when there is sound: the jaw track follows the speech's loudness, and
        # the first frames (silence before the speech) have the mouth at rest.
        jaw = tracks["visemes"][:, 0]
        assert np.corrcoef(_envelope(audio, meta.frames), jaw)[0, 1] > 0.3
        assert jaw[:3].max() < 0.15
    train_ids = {read_clip_meta(c).identity for c in clips if c.parent.name == "train"}
    val_ids = {read_clip_meta(c).identity for c in clips if c.parent.name == "val"}
    assert not train_ids & val_ids  # held-out faces
    stamp = (out / ".complete").stat().st_mtime_ns
    build_portraits(out, size=48, clips=4, identities=4, real_prompts=False, images=tmp_path / "no_images")
    assert (out / ".complete").stat().st_mtime_ns == stamp  # a finished build is not redone
    with pytest.raises(ValueError, match="size"):
        build_portraits(tmp_path / "q", size=50, clips=3, identities=4, real_prompts=False)

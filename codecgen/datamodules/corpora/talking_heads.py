"""A user's own talking-head videos, imported as portrait clips for Hallo2-style training.

``python -m codecgen.datamodules.prepare talking-heads VIDEOS --out data/talking_heads [--face-box x0,y0,x1,y1]``

Hallo2 ("Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait Image Animation",
Cui et al. 2024) learns audio-driven portrait animation from talking-head videos cropped
around the face, at 25 fps, with the 16 kHz speech under them. :func:`import_talking_heads`
turns every video file of a folder (mp4, mkv, mov, avi, webm) into clip folders of the
:mod:`codecgen.datamodules.portrait_clips` format, ``OUT/{train,val}/<stem>_<k>/`` (``k`` = 000, 001, ...):

- pictures at a constant 25 fps: for each output time ``t = i / 25`` (from the first
  frame) the source frame whose timestamp is nearest, so variable-frame-rate files (phone
  and screen recordings) keep their true timing; turned upright by the file's display
  rotation (phones store portrait video sideways);
- a square crop around the face (:func:`~codecgen.datamodules.face_detect.square_crop_box`
  of the box given, or of :func:`~codecgen.datamodules.face_detect.median_face_box` over
  frames spread over the video), resized to ``size`` (bilinear, antialiased);
- the first audio stream over the same span, mixed to mono and resampled to 16 kHz,
  its first sample at the first frame's time;
- cut into clips of ``clip_seconds`` (a last, shorter piece is kept when >= 2 s).

Every clip of one video goes to the same split, chosen by a hash of the file's name (a
stable split when files are added). Videos without sound (nothing to drive the animation)
or without a detectable face (and no ``face_box`` given) are skipped with a warning, as
are files FFmpeg cannot read. Videos are decoded as a stream and their sound resampled as
a stream, so an hour-long video never sits in memory whole: one clip at a time does.
``OUT/README.md`` lists the files, the face boxes used and the skipped files;
``OUT/.complete`` marks a finished import (a second run returns at once unless ``force``).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codecgen.datamodules.corpora.common import CorpusBuild, already_built, hash01, log
from codecgen.datamodules.face_detect import (
    check_face_box,
    median_face_box,
    square_crop_box,
)
from codecgen.datamodules.portrait_clips import (
    CLIP_FPS,
    CLIP_SAMPLE_RATE,
    MAX_CLIP_FRAMES,
    MAX_CLIP_SIZE,
    ClipMeta,
    list_clips,
    write_portrait_clip,
)

__all__ = ["FACE_SAMPLES", "MIN_LAST_CLIP_SECONDS", "VIDEO_EXTENSIONS", "import_talking_heads"]

VIDEO_EXTENSIONS = ("mp4", "mkv", "mov", "avi", "webm")
MIN_LAST_CLIP_SECONDS = 2.0  # a shorter tail is too little context to train on
FACE_SAMPLES = 16  # frames the face detector looks at per video
SAMPLES_PER_FRAME = round(CLIP_SAMPLE_RATE / CLIP_FPS)  # 640: a clip's sound is exactly its frames' span
_RESIZE_CHUNK = 16  # crops resized together (bounded memory at any source size)
_MIN_SIZE = 8


# --------------------------------------------------------------------------- one source file


@dataclass
class _Source:
    """What the importer learns of one video before converting it."""

    path: Path
    width: int
    height: int
    seconds: float | None
    audio: str  # the first audio stream, described
    face_box: tuple[float, float, float, float] | None = None
    found_by: str = ""
    prefix: str = ""
    split: str = "train"
    clips: list[Path] = field(default_factory=list)
    frames: int = 0
    notes: list[str] = field(default_factory=list)


def _av():
    import av

    return av


def _upright(frame) -> np.ndarray:
    """A decoded frame as it is meant to be shown: uint8 RGB (H, W, 3), turned by its display
    matrix (phones store portrait video sideways with a rotation tag; the frontal-face
    detector finds no face in a sideways one). A view, not a copy."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # counter-clockwise quarter turns
    return np.rot90(rgb, turns) if turns else rgb


def _probe_source(path: Path) -> _Source:
    """Frame size (as shown, i.e. after the display rotation), duration and first sound
    stream of a video file, from its headers and first frame (ValueError naming the file
    when FFmpeg cannot read it or no frame decodes).

    Not :func:`codecgen.datamodules.video.probe_video`: that one counts every packet and
    caps clips at ``MAX_FRAMES`` (an hour at 30 fps is over), for codecs that load a clip whole.
    """
    from codecgen.datamodules.video import MAX_FRAME_PIXELS

    av = _av()
    if path.stat().st_size == 0:
        raise ValueError(f"video file {path} is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"file {path} has no video stream")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
            if width <= 0 or height <= 0:
                raise ValueError(f"video file {path} has no frame size ({width}x{height})")
            if width * height > MAX_FRAME_PIXELS:
                raise ValueError(f"video file {path} has {width}x{height} frames, more than {MAX_FRAME_PIXELS} pixels")
            seconds = None
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / 1e6
            audio = ""
            if container.streams.audio:
                ctx = container.streams.audio[0].codec_context
                channels = ctx.channels
                audio = f"{ctx.name}, {ctx.sample_rate} Hz, {channels} channel{'s' if channels != 1 else ''}"
            first = next(iter(container.decode(stream)), None)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read video file {path}: unsupported format or corrupt ({err})") from err
    if first is None:
        raise ValueError(f"video file {path}: no frame decodes")
    height, width = _upright(first).shape[:2]
    return _Source(path, width, height, seconds, audio)


def _sample_frames(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` upright RGB frames spread evenly over the video, for the face detector.

    Seeks to each target time (the key frame before it, then decodes up to it), so a
    long video is not decoded whole. A file that cannot seek, declares no duration, or
    gives no frame after seeking is decoded once instead, keeping every ``stride``-th
    frame and doubling the stride whenever more than ``2 * count`` are held (as
    :func:`~codecgen.datamodules.face_detect.median_face_box` thins any iterable).
    """
    av = _av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        start = float(stream.start_time * base) if stream.start_time is not None and base else 0.0
        seconds = float(stream.duration * base) if stream.duration and base else (
            container.duration / 1e6 if container.duration else None)
        frames: list[np.ndarray] = []
        if seconds and base:
            try:
                for k in range(count):
                    target = start + (k + 0.5) * seconds / count
                    container.seek(int(target / base), stream=stream, backward=True, any_frame=False)
                    picked = None
                    for frame in container.decode(stream):
                        picked = frame
                        if frame.time is None or frame.time >= target:
                            break
                    if picked is not None:
                        frames.append(_upright(picked))
            except av.error.FFmpegError:
                frames = []
        if frames:
            return frames
    with av.open(str(path)) as container:  # no seeking: decoded once, only kept frames converted
        kept: list[np.ndarray] = []
        stride = 1
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index % stride == 0:
                kept.append(_upright(frame))
                if len(kept) > 2 * count:
                    kept, stride = kept[::2], stride * 2
        return kept


def _constant_rate_frames(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """The video at a constant ``fps``: yields ``(start, rgb)`` for output frame ``i`` at time
    ``start + i / fps``, ``start`` being the first frame's timestamp (seconds), ``rgb`` the
    uint8 (H, W, 3) source frame whose timestamp is nearest (a tie goes to the earlier one).

    Streaming: a source frame is converted to RGB only when it is picked, and held only
    until the next one arrives. Timestamps come from the decoded frames (presentation
    order), so variable-frame-rate files come out at their true timing: a frame shown
    for 1/20 s fills more output slots than one shown for 1/30 s. The video ends at the
    last frame's time plus its duration; it yields ``round(duration * fps)`` frames.
    A timestamp going backwards (a broken file) is taken as equal to the previous one.
    Frames are turned upright by their display matrix (:func:`_upright`).
    """
    av = _av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        start = prev_time = None
        prev = prev_rgb = None
        step, index, shape = 1.0 / rate, 0, None
        for frame in container.decode(stream):
            if shape is None:
                shape = (frame.height, frame.width)
            elif (frame.height, frame.width) != shape:
                raise ValueError(f"video file {path}: the frame size changes mid-stream "
                                 f"({shape[1]}x{shape[0]} -> {frame.width}x{frame.height})")
            time = frame.time
            if time is None:  # no timestamp: one step after the previous frame
                time = 0.0 if prev_time is None else prev_time + step
            if prev is None:
                start, prev, prev_time = time, frame, time
                continue
            time = max(time, prev_time)
            midpoint = (prev_time + time) / 2
            while start + index / fps <= midpoint:
                if prev_rgb is None:
                    prev_rgb = _upright(prev)
                yield start, prev_rgb
                index += 1
            if time > prev_time:
                step = time - prev_time
            prev, prev_time, prev_rgb = frame, time, None
        if prev is None:
            raise ValueError(f"video file {path}: no frame decodes")
        last = float(prev.duration * prev.time_base) if prev.duration and prev.time_base else step
        total = max(index, round((prev_time + last - start) * fps), 1)
        while index < total:
            if prev_rgb is None:
                prev_rgb = _upright(prev)
            yield start, prev_rgb
            index += 1


class _Sound:
    """The first audio stream of a video as 16 kHz mono float32, its sample 0 at time ``start``
    (seconds, the first video frame's timestamp), read on demand with :meth:`take`.

    FFmpeg's resampler (swresample) converts each decoded frame as it comes, so memory
    stays at one clip's worth. Channels are averaged (as :func:`codecgen.datamodules.audio.load_audio`
    mixes down). Sound starting after the first frame is preceded by silence; sound
    before it is dropped. Gaps inside the stream are not filled (its samples are taken
    as contiguous), as in :func:`codecgen.datamodules.video.extract_audio`.
    """

    def __init__(self, path: Path, start: float) -> None:
        self.path, self.start = path, start
        self.pieces: list[np.ndarray] = []
        self.held = 0
        self.read = 0  # samples handed out so far
        self._stream = self._decode()

    def _decode(self) -> Iterator[np.ndarray]:
        av = _av()
        with av.open(str(self.path)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", rate=CLIP_SAMPLE_RATE)
            skip = None  # samples still to drop before self.start (set by the first frame)
            for frame in container.decode(stream):
                if skip is None:
                    first = frame.time if frame.time is not None else (
                        float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0)
                    offset = round((first - self.start) * CLIP_SAMPLE_RATE)
                    if offset > 0:
                        yield np.zeros(offset, np.float32)
                    skip = max(0, -offset)
                for out in resampler.resample(frame):
                    x, skip = self._mono_after(out, skip)
                    if len(x):
                        yield x
            for out in resampler.resample(None):  # what the resampler still holds
                x, skip = self._mono_after(out, skip or 0)
                if len(x):
                    yield x

    @staticmethod
    def _mono_after(frame, skip: int) -> tuple[np.ndarray, int]:
        """A resampled frame mixed to mono, less the first ``skip`` samples; and what is left to skip."""
        x = frame.to_ndarray().mean(axis=0, dtype=np.float32)
        return x[skip:], max(0, skip - len(x))

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` samples, or fewer where the sound ends."""
        while self.held < n:
            piece = next(self._stream, None)
            if piece is None:
                break
            self.pieces.append(piece)
            self.held += len(piece)
        x = np.concatenate(self.pieces) if self.pieces else np.zeros(0, np.float32)
        out, rest = x[:n], x[n:]
        self.pieces, self.held = ([rest] if len(rest) else []), len(rest)
        self.read += len(out)
        return out

    def close(self) -> None:
        self._stream.close()  # closes the container


def _resize_crops(crops: list[np.ndarray], size: int) -> list[np.ndarray]:
    """uint8 (s, s, 3) crops -> uint8 (size, size, 3) (bilinear, antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return list(x)


def _box_in_crop(box: tuple[float, float, float, float], crop: tuple[int, int, int, int],
                 size: int) -> tuple[float, float, float, float]:
    """The face box in the resized crop's pixels, clipped to it."""
    left, top, right, _ = crop
    scale = size / (right - left)
    x0, y0, x1, y1 = ((v - o) * scale for v, o in zip(box, (left, top, left, top)))
    out = tuple(float(min(max(v, 0.0), size)) for v in (x0, y0, x1, y1))
    if not (out[0] < out[2] and out[1] < out[3]):
        raise ValueError(f"the face box {box} lies outside the crop {crop}")
    return out  # type: ignore[return-value]


def _convert(source: _Source, out: Path, size: int, clip_frames: int) -> None:
    """Write ``source``'s clips into ``out/<split>/<prefix>_<k>/`` (see the module docstring)."""
    assert source.face_box is not None
    crop = square_crop_box(source.face_box, source.width, source.height)
    left, top, right, bottom = crop
    clip_box = _box_in_crop(source.face_box, crop, size)
    min_last = math.ceil(MIN_LAST_CLIP_SECONDS * CLIP_FPS)
    sound: _Sound | None = None
    resized: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    done = False

    def write(frames: list[np.ndarray]) -> None:
        """One clip of these frames and the sound under them; the sound running out ends the file."""
        nonlocal done
        need = len(frames) * SAMPLES_PER_FRAME
        audio = sound.take(need)
        if len(audio) < need:
            if sound.read == 0:
                raise ValueError(f"video file {source.path}: its sound track holds nothing in the "
                                 "pictures' time span")
            if need - len(audio) <= SAMPLES_PER_FRAME:  # the tracks' ends differ by under a frame
                audio = np.pad(audio, (0, need - len(audio)))
            else:  # the sound stops early: the pictures after it cannot be trained on
                covered = len(audio) // SAMPLES_PER_FRAME
                at = (source.frames + covered) / CLIP_FPS
                source.notes.append(f"the sound ends at {at:.2f} s: the pictures after it are not imported")
                done = True
                if covered < min_last:  # shorter than a clip: kept only when >= 2 s, like a last piece
                    return
                frames, audio = frames[:covered], audio[: covered * SAMPLES_PER_FRAME]
        name = f"{source.prefix}_{len(source.clips):03d}"
        meta = ClipMeta(frames=len(frames), size=size, identity=source.path.stem[:256],
                        source=source.path.name[:1024], face_box=clip_box,
                        licence="the source video's (imported from the user's own file)")
        source.clips.append(write_portrait_clip(out / source.split / name, np.stack(frames), audio, meta))
        source.frames += len(frames)

    try:
        for start, rgb in _constant_rate_frames(source.path, CLIP_FPS):
            if sound is None:
                sound = _Sound(source.path, start)
            if rgb.shape[:2] != (source.height, source.width):
                raise ValueError(f"video file {source.path}: frames are {rgb.shape[1]}x{rgb.shape[0]}, "
                                 f"its header says {source.width}x{source.height}")
            pending.append(rgb[top:bottom, left:right])
            if len(pending) == _RESIZE_CHUNK:
                resized += _resize_crops(pending, size)
                pending = []
            while len(resized) >= clip_frames and not done:
                write(resized[:clip_frames])
                resized = resized[clip_frames:]
                if done:
                    return
        if pending:
            resized += _resize_crops(pending, size)
        while resized and not done:  # a clip_frames smaller than a resize chunk leaves several
            piece, resized = resized[:clip_frames], resized[clip_frames:]
            if len(piece) == clip_frames or len(piece) >= min_last:
                write(piece)
            else:
                source.notes.append(f"the last {len(piece) / CLIP_FPS:.2f} s (under {MIN_LAST_CLIP_SECONDS:g} s) "
                                    "are not imported")
    finally:
        if sound is not None:
            sound.close()


# --------------------------------------------------------------------------- the import


def _video_files(src: Path) -> list[Path]:
    if not src.exists():
        raise FileNotFoundError(f"talking-head videos not found: {src}")
    if src.is_file():
        return [src]  # named explicitly: tried whatever its extension (FFmpeg decides)
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS)
    if not files:
        raise ValueError(f"folder {src} holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return files


def _prefixes(files: list[Path]) -> dict[Path, str]:
    """Clip-folder prefix per file: its stem, or stem_extension where two files share a stem."""
    stems = [f.stem for f in files]
    return {f: f.stem if stems.count(f.stem) == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}" for f in files}


def _assign_splits(sources: list[_Source], val_fraction: float) -> None:
    """``val`` where ``hash01(file name) < val_fraction``; with two or more files (and a
    positive ``val_fraction``) at least one in each split: the lowest-hashed file goes to
    val, the highest to train, if the hash gave none."""
    keyed = sorted(sources, key=lambda s: hash01(s.path.name))
    for s in keyed:
        s.split = "val" if hash01(s.path.name) < val_fraction else "train"
    if len(keyed) >= 2 and val_fraction > 0:
        if all(s.split == "train" for s in keyed):
            keyed[0].split = "val"
        if all(s.split == "val" for s in keyed):
            keyed[-1].split = "train"


def _fmt_box(box) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in box) + ")"


def _readme_body(sources: list[_Source], skipped: dict[str, str], size: int) -> list[str]:
    columns = ("file", "split", "frame size", "face box (source px)", "found by", "square crop (source px)",
               "clips", "seconds", "notes")
    lines = ["## Videos", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for s in sources:
        crop = square_crop_box(s.face_box, s.width, s.height)
        lines.append(f"| {s.path.name} | {s.split} | {s.width}x{s.height} | {_fmt_box(s.face_box)} | {s.found_by} | "
                     f"{_fmt_box(crop)} | {len(s.clips)} | {s.frames / CLIP_FPS:.2f} | {'; '.join(s.notes)} |")
    if skipped:
        lines += ["", "## Skipped files", ""] + [f"- {name}: {why}" for name, why in skipped.items()]
    return [*lines, "", (f"Each clip's `meta.json` gives the face box in its own {size} x {size} pixels. The clips "
                         "carry the licence of the videos they were cut from.")]


def import_talking_heads(
    src: str | Path,
    out: str | Path,
    size: int = 128,
    clip_seconds: float = 10.0,
    face_box: tuple[float, float, float, float] | None = None,
    val_fraction: float = 0.1,
    force: bool = False,
    face_samples: int = FACE_SAMPLES,
) -> list[Path]:
    """Import the talking-head videos in ``src`` (a video file or a folder of them) into
    ``out`` as portrait clips (see the module docstring); return the clip folders, sorted.

    ``size``: the clips' side in pixels. ``clip_seconds``: the clip length (the last,
    shorter piece of a video is kept when at least 2 s long). ``face_box``: (x0, y0, x1,
    y1) in source pixels (of the picture as shown, after any display rotation), used for
    EVERY video instead of the detector (for videos the frontal-face cascade misses, e.g.
    faces in profile); clipped to each frame. ``val_fraction``: the share of files (by a
    hash of the name) whose clips go to ``val``; with two or more usable files and a
    positive ``val_fraction``, each split gets at least one. ``face_samples``: frames per
    video the face detector looks at, spread over it (0.1 to 1 s each on one core, by
    frame size). When ``out`` holds a finished import it is returned at once (no file is
    read) unless ``force``.

    ``FileNotFoundError``: ``src`` does not exist. ``ValueError``: a folder without video
    files, bad arguments, or every file skipped (unreadable, no sound, no face found, or
    too short; each skipped file is a warning, in the README too).
    """
    src, out = Path(src), Path(out)
    if already_built(out, force):
        return list_clips(out)
    files = _video_files(src)
    if isinstance(size, bool) or not isinstance(size, int) or not _MIN_SIZE <= size <= MAX_CLIP_SIZE:
        raise ValueError(f"size must be an integer in [{_MIN_SIZE}, {MAX_CLIP_SIZE}], got {size!r}")
    clip_frames = round(clip_seconds * CLIP_FPS) if math.isfinite(clip_seconds) else 0
    if not 1 <= clip_frames <= MAX_CLIP_FRAMES:
        raise ValueError(f"clip_seconds must give 1 to {MAX_CLIP_FRAMES} frames at {CLIP_FPS:g} fps, "
                         f"got {clip_seconds}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if face_box is not None:
        face_box = check_face_box(face_box)
    if isinstance(face_samples, bool) or not isinstance(face_samples, int) or face_samples < 1:
        raise ValueError(f"face_samples must be a positive integer, got {face_samples!r}")

    build = CorpusBuild(out, "talking-heads", title="Talking-head clips imported from your videos")
    prefixes = _prefixes(files)
    sources: list[_Source] = []
    skipped: dict[str, str] = {}

    def skip(path: Path, why: str) -> None:
        skipped[path.name] = why
        build.warn(f"skipped {path}: {why}")

    for path in files:
        try:
            source = _probe_source(path)
        except ValueError as err:
            skip(path, str(err))
            continue
        if not source.audio:
            skip(path, "it has no audio stream (audio-driven animation needs the speech)")
            continue
        if face_box is not None:
            x0, y0, x1, y1 = face_box
            box = (min(x0, source.width), min(y0, source.height), min(x1, source.width), min(y1, source.height))
            if not (box[0] < box[2] and box[1] < box[3]):
                skip(path, f"the face box {face_box} given lies outside its {source.width}x{source.height} frame")
                continue
            source.face_box, source.found_by = box, "given"
        else:
            try:
                frames = _sample_frames(path, face_samples)
            except (ValueError, _av().error.FFmpegError) as err:
                skip(path, f"cannot decode it ({err})")
                continue
            source.face_box = median_face_box(frames, max_samples=face_samples)
            if source.face_box is None:
                skip(path, f"no face found (in at least a quarter of {len(frames)} frames spread over it); "
                           "pass face_box to give one")
                continue
            source.found_by = f"detector, median of {len(frames)} frames"
        source.prefix = prefixes[path]
        sources.append(source)
        log(f"{path.name}: {source.width}x{source.height}, face box {_fmt_box(source.face_box)} ({source.found_by})")

    _assign_splits(sources, val_fraction)
    imported = []
    for source in sources:
        try:
            _convert(source, out, size, clip_frames)
        except (ValueError, OSError, _av().error.FFmpegError) as err:
            for clip in source.clips:  # no half-imported video
                shutil.rmtree(clip, ignore_errors=True)
            source.clips, source.frames = [], 0
            skip(source.path, f"conversion failed ({err})")
            continue
        if not source.clips:
            skip(source.path, "it gives no clip: " + "; ".join(source.notes))
            continue
        imported.append(source)
        log(f"{source.path.name} -> {len(source.clips)} {source.split} clips, {source.frames / CLIP_FPS:.1f} s")
    if not imported:
        raise ValueError(f"no video in {src} could be imported: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    build.write_readme(f" from the talking-head videos in `{src}`.", [
        "Each video became clip folders `<split>/<file stem>_<k>/` (see `codecgen/datamodules/portrait_clips.py`):",
        f"{size} x {size} lossless FFV1 frames at {CLIP_FPS:g} fps (the source frame nearest each output time),",
        "a square crop around the face (1.8x the face box, centred a little above it), with the first",
        f"audio stream over the same span as {CLIP_SAMPLE_RATE} Hz mono WAV; clips of {clip_seconds:g} s, the last",
        f"piece kept when at least {MIN_LAST_CLIP_SECONDS:g} s long. All clips of one video share its split",
        "(a hash of the file name).",
    ], _readme_body(imported, skipped, size))
    clips = sorted(c for s in imported for c in s.clips)
    n_val = sum(s.split == "val" for s in imported)
    log(f"talking heads in {out}: {len(clips)} clips from {len(imported)} videos ({n_val} val) "
        f"in {build.seconds:.0f} s")
    build.finish({
        "source": str(src), "size": size, "clip_seconds": clip_seconds,
        "files": {s.path.name: {"split": s.split, "face_box": list(s.face_box), "found_by": s.found_by,
                                "crop": list(square_crop_box(s.face_box, s.width, s.height)),
                                "clips": [c.name for c in s.clips], "seconds": s.frames / CLIP_FPS,
                                "notes": s.notes} for s in imported},
        "skipped": skipped,
    })
    return clips

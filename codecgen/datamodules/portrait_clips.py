"""One talking-portrait clip on disk: the layout shared by the procedural corpus and users' own videos.

Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait Image
Animation") trains on talking-head videos: frames, the speech under them, and masks of the
face and the lips for its hierarchical audio attention. ``python -m codecgen.datamodules.prepare
portraits`` draws such clips (with exact landmarks, viseme tracks and expression labels);
``prepare talking-heads`` converts a user's mp4 files into the same layout. A clip is a folder:

``video.mkv``
    lossless FFV1 RGB frames, square ``size`` x ``size``, at ``fps`` (25).
``audio.wav``
    16 kHz mono 16-bit PCM whose first sample is the first frame's time; at least
    ``frames / fps`` seconds long.
``meta.json``
    :class:`ClipMeta`: format version, fps, sample rate, frame count, size, identity and
    source names, licence, the text spoken (if known), the reference ``face_box``
    (x0, y0, x1, y1 in pixels), expression labels per time range and phoneme timings.
``tracks.npz`` (optional: users' videos have none)
    per frame: ``landmarks`` (F, 68, 2) float32 pixels in the iBUG 68-point order,
    ``visemes`` (F, 3) float32 (jaw opening, mouth width, lip rounding, each in [0, 1]),
    ``pose`` (F, 3) float32 (yaw, pitch, roll in radians), ``blink`` (F,) float32 in [0, 1]
    (1 = closed), ``face_box`` (F, 4) float32, and the masks ``face_mask`` / ``lip_mask``
    (F, size, size) stored as ``np.packbits`` over each frame's pixels.

Everything read back is checked (types, ranges, sizes against the frame count) before
arrays are allocated: a clip folder is user input.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from codecgen.nn.expression_text import EXPRESSIONS  # the model's labels: one list

FORMAT_VERSION = 1
CLIP_FPS = 25.0
CLIP_SAMPLE_RATE = 16000
VISEME_NAMES = ("jaw", "width", "round")
N_LANDMARKS = 68
MAX_CLIP_FRAMES = 25 * 60 * 60  # one hour at 25 fps
MAX_CLIP_SIZE = 4096
_MAX_META_BYTES = 8 * 2**20
_TRACK_SHAPES = {  # name -> shape after the frame axis ("S" = size)
    "landmarks": (N_LANDMARKS, 2),
    "visemes": (len(VISEME_NAMES),),
    "pose": (3,),
    "blink": (),
    "face_box": (4,),
}
_MASKS = ("face_mask", "lip_mask")


@dataclass(frozen=True)
class TimedLabel:
    """A label over ``[start, end)`` seconds (an expression, or one phoneme in IPA)."""

    label: str
    start: float
    end: float


@dataclass
class ClipMeta:
    """What ``meta.json`` holds (see the module docstring)."""

    frames: int
    size: int
    identity: str
    source: str
    face_box: tuple[float, float, float, float]
    fps: float = CLIP_FPS
    sample_rate: int = CLIP_SAMPLE_RATE
    licence: str = ""
    text: str | None = None
    expressions: list[TimedLabel] = field(default_factory=list)
    phonemes: list[TimedLabel] = field(default_factory=list)
    version: int = FORMAT_VERSION

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def expression_at(self, seconds: float) -> str:
        """The expression label at a time ("neutral" where none is given)."""
        for item in self.expressions:
            if item.start <= seconds < item.end:
                return item.label
        return "neutral"


# --------------------------------------------------------------------------- checks


def _fail(path: Path, msg: str) -> None:
    raise ValueError(f"portrait clip {path}: {msg}")


def _number(path: Path, meta: dict, key: str, lo: float, hi: float, integer: bool = False) -> float:
    value = meta.get(key)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or not lo <= value <= hi:
        _fail(path, f"meta.json field {key!r} must be a{'n integer' if integer else ' number'} in [{lo}, {hi}], "
                    f"got {value!r}")
    return value


def _text(path: Path, meta: dict, key: str, optional: bool = False, limit: int = 100_000) -> str | None:
    value = meta.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        _fail(path, f"meta.json field {key!r} must be a string of at most {limit} characters")
    return value


def _timed(path: Path, meta: dict, key: str, seconds: float, labels: tuple[str, ...] | None) -> list[TimedLabel]:
    items = meta.get(key, [])
    if not isinstance(items, list) or len(items) > 1_000_000:
        _fail(path, f"meta.json field {key!r} must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            _fail(path, f"meta.json field {key!r} holds a non-object")
        label = _text(path, item, "label", limit=64)
        if labels is not None and label not in labels:
            _fail(path, f"unknown {key[:-1]} label {label!r} (known: {', '.join(labels)})")
        start = _number(path, item, "start", 0.0, seconds + 1.0)
        end = _number(path, item, "end", start, seconds + 1.0)
        out.append(TimedLabel(label, float(start), float(end)))
    return out


def _parse_meta(path: Path, meta: object) -> ClipMeta:
    if not isinstance(meta, dict):
        _fail(path, "meta.json is not a JSON object")
    version = _number(path, meta, "version", 1, 1_000_000, integer=True)
    if version != FORMAT_VERSION:
        _fail(path, f"format version {version} is not supported (this reader knows {FORMAT_VERSION})")
    frames = int(_number(path, meta, "frames", 1, MAX_CLIP_FRAMES, integer=True))
    size = int(_number(path, meta, "size", 8, MAX_CLIP_SIZE, integer=True))
    fps = float(_number(path, meta, "fps", 1.0, 240.0))
    sample_rate = int(_number(path, meta, "sample_rate", 8000, 192000, integer=True))
    box = meta.get("face_box")
    if (not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                             and math.isfinite(v) for v in box)):
        _fail(path, "meta.json field 'face_box' must be four numbers x0, y0, x1, y1")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        _fail(path, f"face_box {box} is not a box inside the {size} x {size} frame")
    seconds = frames / fps
    return ClipMeta(
        frames=frames, size=size, fps=fps, sample_rate=sample_rate, face_box=(x0, y0, x1, y1),
        identity=_text(path, meta, "identity", limit=256), source=_text(path, meta, "source", limit=1024),
        licence=_text(path, meta, "licence", optional=True, limit=4096) or "",
        text=_text(path, meta, "text", optional=True),
        expressions=_timed(path, meta, "expressions", seconds, EXPRESSIONS),
        phonemes=_timed(path, meta, "phonemes", seconds, None), version=version,
    )


def read_clip_meta(path: str | Path) -> ClipMeta:
    """The checked ``meta.json`` of clip folder ``path`` (ValueError naming the folder if bad)."""
    path = Path(path)
    file = path / "meta.json"
    if not file.is_file():
        raise FileNotFoundError(f"portrait clip {path}: no meta.json (not a clip folder)")
    if file.stat().st_size > _MAX_META_BYTES:
        _fail(path, f"meta.json is larger than {_MAX_META_BYTES} bytes")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        _fail(path, f"meta.json is not valid JSON ({err})")
    return _parse_meta(path, meta)


# --------------------------------------------------------------------------- tracks


def _check_tracks(path: Path, meta: ClipMeta, tracks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, shape in _TRACK_SHAPES.items():
        if name not in tracks:
            _fail(path, f"tracks.npz lacks {name!r}")
        x = tracks[name]
        if x.shape != (meta.frames, *shape) or not np.issubdtype(x.dtype, np.floating):
            _fail(path, f"track {name!r} must be float ({meta.frames}, {', '.join(map(str, shape))}), "
                        f"got {x.dtype} {x.shape}")
        if not np.isfinite(x).all():
            _fail(path, f"track {name!r} holds NaN or infinity")
        out[name] = x.astype(np.float32)
    packed = math.ceil(meta.size * meta.size / 8)
    for name in _MASKS:
        if name not in tracks:
            _fail(path, f"tracks.npz lacks {name!r}")
        x = tracks[name]
        if x.dtype != np.uint8 or x.shape != (meta.frames, packed):
            _fail(path, f"mask {name!r} must be uint8 ({meta.frames}, {packed}) packed bits, got {x.dtype} {x.shape}")
        out[name] = x
    return out


def load_clip_tracks(path: str | Path, meta: ClipMeta | None = None) -> dict[str, np.ndarray] | None:
    """The per-frame tracks of a clip (masks still packed: see :func:`unpack_masks`), or None when
    the clip has none (a user's video)."""
    path = Path(path)
    meta = meta or read_clip_meta(path)
    file = path / "tracks.npz"
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            # Each array's header is read (and its size checked) before its data.
            tracks = {}
            for name in (*_TRACK_SHAPES, *_MASKS):
                if name in data.files:
                    tracks[name] = data[name]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        _fail(path, f"tracks.npz is unreadable ({err})")
    return _check_tracks(path, meta, tracks)


def unpack_masks(packed: np.ndarray, size: int) -> np.ndarray:
    """(F, ceil(size*size/8)) packed bits -> (F, size, size) bool."""
    bits = np.unpackbits(packed, axis=1, count=size * size)
    return bits.reshape(len(packed), size, size).astype(bool)


# --------------------------------------------------------------------------- writing


def write_portrait_clip(
    path: str | Path,
    frames: np.ndarray,
    audio: np.ndarray,
    meta: ClipMeta,
    tracks: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write one clip folder atomically (a temporary folder renamed into place).

    ``frames``: uint8 (F, S, S, 3); ``audio``: float mono samples at ``meta.sample_rate``
    in [-1, 1], at least F / fps seconds (longer is cut); ``tracks``: the per-frame arrays
    of the module docstring with the masks as bool (F, S, S) (packed here), or None.
    """
    import soundfile as sf
    import torch

    from codecgen.datamodules.video import write_video

    path = Path(path)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (meta.size, meta.size, 3):
        raise ValueError(f"frames must be uint8 (F, {meta.size}, {meta.size}, 3), got {frames.dtype} {frames.shape}")
    if len(frames) != meta.frames:
        raise ValueError(f"{len(frames)} frames but meta says {meta.frames}")
    need = math.ceil(meta.frames / meta.fps * meta.sample_rate)
    if audio.ndim != 1 or len(audio) < need:
        raise ValueError(f"audio must be mono with at least {need} samples, got shape {audio.shape}")
    stored = dict(tracks or {})
    for name in _MASKS:
        if name in stored:
            stored[name] = np.packbits(stored[name].reshape(len(frames), -1).astype(bool), axis=1)
    record = asdict(meta)
    record["face_box"] = list(meta.face_box)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        if tracks is not None:
            _check_tracks(tmp, meta, stored)
            np.savez_compressed(tmp / "tracks.npz", **stored)
        write_video(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0, tmp / "video.mkv", fps=meta.fps)
        sf.write(str(tmp / "audio.wav"), np.clip(audio[:need], -1.0, 1.0), meta.sample_rate, subtype="PCM_16")
        (tmp / "meta.json").write_text(json.dumps(record, indent=1))
        tmp.chmod(0o755)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def list_clips(root: str | Path) -> list[Path]:
    """Clip folders (those holding a meta.json) under ``root``, sorted."""
    return sorted(p.parent for p in Path(root).rglob("meta.json"))

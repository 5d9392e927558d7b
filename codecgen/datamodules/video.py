"""Video data: a reader, a writer, and a LightningDataModule that serves the frames of ONE clip.

Video codecs of the NeRV family fit a network to a single clip (frame index ->
frame) and are evaluated on the very frames they fit, so the data module here
does not cut crops from a corpus: it loads one video (a file, or a folder of
PNG/JPG frames) once into memory and serves its frames as
``{"frame": (3, H, W) in [0, 1], "index": int, "t": index / (T - 1)}``. The
default clips are built offline by ``python -m codecgen.datamodules.prepare
video`` (see ../shared/DATA.md).

Files are read with PyAV (FFmpeg): mp4/mkv/avi/y4m/webm and anything else
FFmpeg demuxes, decoded to RGB24 and returned as float32 (T, 3, H, W) in
[0, 1]. :func:`write_video` writes lossless FFV1 (``.mkv``, RGB), H.264
(``.mp4``) or PNG frames (a folder) from a tensor or from any iterable of
frames (streamed, one frame in memory at a time), always through a temporary
name, so no partial output is left behind. Every way a video can be bad (missing is
``FileNotFoundError``; empty, corrupt, truncated, unsupported, without a video
stream, zero frames, absurdly large, mismatched frame sizes in a folder, or
more than ``max_bytes`` to load) raises one ``ValueError`` naming the file,
before anything large is allocated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codecgen.codecs.video.clip import ClipShape, VideoFrames
from codecgen.datamodules.base import SplitDataModule
from codecgen.datamodules.image import image_size, load_image, save_image

__all__ = [
    "VideoDataModule",
    "VideoInfo",
    "load_video",
    "probe_video",
    "write_video",
    "extract_audio",
    "mux_audio",
    "parse_frame_range",
    "FRAME_EXTENSIONS",
    "MAX_FRAME_PIXELS",
    "MAX_FRAMES",
    "MAX_BYTES",
    "FOLDER_FPS",
]

BUILD_HINT = "build the default clips with `python -m codecgen.datamodules.prepare video --out data/video`"
FRAME_EXTENSIONS = ("png", "jpg", "jpeg")
MAX_FRAME_PIXELS = 2**26
MAX_FRAMES = 100_000
MAX_BYTES = 4 * 2**30  # float32 frames held in memory by load_video
FOLDER_FPS = 25.0  # a folder of frames has no frame rate of its own
_CHUNK = 16  # frames resized together
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what an ordinary open() would give (mkstemp gives 0600)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds: frame count, frame size and frame rate.

    ``variable_rate``: the frames' timestamps are not evenly spaced (screen captures,
    phone videos); ``fps`` is then the average rate, frames / the video stream's
    duration, and the frames are coded at that constant rate. ``other_streams``
    names the streams that are not the (first) video stream, e.g. ``"audio #1
    (aac, 2.56 s)"``: the video codec codes pictures only.
    """

    frames: int
    height: int
    width: int
    fps: float
    variable_rate: bool = False
    other_streams: tuple[str, ...] = ()


def _av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - a dependency in pyproject.toml
        raise ImportError("reading and writing video needs PyAV: pip install 'av>=12'") from err
    return av


def _check_size(path: Path, frames: int, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"video {path} has zero frame size ({width}x{height})")
    if height * width > MAX_FRAME_PIXELS:
        raise ValueError(
            f"video {path} has {width}x{height} = {width * height} pixels per frame, "
            f"more than the limit of {MAX_FRAME_PIXELS}"
        )
    if frames <= 0:
        raise ValueError(f"video {path} has no frames")
    if frames > MAX_FRAMES:
        raise ValueError(f"video {path} has {frames} frames, more than the limit of {MAX_FRAMES}")


# --------------------------------------------------------------------------- folders of frames


def _frame_files(path: Path) -> list[Path]:
    suffixes = {"." + e for e in FRAME_EXTENSIONS}
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _probe_folder(path: Path) -> tuple[VideoInfo, list[Path]]:
    files = _frame_files(path)
    if not files:
        raise ValueError(f"video folder {path} holds no {'/'.join(FRAME_EXTENSIONS)} frames")
    if len(files) > MAX_FRAMES:
        raise ValueError(f"video folder {path} has {len(files)} frames, more than the limit of {MAX_FRAMES}")
    sizes = [image_size(f) for f in files]  # headers only; ValueError names a bad frame file
    for f, s in zip(files, sizes):
        if s != sizes[0]:
            raise ValueError(
                f"video folder {path}: frame {f.name} is {s[1]}x{s[0]} but {files[0].name} is "
                f"{sizes[0][1]}x{sizes[0][0]}; all frames must have the same size"
            )
    h, w = sizes[0]
    _check_size(path, len(files), h, w)
    return VideoInfo(len(files), h, w, FOLDER_FPS), files


# --------------------------------------------------------------------------- video files


def _open_container(path: Path):
    av = _av()
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"video file {path} is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read video file {path}: unsupported format or corrupt ({err})") from err
    if not container.streams.video:
        container.close()
        raise ValueError(f"file {path} has no video stream")
    return container


def _tag_seconds(value: str | None) -> float | None:
    """Matroska's per-stream ``DURATION`` tag, ``HH:MM:SS.nnnnnnnnn`` -> seconds."""
    try:
        h, m, sec = str(value).split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (ValueError, AttributeError):
        return None


def _stream_seconds(stream) -> float | None:
    """The duration a stream declares for ITSELF (its header, or Matroska's DURATION tag)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return _tag_seconds((stream.metadata or {}).get("DURATION"))


def _describe(stream) -> str:
    seconds = _stream_seconds(stream)
    name = getattr(stream.codec_context, "name", None) or "?"
    return f"{stream.type} #{stream.index} ({name}" + (f", {seconds:.2f} s)" if seconds else ")")


def _timing(path: Path, container, stream) -> tuple[int, float | None, bool]:
    """(frames, average fps from timestamps or None, whether the rate varies), by demuxing
    the video stream's packets (no decoding).

    The count is checked against the duration the VIDEO stream declares for itself,
    never the container's (the longest stream's: a sound track may outlast the
    pictures), except in a file holding the video stream alone, where the two are
    the same. Short of that by more than 1 %: ``ValueError``, the file was cut short
    (Matroska reserves the stream's DURATION tag up front, so a cut file keeps it).
    """
    pts, last_duration = [], 0
    for packet in container.demux(stream):
        if packet.size:
            if packet.pts is not None:
                pts.append(int(packet.pts))
                last_duration = int(packet.duration or 0)
            else:
                pts.append(None)
    n = len(pts)
    if stream.frames and stream.frames > 0 and not n:
        n = int(stream.frames)
    stamps = sorted(p for p in pts if p is not None)
    fps, variable = None, False
    if len(stamps) >= 2 and stream.time_base and len(stamps) == n:
        steps = np.diff(np.asarray(stamps, dtype=np.int64))
        span = stamps[-1] - stamps[0] + (last_duration or int(np.median(steps)))
        if span > 0:
            fps = float(n / (span * stream.time_base))
        tolerance = max(1, int(0.02 * float(np.median(steps))))  # rounding of a millisecond time base
        variable = bool(steps.max() - steps.min() > 2 * tolerance)
    own = _stream_seconds(stream)
    seconds = own
    if seconds is None and len(container.streams) == 1 and container.duration:
        seconds = container.duration / 1e6
    rate = fps or float(stream.average_rate or stream.guessed_rate or stream.base_rate or FOLDER_FPS)
    if seconds and not variable:
        expected = round(seconds * rate)
        if n < expected - int(0.01 * expected):
            raise ValueError(f"video file {path} is truncated: its video stream declares {expected} frames "
                             f"({seconds:.3f} s), only {n} are present")
    return n, fps, variable


def _probe_file(path: Path) -> VideoInfo:
    av = _av()
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        h, w = int(ctx.height or 0), int(ctx.width or 0)
        _check_size(path, 1, h, w)  # size first: cheap, and before any demuxing
        others = tuple(_describe(s) for s in container.streams if s.index != stream.index)
        try:
            frames, fps, variable = _timing(path, container, stream)
        except av.error.FFmpegError as err:
            raise ValueError(f"cannot read video file {path}: corrupt or truncated ({err})") from err
        if fps is None:
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else FOLDER_FPS
        elif not variable:
            rate = stream.average_rate or stream.guessed_rate
            if rate and abs(float(rate) - fps) <= 0.01 * fps:
                fps = float(rate)  # the header's exact fraction (e.g. 30000/1001) over a rounded estimate
    finally:
        container.close()
    _check_size(path, frames, h, w)
    if variable:
        warnings.warn(
            f"video file {path} has a variable frame rate: its {frames} frames are coded at their average "
            f"rate, {fps:.3f} fps (frames / the video stream's duration), and decode at that constant rate",
            stacklevel=3)
    return VideoInfo(frames, h, w, fps, variable, others)


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, size and rate of a video file or PNG/JPG folder, without decoding pixels.

    The count comes from demuxing the video stream's packets, checked against the
    duration the video stream declares for itself (never the container's, which a
    longer sound track sets). The rate is the frames' timestamps' average rate; when
    the timestamps are unevenly spaced (variable frame rate) a warning says the clip
    is coded at that average, constant rate. A folder's rate is :data:`FOLDER_FPS`.
    """
    path = Path(path)
    if path.is_dir():
        return _probe_folder(path)[0]
    return _probe_file(path)


# --------------------------------------------------------------------------- loading


def _resize(x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """(T, 3, h, w) -> (T, 3, H, W): bilinear with antialiasing (area-like when shrinking)."""
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)


def _check_range(path: Path, n: int, start: int, stop: int | None) -> int:
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    stop = n if stop is None else stop
    if stop <= start:
        raise ValueError(f"empty frame range [{start}, {stop}) for video {path}")
    if start >= n:
        raise ValueError(f"start frame {start} is past the end of video {path} ({n} frames)")
    return min(stop, n)


def load_video(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    size: tuple[int, int] | None = None,
    max_bytes: int = MAX_BYTES,
    strict: bool = True,
) -> torch.Tensor:
    """Load frames ``[start, stop)`` of a video as float32 (T, 3, H, W) in [0, 1].

    ``path`` is a video file (anything FFmpeg reads: mp4, mkv, avi, y4m, webm,
    ...; decoded to RGB24) or a folder of PNG/JPG frames (sorted by name).
    ``stop=None`` means to the end; a ``stop`` past the end is clipped. Nothing
    after ``stop`` is decoded. ``size=(H, W)`` resizes every frame (bilinear,
    antialiased). ``ValueError`` names the file when it is empty, corrupt,
    truncated, unsupported, has no video stream or no frames, its frames are
    over :data:`MAX_FRAME_PIXELS` or more than :data:`MAX_FRAMES`, a folder's
    frames differ in size, or the result would take more than ``max_bytes``.
    ``strict=False`` returns the frames that decode when a file ends early
    (at least one) instead of raising.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    files: list[Path] = []
    if path.is_dir():
        info, files = _probe_folder(path)
    else:
        info = _probe_file(path)
    stop = _check_range(path, info.frames, start, stop)
    if size is not None:
        size = (int(size[0]), int(size[1]))
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"size must be positive, got {size}")
    out_h, out_w = size or (info.height, info.width)
    n = stop - start
    need = n * 3 * out_h * out_w * 4
    if need > max_bytes:
        raise ValueError(
            f"loading {n} frames of {out_w}x{out_h} from {path} takes {need / 2**30:.2f} GiB, more than "
            f"max_bytes = {max_bytes / 2**30:.2f} GiB; load a frame range (start/stop) or a smaller size"
        )
    out = torch.empty(n, 3, out_h, out_w, dtype=torch.float32)
    if files:
        for i in range(0, n, _CHUNK):
            chunk = torch.stack([load_image(f)[0] for f in files[start + i : min(start + i + _CHUNK, stop)]])
            out[i : i + len(chunk)] = _resize(chunk, size)
        return out
    got = _decode_into(path, out, start, stop, size, info)
    if got < n and not strict and got > 0:
        return out[:got].clone()
    if got < n:
        raise ValueError(
            f"video file {path} is truncated or corrupt: decoded {start + got} frames, expected at least {stop}"
        )
    return out


def _decode_into(
    path: Path, out: torch.Tensor, start: int, stop: int, size: tuple[int, int] | None, info: VideoInfo
) -> int:
    """Decode frames [start, stop) into ``out``; return how many were written."""
    av = _av()
    container = _open_container(path)
    got, index, pending = 0, 0, []

    def flush() -> None:
        nonlocal got, pending
        if pending:
            x = torch.from_numpy(np.stack(pending)).permute(0, 3, 1, 2).float().div_(255.0)
            out[got : got + len(pending)] = _resize(x, size)
            got += len(pending)
            pending = []

    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if index >= stop:
                break
            if index >= start:
                if (frame.height, frame.width) != (info.height, info.width):
                    raise ValueError(
                        f"video file {path}: frame {index} is {frame.width}x{frame.height}, "
                        f"not {info.width}x{info.height} (size changes mid-stream are not supported)"
                    )
                pending.append(frame.to_ndarray(format="rgb24"))
                if len(pending) == _CHUNK:
                    flush()
            index += 1
        flush()
    except av.error.FFmpegError as err:
        raise ValueError(f"cannot decode video file {path}: corrupt or truncated ({err})") from err
    finally:
        container.close()
    return got


# --------------------------------------------------------------------------- writing


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    x = torch.nan_to_num(frame.detach().float().cpu(), nan=0.0)
    return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _checked(frames: Iterable[torch.Tensor], path: Path, even: bool) -> Iterator[torch.Tensor]:
    """The frames, each checked as it arrives: (3, H, W) tensors, all of the first one's size."""
    size = None
    for i, frame in enumerate(frames):
        if not isinstance(frame, torch.Tensor) or frame.ndim != 3 or frame.shape[0] != 3 or 0 in frame.shape:
            shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
            raise ValueError(f"cannot write video {path}: frame {i} is {shape}, expected a (3, H, W) tensor")
        if size is None:
            size = tuple(frame.shape[1:])
            h, w = size
            if h * w > MAX_FRAME_PIXELS:
                raise ValueError(f"cannot write video {path}: {w}x{h} frames are over {MAX_FRAME_PIXELS} pixels")
            if even and (h % 2 or w % 2):
                raise ValueError(f"cannot write {path}: H.264 yuv420p needs even height and width, got {w}x{h}")
        elif tuple(frame.shape[1:]) != size:
            raise ValueError(f"cannot write video {path}: frame {i} is {tuple(frame.shape[1:])}, frame 0 is {size}")
        yield frame
    if size is None:
        raise ValueError(f"cannot write video {path}: no frames")


def _encode(frames: Iterator[torch.Tensor], tmp: Path, fmt: str, codec: str, pix_fmt: str, options: dict,
            fps: float) -> None:
    av = _av()
    with av.open(str(tmp), mode="w", format=fmt) as container:
        stream = None
        for frame in frames:
            rgb = _to_uint8(frame)
            if stream is None:  # the stream's size is the first frame's
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(100_000))
                stream.width, stream.height = rgb.shape[1], rgb.shape[0]
                stream.pix_fmt = pix_fmt
                stream.options = options
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def write_video(frames: torch.Tensor | Iterable[torch.Tensor], path: str | Path, fps: float = 25.0) -> Path:
    """Write frames in [0, 1] to ``path``, format by suffix; return ``path``.

    ``frames`` is a (T, 3, H, W) tensor or any iterable of (3, H, W) tensors, all of
    one size: a generator is consumed frame by frame and written as it goes, so a
    long decode never holds the whole clip in memory. ``.mkv``: FFV1, lossless 8-bit
    RGB (``bgr0``): :func:`load_video` gives back exactly ``(x * 255).round() / 255``.
    ``.mp4``: H.264 (libx264, yuv420p, crf 18; height and width must be even). No
    suffix, or an existing folder: PNG frames ``frame_00000.png``, ... (lossless;
    earlier ``frame_*.png`` in the folder are replaced). Output goes to a temporary
    name first and is renamed into place, so a failure (a bad frame, or the iterable
    raising midway) leaves no partial file and an existing one untouched.
    """
    path = Path(path)
    if isinstance(frames, torch.Tensor) and (frames.ndim != 4 or frames.shape[1] != 3 or 0 in frames.shape):
        raise ValueError(f"expected (T, 3, H, W) frames, got shape {tuple(frames.shape)}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    suffix = path.suffix.lower()
    folder = path.is_dir() or suffix == ""
    if not folder and suffix not in (".mkv", ".mp4"):
        raise ValueError(f"cannot write video {path}: unknown suffix {suffix!r} (use .mkv, .mp4 or a folder)")
    checked = _checked(frames, path, even=suffix == ".mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        _write_folder(checked, path)
        return path
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if suffix == ".mkv":
            _encode(checked, tmp, "matroska", "ffv1", "bgr0", {"level": "3", "slicecrc": "1"}, fps)
        else:
            _encode(checked, tmp, "mp4", "libx264", "yuv420p", {"crf": "18", "preset": "medium"}, fps)
        tmp.chmod(_FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_folder(frames: Iterator[torch.Tensor], path: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        for i, frame in enumerate(frames):
            save_image(frame.clamp(0, 1), tmp / f"frame_{i:05d}.png")
        if not path.exists():
            tmp.chmod(_FILE_MODE | 0o111)
            os.replace(tmp, path)
            return
        for old in path.glob("frame_*.png"):
            old.unlink()
        for new in sorted(tmp.iterdir()):
            os.replace(new, path / new.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- sound tracks


def _first_pts_seconds(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0


def _to_float(x: np.ndarray) -> np.ndarray:
    """Samples of any FFmpeg sample format as float32 in [-1, 1]."""
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / float(-np.iinfo(x.dtype).min)
    return x.astype(np.float32)


def extract_audio(path: str | Path, dst: str | Path, start_frame: int = 0, stop_frame: int | None = None,
                  fps: float | None = None) -> float | None:
    """Write the first audio stream of video file ``path``, for the video frames
    ``[start_frame, stop_frame)``, to ``dst`` (a float WAV at its own rate and channels).

    Time-aligned to the pictures: samples before the first frame are cut, and the
    return value is the offset in seconds from the first frame to the first sample kept
    (> 0 when the sound starts later). None when the file has no audio stream, or
    none of it falls in the frames' time span.
    """
    import soundfile as sf

    av = _av()
    path = Path(path)
    container = _open_container(path)
    try:
        if not container.streams.audio:
            return None
        video, audio = container.streams.video[0], container.streams.audio[0]
        fps = fps or probe_video(path).fps
        t0 = _first_pts_seconds(video) + start_frame / fps
        t1 = None if stop_frame is None else _first_pts_seconds(video) + stop_frame / fps
        rate, pieces, first = None, [], None
        for frame in container.decode(audio):
            x = frame.to_ndarray()
            x = x.reshape(-1, len(frame.layout.channels)) if frame.format.is_packed else x.T
            x = _to_float(x)
            rate = frame.sample_rate
            at = float(frame.pts * frame.time_base) if frame.pts is not None else (
                first + sum(len(p) for p in pieces) / rate if first is not None else 0.0)
            skip = max(0, round((t0 - at) * rate))
            x = x[skip:]
            if first is None and len(x):
                first = at + skip / rate
            if t1 is not None and len(x):
                x = x[: max(0, round((t1 - (at + skip / rate)) * rate))]
            if len(x):
                pieces.append(x)
    except av.error.FFmpegError as err:
        raise ValueError(f"cannot decode the audio of {path}: {err}") from err
    finally:
        container.close()
    if not pieces:
        return None
    sf.write(str(dst), np.concatenate(pieces), rate, subtype="FLOAT", format="WAV")
    return max(0.0, first - t0)


def mux_audio(video: str | Path, audio: str | Path, dst: str | Path, offset: float = 0.0,
              span: tuple[float, float | None] = (0.0, None)) -> Path:
    """``video`` (a file :func:`write_video` wrote) with the sound file ``audio`` added,
    starting ``offset`` seconds after the first frame, written to ``dst``. ``span``:
    the seconds (from, to) of the sound's time line (0 = the first frame) that the video
    file covers (a range of frames; to=None: to the end). AAC in ``.mp4``,
    FLAC in ``.mkv``. The pictures are copied, not re-encoded. Through a temporary name:
    a failure leaves no partial file."""
    import soundfile as sf

    av = _av()
    dst = Path(dst)
    suffix = dst.suffix.lower()
    codec = {".mp4": "aac", ".mkv": "flac"}.get(suffix)
    if codec is None:
        raise ValueError(f"cannot add sound to {dst}: use .mkv or .mp4")
    samples, rate = sf.read(str(audio), dtype="float32", always_2d=True)
    tmp = Path(tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".tmp{suffix}", dir=dst.parent)[1])
    try:
        with av.open(str(video)) as source, av.open(str(tmp), mode="w") as out:
            vin = source.streams.video[0]
            vout = out.add_stream_from_template(vin)
            channels = samples.shape[1]
            aout = out.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
            aout.time_base = Fraction(1, rate)
            for packet in source.demux(vin):
                if packet.dts is None:
                    continue
                packet.stream = vout
                out.mux(packet)
            fmt = "fltp" if codec == "aac" else "s16"
            resampler = av.AudioResampler(format=fmt, layout=aout.layout.name, rate=rate)
            x = samples[:, :2] if channels > 2 else samples
            first = round((offset - span[0]) * rate)  # where the sound starts in the output
            x, start = (x[-first:], 0) if first < 0 else (x, first)
            if span[1] is not None:
                x = x[: max(0, round((span[1] - span[0]) * rate) - start)]
            for i in range(0, len(x), 4096):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[i: i + 4096].T), format="fltp",
                                                   layout=aout.layout.name)
                frame.sample_rate, frame.pts, frame.time_base = rate, start + i, Fraction(1, rate)
                for piece in resampler.resample(frame):
                    out.mux(aout.encode(piece))
            for piece in resampler.resample(None):
                out.mux(aout.encode(piece))
            out.mux(aout.encode(None))
        tmp.chmod(_FILE_MODE)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


# --------------------------------------------------------------------------- datamodule


def parse_frame_range(frames: str | None) -> tuple[int, int | None]:
    """``"10:100"`` -> (10, 100); ``"10:"`` -> (10, None); ``":50"`` or ``"50"`` -> (0, 50); None -> (0, None)."""
    if frames is None or str(frames).strip() in ("", ":"):
        return 0, None
    text = str(frames).strip()
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            start, stop = int(a) if a.strip() else 0, int(b) if b.strip() else None
        else:
            start, stop = 0, int(text)
    except ValueError as err:
        raise ValueError(f"frames must look like 'start:stop' (e.g. '0:100'), got {frames!r}") from err
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"frames {frames!r} is an empty or negative range")
    return start, stop


class VideoDataModule(ClipShape, SplitDataModule):
    """The frames of ONE video, for codecs that fit a network to a clip (the NeRV family).

    ``video`` is a video file or a folder of PNG/JPG frames; ``frames`` picks a
    range (``"0:100"``, ``"50:"``; default all) and ``resize=(H, W)``
    resizes (bilinear, antialiased). The clip is loaded once in ``setup``
    (float32, refused above ``max_bytes``). Training serves every frame
    ``epoch_repeats`` times per epoch, shuffled, and keeps a short last batch
    (no frame is skipped); validation serves all frames once, in order (the
    NeRV family is scored on the frames it fits). Items are dicts
    ``{"frame": (3, H, W) in [0, 1], "index": int, "t": index / (T - 1)}``
    (``t`` a float32 scalar; 0 for a one-frame clip). After ``setup``,
    ``n_frames``, ``frame_size`` (H, W) and ``fps`` describe the clip.
    """

    item_name = "frames"
    more_items_hint = "epoch_repeats"
    drop_last_train = False  # no frame may be skipped

    def __init__(
        self,
        video: str = "data/video/val/zoom_skimage_astronaut.mkv",
        resize: tuple[int, int] | None = None,
        frames: str | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        epoch_repeats: int = 1,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if batch_size <= 0 or epoch_repeats <= 0:
            raise ValueError("batch_size and epoch_repeats must be positive")
        if resize is not None and (len(resize) != 2 or min(resize) <= 0):
            raise ValueError(f"resize must be (height, width) with positive sides, got {resize}")
        self.video = Path(video)
        self.start, self.stop = parse_frame_range(frames)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.epoch_repeats = epoch_repeats
        self.frames: torch.Tensor | None = None
        self._fps: float | None = None
        self.train_set: VideoFrames | None = None
        self.val_set: VideoFrames | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if not self.video.exists():
            raise FileNotFoundError(f"video {self.video} does not exist; {BUILD_HINT}")
        size = None if self.hparams.resize is None else tuple(self.hparams.resize)
        self._fps = probe_video(self.video).fps
        self.frames = load_video(self.video, self.start, self.stop, size=size, max_bytes=self.hparams.max_bytes)
        self.train_set = VideoFrames(self.frames, self.epoch_repeats)
        self.val_set = VideoFrames(self.frames, 1)


# libx265 3.5 (Debian 12) writes past a heap buffer in its lookahead (cuTree) on frames
# narrower than its 64-px coding tree unit (valgrind: 48x32, 48x64); whether that aborts
# ("corrupted size vs. prev_size") depends on the heap's layout, so it fails at random.
CLASSICAL_MIN_SIDE = 64


def _coded_side(n: int) -> int:
    """A frame side as the classical anchors code it: at least CLASSICAL_MIN_SIDE, and even (4:2:0)."""
    return max(CLASSICAL_MIN_SIDE, n + n % 2)


def classical_round_trip(source: str | Path, out_dir: str | Path, encoder: str, crf: int,
                         preset: str = "slow") -> tuple[Path, torch.Tensor, float, float]:
    """The classical anchor on one clip: ``encoder`` (``libx264`` or ``libx265``) at ``crf``,
    4:2:0, one thread, written as a raw bitstream (no container bytes in its size), then
    decoded back. Returns (bitstream path, decoded frames (N, 3, H, W), encode s, decode s).

    Frames with a side under 64 px (x265's coding tree unit; smaller frames crash Debian
    12's libx265) or of odd size (4:2:0) are padded on the right and bottom, in RGB, by
    repeating the edge pixels, up to at least 64 px and an even size; both encoders code the
    same padded frames. The decoded frames (and ``*_back.mkv``) are cropped back to the
    source's size, but the bitstream, hence its size in bits, is the padded one.
    """
    stream_format = {"libx264": "h264", "libx265": "hevc"}.get(encoder)
    if stream_format is None:
        raise ValueError(f"encoder must be libx264 or libx265, got {encoder!r}")
    out_dir = Path(out_dir)
    coded, back = out_dir / f"{encoder}_crf{crf}.{stream_format}", out_dir / f"{encoder}_crf{crf}_back.mkv"
    one_thread = (["-x265-params", "log-level=error:pools=1:frame-threads=1"] if encoder == "libx265"
                  else ["-threads", "1"])
    info = probe_video(source)
    h, w = info.height, info.width
    pad_h, pad_w = _coded_side(h) - h, _coded_side(w) - w
    pad, crop = [], []
    if pad_h or pad_w:  # fillborders works on planar formats: gbrp keeps RGB sources lossless
        pad = ["-vf", f"format=gbrp,pad={w + pad_w}:{h + pad_h}:0:0,"
                      f"fillborders=right={pad_w}:bottom={pad_h}:mode=smear"]
        crop = ["-vf", f"format=bgr0,crop={w}:{h}:0:0"]
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *pad, "-c:v", encoder, "-preset", preset,
                    "-crf", str(crf), "-pix_fmt", "yuv420p", *one_thread, "-f", stream_format, str(coded)],
                   check=True)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-threads", "1", "-i", str(coded), *crop, "-c:v", "ffv1",
                    "-pix_fmt", "bgr0", str(back)], check=True)
    decode_s = time.perf_counter() - start
    return coded, load_video(back), encode_s, decode_s

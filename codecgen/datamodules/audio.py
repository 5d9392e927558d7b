"""Audio data: a LightningDataModule over a folder of sound files, and file readers.

Every audio codec trains on fixed-length mono segments cut at random from a
folder of wav/flac/ogg files (the default corpus is built offline by
``python -m codecgen.datamodules.prepare speech``; users point ``--data.root``
at their own folder). Files are never loaded whole for training: only the
source-rate window a segment needs is read, then mixed to mono and resampled.

The same windowed reader backs :func:`iter_audio_chunks`, which the codec CLI
uses to encode long files with bounded memory. Windows are aligned to the
resampler's polyphase period and padded with enough extra source samples that
the filter never sees an artificial edge inside the kept region, so chunked
output matches whole-file resampling to float precision (and is bit-exact when
no resampling is needed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from codecgen.datamodules.base import SplitDataModule, split_draw
from codecgen.datamodules.split import split_by_hash

__all__ = ["AudioDataModule", "AudioSegments", "audio_info", "load_audio", "iter_audio_chunks"]

BUILD_HINT = "build the default corpus with `python -m codecgen.datamodules.prepare speech --out data/speech`"
_MAX_SAMPLE_RATE = 1_000_000  # anything above is a corrupt header, not audio
_MAX_CHANNELS = 256
# torchaudio.functional.resample defaults, needed to size the context a window must carry.
_LOWPASS_WIDTH = 6
_ROLLOFF = 0.99


# --------------------------------------------------------------------------- file reading


@dataclass(frozen=True)
class _Info:
    path: Path
    sample_rate: int
    frames: int
    channels: int


def _probe(path: str | Path) -> _Info:
    """Read a file's header; raise ValueError naming the file if it is not sane audio.

    Empty files are *not* rejected here, so the datamodule can skip them with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise ValueError(f"cannot read audio file {path}: unsupported or corrupt ({err})") from err
    if not 0 < info.samplerate <= _MAX_SAMPLE_RATE:
        raise ValueError(f"audio file {path} has an implausible sample rate {info.samplerate}")
    if not 0 < info.channels <= _MAX_CHANNELS:
        raise ValueError(f"audio file {path} has an implausible channel count {info.channels}")
    if info.frames < 0:
        raise ValueError(f"audio file {path} reports a negative length")
    return _Info(path, int(info.samplerate), int(info.frames), int(info.channels))


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """Return ``(sample_rate, frames, channels)`` of a sound file.

    Raises ``ValueError`` with the file's name when it is unreadable, of an
    unsupported format, has an absurd header, or holds no audio frames.
    """
    info = _probe(path)
    if info.frames == 0:
        raise ValueError(f"audio file {info.path} contains no audio frames")
    return info.sample_rate, info.frames, info.channels


def _read_mono(info: _Info, start: int, stop: int) -> torch.Tensor:
    """Read source frames [start, stop) as a float32 mono tensor of shape (1, n)."""
    start, stop = max(0, start), min(stop, info.frames)
    if stop <= start:
        return torch.zeros(1, 0)
    try:
        x, _ = sf.read(str(info.path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"cannot decode audio file {info.path}: {err}") from err
    return torch.from_numpy(x).mean(dim=1).unsqueeze(0)


def _output_length(frames: int, src_sr: int, sr: int) -> int:
    """Length after resampling, as torchaudio computes it: ceil(frames * sr / src_sr)."""
    return -(-frames * sr // src_sr)


def _read_window(info: _Info, sr: int, out_start: int, out_end: int) -> torch.Tensor:
    """Return output-rate samples [out_start, out_end) of the file, zero-padded past its end.

    With resampling, the source read is widened to whole polyphase blocks (``new``
    output samples come from exactly ``orig`` source samples) plus a margin of
    blocks wider than the sinc kernel, so every kept sample sees the same input
    as it would in whole-file resampling.
    """
    n = out_end - out_start
    if info.sample_rate == sr:
        x = _read_mono(info, out_start, out_end)
    else:
        g = math.gcd(info.sample_rate, sr)
        orig, new = info.sample_rate // g, sr // g
        width = math.ceil(_LOWPASS_WIDTH * orig / (_ROLLOFF * min(orig, new)))
        margin = math.ceil((width + orig) / orig) + 1  # in blocks
        b0 = max(0, out_start // new - margin)
        b1 = -(-out_end // new) + margin
        src = _read_mono(info, b0 * orig, b1 * orig)
        y = AF.resample(src, info.sample_rate, sr) if src.shape[-1] else src
        lo = out_start - b0 * new
        x = y[:, lo : lo + n]
    if x.shape[-1] < n:  # past the end of the file (or a header that overstated its length)
        x = torch.nn.functional.pad(x, (0, n - x.shape[-1]))
    return x.contiguous()


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Load a whole file as a float32 mono tensor (1, T) at ``sample_rate``."""
    info = _probe(path)
    if info.frames == 0:
        raise ValueError(f"audio file {info.path} contains no audio frames")
    x = _read_mono(info, 0, info.frames)
    if info.sample_rate != sample_rate:
        x = AF.resample(x, info.sample_rate, sample_rate)
    return x.contiguous()


def iter_audio_chunks(
    path: str | Path,
    sample_rate: int,
    chunk_samples: int,
    context_samples: int = 0,
) -> Iterator[tuple[torch.Tensor, int, int]]:
    """Read a file window by window, yielding ``(chunk, left_context, n_valid)``.

    ``chunk`` is (1, L) float32 mono at ``sample_rate``: ``chunk_samples`` output
    samples (the last chunk may be shorter) with up to ``context_samples`` of
    real signal on each side (less at the file's ends). The chunk's own samples
    are ``chunk[..., left_context : left_context + n_valid]``; concatenating them
    over the generator reproduces :func:`load_audio` (exactly when no resampling
    is needed, to float precision otherwise). Memory is bounded by one window.
    """
    if chunk_samples <= 0:
        raise ValueError(f"chunk_samples must be positive, got {chunk_samples}")
    if context_samples < 0:
        raise ValueError(f"context_samples must be >= 0, got {context_samples}")
    info = _probe(path)
    if info.frames == 0:
        raise ValueError(f"audio file {info.path} contains no audio frames")
    total = _output_length(info.frames, info.sample_rate, sample_rate)
    for start in range(0, total, chunk_samples):
        end = min(start + chunk_samples, total)
        lo, hi = max(0, start - context_samples), min(total, end + context_samples)
        yield _read_window(info, sample_rate, lo, hi), start - lo, end - start


# --------------------------------------------------------------------------- datasets


class AudioSegments(Dataset):
    """Fixed-length mono segments from a list of files.

    ``random_offset=True`` (training) cuts each item at a fresh random position,
    drawn with the draw's own seed when the index comes from ``ResumableSampler`` as
    ``(index, seed)`` (so a resumed run cuts the same segments), else from torch's
    global RNG; ``False`` (validation) always takes the start of the file.
    Item ``i`` reads file ``i % len(files)``, so ``length`` may exceed the file count.
    """

    def __init__(
        self,
        files: Sequence[_Info],
        sample_rate: int,
        segment_samples: int,
        random_offset: bool,
        length: int | None = None,
    ) -> None:
        if not files:
            raise ValueError("AudioSegments needs at least one file")
        self.files = list(files)
        self.sample_rate = sample_rate
        self.segment_samples = segment_samples
        self.random_offset = random_offset
        self.length = len(self.files) if length is None else length
        self.random_draws = random_offset  # ResumableSampler: pass each draw's seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int | tuple[int, int]) -> torch.Tensor:
        index, generator = split_draw(index)
        info = self.files[index % len(self.files)]
        total = _output_length(info.frames, info.sample_rate, self.sample_rate)
        offset = 0
        if self.random_offset and total > self.segment_samples:
            offset = int(torch.randint(0, total - self.segment_samples + 1, (), generator=generator).item())
        return _read_window(info, self.sample_rate, offset, offset + self.segment_samples)


# --------------------------------------------------------------------------- datamodule


def _scan(directory: Path, extensions: Sequence[str]) -> list[_Info]:
    """All readable, non-empty audio files under ``directory``, sorted by path."""
    suffixes = {"." + e.lower().lstrip(".") for e in extensions}
    infos = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
        info = _probe(path)
        if info.frames == 0:
            rank_zero_warn(f"skipping empty audio file {path}")
            continue
        infos.append(info)
    return infos


class AudioDataModule(SplitDataModule):
    """Random mono segments from a folder of audio files, for training audio codecs.

    If ``root/train`` and ``root/val`` both exist they are the split (the layout
    the corpus builder writes); otherwise files are split by a stable hash of
    their path relative to ``root`` (``val_fraction`` of them, at least one).
    Segments are ``segment_seconds`` long, rounded down to a multiple of ``hop``
    (the model's downsampling factor). Validation uses the first
    ``val_segment_seconds`` of each file; ``None`` means the longest val file,
    capped at 4 s. Shorter files are zero-padded. Batches are float32 (B, 1, T).
    """

    def __init__(
        self,
        root: str = "data/speech",
        sample_rate: int = 16000,
        segment_seconds: float = 1.0,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.05,
        val_segment_seconds: float | None = None,
        hop: int = 1,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        extensions: tuple[str, ...] = ("wav", "flac", "ogg"),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if sample_rate <= 0 or hop <= 0 or batch_size <= 0:
            raise ValueError("sample_rate, hop and batch_size must be positive")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.root = Path(root)
        self.sample_rate = sample_rate
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.hop = hop
        self.segment_samples = self._to_hops(segment_seconds, "segment_seconds")
        self.train_files: list[_Info] = []
        self.val_files: list[_Info] = []
        self.train_set: AudioSegments | None = None
        self.val_set: AudioSegments | None = None

    def _to_hops(self, seconds: float, name: str) -> int:
        """Seconds -> samples, rounded down to a multiple of hop (at least one hop)."""
        n = int(round(seconds * self.sample_rate)) // self.hop * self.hop
        if n <= 0:
            raise ValueError(f"{name}={seconds} is shorter than one hop ({self.hop} samples)")
        return n

    def _find_files(self) -> tuple[list[_Info], list[_Info]]:
        exts = self.hparams.extensions
        if not self.root.is_dir():
            raise FileNotFoundError(f"audio root {self.root} does not exist; {BUILD_HINT}")
        no_audio = f"no {'/'.join(exts)} files under {self.root}; {BUILD_HINT}"
        train_dir, val_dir = self.root / "train", self.root / "val"
        if train_dir.is_dir() and val_dir.is_dir():
            train, val = _scan(train_dir, exts), _scan(val_dir, exts)
            if not train:
                raise ValueError(no_audio.replace(str(self.root), str(train_dir), 1))
            if not val:
                rank_zero_warn(f"{val_dir} holds no audio; validating on a hash split of {train_dir}")
                train, val = split_by_hash(train, train_dir, max(self.hparams.val_fraction, 1e-9), self.hparams.seed)
            return train, val
        files = _scan(self.root, exts)
        if not files:
            raise ValueError(no_audio)
        if len(files) == 1:
            rank_zero_warn(f"only one audio file under {self.root}: it is used for training and validation")
            return files, files
        return split_by_hash(files, self.root, self.hparams.val_fraction, self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_files, self.val_files = self._find_files()
        if self.hparams.val_segment_seconds is None:
            longest = max(_output_length(f.frames, f.sample_rate, self.sample_rate) for f in self.val_files)
            val_seconds = min(4.0, longest / self.sample_rate)
            val_samples = max(self.hop, int(val_seconds * self.sample_rate) // self.hop * self.hop)
        else:
            val_samples = self._to_hops(self.hparams.val_segment_seconds, "val_segment_seconds")
        self.val_segment_samples = val_samples
        self.train_set = AudioSegments(
            self.train_files,
            self.sample_rate,
            self.segment_samples,
            random_offset=True,
            length=self.hparams.samples_per_epoch,
        )
        self.val_set = AudioSegments(self.val_files, self.sample_rate, val_samples, random_offset=False)

"""Training data from talking-portrait clips (Hallo2): speech windows with frame-wise phoneme labels.

Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait Image
Animation", 2024) drives the face with wav2vec 2.0 features. No pre-trained wav2vec 2.0
can be fetched here, so its audio encoder is pre-trained on the portrait corpus (built by
``python -m codecgen.datamodules.prepare portraits``; layout in
:mod:`codecgen.datamodules.portrait_clips`) to name the phoneme under each video frame,
from the exact espeak-ng timings (DTW-aligned for the recorded prompts).

:class:`PortraitAudioDataModule` serves ``{"audio": (N,) float32, "phonemes": (F,) int64}``:
windows of ``seconds`` (a whole number of 25 fps frames, N = F x 640 samples at 16 kHz),
at random frame offsets in training (seeded per draw, so a resumed run draws the same)
and from each clip's start in validation. A frame's label is the phoneme covering its
centre (:data:`PHONEME_CLASSES`; 0 = silence, where no phoneme is). Clips shorter than
the window are zero-padded, their missing frames labelled :data:`IGNORE`.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from codecgen.datamodules.base import SplitDataModule, split_draw
from codecgen.datamodules.portrait_clips import CLIP_FPS, CLIP_SAMPLE_RATE, ClipMeta, list_clips, read_clip_meta

BUILD_HINT = "build the corpus with `python -m codecgen.datamodules.prepare portraits --out data/portraits`"
IGNORE = -100  # cross-entropy's ignore_index: frames past a clip's end
# English phonemes as espeak-ng names them in IPA (stress and length marks stripped), and
# "other" for the rest (other languages' sounds in a user's clips).
PHONEME_CLASSES = (
    "sil", "other",
    "i", "ɪ", "e", "ɛ", "æ", "a", "ɑ", "ɒ", "ɔ", "o", "ʊ", "u", "ʌ", "ə", "ɜ", "ɚ", "ɐ", "ᵻ",
    "aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "ɪə", "eə", "ʊə",
    "p", "b", "t", "d", "k", "ɡ", "m", "n", "ŋ", "f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h",
    "tʃ", "dʒ", "l", "ɹ", "r", "w", "j", "ʔ", "ɾ", "x",
)
_INDEX = {p: i for i, p in enumerate(PHONEME_CLASSES)}
_STRIP = set("ˈˌːˑ̩̯̃ʰ")


def phoneme_class(ipa: str) -> int:
    """The class index of an espeak-ng IPA phoneme (stress, length and diacritics ignored;
    ``g`` is IPA's ``ɡ``; a longer unknown symbol falls back to its first two characters,
    then its first; anything else is "other")."""
    base = "".join(c for c in unicodedata.normalize("NFD", ipa) if c not in _STRIP and not unicodedata.combining(c))
    base = base.replace("g", "ɡ")
    if not base:
        return _INDEX["sil"]
    for key in (base, base[:2], base[:1]):
        if key in _INDEX:
            return _INDEX[key]
    return _INDEX["other"]


def frame_labels(meta: ClipMeta) -> np.ndarray:
    """(frames,) int64: the class of the phoneme under each frame's centre (silence if none)."""
    labels = np.zeros(meta.frames, np.int64)
    centres = (np.arange(meta.frames) + 0.5) / meta.fps
    for p in meta.phonemes:
        labels[(centres >= p.start) & (centres < p.end)] = phoneme_class(p.label)
    return labels


class PortraitAudioWindows(Dataset):
    """Windows of ``frames`` video frames of speech and their phoneme labels (see the module
    docstring); item ``i`` reads clip ``i % len(clips)``."""

    def __init__(self, clips: list[Path], frames: int, random_offset: bool, length: int | None = None) -> None:
        if not clips:
            raise ValueError("PortraitAudioWindows needs at least one clip")
        self.clips, self.frames, self.random_offset = clips, frames, random_offset
        self.metas = [read_clip_meta(c) for c in clips]
        for clip, meta in zip(clips, self.metas):
            if meta.fps != CLIP_FPS or meta.sample_rate != CLIP_SAMPLE_RATE:
                raise ValueError(f"clip {clip} is at {meta.fps} fps / {meta.sample_rate} Hz; expected "
                                 f"{CLIP_FPS} / {CLIP_SAMPLE_RATE} (convert it with `prepare talking-heads`)")
        self.labels = [frame_labels(m) for m in self.metas]
        self.length = len(clips) if length is None else length
        self.random_draws = random_offset

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        import soundfile as sf

        index, generator = split_draw(index)
        k = index % len(self.clips)
        meta, labels = self.metas[k], self.labels[k]
        start = 0
        if self.random_offset and meta.frames > self.frames:
            start = int(torch.randint(0, meta.frames - self.frames + 1, (), generator=generator))
        hop = CLIP_SAMPLE_RATE // int(CLIP_FPS)
        audio = np.zeros(self.frames * hop, np.float32)
        got, _ = sf.read(str(self.clips[k] / "audio.wav"), start=start * hop, stop=(start + self.frames) * hop,
                         dtype="float32", always_2d=True)
        audio[: len(got)] = got.mean(1)
        out = np.full(self.frames, IGNORE, np.int64)
        piece = labels[start : start + self.frames]
        out[: len(piece)] = piece
        return {"audio": torch.from_numpy(audio), "phonemes": torch.from_numpy(out)}


def _split_clips(root: Path) -> tuple[list[Path], list[Path]]:
    if not root.is_dir():
        raise FileNotFoundError(f"portrait corpus {root} does not exist; {BUILD_HINT}")
    train, val = list_clips(root / "train"), list_clips(root / "val")
    if not train:
        raise ValueError(f"no portrait clips under {root / 'train'}; {BUILD_HINT}")
    if not val:
        raise ValueError(f"no held-out portrait clips under {root / 'val'}; {BUILD_HINT}")
    return train, val


class PortraitAudioDataModule(SplitDataModule):
    """Speech windows with frame-wise phoneme labels from ``root/{train,val}`` clips.

    Args:
        root: a portrait corpus (or ``prepare talking-heads`` output with phonemes).
        seconds: window length, rounded to whole frames.
        batch_size, num_workers: the loaders'.
        samples_per_epoch: training windows per epoch (default: one per clip).
    """

    shuffle_train = True
    item_name = "windows"

    def __init__(self, root: str = "data/portraits", seconds: float = 2.0, batch_size: int = 16,
                 num_workers: int = 0, samples_per_epoch: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.frames = int(round(seconds * CLIP_FPS))
        if self.frames < 1 or batch_size < 1:
            raise ValueError(f"need seconds >= {1 / CLIP_FPS} and batch_size >= 1")
        self.root, self.batch_size, self.num_workers = Path(root), batch_size, num_workers
        self.train_set: PortraitAudioWindows | None = None
        self.val_set: PortraitAudioWindows | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = _split_clips(self.root)
        self.train_set = PortraitAudioWindows(train, self.frames, True, self.hparams.samples_per_epoch)
        self.val_set = PortraitAudioWindows(val, self.frames, False)


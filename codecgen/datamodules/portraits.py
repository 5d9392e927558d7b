"""Training data from talking-portrait clips (Hallo2): speech with frame-wise phonemes, and video clips.

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

:class:`PortraitClipDataModule` serves what the animation model trains on, Hallo2's
training sample: ``frames`` consecutive frames (F, 3, S, S) in [-1, 1], the ``motion``
frames just before them (M, 3, S, S; Hallo2 uses 2), a ``reference`` frame drawn from
anywhere in the same clip, the speech under the frames with ``audio_margin`` frames more
on each side (Hallo2's +-2-frame audio window needs them; zero past the clip's ends), the
face and lip masks of the target frames, the reference's face box and each target frame's,
the expression label
of each frame (index into :data:`EXPRESSIONS`), the viseme track, and the identity's index.
Where a clip has fewer frames than motion + target frames, the reference stands in for
the missing motion frames, as at the start of a generation.

:class:`PortraitFaceDataModule` serves face crops with their identity's index, for the
identity embedder that replaces Hallo2's ArcFace: a random frame's face box (slightly
jittered in training), squared and resized. Identities are numbered within each split;
held-out faces are other people, so validation measures how well embeddings separate
people never seen in training.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from codecgen.datamodules.base import SplitDataModule, split_draw
from codecgen.datamodules.corpora.visemes import base_symbols
from codecgen.datamodules.portrait_clips import (
    CLIP_FPS,
    CLIP_SAMPLE_RATE,
    EXPRESSIONS,
    ClipMeta,
    list_clips,
    load_clip_tracks,
    read_clip_meta,
    unpack_masks,
)
from codecgen.nn.face_crop import crop_face

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
_HOP = CLIP_SAMPLE_RATE // int(CLIP_FPS)  # audio samples a video frame


def phoneme_class(ipa: str) -> int:
    """The class index of an espeak-ng IPA phoneme (stress, length and diacritics ignored;
    ``g`` is IPA's ``ɡ``; a longer unknown symbol falls back to its first two characters,
    then its first; anything else is "other")."""
    base = base_symbols(ipa).replace("g", "ɡ")
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


def _read_audio(clip: Path, start_sample: int, samples: int) -> np.ndarray:
    """``samples`` of a clip's sound from ``start_sample`` (may be negative), zero outside it."""
    import soundfile as sf

    out = np.zeros(samples, np.float32)
    lo = max(0, start_sample)
    got, _ = sf.read(str(clip / "audio.wav"), start=lo, stop=max(lo, start_sample + samples), dtype="float32",
                     always_2d=True)
    out[lo - start_sample : lo - start_sample + len(got)] = got.mean(1)
    return out


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
        index, generator = split_draw(index)
        k = index % len(self.clips)
        meta, labels = self.metas[k], self.labels[k]
        start = 0
        if self.random_offset and meta.frames > self.frames:
            start = int(torch.randint(0, meta.frames - self.frames + 1, (), generator=generator))
        audio = _read_audio(self.clips[k], start * _HOP, self.frames * _HOP)
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



# --------------------------------------------------------------------------- decoded frames


class ClipFrameCache:
    """Whole clips decoded once and kept as uint8 (least recently used first out past ``max_bytes``).

    A random frame of an FFV1 clip costs a decode from the clip's start (0.2 s at frame 150
    of a 128-px clip here); the whole clip, 2 s. Training draws frames at random from ~200
    clips, so each worker keeps them decoded: the default corpus is about 1.3 GB as uint8.
    Frames come back as float in [-1, 1]; resized ones are rounded to 8 bits once."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self.clips: OrderedDict[tuple[Path, int | None], torch.Tensor] = OrderedDict()

    def frames(self, clip: Path, start: int, stop: int, size: int | None) -> torch.Tensor:
        from codecgen.datamodules.video import load_video

        resize = None if size is None else (size, size)
        if self.max_bytes <= 0:
            return load_video(clip / "video.mkv", start, stop, size=resize) * 2 - 1
        key = (clip, size)
        pixels = self.clips.get(key)
        if pixels is None:
            pixels = (load_video(clip / "video.mkv", size=resize) * 255).round_().to(torch.uint8)
            self.clips[key] = pixels
            self.bytes += pixels.numel()
            while self.bytes > self.max_bytes and len(self.clips) > 1:
                _, old = self.clips.popitem(last=False)
                self.bytes -= old.numel()
        self.clips.move_to_end(key)
        return pixels[start:stop].float() / 127.5 - 1


# --------------------------------------------------------------------------- video clips


class PortraitClips(Dataset):
    """Hallo2 training samples from clip folders (see the module docstring). Clips need their
    tracks (the procedural corpus has them; a user's imported videos get full-frame masks)."""

    def __init__(self, clips: list[Path], frames: int, motion_frames: int, size: int | None, audio_margin: int,
                 random_offset: bool, identities: dict[str, int], length: int | None = None,
                 cache_bytes: int = 0) -> None:
        if not clips:
            raise ValueError("PortraitClips needs at least one clip")
        self.clips, self.frames, self.motion_frames, self.size = clips, frames, motion_frames, size
        self.audio_margin, self.random_offset, self.identities = audio_margin, random_offset, identities
        self.metas = [read_clip_meta(c) for c in clips]
        self.length = len(clips) if length is None else length
        self.random_draws = random_offset
        self.cache = ClipFrameCache(cache_bytes)
        self._tracks: dict[int, dict[str, np.ndarray] | None] = {}

    def __len__(self) -> int:
        return self.length

    def tracks(self, k: int) -> dict[str, np.ndarray] | None:
        """Clip ``k``'s tracks, read and checked once (masks stay bit-packed: ~4 KB a frame at 128 px)."""
        if k not in self._tracks:
            self._tracks[k] = load_clip_tracks(self.clips[k], self.metas[k])
        return self._tracks[k]

    def _masks(self, packed: np.ndarray, meta: ClipMeta) -> torch.Tensor:
        masks = torch.from_numpy(unpack_masks(packed, meta.size)).float()[:, None]
        if self.size is not None and self.size != meta.size:
            masks = torch.nn.functional.interpolate(masks, size=(self.size, self.size), mode="area") > 0.5
        return masks[:, 0].bool()

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, generator = split_draw(index)
        k = index % len(self.clips)
        clip, meta = self.clips[k], self.metas[k]
        if meta.frames < self.frames:
            raise ValueError(f"clip {clip} has {meta.frames} frames, fewer than the {self.frames} a sample needs")
        lo = min(self.motion_frames, meta.frames - self.frames)  # the earliest start with all motion frames
        start = lo
        if self.random_offset:
            start = int(torch.randint(lo, meta.frames - self.frames + 1, (), generator=generator))
            ref = int(torch.randint(0, meta.frames, (), generator=generator))
        else:
            ref = 0
        first = max(0, start - self.motion_frames)
        video = self.cache.frames(clip, first, start + self.frames, self.size)
        reference = self.cache.frames(clip, ref, ref + 1, self.size)[0]
        motion = video[: start - first]
        if len(motion) < self.motion_frames:  # the reference stands in, as at a generation's start
            motion = torch.cat([reference[None].expand(self.motion_frames - len(motion), -1, -1, -1), motion])
        audio = _read_audio(clip, (start - self.audio_margin) * _HOP, (self.frames + 2 * self.audio_margin) * _HOP)
        scale = (self.size or meta.size) / meta.size
        tracks = self.tracks(k)
        span = slice(start, start + self.frames)
        if tracks is None:
            full = torch.ones(self.frames, self.size or meta.size, self.size or meta.size, dtype=torch.bool)
            face, lips, visemes = full, full, torch.zeros(self.frames, 3)
            box = torch.tensor(meta.face_box) * scale
            boxes = box.expand(self.frames, 4)
        else:
            face = self._masks(tracks["face_mask"][span], meta)
            lips = self._masks(tracks["lip_mask"][span], meta)
            visemes = torch.from_numpy(tracks["visemes"][span])
            box = torch.from_numpy(tracks["face_box"][ref]) * scale
            boxes = torch.from_numpy(tracks["face_box"][span]) * scale
        times = (np.arange(start, start + self.frames) + 0.5) / meta.fps
        expression = torch.tensor([EXPRESSIONS.index(meta.expression_at(t)) for t in times])
        return {
            "frames": video[start - first :], "motion": motion, "reference": reference,
            "audio": torch.from_numpy(audio), "face_mask": face, "lip_mask": lips, "face_box": box.float(),
            "frame_boxes": boxes.float(),
            "expression": expression, "visemes": visemes,
            "identity": torch.tensor(self.identities.get(meta.identity, -1)),
        }


class PortraitClipDataModule(SplitDataModule):
    """Hallo2 training samples from ``root/{train,val}`` portrait clips.

    Args:
        root: a portrait corpus (``prepare portraits``) or imported videos (``prepare talking-heads``).
        frames: target frames per sample (Hallo2: 16 in stage 2, 1 in stage 1).
        motion_frames: frames before them given as motion frames (Hallo2: 2).
        size: frame side to resize to (default: the clips').
        audio_margin: extra frames of speech on each side (Hallo2's +-2-frame window: 2).
        batch_size, num_workers, samples_per_epoch: the loaders' (default: one sample a clip).
        cache_gib: decoded clips kept per loader worker (``ClipFrameCache``; 0: decode each time).
    Identities are numbered over the training clips (sorted); a held-out face gets -1.
    """

    item_name = "clips"

    def __init__(self, root: str = "data/portraits", frames: int = 16, motion_frames: int = 2,
                 size: int | None = None, audio_margin: int = 2, batch_size: int = 4, num_workers: int = 0,
                 samples_per_epoch: int | None = None, cache_gib: float = 2.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        if frames < 1 or motion_frames < 0 or audio_margin < 0 or batch_size < 1:
            raise ValueError("need frames >= 1, motion_frames >= 0, audio_margin >= 0 and batch_size >= 1")
        if size is not None and not 8 <= size <= 4096:
            raise ValueError(f"size must be in [8, 4096], got {size}")
        self.root, self.batch_size, self.num_workers = Path(root), batch_size, num_workers
        self.train_set: PortraitClips | None = None
        self.val_set: PortraitClips | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = _split_clips(self.root)
        names = sorted({read_clip_meta(c).identity for c in train})
        self.identities = {n: i for i, n in enumerate(names)}
        h = self.hparams
        cache = int(h.cache_gib * 2**30)
        self.train_set = PortraitClips(train, h.frames, h.motion_frames, h.size, h.audio_margin, True, self.identities,
                                       h.samples_per_epoch, cache)
        self.val_set = PortraitClips(val, h.frames, h.motion_frames, h.size, h.audio_margin, False, self.identities,
                                     cache_bytes=cache // 4)


# --------------------------------------------------------------------------- face crops


class PortraitFaces(Dataset):
    """Face crops of clips with their identity's index within ``clips`` (see the module docstring)."""

    def __init__(self, clips: list[Path], size: int, random_frames: bool, per_clip: int = 4,
                 length: int | None = None, cache_bytes: int = 0, faces_only: bool = False) -> None:
        if not clips:
            raise ValueError("PortraitFaces needs at least one clip")
        self.clips, self.size, self.random_frames, self.per_clip = clips, size, random_frames, per_clip
        self.faces_only = faces_only
        self.metas = [read_clip_meta(c) for c in clips]
        names = sorted({m.identity for m in self.metas})
        self.identities = {n: i for i, n in enumerate(names)}
        self.length = length if length is not None else len(clips) * (1 if random_frames else per_clip)
        self.random_draws = random_frames
        self.cache = ClipFrameCache(cache_bytes)
        self._boxes: dict[int, np.ndarray | tuple] = {}

    def __len__(self) -> int:
        return self.length

    def boxes(self, k: int) -> np.ndarray | tuple:
        """Clip ``k``'s face box per frame (read once), or its one reference box without tracks."""
        if k not in self._boxes:
            tracks = load_clip_tracks(self.clips[k], self.metas[k])
            self._boxes[k] = tracks["face_box"] if tracks is not None else self.metas[k].face_box
        return self._boxes[k]

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor] | torch.Tensor:
        index, generator = split_draw(index)
        if self.random_frames:
            k = index % len(self.clips)
            t = int(torch.randint(0, self.metas[k].frames, (), generator=generator))
            jitter = (torch.rand(3, generator=generator) - 0.5) * torch.tensor([0.1, 0.1, 0.2])
        else:  # fixed frames spread over each clip
            k, j = divmod(index % (len(self.clips) * self.per_clip), self.per_clip)
            t = (2 * j + 1) * self.metas[k].frames // (2 * self.per_clip)
            jitter = None
        meta, clip = self.metas[k], self.clips[k]
        boxes = self.boxes(k)
        box = boxes[t] if isinstance(boxes, np.ndarray) else boxes
        frame = self.cache.frames(clip, t, t + 1, None)[0]
        face = crop_face(frame, box, self.size, jitter=jitter)
        if self.faces_only:
            return face.clamp(-1, 1)
        return {"face": face,
                "identity": torch.tensor(self.identities[meta.identity])}


class PortraitFaceDataModule(SplitDataModule):
    """Face crops and identity indices from ``root/{train,val}`` clips (the identity stage).

    Args:
        root: a portrait corpus or imported talking-head videos.
        size: crop side (the embedder's input).
        batch_size, num_workers: the loaders'.
        samples_per_epoch: training crops per epoch (default: one per clip).
        val_per_clip: fixed crops per held-out clip.
        cache_gib: decoded clips kept per loader worker (``ClipFrameCache``; 0: decode each time).
        faces_only: batches are the crops alone, (B, 3, size, size) in [-1, 1], as the image models
            (the face VQGAN of Hallo2's high-resolution stage) take them.
    """

    item_name = "faces"

    def __init__(self, root: str = "data/portraits", size: int = 64, batch_size: int = 32, num_workers: int = 0,
                 samples_per_epoch: int | None = None, val_per_clip: int = 4, cache_gib: float = 2.0,
                 faces_only: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 8 <= size <= 1024 or batch_size < 1 or val_per_clip < 1:
            raise ValueError("need size in [8, 1024], batch_size >= 1 and val_per_clip >= 1")
        self.root, self.batch_size, self.num_workers = Path(root), batch_size, num_workers
        self.train_set: PortraitFaces | None = None
        self.val_set: PortraitFaces | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = _split_clips(self.root)
        h = self.hparams
        cache = int(h.cache_gib * 2**30)
        self.train_set = PortraitFaces(train, h.size, True, length=h.samples_per_epoch, cache_bytes=cache,
                                       faces_only=h.faces_only)
        self.val_set = PortraitFaces(val, h.size, False, per_clip=h.val_per_clip, cache_bytes=cache // 4,
                                     faces_only=h.faces_only)

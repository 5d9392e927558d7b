"""Clips of many videos with their captions (text-to-video), and frame pairs with their exact flow.

A corpus folder holds ``train/`` and ``val/``, each with video files (anything
:func:`~codecgen.datamodules.video.load_video` reads) and, for captioned corpora, a ``NAME.txt``
caption beside each ``NAME.<ext>``: the layout of ``prepare captioned-video`` (docs/data.md) and
of a user's own folder of (video, caption) pairs. ``NAME.flow.npz`` (flow t -> t+1 and where it is
visible) is read by the flow data only.

- :class:`CaptionedVideoDataModule` serves ``{"frames": (T, 3, H, W) in [-1, 1], "caption": str}``:
  ``frames`` frames every ``stride``-th frame of a clip (training: from a random start; validation:
  from the first frame). ``captions=False`` reads any folder of videos (the default video corpus,
  for the enhanced decoder) and gives ``""`` as the caption.
- :class:`FlowPairsDataModule` serves ``{"frames": (2, 3, H, W) in [-1, 1], "flow": (2, H, W) in pixels,
  "valid": (H, W) bool}``
  for a random (clip, t) in training and a fixed one per clip in validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from codecgen.datamodules.base import SplitDataModule, split_draw
from codecgen.datamodules.video import load_video, probe_video

VIDEO_EXTENSIONS = (".mkv", ".mp4", ".webm", ".avi", ".mov", ".y4m")
MAX_CAPTION_CHARS = 1000
BUILD_HINT = "build it with `python -m codecgen.datamodules.prepare captioned-video`"


def read_caption(path: Path) -> str:
    """The caption in ``path``: its text, whitespace collapsed; refused when empty or huge."""
    raw = path.read_bytes()
    if len(raw) > MAX_CAPTION_CHARS * 4:
        raise ValueError(f"caption {path} is {len(raw)} bytes: longer than a caption ({MAX_CAPTION_CHARS} characters)")
    try:
        text = " ".join(raw.decode("utf-8").split())
    except UnicodeDecodeError as err:
        raise ValueError(f"caption {path} is not UTF-8 text") from err
    if not text:
        raise ValueError(f"caption {path} is empty")
    return text


def find_clips(folder: Path, captions: bool) -> list[tuple[Path, str]]:
    """(video, caption) of every video in ``folder`` (sorted); with ``captions``, a video without its
    ``.txt`` is an error that names it."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; {BUILD_HINT}")
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        if not captions:
            out.append((path, ""))
            continue
        txt = path.with_suffix(".txt")
        if not txt.is_file():
            raise FileNotFoundError(f"{path} has no caption: put its text in {txt.name} beside it")
        out.append((path, read_caption(txt)))
    if not out:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {folder}; {BUILD_HINT}")
    return out


class CaptionedClips(Dataset):
    """``frames`` frames, every ``stride``-th, of each clip, with its caption (see the module docstring)."""

    random_draws = True

    def __init__(self, clips: list[tuple[Path, str]], frames: int, stride: int, size: int | None,
                 random_start: bool) -> None:
        self.clips, self.frames, self.stride, self.size, self.random_start = clips, frames, stride, size, random_start
        self.span = (frames - 1) * stride + 1
        self.lengths = []
        for path, _ in clips:
            n = probe_video(path).frames
            if n < self.span:
                raise ValueError(f"{path} has {n} frames: fewer than frames x stride needs ({self.span})")
            self.lengths.append(n)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, generator = split_draw(item)
        path, caption = self.clips[index]
        free = self.lengths[index] - self.span
        start = int(torch.randint(0, free + 1, (), generator=generator)) if self.random_start and free else 0
        size = None if self.size is None else (self.size, self.size)
        video = load_video(path, start, start + self.span, size=size)[:: self.stride]
        return {"frames": video * 2 - 1, "caption": caption}


class CaptionedVideoDataModule(SplitDataModule):
    """Captioned clips of ``root/train`` and ``root/val`` (see the module docstring).

    ``root``: one corpus folder or several (their clips pooled: e.g. the captioned corpus and the
    default video corpus's real footage for the video decoder, with ``size`` set so they agree);
    ``frames`` frames every ``stride``-th (a key-frame model: stride 4; the decoder: stride 1);
    ``size`` resizes frames to ``size`` x ``size`` (None: as stored); ``captions=False`` reads
    uncaptioned videos. Clips shorter than ``(frames - 1) * stride + 1`` are refused by name.
    """

    shuffle_train = True
    item_name = "clips"
    more_items_hint = "more clips in the corpus"

    def __init__(self, root: str | list[str] = "data/captioned_video", frames: int = 8, stride: int = 4,
                 size: int | None = None, captions: bool = True, batch_size: int = 8, num_workers: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        if frames < 1 or stride < 1 or batch_size < 1 or (size is not None and size < 8):
            raise ValueError(f"frames, stride and batch_size must be positive and size at least 8; got "
                             f"frames={frames}, stride={stride}, batch_size={batch_size}, size={size}")
        self.roots = [Path(r) for r in ([root] if isinstance(root, str) else root)]
        if not self.roots:
            raise ValueError("root names no folder")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_set: CaptionedClips | None = None
        self.val_set: CaptionedClips | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams

        def clips(split: str) -> list[tuple[Path, str]]:
            return [clip for root in self.roots for clip in find_clips(root / split, h.captions)]

        self.train_set = CaptionedClips(clips("train"), h.frames, h.stride, h.size, True)
        self.val_set = CaptionedClips(clips("val"), h.frames, h.stride, h.size, False)


def load_flow(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(flow (T-1, H, W, 2) float32, valid (T-1, H, W) bool) of a clip's ``.flow.npz``, checked."""
    with np.load(path, allow_pickle=False) as data:
        flow, valid = data["flow"].astype(np.float32), data["valid"].astype(bool)
    if flow.ndim != 4 or flow.shape[-1] != 2 or valid.shape != flow.shape[:-1]:
        raise ValueError(f"{path}: flow {flow.shape} / valid {valid.shape} are not (T-1, H, W, 2) / (T-1, H, W)")
    return flow, valid


class FlowPairs(Dataset):
    """Frame pairs (t, t+1) with the flow from t to t+1; one draw per clip and pass."""

    random_draws = True

    def __init__(self, clips: list[Path], random_pair: bool) -> None:
        self.clips, self.random_pair = clips, random_pair

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, generator = split_draw(item)
        path = self.clips[index]
        flow, valid = load_flow(path.with_suffix(".flow.npz"))
        t = int(torch.randint(0, len(flow), (), generator=generator)) if self.random_pair else len(flow) // 2
        frames = load_video(path, t, t + 2)
        if frames.shape[0] != 2 or frames.shape[-2:] != flow.shape[1:3]:
            raise ValueError(f"{path}: frames {tuple(frames.shape)} do not match its flow {flow.shape}")
        return {"frames": frames * 2 - 1, "flow": torch.from_numpy(flow[t]).permute(2, 0, 1),
                "valid": torch.from_numpy(valid[t])}


class FlowPairsDataModule(SplitDataModule):
    """Frame pairs and their exact flow from a corpus with ``.flow.npz`` files (``prepare captioned-video``)."""

    item_name = "clips"
    more_items_hint = "more clips in the corpus"

    def __init__(self, root: str = "data/captioned_video", batch_size: int = 8, num_workers: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.root, self.batch_size, self.num_workers = Path(root), batch_size, num_workers
        self.train_set: FlowPairs | None = None
        self.val_set: FlowPairs | None = None

    def _clips(self, split: str) -> list[Path]:
        clips = [p for p, _ in find_clips(self.root / split, captions=False)
                 if p.with_suffix(".flow.npz").is_file()]
        if not clips:
            raise FileNotFoundError(f"no clips with a .flow.npz in {self.root / split}; {BUILD_HINT}")
        return clips

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = FlowPairs(self._clips("train"), True)
            self.val_set = FlowPairs(self._clips("val"), False)

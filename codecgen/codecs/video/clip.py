"""One clip's frames as training data for the codecs that fit a network to a clip (the
NeRV family): a dataset of frames with their index and time (also served by the
file-reading ``codecgen.datamodules.video.VideoDataModule``), and a LightningDataModule
over frames already in memory, what ``NeRVVideoCodec.compress(video)`` fits to. That one
is not for ``train.py`` runs, so its loader is a plain shuffled one, not the resumable
loader of ``codecgen.datamodules.base``."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


class VideoFrames(Dataset):
    """The frames of one clip, ``repeats`` times over: item ``i`` is frame ``i % T`` as
    ``{"frame": (3, H, W) float32 in [0, 1], "index": int, "t": 0-d float32 tensor}``
    with ``t = index / (T - 1)`` (0 for a one-frame clip)."""

    def __init__(self, frames: torch.Tensor, repeats: int = 1) -> None:
        if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[1] != 3:
            raise ValueError(f"expected (T, 3, H, W) frames, got shape {tuple(frames.shape)}")
        self.frames = frames
        self.repeats = repeats
        n = frames.shape[0]
        self.t = torch.arange(n, dtype=torch.float32) / max(n - 1, 1)

    def __len__(self) -> int:
        return self.frames.shape[0] * self.repeats

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        index = i % self.frames.shape[0]
        return {"frame": self.frames[index], "index": index, "t": self.t[index]}


class ClipShape:
    """``n_frames``, ``frame_size`` (H, W) and ``fps`` of the clip a data module holds in
    ``self.frames`` (T, 3, H, W) and ``self._fps``, once it has them."""

    frames: torch.Tensor | None = None
    _fps: float | None = None

    def _require_frames(self) -> torch.Tensor:
        if self.frames is None:
            raise RuntimeError(f"{type(self).__name__}: no frames yet (call setup() first)")
        return self.frames

    @property
    def n_frames(self) -> int:
        return int(self._require_frames().shape[0])

    @property
    def frame_size(self) -> tuple[int, int]:
        f = self._require_frames()
        return int(f.shape[2]), int(f.shape[3])

    @property
    def fps(self) -> float:
        self._require_frames()
        return float(self._fps)


class ClipDataModule(ClipShape, L.LightningDataModule):
    """The frames of ONE clip, (T, 3, H, W) in [0, 1]. Training serves every frame
    ``epoch_repeats`` times per epoch, shuffled, keeping a short last batch (no frame is
    skipped); validation serves all frames once, in order (the NeRV family is scored on
    the frames it fits). ``n_frames``, ``frame_size`` (H, W) and ``fps`` describe the clip."""

    def __init__(self, frames: torch.Tensor | None = None, fps: float = 25.0, batch_size: int = 1,
                 num_workers: int = 0, epoch_repeats: int = 1) -> None:
        super().__init__()
        if batch_size <= 0 or epoch_repeats <= 0:
            raise ValueError("batch_size and epoch_repeats must be positive")
        self.batch_size, self.num_workers, self.epoch_repeats = batch_size, num_workers, epoch_repeats
        self.frames: torch.Tensor | None = None
        self._fps: float | None = None
        self.train_set: VideoFrames | None = None
        self.val_set: VideoFrames | None = None
        if frames is not None:
            self.use_frames(frames, fps)

    def use_frames(self, frames: torch.Tensor, fps: float) -> None:
        if not (isinstance(fps, (int, float)) and 0 < fps <= 1000):
            raise ValueError(f"fps must be in (0, 1000], got {fps!r}")
        if not torch.is_floating_point(frames) or not torch.isfinite(frames).all():
            raise ValueError("frames must be finite floats in [0, 1]")
        self.train_set = VideoFrames(frames, self.epoch_repeats)
        self.val_set = VideoFrames(frames, 1)
        self.frames, self._fps = frames, float(fps)

    def setup(self, stage: str | None = None) -> None:
        self._require_frames()

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train, drop_last=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return self._loader(self.val_set, train=False)

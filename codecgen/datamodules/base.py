"""What every data module here shares: a train and a val dataset built in ``setup``,
served by the same loaders (short-batch warning, persistent workers), and a training
loader that resumes exactly.

Resuming (``train.py fit --ckpt_path``): Lightning restores neither RNG states nor, for a
plain ``DataLoader``, the position in the epoch. Here the training order of epoch ``e`` is
a permutation drawn from the run's seed and ``e`` (``ResumableSampler``, a
``DistributedSampler``, so that DDP shards it rather than wrapping it); a dataset whose
items are random draws (``random_draws``: audio segments, image crops) gets each draw's
own seed, from (run seed, epoch, rank, position), instead of torch's global RNG; and each
pass over the data starts where the trainer's restored loop counters say the epoch is. A
resumed run thus sees the batches the uninterrupted run would have seen
(``codecgen.seeding``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from codecgen.seeding import derive_seed, run_seed


def split_draw(item: int | tuple[int, int]) -> tuple[int, torch.Generator | None]:
    """A dataset index as ``ResumableSampler`` gives it to a ``random_draws`` dataset,
    ``(index, seed)``, -> (index, a generator for this draw); a plain index -> (index,
    None), i.e. torch's global RNG."""
    if isinstance(item, tuple):
        index, seed = item
        return index, torch.Generator().manual_seed(seed)
    return item, None


class ResumableSampler(DistributedSampler):
    """``DistributedSampler``'s order (one replica outside DDP): a permutation seeded by
    ``seed + epoch``, or 0..n-1 without ``shuffle``. For a dataset with ``random_draws``
    it yields ``(index, seed of this draw)``.

    ``position`` (the data module's, from the trainer) gives (epoch, items of it already
    trained on) when a pass starts: the pass starts there. It overrides ``set_epoch``,
    because after resuming from a checkpoint written at the end of an epoch Lightning
    (2.6) calls ``set_epoch`` with one more than the epoch it then runs."""

    def __init__(self, dataset: Dataset, seed: int, shuffle: bool,
                 position: Callable[[], tuple[int, int] | None] | None = None) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        replicas, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        super().__init__(dataset, replicas, rank, shuffle=shuffle, seed=seed)
        self.random_draws = bool(getattr(dataset, "random_draws", False))
        self.position = position

    def __iter__(self) -> Iterator[Any]:
        where = self.position() if self.position is not None else None
        start = 0
        if where is not None:
            self.epoch, start = where
        indices = list(super().__iter__())
        for i in range(start, len(indices)):
            yield (indices[i], derive_seed(self.seed, self.epoch, self.rank, i)) if self.random_draws else indices[i]


class ResumableLoader(DataLoader):
    """The training ``DataLoader``. Its passes start lazily, at their first batch (also
    with workers, which would otherwise draw indices when Lightning creates the iterator,
    before it has restored or advanced its epoch), so that the sampler reads the
    trainer's position then. It has Lightning's ``state_dict`` / ``load_state_dict``
    protocol, which tells Lightning that it resumes mid-epoch, with nothing of its own to
    save: the position is in the trainer's loop counters, which the checkpoint restores.
    (Lightning restores a loader's own state only when it is restarting, and not at all
    once ``estimated_stepping_batches`` has built the loader earlier, as the video codec's
    LR schedule does.)"""

    def __iter__(self) -> Iterator[Any]:
        yield from super().__iter__()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _loader_seed() -> int:
    """The run's seed; unseeded, a fresh one (0 under DDP, as Lightning does, so that the
    ranks agree)."""
    seed = run_seed()
    if seed is not None:
        return seed
    return 0 if dist.is_available() and dist.is_initialized() else int(torch.randint(0, 2**31, ()))


class SplitDataModule(L.LightningDataModule):
    """Subclasses set ``batch_size``, ``num_workers`` and build ``train_set`` / ``val_set``
    in ``setup``."""

    # Whether the loader shuffles training items (not needed when items are random draws).
    shuffle_train: ClassVar[bool] = True
    # What one item is, and the argument that draws more of them, for the warning below.
    item_name: ClassVar[str] = "samples"
    more_items_hint: ClassVar[str] = "samples_per_epoch"
    # Drop a short last training batch (random draws lose nothing); False keeps it, so a
    # module that must see every item each epoch (one video's frames) sees them all.
    drop_last_train: ClassVar[bool] = True

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        drop_last = train and self.drop_last_train and len(dataset) >= self.batch_size
        if train and self.drop_last_train and not drop_last:
            rank_zero_warn(
                f"only {len(dataset)} training {self.item_name} per epoch for batch_size {self.batch_size}: "
                f"keeping the short batch (raise {self.more_items_hint})"
            )
        common = dict(batch_size=self.batch_size, drop_last=drop_last, num_workers=self.num_workers,
                      persistent_workers=self.num_workers > 0)
        if train:
            sampler = ResumableSampler(dataset, _loader_seed(), self.shuffle_train, self._train_position)
            return ResumableLoader(dataset, sampler=sampler, **common)
        return DataLoader(dataset, shuffle=False, **common)

    def _train_position(self) -> tuple[int, int] | None:
        """(epoch, training items of it already served) while a trainer trains: Lightning's
        own counters, restored from a checkpoint when a run resumes mid-epoch."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return None
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.ready * self.batch_size

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return self._loader(self.val_set, train=False)

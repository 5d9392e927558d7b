"""What every data module here shares: a train and a val dataset built in ``setup``,
served by the same loaders (short-batch warning, persistent workers)."""

from __future__ import annotations

from typing import ClassVar

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset


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
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and self.shuffle_train,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return self._loader(self.val_set, train=False)

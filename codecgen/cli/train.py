"""``train.py``: train any codecgen model with the Lightning CLI (configs in ``configs/``)."""

import torch


def train_main(args=None):
    """``python train.py fit --config configs/<model>/<variant>.yaml [overrides]``."""
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    torch.set_float32_matmul_precision("high")
    return LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )

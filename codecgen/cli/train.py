"""``train.py``: train any codecgen model with the Lightning CLI (configs in ``configs/``)."""

import inspect
import typing

import torch

# diffusers annotates some list arguments as ONE-element tuples (AutoencoderKL's
# ``down_block_types: Tuple[str]``, ``block_out_channels: Tuple[int]``), while its defaults and
# every real model pass several. The CLI checks config values against these annotations and
# would refuse any VAE with more than one level, so they are read as the variable-length
# tuples diffusers means. Likewise a float annotation with a bool default (AutoencoderKLTemporalDecoder's
# ``force_upcast: float = True``) is read as float or bool. Only these classes, only such annotations.
DIFFUSERS_ONE_ELEMENT_TUPLES = ("AutoencoderKL", "AutoencoderKLTemporalDecoder")


def relax_diffusers_tuple_annotations() -> None:
    import diffusers

    for name in DIFFUSERS_ONE_ELEMENT_TUPLES:
        init = inspect.unwrap(getattr(diffusers, name).__init__)
        defaults = {k: p.default for k, p in inspect.signature(init).parameters.items()}
        for arg, hint in typing.get_type_hints(init).items():
            if typing.get_origin(hint) is tuple and len(typing.get_args(hint)) == 1:
                init.__annotations__[arg] = tuple[typing.get_args(hint)[0], ...]
            elif hint is float and isinstance(defaults.get(arg), bool):
                init.__annotations__[arg] = float | bool


def train_main(args=None):
    """``python train.py fit --config configs/<model>/<variant>.yaml [overrides]``."""
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    torch.set_float32_matmul_precision("high")
    relax_diffusers_tuple_annotations()
    return LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )

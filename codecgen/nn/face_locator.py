"""Hallo2's face locator: where the face may move, told to the denoiser through its first features.

Hallo and Hallo2 (Cui et al. 2024; after Animate Anyone's pose guider, Hu et al. 2024) encode a
mask of the region the face may occupy (the union of the face boxes over the clip) with a small
convolutional network down to the latent resolution, whose last convolution starts at zero,
and ADD the result to the denoiser's features right after its input convolution (``conv_in``):
at the start of training the denoiser is unchanged, and it learns to keep the face inside the
box. Authors' sizes: 3-channel mask image, blocks (16, 32, 96, 256), out = conv_in's 320
channels; each block a 3 x 3 conv then a strided 3 x 3 conv (3 halvings: f8).

:func:`attach_face_locator` hooks a diffusers UNet's ``conv_in`` so it adds stored features
(``features.value``, (B, C, h, w); repeated over a motion UNet's frames). None adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable


@configurable
class FaceLocator(nn.Module):
    """Args: output channels (the denoiser's conv_in width), block widths (one halving between
    consecutive blocks: len - 1 halvings), input channels of the mask image."""

    def __init__(self, out_channels: int = 320, block_out_channels: Sequence[int] = (16, 32, 96, 256),
                 in_channels: int = 3) -> None:
        super().__init__()
        widths = list(block_out_channels)
        self.factor = 2 ** (len(widths) - 1)
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        blocks = []
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [nn.Conv2d(a, a, 3, padding=1), nn.SiLU(), nn.Conv2d(a, b, 3, stride=2, padding=1), nn.SiLU()]
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.in_channels = in_channels

    def forward(self, mask: Tensor) -> Tensor:
        """(B, H, W) or (B, in_channels, H, W) mask in [0, 1] -> (B, out_channels, H / f, W / f)."""
        if mask.dim() == 3:
            mask = mask[:, None].expand(-1, self.in_channels, -1, -1)
        return self.conv_out(self.blocks(F.silu(self.conv_in(mask.float()))))


class StoredFeatures:
    """Features waiting to be added at a UNet's conv_in (set ``value`` before each call)."""

    def __init__(self) -> None:
        self.value: Tensor | None = None


def attach_face_locator(unet: nn.Module) -> StoredFeatures:
    """Make ``unet.conv_in`` add ``features.value`` to its output; return ``features``."""
    features = StoredFeatures()

    def add(module: nn.Module, args, output: Tensor) -> Tensor:
        value = features.value
        if value is None:
            return output
        if value.shape[1:] != output.shape[1:]:
            raise ValueError(f"face locator features {tuple(value.shape)} do not fit conv_in's {tuple(output.shape)}")
        if output.shape[0] % value.shape[0]:
            raise ValueError(f"{output.shape[0]} frames for {value.shape[0]} face-locator samples")
        return output + value.repeat_interleave(output.shape[0] // value.shape[0], dim=0)

    unet.conv_in.register_forward_hook(add)
    return features

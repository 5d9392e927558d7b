"""VQGAN encoder and decoder (Esser et al. 2021, "Taming Transformers for
High-Resolution Image Synthesis"; code: CompVis/taming-transformers).

Convolutional, with residual blocks at every level, self-attention at the chosen
levels and in the middle, GroupNorm + swish. ``ch_mult`` sets the channel multiplier
of each level; the encoder halves the resolution between levels, so
``factor = 2 ** (len(ch_mult) - 1)`` (taming's f=16 config: ``ch_mult=(1, 1, 2, 2, 4)``).

Shared by the image codec (``codecgen.codecs.image.vqgan_compression``), the
arbitrary-scale first stage (``codecgen.generators.arbitrary_scale.first_stage``: the
decoder with ``upsample=False, output_features=True`` gives features at the latent's
resolution for an implicit decoder, as Kim & Kim 2024 do with LDM's decoder), and meant
for Hallo2's high-resolution decoder.

Deviations from taming's code, each for a reason:
- attention is placed by level index (``attn_levels``) rather than by absolute
  resolution (``attn_resolutions=[16]`` at ``resolution=256``): the same weights then
  run on images of any size, which a codec needs. Taming's f=16 config is
  ``attn_levels=(4,)``, attention at the lowest level, plus the middle block.
- GroupNorm uses ``gcd(32, channels)`` groups, so tiny test configs with 16 channels work;
  at taming's widths this is their 32 groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable


def _norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm -> swish -> conv3 -> norm -> swish -> dropout -> conv3, plus a 1x1 shortcut
    when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, 1, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, 1, hw, c)
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv with taming's asymmetric (0, 1, 0, 1) padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level_widths(ch: int, ch_mult: Sequence[int]) -> list[int]:
    if not ch_mult or ch < 1 or any(m < 1 for m in ch_mult):
        raise ValueError(f"need ch >= 1 and a non-empty ch_mult of positive ints, got {ch}, {list(ch_mult)}")
    return [ch * m for m in ch_mult]


def _check_levels(attn_levels: Sequence[int], n_levels: int) -> set[int]:
    levels = set(attn_levels)
    if any(not 0 <= lv < n_levels for lv in levels):
        raise ValueError(f"attn_levels must lie in [0, {n_levels}), got {sorted(levels)}")
    return levels


class _Middle(nn.Sequential):
    def __init__(self, channels: int, dropout: float):
        super().__init__(ResnetBlock(channels, channels, dropout), AttnBlock(channels),
                         ResnetBlock(channels, channels, dropout))


@configurable
class VQGANEncoder(nn.Module):
    """(B, in_channels, H, W) -> (B, z_channels, H / factor, W / factor); H and W must
    be multiples of ``factor`` (the codec pads)."""

    def __init__(
        self,
        in_channels: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_levels: Sequence[int] = (4,),
        z_channels: int = 256,
        dropout: float = 0.0,
    ):
        super().__init__()
        widths = _level_widths(ch, ch_mult)
        attn = _check_levels(attn_levels, len(widths))
        self.in_channels, self.z_channels = in_channels, z_channels
        self.factor = 2 ** (len(widths) - 1)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        layers: list[nn.Module] = []
        width = ch
        for level, out in enumerate(widths):
            for _ in range(num_res_blocks):
                layers.append(ResnetBlock(width, out, dropout))
                width = out
                if level in attn:
                    layers.append(AttnBlock(width))
            if level != len(widths) - 1:
                layers.append(Downsample(width))
        self.down = nn.Sequential(*layers)
        self.mid = _Middle(width, dropout)
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.factor or x.shape[-1] % self.factor:
            raise ValueError(f"height and width must be multiples of {self.factor}, got {tuple(x.shape[-2:])}")
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


@configurable
class VQGANDecoder(nn.Module):
    """(B, z_channels, h, w) -> (B, out_channels, h * factor, w * factor), unbounded
    output (the image codec clamps to [-1, 1]). ``last_layer`` is the weight the
    adaptive GAN weight differentiates against.

    ``upsample=False`` leaves out every Upsample layer: all levels run at the latent's
    resolution (``factor`` is then 1). ``output_features=True`` leaves out ``norm_out``
    and ``conv_out``: the output is the last block's activations, ``out_features``
    channels (``ch * ch_mult[0]``). Kim & Kim 2024 (arbitrary-scale diffusion) use both,
    feeding the features to a LIIF decoder. With the defaults the layers, and so the
    state-dict keys, are the taming decoder's."""

    def __init__(
        self,
        out_channels: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_levels: Sequence[int] = (4,),
        z_channels: int = 256,
        dropout: float = 0.0,
        upsample: bool = True,
        output_features: bool = False,
    ):
        super().__init__()
        widths = _level_widths(ch, ch_mult)
        attn = _check_levels(attn_levels, len(widths))
        self.z_channels = z_channels
        self.factor = 2 ** (len(widths) - 1) if upsample else 1
        width = widths[-1]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = _Middle(width, dropout)
        layers: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            out = widths[level]
            for _ in range(num_res_blocks + 1):  # taming: one more block per level than the encoder
                layers.append(ResnetBlock(width, out, dropout))
                width = out
                if level in attn:
                    layers.append(AttnBlock(width))
            if level != 0 and upsample:
                layers.append(Upsample(width))
        self.up = nn.Sequential(*layers)
        self.output_features = output_features
        self.out_features = width if output_features else out_channels
        if not output_features:
            self.norm_out = _norm(width)
            self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> nn.Parameter:
        """``conv_out``'s weight; without it (``output_features``), the last conv's."""
        if not self.output_features:
            return self.conv_out.weight
        return [m for m in self.up.modules() if isinstance(m, nn.Conv2d)][-1].weight

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 4 or z.shape[1] != self.z_channels:
            raise ValueError(f"expected (B, {self.z_channels}, h, w), got {tuple(z.shape)}")
        h = self.up(self.mid(self.conv_in(z)))
        if self.output_features:
            return h
        return self.conv_out(F.silu(self.norm_out(h)))

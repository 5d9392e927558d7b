"""HiFi-GAN's generator and HiFi-Codec's encoder.

- HiFi-GAN's generator, its ResBlock1 and multi-receptive-field fusion (MRF)
  (Kong et al. 2020, "HiFi-GAN: Generative Adversarial Networks for Efficient and
  High Fidelity Speech Synthesis"); the defaults are the V1 sizes that HiFi-Codec
  uses as its decoder;
- HiFi-Codec's encoder, a mirrored HiFi-GAN with GroupNorm after every ResBlock
  (Yang et al. 2023, "HiFi-Codec: Group-residual Vector quantization for High
  Fidelity Audio Codec", the AcademiCodec repository).

Constructor arguments are plain ints and lists so that YAML configs can set them.
Shapes are channels-first: waveforms are (B, 1, T), latents (B, D, frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from codecgen.config import configurable
from codecgen.nn.weight_norm import remove_weight_norm

# HiFi-GAN's slope inside the network. The authors' last activation before
# conv_post is `F.leaky_relu(x)` with PyTorch's default slope 0.01; we keep that.
LRELU_SLOPE = 0.1
FINAL_LRELU_SLOPE = 0.01
# HiFi-GAN initialises its (de)convolutions with N(0, 0.01) before weight norm.
INIT_STD = 0.01

DEFAULT_DILATIONS = ((1, 3, 5), (1, 3, 5), (1, 3, 5))


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size - 1) * dilation // 2


def _conv1d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    dilation: int = 1,
    padding: int = 0,
    init_std: float | None = INIT_STD,
) -> nn.Module:
    """A weight-normed Conv1d; the small init is applied before weight norm reads the norm."""
    conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding=padding, dilation=dilation)
    if init_std is not None:
        nn.init.normal_(conv.weight, 0.0, init_std)
    return weight_norm(conv)


def _upsample_conv(in_channels: int, out_channels: int, kernel_size: int, rate: int) -> nn.Module:
    """ConvTranspose1d whose output is exactly `rate` times longer than its input.

    Output length is (T-1)*u - 2p + k + op. HiFi-GAN uses p = (k-u)//2, which is exact
    only when k-u is even; rounding p up and adding output_padding = 2p-(k-u) (0 or 1)
    makes it exact for every kernel.
    """
    if kernel_size < rate:
        raise ValueError(f"upsample kernel {kernel_size} must be >= its rate {rate}, or output samples are skipped")
    padding = (kernel_size - rate + 1) // 2
    output_padding = 2 * padding - (kernel_size - rate)
    if output_padding >= rate:  # PyTorch requires output_padding < stride
        raise ValueError(f"upsample kernel {kernel_size} with rate {rate}: kernel - rate must be even when rate is 1")
    conv = nn.ConvTranspose1d(
        in_channels, out_channels, kernel_size, rate, padding=padding, output_padding=output_padding
    )
    nn.init.normal_(conv.weight, 0.0, INIT_STD)
    return weight_norm(conv)


def _downsample_conv(in_channels: int, out_channels: int, kernel_size: int, rate: int) -> nn.Module:
    """Strided Conv1d whose output is exactly T / rate long when `rate` divides T.

    Output length is floor((T + 2p - k)/u) + 1; with T = n*u that is n iff -u <= 2p - k < 0,
    which p = ceil((k-u)/2) satisfies for every u > 1 (and for u = 1 with an odd kernel).
    """
    padding = max(0, (kernel_size - rate + 1) // 2)
    if not -rate <= 2 * padding - kernel_size < 0:
        raise ValueError(f"downsample kernel {kernel_size} with rate {rate} cannot give exactly T/{rate} frames")
    return _conv1d(in_channels, out_channels, kernel_size, stride=rate, padding=padding)


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with channels/16 groups as in HiFi-Codec, clamped to a divisor of `channels`."""
    groups = max(1, channels // 16)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)




@configurable
class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: per dilation, lrelu -> dilated conv -> lrelu -> conv -> residual add."""

    def __init__(self, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3, 5)) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ResBlock1 needs an odd kernel for 'same' padding, got {kernel_size}")
        self.dilated = nn.ModuleList(
            _conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.plain = nn.ModuleList(
            _conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size)) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.dilated, self.plain):
            h = dilated(F.leaky_relu(x, LRELU_SLOPE))
            h = plain(F.leaky_relu(h, LRELU_SLOPE))
            x = x + h
        return x


@configurable
class MultiReceptiveFieldFusion(nn.Module):
    """HiFi-GAN's MRF: parallel ResBlock1s with different kernels, outputs averaged.

    With `group_norm=True` each branch is followed by its own GroupNorm (HiFi-Codec's
    encoder). The authors apply the j-th norm to the *running sum* of branches,
    i.e. s_1 = N_1(R_1(x)), s_j = N_j(s_{j-1} + R_j(x)), out = s_n / n. So the earlier
    branches get re-normalised again and again and the output has ~1/n of unit scale.
    By default we normalise each branch on its own and average,
    out = mean_j N_j(R_j(x)), which keeps the branches symmetric as the MRF intends;
    `norm_running_sum=True` reproduces the authors' order (same parameters, so their
    weights load either way).
    """

    def __init__(
        self,
        channels: int,
        kernel_sizes: Sequence[int],
        dilation_sizes: Sequence[Sequence[int]],
        group_norm: bool = False,
        norm_running_sum: bool = False,
    ) -> None:
        super().__init__()
        if len(kernel_sizes) != len(dilation_sizes):
            raise ValueError("need one dilation list per resblock kernel size")
        self.resblocks = nn.ModuleList(ResBlock1(channels, k, d) for k, d in zip(kernel_sizes, dilation_sizes))
        self.norms = nn.ModuleList(_group_norm(channels) for _ in kernel_sizes) if group_norm else None
        self.norm_running_sum = norm_running_sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norms is None:
            return sum(block(x) for block in self.resblocks) / len(self.resblocks)
        if self.norm_running_sum:
            total = None
            for block, norm in zip(self.resblocks, self.norms):
                total = norm(block(x) if total is None else total + block(x))
            return total / len(self.resblocks)
        return sum(norm(block(x)) for block, norm in zip(self.resblocks, self.norms)) / len(self.resblocks)


@configurable
class HiFiGANGenerator(nn.Module):
    """HiFi-GAN generator (V1 by default): latent (B, in_channels, T) -> waveform (B, 1, T * hop).

    conv_pre (k7) -> per stage [lrelu, ConvTranspose1d halving the channels, MRF]
    -> lrelu -> conv_post (k7, 1 channel) -> tanh. Every stage is length-exact
    (see `_upsample_conv`), so the output has exactly T * prod(upsample_rates) samples.
    """

    def __init__(
        self,
        in_channels: int = 512,
        upsample_initial_channel: int = 512,
        upsample_rates: Sequence[int] = (8, 5, 4, 2),
        upsample_kernel_sizes: Sequence[int] = (16, 11, 8, 4),
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = DEFAULT_DILATIONS,
    ) -> None:
        super().__init__()
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError("need one upsample kernel size per upsample rate")
        if upsample_initial_channel >> len(upsample_rates) < 1:
            raise ValueError("upsample_initial_channel is too small to halve at every stage")
        self.in_channels = in_channels
        self.upsample_rates = tuple(upsample_rates)
        # conv_pre keeps PyTorch's default init, as in HiFi-GAN.
        self.conv_pre = _conv1d(in_channels, upsample_initial_channel, 7, padding=3, init_std=None)
        self.upsamples = nn.ModuleList()
        self.mrfs = nn.ModuleList()
        ch = upsample_initial_channel
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            self.upsamples.append(_upsample_conv(ch, ch // 2, kernel, rate))
            ch //= 2
            self.mrfs.append(MultiReceptiveFieldFusion(ch, resblock_kernel_sizes, resblock_dilation_sizes))
        self.conv_post = _conv1d(ch, 1, 7, padding=3)

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, T), got {tuple(x.shape)}")
        x = self.conv_pre(x)
        for upsample, mrf in zip(self.upsamples, self.mrfs):
            x = mrf(upsample(F.leaky_relu(x, LRELU_SLOPE)))
        x = self.conv_post(F.leaky_relu(x, FINAL_LRELU_SLOPE))
        return torch.tanh(x)

    def remove_weight_norm(self) -> HiFiGANGenerator:
        return remove_weight_norm(self)


@configurable
class HiFiCodecEncoder(nn.Module):
    """HiFi-Codec's encoder: waveform (B, 1, T) -> latent (B, latent_dim, T / hop).

    conv_pre 1 -> channels (k7); stage i: lrelu, strided Conv1d doubling the channels
    (channels * 2^i -> channels * 2^(i+1)), then an MRF whose ResBlock1 branches are
    each followed by GroupNorm(ch/16); finally lrelu and a k3 conv to `latent_dim`.
    The rates are the decoder's reversed ((2, 4, 5, 8) for hop 320).

    GroupNorm order: the authors normalise the running sum of the branches; we
    normalise each branch and average (see `MultiReceptiveFieldFusion` for why).
    Set `norm_running_sum=True` for the authors' order.

    Small deviation: the authors' final k3 conv has no weight norm; ours has, like every
    other conv here (`remove_weight_norm()` folds it away for inference).
    """

    def __init__(
        self,
        channels: int = 32,
        downsample_rates: Sequence[int] = (2, 4, 5, 8),
        downsample_kernel_sizes: Sequence[int] = (4, 8, 11, 16),
        resblock_kernel_sizes: Sequence[int] = (11, 7, 3),
        resblock_dilation_sizes: Sequence[Sequence[int]] = DEFAULT_DILATIONS,
        latent_dim: int = 512,
        norm_running_sum: bool = False,
    ) -> None:
        super().__init__()
        if len(downsample_rates) != len(downsample_kernel_sizes):
            raise ValueError("need one downsample kernel size per downsample rate")
        self.downsample_rates = tuple(downsample_rates)
        self.latent_dim = latent_dim
        self.conv_pre = _conv1d(1, channels, 7, padding=3, init_std=None)
        self.downsamples = nn.ModuleList()
        self.mrfs = nn.ModuleList()
        ch = channels
        for rate, kernel in zip(downsample_rates, downsample_kernel_sizes):
            self.downsamples.append(_downsample_conv(ch, ch * 2, kernel, rate))
            ch *= 2
            self.mrfs.append(
                MultiReceptiveFieldFusion(
                    ch, resblock_kernel_sizes, resblock_dilation_sizes, group_norm=True, norm_running_sum=norm_running_sum
                )
            )
        self.conv_post = _conv1d(ch, latent_dim, 3, padding=1)

    @property
    def hop_length(self) -> int:
        return math.prod(self.downsample_rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"expected a mono waveform (B, 1, T), got {tuple(x.shape)}")
        length = x.shape[-1]
        if length % self.hop_length:
            raise ValueError(
                f"HiFiCodecEncoder needs a length that is a multiple of its hop {self.hop_length}, got {length}; "
                f"pad the waveform first, e.g. F.pad(x, (0, {-length % self.hop_length}))"
            )
        x = self.conv_pre(x)
        for downsample, mrf in zip(self.downsamples, self.mrfs):
            x = mrf(downsample(F.leaky_relu(x, LRELU_SLOPE)))
        return self.conv_post(F.leaky_relu(x, FINAL_LRELU_SLOPE))

    def remove_weight_norm(self) -> HiFiCodecEncoder:
        return remove_weight_norm(self)

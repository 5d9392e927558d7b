"""EnCodec's SEANet encoder (Défossez et al. 2022, "High Fidelity Neural Audio
Compression"), the encoder Language-Codec keeps (Ji et al. 2024, "Language-Codec:
Reducing the Gaps Between Discrete Codec Representation and Speech Language Models").

Shapes are channels-first: waveforms are (B, 1, T), latents (B, D, frames).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from codecgen.config import configurable
from codecgen.nn.weight_norm import remove_weight_norm

def _pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad on the last axis; "reflect" also works on inputs shorter than the padding
    (they are zero-extended first, then the extension is cut off again)."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    length = x.shape[-1]
    extra = max(0, max(left, right) - length + 1)
    if extra:
        x = F.pad(x, (0, extra))
    x = F.pad(x, (left, right), mode="reflect")
    return x[..., : x.shape[-1] - extra]


class _PaddedConv1d(nn.Module):
    """A weight-normed Conv1d that pads its input itself, so that a stride-`s` conv maps
    T = n*s samples to exactly n frames, causal or not.

    The total padding is the effective kernel minus the stride, (k-1)*d + 1 - s: then
    floor((T + pad - (k-1)*d - 1)/s) + 1 = T/s. Causal: all of it on the left.
    Non-causal: split, the odd sample on the left (as EnCodec does). EnCodec adds
    further right padding so that a length off the hop still gives whole frames; we
    ask for whole frames instead (the encoder checks the length).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        total = (kernel_size - 1) * dilation + 1 - stride
        if total < 0:
            raise ValueError(f"conv kernel {kernel_size} (dilation {dilation}) is shorter than its stride {stride}")
        self.pad_right = 0 if causal else total // 2
        self.pad_left = total - self.pad_right
        self.pad_mode = pad_mode
        self.conv = weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_pad1d(x, self.pad_left, self.pad_right, self.pad_mode))


@configurable
class SEANetResidualUnit(nn.Module):
    """EnCodec's SEANet residual unit: x + [ELU, conv k (dilated) dim -> dim/compress, ELU,
    conv k1 back to dim](x); the skip is the identity (`true_skip`, EnCodec's default)
    or a 1x1 conv."""

    def __init__(
        self,
        dim: int,
        kernel_size: int = 3,
        dilation: int = 1,
        compress: int = 2,
        true_skip: bool = True,
        causal: bool = False,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        hidden = dim // compress
        if hidden < 1:
            raise ValueError(f"compress {compress} leaves no hidden channels for dim {dim}")
        self.block = nn.Sequential(
            nn.ELU(),
            _PaddedConv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal, pad_mode=pad_mode),
            nn.ELU(),
            _PaddedConv1d(hidden, dim, 1, causal=causal, pad_mode=pad_mode),
        )
        self.shortcut = nn.Identity() if true_skip else _PaddedConv1d(dim, dim, 1, causal=causal, pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class _SkipLSTM(nn.Module):
    """Unidirectional LSTM over time on (B, C, T), plus the input: y = lstm(x) + x."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        y, _ = self.lstm(h)
        return (y + h).transpose(1, 2)


@configurable
class SEANetEncoder(nn.Module):
    """EnCodec's SEANet encoder (Défossez et al. 2022): waveform (B, channels, T) ->
    latent (B, dimension, T / hop), hop = prod(ratios).

    conv k7 (channels -> n_filters); then for each ratio, taken in *reversed* order as
    EnCodec does (ratios (8, 5, 4, 2) downsample by 2, 4, 5, 8): `n_residual_layers`
    residual units (dilations dilation_base**j), ELU, and a strided conv (kernel
    2 * ratio, stride ratio) doubling the channels; then a skip-connected LSTM
    (`lstm_layers`, 0 for none), ELU and a conv (`last_kernel_size`) to `dimension`.
    Every conv is weight-normed and pads reflectively (EnCodec's 24 kHz model).

    The defaults are Language-Codec's encoder (Ji et al. 2024): 24 kHz, 32 filters,
    ratios 8-5-4-2 (hop 320, 75 Hz), 128-d latent, 2-layer LSTM, non-causal.

    Deviation: EnCodec pads any length up to whole frames inside its convs; here the
    input length must be a multiple of the hop (ValueError otherwise) and the output
    has exactly T / hop frames, as `HiFiCodecEncoder`; codecs pad before encoding.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        n_residual_layers: int = 1,
        ratios: Sequence[int] = (8, 5, 4, 2),
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        lstm_layers: int = 2,
        causal: bool = False,
        true_skip: bool = True,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if not ratios or any(int(r) < 1 for r in ratios):
            raise ValueError(f"ratios must be positive integers, got {list(ratios)}")
        self.channels = channels
        self.dimension = dimension
        self.ratios = tuple(int(r) for r in ratios)
        conv = functools.partial(_PaddedConv1d, causal=causal, pad_mode=pad_mode)
        layers: list[nn.Module] = [conv(channels, n_filters, kernel_size)]
        ch = n_filters
        for ratio in reversed(self.ratios):
            for j in range(n_residual_layers):
                layers.append(
                    SEANetResidualUnit(
                        ch, residual_kernel_size, dilation_base**j, compress, true_skip, causal, pad_mode
                    )
                )
            layers += [nn.ELU(), conv(ch, ch * 2, 2 * ratio, stride=ratio)]
            ch *= 2
        if lstm_layers:
            layers.append(_SkipLSTM(ch, lstm_layers))
        layers += [nn.ELU(), conv(ch, dimension, last_kernel_size)]
        self.model = nn.Sequential(*layers)

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"expected a waveform (B, {self.channels}, T), got {tuple(x.shape)}")
        length = x.shape[-1]
        if length == 0 or length % self.hop_length:
            raise ValueError(
                f"SEANetEncoder needs a non-zero length that is a multiple of its hop {self.hop_length}, got {length}; "
                f"pad the waveform first, e.g. F.pad(x, (0, {-length % self.hop_length}))"
            )
        return self.model(x)

    def remove_weight_norm(self) -> SEANetEncoder:
        return remove_weight_norm(self)

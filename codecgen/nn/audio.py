"""Waveform encoders and decoders shared by the audio codecs.

Implements
- HiFi-GAN's generator, its ResBlock1 and multi-receptive-field fusion (MRF)
  (Kong et al. 2020, "HiFi-GAN: Generative Adversarial Networks for Efficient and
  High Fidelity Speech Synthesis"); the defaults are the V1 sizes that HiFi-Codec
  uses as its decoder;
- HiFi-Codec's encoder, a mirrored HiFi-GAN with GroupNorm after every ResBlock
  (Yang et al. 2023, "HiFi-Codec: Group-residual Vector quantization for High
  Fidelity Audio Codec", the AcademiCodec repository);
- EnCodec's SEANet encoder (Défossez et al. 2022, "High Fidelity Neural Audio
  Compression");
- Vocos' ConvNeXt backbone and iSTFT head (Siuzdak 2023, "Vocos: Closing the
  gap between time-domain and Fourier-based neural vocoders for high-quality audio
  synthesis"), with the bandwidth-conditioned AdaLayerNorm that Language-Codec adds
  (Ji et al. 2024, "Language-Codec: Reducing the Gaps Between Discrete Codec
  Representation and Speech Language Models"); SEANet + Vocos are its encoder/decoder.

Constructor arguments are plain ints and lists so that YAML configs can set them.
Shapes are channels-first: waveforms are (B, 1, T), latents (B, D, frames).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from codecgen.nn.config import configurable

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


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-norm parametrization into a plain weight (faster inference)."""
    # Collect first: removing a parametrization edits the module tree we would iterate.
    parametrized = [m for m in module.modules() if parametrize.is_parametrized(m, "weight")]
    for m in parametrized:
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


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


# --------------------------------------------------------------------------------------
# EnCodec's SEANet encoder (Défossez et al. 2022, "High Fidelity Neural Audio Compression"),
# the encoder Language-Codec keeps (Ji et al. 2024, "Language-Codec: Reducing the Gaps
# Between Discrete Codec Representation and Speech Language Models").
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Vocos (Siuzdak 2023, "Vocos: Closing the gap between time-domain and
# Fourier-based neural vocoders for high-quality audio synthesis"): a ConvNeXt backbone
# at frame rate and an inverse-STFT head. Language-Codec (Ji et al. 2024) decodes with
# it, its LayerNorms conditioned on the bandwidth (number of codebooks) through
# AdaLayerNorm.
# --------------------------------------------------------------------------------------


@configurable
class AdaLayerNorm(nn.Module):
    """LayerNorm over the last axis whose scale and shift are looked up per condition id
    (Vocos, Siuzdak 2023; Language-Codec's bandwidth embedding, Ji et al. 2024).

    forward(x (B, T, C), cond_id LongTensor (B,)) -> (B, T, C); a single id (shape () or
    (1,)) applies to the whole batch. Scales start at one and shifts at zero, so an
    untrained AdaLayerNorm is a plain LayerNorm without affine parameters.
    """

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        if num_embeddings < 1:
            raise ValueError(f"num_embeddings must be >= 1, got {num_embeddings}")
        self.num_embeddings, self.dim, self.eps = num_embeddings, dim, eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor) -> torch.Tensor:
        ids = _condition_ids(cond_id, x.shape[0], self.num_embeddings, x.device)
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x * self.scale(ids)[:, None] + self.shift(ids)[:, None]


def _condition_ids(cond_id, batch: int, num_embeddings: int, device, check_range: bool | None = None) -> torch.Tensor:
    """Condition ids as a (B,) LongTensor on `device`; a single id is broadcast.

    The range check reads the ids, a host sync on an accelerator, so by default it
    runs on CPU tensors only; `VocosBackbone` checks once per forward instead.
    """
    ids = torch.as_tensor(cond_id, device=device)
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"condition ids must be an integer tensor, got {ids.dtype}")
    ids = ids.long().reshape(-1)
    if ids.numel() == 1:
        ids = ids.expand(batch)
    if ids.shape != (batch,):
        raise ValueError(f"expected one condition id per batch item ({batch}), got shape {tuple(ids.shape)}")
    if check_range if check_range is not None else ids.device.type == "cpu":
        if bool(((ids < 0) | (ids >= num_embeddings)).any()):
            raise ValueError(f"condition ids must lie in [0, {num_embeddings}), got {ids.tolist()}")
    return ids


@configurable
class ConvNeXtBlock(nn.Module):
    """Vocos' 1-D ConvNeXt block (Siuzdak 2023) on (B, dim, T):
    x + gamma * Linear(GELU(Linear(Norm(dwconv_k7(x))))), the Linears dim -> intermediate_dim
    -> dim applied channels-last; Norm is an AdaLayerNorm when `adanorm_num_embeddings`
    is set, else a LayerNorm; gamma (layer scale) is omitted when the init value is
    None or <= 0."""

    def __init__(
        self,
        dim: int,
        intermediate_dim: int,
        layer_scale_init_value: float | None = None,
        adanorm_num_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.adanorm = adanorm_num_embeddings is not None
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if self.adanorm else nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        if layer_scale_init_value is not None and layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma = None

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        if self.adanorm:
            if cond_id is None:
                raise ValueError("this ConvNeXtBlock uses AdaLayerNorm: pass a condition id")
            h = self.norm(h, cond_id)
        else:
            h = self.norm(h)
        h = self.pwconv2(self.act(self.pwconv1(h)))
        if self.gamma is not None:
            h = h * self.gamma
        return x + h.transpose(1, 2)


@configurable
class VocosBackbone(nn.Module):
    """Vocos' backbone (Siuzdak 2023): (B, input_channels, T) -> (B, dim, T).

    conv k7 input_channels -> dim, (Ada)LayerNorm, `num_layers` ConvNeXt blocks, final
    LayerNorm; no up-sampling (the iSTFT head does that). Convs and Linears start from
    N(0, 0.02) truncated, biases 0, as in Vocos. With `adanorm_num_embeddings` set
    (Language-Codec: 4 bandwidth ids, Ji et al. 2024) every norm but the last is an
    AdaLayerNorm and `forward` needs `bandwidth_id` (B,); with None the norms are plain
    LayerNorms and `bandwidth_id` is ignored. `layer_scale_init_value` defaults to
    1 / num_layers.

    Deviation: Vocos returns channels-last (B, T, dim); we return channels-first like
    every module here, and `ISTFTHead` takes channels-first.
    """

    def __init__(
        self,
        input_channels: int = 128,
        dim: int = 384,
        intermediate_dim: int = 1152,
        num_layers: int = 12,
        layer_scale_init_value: float | None = None,
        adanorm_num_embeddings: int | None = 4,
    ) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.input_channels, self.dim = input_channels, dim
        self.adanorm_num_embeddings = adanorm_num_embeddings
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        adanorm = adanorm_num_embeddings is not None
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if adanorm else nn.LayerNorm(dim, eps=1e-6)
        if layer_scale_init_value is None:
            layer_scale_init_value = 1.0 / max(num_layers, 1)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, layer_scale_init_value, adanorm_num_embeddings)
            for _ in range(num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.input_channels:
            raise ValueError(f"expected (B, {self.input_channels}, T), got {tuple(x.shape)}")
        ids = None
        if self.adanorm_num_embeddings is not None:
            if bandwidth_id is None:
                raise ValueError("this VocosBackbone is bandwidth-conditioned (AdaLayerNorm): pass bandwidth_id")
            ids = _condition_ids(bandwidth_id, x.shape[0], self.adanorm_num_embeddings, x.device, check_range=True)
        h = self.embed(x).transpose(1, 2)
        h = self.norm(h, ids) if ids is not None else self.norm(h)
        h = h.transpose(1, 2)
        for block in self.blocks:
            h = block(h, ids)
        return self.final_layer_norm(h.transpose(1, 2)).transpose(1, 2)


@configurable
class ISTFT(nn.Module):
    """Inverse STFT of a (B, n_fft // 2 + 1, T) complex spectrogram with a periodic Hann window.

    padding="same" (Vocos, Siuzdak 2023): irfft per frame, window, overlap-add
    (`F.fold`), divide by the overlap-added squared window, then trim the
    (win_length - hop_length) samples the frames overhang, half on each side (the odd
    one on the right), so T frames give exactly T * hop_length samples.
    padding="center": `torch.istft(center=True)`, (T - 1) * hop_length samples.
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int | None = None, padding: str = "same") -> None:
        super().__init__()
        win_length = n_fft if win_length is None else win_length
        if padding not in ("same", "center"):
            raise ValueError(f"padding must be 'same' or 'center', got {padding!r}")
        if not 0 < hop_length < win_length <= n_fft:
            raise ValueError(f"need 0 < hop_length < win_length <= n_fft, got {hop_length}, {win_length}, {n_fft}")
        self.n_fft, self.hop_length, self.win_length, self.padding = n_fft, hop_length, win_length, padding
        self.trim_left = (win_length - hop_length) // 2
        self.trim_right = win_length - hop_length - self.trim_left
        window = torch.hann_window(win_length)
        # Each kept sample sits at offset [trim_left, trim_left + hop) of some frame; the
        # window there bounds the envelope from below for every T.
        if padding == "same" and window[self.trim_left : self.trim_left + hop_length].square().min() <= 1e-11:
            raise ValueError(f"hop_length {hop_length} is too large for window {win_length}: the envelope vanishes")
        self.register_buffer("window", window, persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, n_fft // 2 + 1, T) complex -> (B, T * hop_length) real ("same")."""
        if spec.dim() != 3 or spec.shape[1] != self.n_fft // 2 + 1:
            raise ValueError(f"expected (B, {self.n_fft // 2 + 1}, T) complex, got {tuple(spec.shape)}")
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)
        frames = spec.shape[-1]
        # torch.stft centres a shorter window inside the n_fft frame: keep that part
        frame_signals = torch.fft.irfft(spec, n=self.n_fft, dim=1, norm="backward")
        if self.win_length < self.n_fft:
            offset = (self.n_fft - self.win_length) // 2
            frame_signals = frame_signals[:, offset : offset + self.win_length]
        frame_signals = frame_signals * self.window[None, :, None]
        total = (frames - 1) * self.hop_length + self.win_length
        fold = functools.partial(
            F.fold, output_size=(1, total), kernel_size=(1, self.win_length), stride=(1, self.hop_length)
        )
        y = fold(frame_signals)[:, 0, 0]
        envelope = fold(self.window.square()[None, :, None].expand(1, -1, frames))[0, 0, 0]
        end = total - self.trim_right
        return y[:, self.trim_left : end] / envelope[self.trim_left : end]


@configurable
class ISTFTHead(nn.Module):
    """Vocos' iSTFT head (Siuzdak 2023): features (B, dim, T) -> waveform (B, 1, T * hop).

    A Linear maps each frame to n_fft + 2 numbers: n_fft/2 + 1 log-magnitudes and as
    many phases; magnitude = exp(log-magnitude) clipped at 1e2 (computed as
    exp(min(log-magnitude, ln 100)), the same value without an overflow to inf),
    S = magnitude * (cos phase + i sin phase), then `ISTFT`.
    """

    def __init__(self, dim: int = 384, n_fft: int = 1280, hop_length: int = 320, padding: str = "same") -> None:
        super().__init__()
        if n_fft % 2:
            raise ValueError(f"n_fft must be even, got {n_fft}")
        self.dim, self.n_fft, self.hop = dim, n_fft, hop_length
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, n_fft, padding)

    @property
    def hop_length(self) -> int:
        return self.hop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.dim:
            raise ValueError(f"expected (B, {self.dim}, T), got {tuple(x.shape)}")
        h = self.out(x.transpose(1, 2)).transpose(1, 2).float()  # the FFT wants float32
        log_mag, phase = h.chunk(2, dim=1)
        mag = torch.exp(log_mag.clamp(max=math.log(1e2)))
        spec = torch.polar(mag, phase)
        return self.istft(spec).unsqueeze(1)


@configurable
class VocosDecoder(nn.Module):
    """Vocos (Siuzdak 2023) as a codec decoder: `VocosBackbone` + `ISTFTHead`,
    latent (B, input_channels, T) -> waveform (B, 1, T * hop_length).

    The defaults are Language-Codec's decoder (Ji et al. 2024): 128-d latent, 12
    ConvNeXt blocks of dim 384 / hidden 1152, AdaLayerNorm over 4 bandwidth ids,
    n_fft 1280, hop 320 (24 kHz, 75 Hz). Pass `bandwidth_id` (B,) when
    `adanorm_num_embeddings` is set.
    """

    def __init__(
        self,
        input_channels: int = 128,
        dim: int = 384,
        intermediate_dim: int = 1152,
        num_layers: int = 12,
        adanorm_num_embeddings: int | None = 4,
        n_fft: int = 1280,
        hop_length: int = 320,
        layer_scale_init_value: float | None = None,
    ) -> None:
        super().__init__()
        self.backbone = VocosBackbone(
            input_channels, dim, intermediate_dim, num_layers, layer_scale_init_value, adanorm_num_embeddings
        )
        self.head = ISTFTHead(dim, n_fft, hop_length, padding="same")

    @property
    def hop_length(self) -> int:
        return self.head.hop_length

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(x, bandwidth_id))

"""Waveform and image discriminators for GAN-trained codecs, behind one interface.

Implements
- the multi-period (MPD) and multi-scale (MSD) discriminators of HiFi-GAN
  (Kong et al. 2020), used by HiFi-Codec (Yang et al. 2023) and Language-Codec;
- EnCodec's multi-scale STFT discriminator on the complex spectrogram
  (Défossez et al. 2022, "High Fidelity Neural Audio Compression"), used by HiFi-Codec;
- the multi-resolution discriminator on magnitude spectrograms of UnivNet
  (Jang et al. 2021) as used in Vocos (Siuzdenko et al. 2023) and Language-Codec;
- the PatchGAN image discriminator of pix2pix (Isola et al. 2017) in the form of
  taming-transformers' `NLayerDiscriminator` (Esser et al. 2021), used by the VQGAN
  image codec (Mao et al. 2023, "Extreme Image Compression using Fine-tuned VQGANs").

Interface: every class here, single or multi, is called as

    logits, fmaps = disc(y)          # y: (B, 1, T); images: (B, C, H, W)

and returns one logits tensor (B, N) and one list of feature maps per
sub-discriminator, so `DiscriminatorGroup` can concatenate any of them and the
GAN losses in `codecgen.nn.losses` work on all of them.

Feature maps are the post-activation outputs of every hidden layer, as each
paper's feature-matching loss used them: HiFi-GAN's MPD/MSD and UnivNet's MRD
also append the final logits map, EnCodec's STFT discriminator does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from codecgen.config import configurable

DiscriminatorOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]

HIFIGAN_LRELU_SLOPE = 0.1
ENCODEC_LRELU_SLOPE = 0.2


def _as_waveform(y: torch.Tensor) -> torch.Tensor:
    """Accept (B, T) for convenience; everything inside works on (B, 1, T)."""
    if y.dim() == 2:
        y = y.unsqueeze(1)
    if y.dim() != 3 or y.shape[1] != 1:
        raise ValueError(f"expected a mono waveform (B, 1, T), got {tuple(y.shape)}")
    return y


def _conv_stack(
    x: torch.Tensor, convs: nn.ModuleList, conv_post: nn.Module, slope: float, logits_in_fmap: bool
) -> DiscriminatorOutput:
    """Run conv -> leaky ReLU layers, then the logit conv; collect the feature maps.

    HiFi-GAN-style discriminators also feature-match on the logit map; EnCodec's do not.
    """
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), slope)
        fmap.append(x)
    x = conv_post(x)
    if logits_in_fmap:
        fmap.append(x)
    return [x.flatten(1)], [fmap]


@configurable
class DiscriminatorGroup(nn.Module):
    """Runs several discriminators on the same waveform and concatenates their outputs.

    A codec takes one `discriminator` argument; a YAML config builds it as a group
    from a list of `class_path`/`init_args` entries (e.g. MPD + MSD + MS-STFT).
    """

    def __init__(self, discriminators: list[nn.Module]) -> None:
        super().__init__()
        if len(discriminators) == 0:
            raise ValueError("a DiscriminatorGroup needs at least one discriminator")
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, y: torch.Tensor) -> DiscriminatorOutput:
        logits: list[torch.Tensor] = []
        fmaps: list[list[torch.Tensor]] = []
        for disc in self.discriminators:
            sub_logits, sub_fmaps = disc(y)
            logits.extend(sub_logits)
            fmaps.extend(sub_fmaps)
        return logits, fmaps


# --------------------------------------------------------------------------- MPD


@configurable
class PeriodDiscriminator(nn.Module):
    """HiFi-GAN sub-discriminator that sees the waveform folded into (T / period, period).

    Conv2d stack with (kernel_size, 1) kernels: every channel but the last is strided
    by `stride` along time, the last one is not; then a (3, 1) conv to one logit map.
    """

    def __init__(
        self,
        period: int,
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        norm = spectral_norm if use_spectral_norm else weight_norm
        pad = (kernel_size - 1) // 2
        self.convs = nn.ModuleList()
        in_ch = 1
        for i, out_ch in enumerate(channels):
            layer_stride = stride if i < len(channels) - 1 else 1
            self.convs.append(norm(nn.Conv2d(in_ch, out_ch, (kernel_size, 1), (layer_stride, 1), padding=(pad, 0))))
            in_ch = out_ch
        self.conv_post = norm(nn.Conv2d(in_ch, 1, (3, 1), padding=(1, 0)))

    def forward(self, y: torch.Tensor) -> DiscriminatorOutput:
        y = _as_waveform(y)
        batch, _, length = y.shape
        pad = -length % self.period
        if pad:
            # Reflect rather than zero-pad so the folded rows see no artificial silence.
            y = F.pad(y, (0, pad), mode="reflect")
        x = y.view(batch, 1, -1, self.period)
        return _conv_stack(x, self.convs, self.conv_post, HIFIGAN_LRELU_SLOPE, logits_in_fmap=True)


@configurable
class MultiPeriodDiscriminator(DiscriminatorGroup):
    """HiFi-GAN MPD: one `PeriodDiscriminator` per (prime) period."""

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
    ) -> None:
        super().__init__([PeriodDiscriminator(p, channels, kernel_size, stride) for p in periods])


# --------------------------------------------------------------------------- MSD


@configurable
class ScaleDiscriminator(nn.Module):
    """HiFi-GAN sub-discriminator on the raw (or average-pooled) waveform.

    Layout: conv k15 s1 -> five grouped convs k41 (strides 2, 2, 4, 4, 1; groups
    4, 16, 16, 16, 16) -> conv k5 -> post conv k3 to one logit map. `channels` are the
    seven output widths. Groups are clamped to divide both channel counts, so tiny
    test configs with few channels still build.
    """

    STRIDES = (2, 2, 4, 4, 1)
    GROUPS = (4, 16, 16, 16, 16)

    def __init__(
        self,
        channels: Sequence[int] = (128, 128, 256, 512, 1024, 1024, 1024),
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != len(self.STRIDES) + 2:
            raise ValueError(f"ScaleDiscriminator needs {len(self.STRIDES) + 2} channel widths, got {len(channels)}")
        norm = spectral_norm if use_spectral_norm else weight_norm
        self.convs = nn.ModuleList([norm(nn.Conv1d(1, channels[0], 15, 1, padding=7))])
        for i, (stride, groups) in enumerate(zip(self.STRIDES, self.GROUPS)):
            in_ch, out_ch = channels[i], channels[i + 1]
            groups = math.gcd(groups, math.gcd(in_ch, out_ch))
            self.convs.append(norm(nn.Conv1d(in_ch, out_ch, 41, stride, groups=groups, padding=20)))
        self.convs.append(norm(nn.Conv1d(channels[-2], channels[-1], 5, 1, padding=2)))
        self.conv_post = norm(nn.Conv1d(channels[-1], 1, 3, 1, padding=1))

    def forward(self, y: torch.Tensor) -> DiscriminatorOutput:
        x = _as_waveform(y)
        return _conv_stack(x, self.convs, self.conv_post, HIFIGAN_LRELU_SLOPE, logits_in_fmap=True)


@configurable
class MultiScaleDiscriminator(nn.Module):
    """HiFi-GAN MSD: the same architecture at 1x, 2x, 4x ... average-pooled waveforms.

    The first (raw-audio) scale uses spectral norm, the others weight norm, as in HiFi-GAN.
    """

    def __init__(
        self,
        n_scales: int = 3,
        channels: Sequence[int] = (128, 128, 256, 512, 1024, 1024, 1024),
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(channels, use_spectral_norm=(i == 0)) for i in range(n_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, y: torch.Tensor) -> DiscriminatorOutput:
        y = _as_waveform(y)
        logits: list[torch.Tensor] = []
        fmaps: list[list[torch.Tensor]] = []
        for i, disc in enumerate(self.discriminators):
            if i > 0:
                y = self.pool(y)
            sub_logits, sub_fmaps = disc(y)
            logits.extend(sub_logits)
            fmaps.extend(sub_fmaps)
        return logits, fmaps


# ------------------------------------------------------------ spectrogram helper


class _Spectrogram(nn.Module):
    """Complex STFT of (B, 1, T) -> (B, F, frames); the window is a non-persistent buffer."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, center: bool, normalized: bool) -> None:
        super().__init__()
        if win_length > n_fft:
            raise ValueError(f"win_length {win_length} must be <= n_fft {n_fft}")
        self.n_fft, self.hop_length, self.win_length, self.center = n_fft, hop_length, win_length, center
        window = torch.hann_window(win_length)
        # torchaudio's `normalized=True` divides by the window's L2 norm, which makes the
        # spectrum's scale independent of the resolution.
        self.scale = 1.0 / float(window.pow(2).sum().sqrt()) if normalized else 1.0
        # Not persistent: a derived constant has no business in checkpoints.
        self.register_buffer("window", window, persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = _as_waveform(y).squeeze(1)
        if not self.center and y.shape[-1] < self.n_fft:
            raise ValueError(f"input of {y.shape[-1]} samples is shorter than n_fft {self.n_fft}")
        # STFT is not implemented for half precision everywhere; run it in fp32.
        spec = torch.stft(
            y.float(),
            self.n_fft,
            self.hop_length,
            self.win_length,
            window=self.window,
            center=self.center,
            pad_mode="reflect",
            return_complex=True,
        )
        return spec * self.scale


# ----------------------------------------------------------------------- MS-STFT


@configurable
class STFTDiscriminator(nn.Module):
    """EnCodec's STFT discriminator on one resolution.

    The normalised complex STFT is fed as 2 channels (real, imag) laid out as
    (B, 2, frames, freq). Conv2d stack, kernels (3, 9) = (time, freq): one conv, then one
    per entry of `dilations` (dilated in time, strided by 2 in frequency), then a (3, 3)
    conv, all followed by LeakyReLU(0.2), and a (3, 3) post conv to one logit map.
    Widths grow as filters * filters_scale^(i+1), capped at max_filters.
    """

    KERNEL = (3, 9)
    STRIDE = (1, 2)

    def __init__(
        self,
        filters: int = 32,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int = 1024,
        max_filters: int = 1024,
        filters_scale: int = 1,
        dilations: Sequence[int] = (1, 2, 4),
    ) -> None:
        super().__init__()
        self.spectrogram = _Spectrogram(n_fft, hop_length, win_length, center=False, normalized=True)
        kt, kf = self.KERNEL
        self.convs = nn.ModuleList([weight_norm(nn.Conv2d(2, filters, self.KERNEL, padding=(kt // 2, kf // 2)))])
        in_ch = filters
        for i, dilation in enumerate(dilations):
            out_ch = min(filters_scale ** (i + 1) * filters, max_filters)
            self.convs.append(
                weight_norm(
                    nn.Conv2d(
                        in_ch,
                        out_ch,
                        self.KERNEL,
                        self.STRIDE,
                        dilation=(dilation, 1),
                        padding=((kt - 1) * dilation // 2, kf // 2),
                    )
                )
            )
            in_ch = out_ch
        out_ch = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        self.convs.append(weight_norm(nn.Conv2d(in_ch, out_ch, (kt, kt), padding=(kt // 2, kt // 2))))
        self.conv_post = weight_norm(nn.Conv2d(out_ch, 1, (kt, kt), padding=(kt // 2, kt // 2)))

    def forward(self, y: torch.Tensor) -> DiscriminatorOutput:
        spec = self.spectrogram(y)  # (B, F, frames), complex
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2, frames, F)
        return _conv_stack(x, self.convs, self.conv_post, ENCODEC_LRELU_SLOPE, logits_in_fmap=False)


@configurable
class MultiScaleSTFTDiscriminator(DiscriminatorGroup):
    """EnCodec's MS-STFT discriminator: one `STFTDiscriminator` per STFT resolution."""

    def __init__(
        self,
        filters: int = 32,
        n_ffts: Sequence[int] = (1024, 2048, 512),
        hop_lengths: Sequence[int] = (256, 512, 128),
        win_lengths: Sequence[int] = (1024, 2048, 512),
        max_filters: int = 1024,
        filters_scale: int = 1,
        dilations: Sequence[int] = (1, 2, 4),
    ) -> None:
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        super().__init__(
            [
                STFTDiscriminator(filters, n, h, w, max_filters, filters_scale, dilations)
                for n, h, w in zip(n_ffts, hop_lengths, win_lengths)
            ]
        )


# --------------------------------------------------------------------------- MRD


@configurable
class ResolutionDiscriminator(nn.Module):
    """UnivNet / Vocos sub-discriminator on one linear magnitude spectrogram.

    Input (B, 1, freq, frames); five Conv2d with LeakyReLU(0.1), every one strided by 2
    in frequency and every other one in time, then a (3, 3) post conv.
    Deviation: the authors' STFT uses no window (rectangular); we use a Hann window,
    which leaks less energy across bins and matches the other spectral pieces here.
    """

    def __init__(self, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024, channels: int = 32) -> None:
        super().__init__()
        self.spectrogram = _Spectrogram(n_fft, hop_length, win_length, center=True, normalized=False)
        # (kernel, stride, padding) over (freq, time)
        layout = [
            ((7, 5), (2, 2), (3, 2)),
            ((5, 3), (2, 1), (2, 1)),
            ((5, 3), (2, 2), (2, 1)),
            ((3, 3), (2, 1), (1, 1)),
            ((3, 3), (2, 2), (1, 1)),
        ]
        self.convs = nn.ModuleList()
        in_ch = 1
        for kernel, stride, padding in layout:
            self.convs.append(weight_norm(nn.Conv2d(in_ch, channels, kernel, stride, padding=padding)))
            in_ch = channels
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, y: torch.Tensor) -> DiscriminatorOutput:
        x = self.spectrogram(y).abs().unsqueeze(1)  # (B, 1, F, frames)
        return _conv_stack(x, self.convs, self.conv_post, HIFIGAN_LRELU_SLOPE, logits_in_fmap=True)


@configurable
class MultiResolutionDiscriminator(DiscriminatorGroup):
    """Vocos / UnivNet MRD: one `ResolutionDiscriminator` per (n_fft, hop, win) triple.

    Width: Vocos' `DiscriminatorR` (which Language-Codec inherits) defaults to 64 channels;
    the default here is 32, so the paper-size Language-Codec config sets `channels: 64`.
    """

    def __init__(
        self,
        resolutions: Sequence[Sequence[int]] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)),
        channels: int = 32,
    ) -> None:
        super().__init__([ResolutionDiscriminator(n, h, w, channels) for n, h, w in resolutions])


# ---------------------------------------------------------------------- PatchGAN


def _patchgan_init(module: nn.Module) -> None:
    """taming-transformers' `weights_init`: conv weights N(0, 0.02), BN weights N(1, 0.02), BN bias 0.

    Like taming, conv biases (first and last conv) keep PyTorch's default init.
    """
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.constant_(module.bias, 0.0)


@configurable
class PatchGANDiscriminator(nn.Module):
    """pix2pix PatchGAN as taming-transformers' `NLayerDiscriminator`; images (B, C, H, W).

    conv 4x4 s2 -> LeakyReLU(0.2); `n_layers - 1` blocks conv 4x4 s2 -> BatchNorm ->
    LeakyReLU with ndf * min(2^n, 8) channels; one such block with stride 1; then a
    stride-1 4x4 conv to one logit per patch (padding 1 throughout). With the default
    n_layers=3 a 256x256 image gives 30x30 logits (70x70 receptive field), 64x64 gives 6x6.
    Convs followed by BatchNorm have no bias. `use_batchnorm=False` replaces
    BatchNorm with identity and gives those convs a bias (taming's ActNorm option is
    not provided). Returns `([logits.flatten(1)], [hidden feature maps])`; the logit
    map is not among the feature maps.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, use_batchnorm: bool = True) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.input_nc = input_nc
        norm = nn.BatchNorm2d if use_batchnorm else (lambda _: nn.Identity())
        use_bias = not use_batchnorm
        kw, padw, slope = 4, 1, 0.2
        self.blocks = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(input_nc, ndf, kw, 2, padw), nn.LeakyReLU(slope))]
        )
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            self.blocks.append(
                nn.Sequential(
                    nn.Conv2d(ndf * prev, ndf * mult, kw, stride, padw, bias=use_bias),
                    norm(ndf * mult),
                    nn.LeakyReLU(slope),
                )
            )
        self.conv_post = nn.Conv2d(ndf * mult, 1, kw, 1, padw)
        self.apply(_patchgan_init)

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        if x.dim() != 4 or x.shape[1] != self.input_nc:
            raise ValueError(f"expected images (B, {self.input_nc}, H, W), got {tuple(x.shape)}")
        fmap = []
        for block in self.blocks:
            x = block(x)
            fmap.append(x)
        return [self.conv_post(x).flatten(1)], [fmap]

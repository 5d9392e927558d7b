"""Reconstruction and adversarial losses for GAN-trained audio codecs.

Implements
- the log-mel L1 reconstruction loss of HiFi-GAN (Kong et al. 2020), at several
  resolutions as in HiFi-Codec (Yang et al. 2023) and EnCodec (Défossez et al. 2022);
- the multi-resolution STFT loss (spectral convergence + log magnitude) of
  Parallel WaveGAN (Yamamoto et al. 2020);
- LSGAN losses (HiFi-GAN, HiFi-Codec), hinge losses (Vocos, Siuzdenko et al. 2023;
  Language-Codec) and the feature-matching loss (HiFi-GAN, MelGAN).

The GAN losses take the lists that every discriminator in `codecgen.nn.discriminators`
returns (one logits tensor / one list of feature maps per sub-discriminator).

Average vs sum: with the default `reduction="mean"` each GAN / feature-matching loss
is averaged over sub-discriminators, so its size does not depend on how many
discriminators a config stacks. The authors (HiFi-GAN, HiFi-Codec, Vocos) *sum* over
sub-discriminators (and, for feature matching, over layers); pass `reduction="sum"`
to reproduce their scale, e.g. when using their loss weights unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchaudio.functional import melscale_fbanks

from codecgen.nn.config import configurable

LOG_CLAMP = 1e-5


def _as_batch_time(y: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) or (B, T) -> (B, T), computed in fp32."""
    if y.dim() == 3:
        if y.shape[1] != 1:
            raise ValueError(f"expected a mono waveform (B, 1, T), got {tuple(y.shape)}")
        y = y.squeeze(1)
    if y.dim() != 2:
        raise ValueError(f"expected (B, 1, T) or (B, T), got {tuple(y.shape)}")
    # STFTs are not implemented / not accurate in half precision: always use fp32.
    return y.float()


def _check_same_shape(y_hat: torch.Tensor, y: torch.Tensor) -> None:
    if y_hat.shape != y.shape:
        raise ValueError(f"y_hat {tuple(y_hat.shape)} and y {tuple(y.shape)} must have the same shape")


# ----------------------------------------------------------------------- spectra


@configurable
class LogMelSpectrogram(nn.Module):
    """log(clamp(mel magnitude, 1e-5)): waveform (B, 1, T) or (B, T) -> (B, n_mels, frames).

    Same numbers as `torchaudio.transforms.MelSpectrogram(power=1.0)` followed by the log
    (checked in the tests), written with `torch.stft` so that the window and filterbank are
    non-persistent buffers (they stay out of codec checkpoints) and so that the STFT runs
    in fp32 even under autocast. The defaults `norm="slaney"`, `mel_scale="slaney"` are
    librosa's filters that HiFi-GAN and HiFi-Codec use; Vocos / Language-Codec use
    torchaudio's defaults (`norm=None`, `mel_scale="htk"`). Frames are centred
    (T // hop + 1 of them); HiFi-GAN instead pads (n_fft - hop) / 2 and does not centre.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int | None = None,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        norm: str | None = "slaney",
        mel_scale: str = "slaney",
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        fbanks = melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max if f_max is not None else sample_rate / 2, n_mels, sample_rate, norm, mel_scale
        )
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer("fbanks", fbanks.T.contiguous(), persistent=False)  # (n_mels, n_freqs)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = _as_batch_time(y)
        with torch.autocast(device_type=y.device.type, enabled=False):
            spec = torch.stft(
                y,
                self.n_fft,
                self.hop_length,
                self.win_length,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            ).abs()
            mel = torch.matmul(self.fbanks, spec)
            return torch.log(mel.clamp(min=LOG_CLAMP))


@configurable
class MultiResolutionMelLoss(nn.Module):
    """Mean over resolutions of the L1 distance between log-mel spectrograms.

    `resolutions` are (n_fft, hop_length, n_mels) triples, window = n_fft. HiFi-Codec
    uses (1024, 240, 80), (512, 120, 80), (256, 60, 80) at 24 kHz (hop 240 variant)
    and weights the first one by 45; set the resolutions / weights in the codec's config.
    Returns a scalar tensor.
    """

    def __init__(
        self,
        sample_rate: int,
        resolutions: Sequence[Sequence[int]] = ((1024, 256, 80), (512, 128, 80), (256, 64, 80)),
        f_min: float = 0.0,
        f_max: float | None = None,
        norm: str | None = "slaney",
        mel_scale: str = "slaney",
    ) -> None:
        super().__init__()
        if len(resolutions) == 0:
            raise ValueError("need at least one resolution")
        with warnings.catch_warnings():
            # Small FFTs with 80 mels leave some low mel bands empty (torchaudio warns).
            # Empty bands clamp to the same log(1e-5) on both sides, so they add 0 loss.
            warnings.filterwarnings("ignore", message=".*filterbank has all zero values.*")
            self.mels = nn.ModuleList(
                LogMelSpectrogram(sample_rate, n_fft, hop, n_fft, n_mels, f_min, f_max, norm, mel_scale)
                for n_fft, hop, n_mels in resolutions
            )

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_same_shape(y_hat, y)
        losses = [F.l1_loss(mel(y_hat), mel(y)) for mel in self.mels]
        return torch.stack(losses).mean()


@configurable
class MultiResolutionSTFTLoss(nn.Module):
    """Parallel WaveGAN's multi-resolution STFT loss: spectral convergence + log-magnitude L1.

    `resolutions` are (n_fft, hop_length, win_length) triples; returns the mean over
    resolutions of (SC + log-mag) as a scalar tensor.
    """

    def __init__(
        self,
        resolutions: Sequence[Sequence[int]] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)),
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.eps = eps
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window_{i}", torch.hann_window(win), persistent=False)

    def _magnitude(self, y: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop, win = self.resolutions[i]
        window = getattr(self, f"window_{i}")
        spec = torch.stft(y, n_fft, hop, win, window=window, center=True, pad_mode="reflect", return_complex=True)
        return spec.abs().clamp(min=self.eps)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_same_shape(y_hat, y)
        y_hat, y = _as_batch_time(y_hat), _as_batch_time(y)
        losses = []
        with torch.autocast(device_type=y.device.type, enabled=False):
            for i in range(len(self.resolutions)):
                mag_hat, mag = self._magnitude(y_hat, i), self._magnitude(y, i)
                convergence = torch.linalg.norm(mag - mag_hat) / torch.linalg.norm(mag).clamp(min=self.eps)
                log_mag = F.l1_loss(torch.log(mag_hat), torch.log(mag))
                losses.append(convergence + log_mag)
        return torch.stack(losses).mean()


# -------------------------------------------------------------------- GAN losses


def _reduce(terms: list[torch.Tensor], reduction: str) -> torch.Tensor:
    if not terms:
        raise ValueError("no discriminator outputs to compute a loss from")
    stacked = torch.stack(terms)
    if reduction == "mean":
        return stacked.mean()
    if reduction == "sum":
        return stacked.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _check_pairs(real: Sequence, fake: Sequence) -> None:
    if len(real) != len(fake):
        raise ValueError(f"got {len(real)} real and {len(fake)} fake sub-discriminator outputs")


def lsgan_discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], reduction: str = "mean"
) -> torch.Tensor:
    """Least-squares GAN, discriminator side: E[(1 - D(y))^2] + E[D(y_hat)^2] per sub-discriminator."""
    _check_pairs(real_logits, fake_logits)
    terms = [(1 - r).pow(2).mean() + f.pow(2).mean() for r, f in zip(real_logits, fake_logits)]
    return _reduce(terms, reduction)


def lsgan_generator_loss(fake_logits: Sequence[torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Least-squares GAN, generator side: E[(1 - D(y_hat))^2] per sub-discriminator."""
    return _reduce([(1 - f).pow(2).mean() for f in fake_logits], reduction)


def hinge_discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], reduction: str = "mean"
) -> torch.Tensor:
    """Hinge GAN, discriminator side: E[relu(1 - D(y))] + E[relu(1 + D(y_hat))] per sub-discriminator."""
    _check_pairs(real_logits, fake_logits)
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)]
    return _reduce(terms, reduction)


def hinge_generator_loss(fake_logits: Sequence[torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Hinge GAN, generator side, as in Vocos / Language-Codec: E[relu(1 - D(y_hat))].

    (The textbook hinge generator loss is -E[D(y_hat)]; Vocos clips it at margin 1, which
    stops the generator from pushing logits further once the discriminator is fooled.)
    """
    return _reduce([F.relu(1 - f).mean() for f in fake_logits], reduction)


def feature_matching_loss(
    real_fmaps: Sequence[Sequence[torch.Tensor]],
    fake_fmaps: Sequence[Sequence[torch.Tensor]],
    reduction: str = "mean",
) -> torch.Tensor:
    """L1 between the discriminator's feature maps on real and generated audio.

    Plain (not relative / not normalised) mean absolute difference per layer, with the
    real features detached (they are targets). `reduction="mean"` averages over the
    layers of each sub-discriminator, then over sub-discriminators; `"sum"` sums both,
    which is HiFi-GAN's definition. HiFi-GAN and HiFi-Codec then weight it by 2.
    """
    _check_pairs(real_fmaps, fake_fmaps)
    terms = []
    for real_layers, fake_layers in zip(real_fmaps, fake_fmaps):
        _check_pairs(real_layers, fake_layers)
        layer_terms = [F.l1_loss(f, r.detach()) for r, f in zip(real_layers, fake_layers)]
        terms.append(_reduce(layer_terms, reduction))
    return _reduce(terms, reduction)

"""Reconstruction and adversarial losses for GAN-trained audio codecs.

Implements
- the log-mel L1 reconstruction loss of HiFi-GAN (Kong et al. 2020), at several
  resolutions as in HiFi-Codec (Yang et al. 2023) and EnCodec (Défossez et al. 2022);
- the multi-resolution STFT loss (spectral convergence + log magnitude) of
  Parallel WaveGAN (Yamamoto et al. 2020);
- LSGAN losses (HiFi-GAN, HiFi-Codec), hinge losses (Vocos, Siuzdenko et al. 2023;
  Language-Codec) and the feature-matching loss (HiFi-GAN, MelGAN);
- image losses for the VQGAN image codec (Esser et al. 2021, "Taming Transformers";
  Mao et al. 2023, "Extreme Image Compression using Fine-tuned VQGANs"): SSIM
  (Wang et al. 2004) and MS-SSIM (Wang et al. 2003), a multi-scale image-gradient L1
  loss, and the LPIPS-style VGG16 perceptual distance (Zhang et al. 2018).

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
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torchaudio.functional import melscale_fbanks

from codecgen.config import configurable

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
@configurable
class LogMelSpectrogram(nn.Module):
    """log(clamp(mel magnitude, 1e-5)): waveform (B, 1, T) or (B, T) -> (B, n_mels, frames).

    Same numbers as `torchaudio.transforms.MelSpectrogram(power=1.0)` followed by the log
    (checked in the tests), written with `torch.stft` so that the window and filterbank are
    non-persistent buffers (they stay out of codec checkpoints) and so that the STFT runs
    in fp32 even under autocast. The defaults `norm="slaney"`, `mel_scale="slaney"` are
    librosa's filters that HiFi-GAN and HiFi-Codec use; Vocos / Language-Codec use
    torchaudio's defaults (`norm=None`, `mel_scale="htk"`). Frames are centred
    (T // hop + 1 of them); with `center=False` the signal is reflect-padded by
    (n_fft - hop) / 2 on each side instead, as HiFi-GAN and AudioLDM (SemantiCodec's mel) do,
    so a signal of T samples (a multiple of hop) makes exactly T // hop frames.
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
        center: bool = True,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.center = n_fft, hop_length, center
        self.win_length = win_length or n_fft
        self.n_mels = n_mels
        fbanks = melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max if f_max is not None else sample_rate / 2, n_mels, sample_rate, norm, mel_scale
        )
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer("fbanks", fbanks.T.contiguous(), persistent=False)  # (n_mels, n_freqs)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = _as_batch_time(y)
        with torch.autocast(device_type=y.device.type, enabled=False):
            if not self.center:
                pad = (self.n_fft - self.hop_length) // 2
                y = F.pad(y[:, None], (pad, pad), mode="reflect")[:, 0]
            spec = torch.stft(
                y,
                self.n_fft,
                self.hop_length,
                self.win_length,
                window=self.window,
                center=self.center,
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


# -------------------------------------------------------------------------- images
#
# Images are (B, C, H, W) float tensors. The image codec works on [-1, 1]; the
# functional `ssim` / `ms_ssim` default to data_range=1 (images in [0, 1]), the
# loss modules to data_range=2.

SSIM_K1, SSIM_K2 = 0.01, 0.03
# Wang et al. 2003, fitted to human judgements over five scales (finest first).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_images(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 4 or y.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def _as_float_images(x: torch.Tensor) -> torch.Tensor:
    # Variances are differences of close second moments: half precision loses them.
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) or not x.is_floating_point() else x


def _gaussian_window(window_size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd number, got {window_size}")
    coords = torch.arange(window_size, dtype=like.dtype, device=like.device) - (window_size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel (groups = C), 'valid' (no padding).

    Valid filtering is what Wang et al.'s reference code and scikit-image's
    (border-cropped) SSIM do: border pixels do not see padded values.
    """
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_and_cs(
    x: torch.Tensor, y: torch.Tensor, data_range: float, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel SSIM and contrast-structure term, each (B, C)."""
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    var_x = _blur(x * x, g) - mu_x**2
    var_y = _blur(y * y, g) - mu_y**2
    cov = _blur(x * y, g) - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs_map).mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def _reduce_images(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "none":
        return per_image
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of two (B, C, H, W) batches; 1 = identical.

    Gaussian window (`window_size`, `sigma`), K1 = 0.01, K2 = 0.03, computed per channel
    and averaged over channels and over the valid (unpadded) window positions; this
    matches scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`. `reduction="none"` returns one value per image (B,).
    Differentiable. Raises ValueError for non-4-D or mismatched inputs and for
    images smaller than the window.
    """
    _check_images(x, y)
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the {window_size}x{window_size} window")
    x, y = _as_float_images(x), _as_float_images(y.to(x.dtype))
    with torch.autocast(device_type=x.device.type, enabled=False):
        s, _ = _ssim_and_cs(x, y, data_range, _gaussian_window(window_size, sigma, x))
    return _reduce_images(s.mean(dim=1), reduction)


def _safe_pow(v: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """relu(v) ** exponent with a finite gradient everywhere.

    As in pytorch-msssim, negative cs / SSIM values are clamped to 0 (a fractional power
    of a negative number is NaN). The double `where` also keeps the gradient at exactly
    0 finite: plain relu(v) ** w with w < 1 back-propagates 0 * inf = NaN there.
    """
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, torch.ones_like(v)) ** exponent, torch.zeros_like(v))


def ms_ssim_scales(size: int, n_weights: int = len(MS_SSIM_WEIGHTS), window_size: int = 11) -> int:
    """How many scales ``ms_ssim`` uses on images whose shorter side is ``size``: each halves
    the last (rounding up), up to ``n_weights``, while the image is no smaller than the window."""
    n_scales = 0
    while n_scales < n_weights and size >= window_size:
        n_scales += 1
        size = (size + 1) // 2  # avg_pool2d with padding = size % 2 rounds up
    return n_scales


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    window_size: int = 11,
    sigma: float = 1.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) of two (B, C, H, W) batches; 1 = identical.

    Scale j (finest first) halves the previous one with 2x2 average pooling. The
    contrast-structure term is taken at every scale, luminance only at the coarsest:
    MS-SSIM = prod_j relu(cs_j)^w_j, with the last factor relu(SSIM)^w_last (per channel,
    then averaged over channels), as pytorch-msssim computes it.

    Small images: with five scales and an 11-pixel window the paper's definition needs
    at least 11 * 2^4 = 176 pixels per side. Here the coarse scales whose image would be
    smaller than the window are dropped and the remaining weights renormalised to sum
    to 1 (e.g. a 32x32 image uses 2 scales; with a single scale MS-SSIM equals SSIM), so
    numbers from images of different sizes are not strictly comparable. Images smaller
    than the window itself raise ValueError, as do non-4-D or mismatched inputs.
    """
    _check_images(x, y)
    if len(weights) == 0:
        raise ValueError("need at least one MS-SSIM weight")
    n_scales = ms_ssim_scales(min(x.shape[-2:]), len(weights), window_size)
    if n_scales == 0:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the {window_size}x{window_size} window")
    x, y = _as_float_images(x), _as_float_images(y.to(x.dtype))
    w = torch.as_tensor(list(weights)[:n_scales], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    with torch.autocast(device_type=x.device.type, enabled=False):
        g = _gaussian_window(window_size, sigma, x)
        factors = []
        for j in range(n_scales):
            s, cs = _ssim_and_cs(x, y, data_range, g)
            if j < n_scales - 1:
                factors.append(cs)
                pad = [d % 2 for d in x.shape[-2:]]
                x = F.avg_pool2d(x, 2, padding=pad)
                y = F.avg_pool2d(y, 2, padding=pad)
            else:
                factors.append(s)
        per_channel = _safe_pow(torch.stack(factors), w.view(-1, 1, 1)).prod(dim=0)  # (B, C)
    return _reduce_images(per_channel.mean(dim=1), reduction)


@configurable
class MSSSIMLoss(nn.Module):
    """1 - MS-SSIM for images in [-1, 1] (hence `data_range=2`); see `ms_ssim`."""

    name = "ms-ssim"

    def __init__(
        self,
        data_range: float = 2.0,
        weights: Sequence[float] = MS_SSIM_WEIGHTS,
        window_size: int = 11,
        sigma: float = 1.5,
    ) -> None:
        super().__init__()
        self.data_range, self.weights = data_range, tuple(weights)
        self.window_size, self.sigma = window_size, sigma

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return 1 - ms_ssim(x_hat, x, self.data_range, self.weights, self.window_size, self.sigma)


@configurable
class GradientLoss(nn.Module):
    """Multi-scale image-gradient loss: L1 between finite differences of x_hat and x.

    At each of `scales` scales (the image, then 2x2 average-pooled `scales - 1` times)
    the horizontal and vertical forward differences of both images are compared with
    L1; the result is the mean over scales of (L1_x + L1_y). It penalises blurred or
    displaced edges, which plain pixel losses under-weight.
    """

    name = "gradient"

    def __init__(self, scales: int = 3) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        self.scales = scales

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _check_images(x_hat, x)
        losses = []
        for j in range(self.scales):
            if j > 0:
                if min(x.shape[-2:]) < 4:  # nothing left to pool and difference
                    break
                x_hat, x = F.avg_pool2d(x_hat, 2), F.avg_pool2d(x, 2)
            dx = F.l1_loss(x_hat.diff(dim=-1), x.diff(dim=-1))
            dy = F.l1_loss(x_hat.diff(dim=-2), x.diff(dim=-2))
            losses.append(dx + dy)
        return torch.stack(losses).mean()


@configurable
class FrequencyLoss(nn.Module):
    """L1 between the real and imaginary parts of the two images' 2-D FFTs: the
    high-frequency-preserving term of the conditional-decoder boost (Zhang et al. 2024),
    which pixel and SSIM losses under-weight in neural video representations."""

    name = "fft"

    def __init__(self) -> None:  # explicit, so @configurable records an empty spec
        super().__init__()

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _check_images(x_hat, x)
        diff = torch.fft.fft2(x_hat.float(), norm="ortho") - torch.fft.fft2(x.float(), norm="ortho")
        return diff.real.abs().mean() + diff.imag.abs().mean()


# LPIPS' ScalingLayer: maps [-1, 1] inputs to ImageNet-normalised ones,
# ((x + 1) / 2 - mean) / std == (x - shift) / scale.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# End (exclusive) of the torchvision vgg16.features slices ending at
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, and their widths.
VGG16_SLICE_ENDS = (4, 9, 16, 23, 30)
VGG16_WIDTHS = (64, 128, 256, 512, 512)


def _load_tensors(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a local .safetensors or torch file, never unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what} file {path} does not hold a state dict of tensors")
    return state


def _freeze_into_buffers(module: nn.Module) -> None:
    """Turn every parameter into a non-persistent buffer.

    The weights come from a user's file named in the config, so they stay out of
    codec checkpoints (no 58 MB of VGG per checkpoint) and out of `parameters()`
    (no optimizer touches them); as buffers they still follow `.to(device)`.
    """
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, param.detach(), persistent=False)


@configurable
class VGGPerceptualLoss(nn.Module):
    """LPIPS-style perceptual distance (Zhang et al. 2018) on a frozen VGG16, images in [-1, 1].

    `weights`: path to a LOCAL torchvision `vgg16` state dict (.pth / .pt or .safetensors;
    either the whole model's keys `features.N.*`, classifier keys ignored, or the
    `features` module's own keys `N.*`). `lpips_lin`: optional path to LPIPS v0.1's
    linear-layer file for VGG (keys `lin0.model.1.weight` ... `lin4.model.1.weight`).
    Nothing is downloaded; DESIGN.md: no pretrained weights ship here.

    Distance: ScalingLayer normalisation, features at relu1_2, relu2_2, relu3_3,
    relu4_3 and relu5_3, each unit-normalised over channels; the squared difference
    is weighted per channel by the lin weights (LPIPS) or, without them, averaged
    over channels; then averaged over space and summed over the five layers; finally
    averaged over the batch. Deviation: LPIPS without lin layers (`lpips=False`) sums
    over channels; the channel mean used here keeps the five layers on one scale.
    The VGG weights are non-persistent buffers: not trained, not in checkpoints.
    """

    name = "lpips-vgg"

    def __init__(self, weights: str, lpips_lin: str | None = None) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # vgg16(weights=None).features without building (and randomly initialising)
        # the 120M-parameter classifier we would throw away.
        features = make_layers(cfgs["D"], batch_norm=False)[: VGG16_SLICE_ENDS[-1]]
        state = _load_tensors(weights, "VGG16 weights")
        if any(k.startswith("features.") for k in state):
            state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        try:
            features.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{weights} is not a torchvision vgg16 (features) state dict: {error}") from None
        starts = (0,) + VGG16_SLICE_ENDS[:-1]
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(starts, VGG16_SLICE_ENDS))
        _freeze_into_buffers(self.slices)
        self.eval()

        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        if lpips_lin is None:
            lin = [torch.full((1, c, 1, 1), 1.0 / c) for c in VGG16_WIDTHS]
        else:
            lin_state = _load_tensors(lpips_lin, "LPIPS lin")
            lin = []
            for i, c in enumerate(VGG16_WIDTHS):
                key = f"lin{i}.model.1.weight"
                if key not in lin_state or tuple(lin_state[key].shape) != (1, c, 1, 1):
                    found = tuple(lin_state[key].shape) if key in lin_state else "missing"
                    raise ValueError(f"{lpips_lin}: expected {key} of shape (1, {c}, 1, 1), got {found}")
                lin.append(lin_state[key].float())
        for i, w in enumerate(lin):
            self.register_buffer(f"lin{i}", w, persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        # Always eval: the frozen network must not change behaviour with the codec's mode.
        return super().train(False)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _check_images(x_hat, x)
        if x.shape[1] != 3:
            raise ValueError(f"VGG perceptual loss needs RGB images, got {x.shape[1]} channels")
        h = (torch.cat([x_hat, x]) - self.shift) / self.scale
        total = x.new_zeros(())
        for i, block in enumerate(self.slices):
            h = block(h)
            f = h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            f_hat, f_ref = f.chunk(2)
            diff = (f_hat - f_ref).pow(2)
            total = total + (diff * getattr(self, f"lin{i}")).sum(dim=1).mean()
        return total

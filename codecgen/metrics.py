"""Objective quality and rate metrics for codecs: PESQ, STOI, mel distance, SI-SDR, PSNR,
SSIM, MS-SSIM, GMSD, kbps, bpp.

One place for the numbers every benchmark and validation loop reports, so the
codecs and the classical anchors they are benchmarked against (docs/data.md) are
compared with the same definitions. Inputs are numpy arrays or
torch tensors; the signal metrics take a reference and a degraded signal,
crop both to the shorter length (codecs may pad to a whole frame) and refuse
empty or non-finite input with ``ValueError``. The image metrics take a
reference and a degraded image of the same shape. ``pesq``, ``pystoi`` and the
torch SSIM code (`codecgen.nn.losses`) are imported lazily so importing this
module stays cheap.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

__all__ = ["pesq_wb", "stoi", "mel_distance", "si_sdr", "psnr", "batch_psnr", "ssim", "ms_ssim", "gmsd", "kbps", "bpp"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Any array/tensor -> finite float64 numpy array with at least one element."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _pair_1d(ref: ArrayLike, deg: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Two signals as 1-D float64 arrays of equal length (cropped to the shorter)."""
    r, d = np.squeeze(_to_numpy(ref, "ref")), np.squeeze(_to_numpy(deg, "deg"))
    if r.ndim != 1 or d.ndim != 1:
        raise ValueError(f"expected 1-D signals, got shapes {r.shape} and {d.shape}")
    n = min(len(r), len(d))
    return r[:n], d[:n]


def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(x), sr, target).numpy()


def pesq_wb(ref: ArrayLike, deg: ArrayLike, sr: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2) MOS-LQO, about 1.0 (bad) to 4.64 (transparent).

    Both signals are resampled to 16 kHz when ``sr`` differs. Returns NaN when
    PESQ finds no speech in the reference (silence, some tones) or the clip is
    too short for it (under ~0.25 s): the score is undefined there, not bad.
    """
    from pesq import BufferTooShortError, NoUtterancesError, pesq

    r, d = _pair_1d(ref, deg)
    if not np.any(r):  # pesq would divide by the peak of a silent reference
        return float("nan")
    r, d = _resample(r, sr, 16000), _resample(d, sr, 16000)
    try:
        return float(pesq(16000, r.astype(np.float32), d.astype(np.float32), "wb"))
    except (NoUtterancesError, BufferTooShortError):
        return float("nan")


def stoi(ref: ArrayLike, deg: ArrayLike, sr: int, extended: bool = False) -> float:
    """Short-time objective intelligibility (pystoi; resamples to 10 kHz internally), ~0..1."""
    from pystoi import stoi as _stoi

    r, d = _pair_1d(ref, deg)
    return float(_stoi(r, d, sr, extended=extended))


def mel_distance(ref: ArrayLike, deg: ArrayLike, sr: int) -> float:
    """Mean absolute difference between natural-log mel magnitude spectrograms.

    80 mel bands (HTK scale, 0 Hz to sr/2) of the STFT magnitude (power 1),
    Hann window; n_fft 1024 and hop 256 at 16 kHz, scaled with ``sr`` so the
    frames span the same time at every rate (64 ms window, 16 ms hop).
    Magnitudes are clamped at 1e-5 before the log, so silence does not dominate.
    0 means identical; lower is better.
    """
    import torchaudio

    r, d = _pair_1d(ref, deg)
    n_fft = max(16, int(round(1024 * sr / 16000)))
    hop = max(1, int(round(256 * sr / 16000)))
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=80, power=1.0, f_min=0.0, f_max=sr / 2
    ).to(torch.float64)
    with torch.no_grad():
        spec = mel(torch.from_numpy(np.stack([r, d])))
    log_spec = spec.clamp(min=1e-5).log()
    return float((log_spec[0] - log_spec[1]).abs().mean())


def si_sdr(ref: ArrayLike, deg: ArrayLike, eps: float = 1e-12) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019).

    Both signals are made zero-mean; the reference is scaled to best fit the
    degraded signal, and the residual counts as distortion. Identical signals
    give a very large value (limited only by ``eps``); higher is better.
    """
    r, d = _pair_1d(ref, deg)
    r, d = r - r.mean(), d - d.mean()
    alpha = np.dot(d, r) / (np.dot(r, r) + eps)
    target = alpha * r
    residual = d - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(residual, residual) + eps)))


def batch_psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of the mean squared error over a whole batch in [0, 1], as a tensor (what
    training loops log); floored at 1e-10 MSE (100 dB) so identical batches stay finite."""
    mse = torch.nn.functional.mse_loss(output.float(), target.float())
    return -10 * torch.log10(mse.clamp(min=1e-10))


def psnr(ref: ArrayLike, deg: ArrayLike, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; +inf for identical inputs.

    Accepts same-shaped arrays of any rank (images, videos) or 1-D signals of
    different lengths (cropped to the shorter).
    """
    r, d = _to_numpy(ref, "ref"), _to_numpy(deg, "deg")
    if r.shape != d.shape:
        r, d = _pair_1d(r, d)
    mse = float(np.mean((r - d) ** 2))
    if mse == 0.0:
        return math.inf
    return float(10 * np.log10(max_val**2 / mse))


def _image_pair(ref: ArrayLike, deg: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Two same-shaped images as float64 (B, C, H, W) tensors.

    Layouts: (H, W) greyscale; numpy (H, W, C) channels-last (PIL, scikit-image);
    torch (C, H, W) or (B, C, H, W) channels-first (a batch scores as the mean over
    its images). Values are not rescaled: pass ``data_range=255`` for uint8 images.
    """
    layouts = []
    for x, name in ((ref, "ref"), (deg, "deg")):
        is_tensor = isinstance(x, torch.Tensor)
        t = torch.from_numpy(_to_numpy(x, name))
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3:
            t = t.unsqueeze(0) if is_tensor else t.permute(2, 0, 1).unsqueeze(0)
        elif t.dim() != 4 or not is_tensor:
            raise ValueError(f"{name}: expected an (H, W), (H, W, C) or (C, H, W) image, got shape {tuple(t.shape)}")
        layouts.append(t)
    r, d = layouts
    if r.shape != d.shape:
        raise ValueError(f"ref {tuple(r.shape)} and deg {tuple(d.shape)} must have the same shape")
    return r, d


def ssim(ref: ArrayLike, deg: ArrayLike, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004), Gaussian window 11 / sigma 1.5; 1 = identical.

    Per channel, averaged over channels; same numbers as scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
    Higher is better. Images must be at least 11x11.
    """
    from codecgen.nn.losses import ssim as _ssim

    r, d = _image_pair(ref, deg)
    with torch.no_grad():
        return float(_ssim(r, d, data_range=data_range))


def ms_ssim(ref: ArrayLike, deg: ArrayLike, data_range: float = 1.0) -> float:
    """Multi-scale SSIM (Wang et al. 2003), five scales with the paper's weights; 1 = identical.

    Higher is better. The full five scales need images of at least 176x176; on
    smaller images the coarse scales that would be smaller than the 11-pixel window
    are dropped and the remaining weights renormalised (a 32x32 image uses two
    scales; below 22 pixels it is plain SSIM), so scores of small images are not
    comparable with the paper's. Images smaller than 11x11 raise ``ValueError``.
    """
    from codecgen.nn.losses import ms_ssim as _ms_ssim

    r, d = _image_pair(ref, deg)
    with torch.no_grad():
        return float(_ms_ssim(r, d, data_range=data_range))


GMSD_C = 170.0  # stabilising constant of Xue et al. for images on a 0..255 scale


def gmsd(ref: ArrayLike, deg: ArrayLike, data_range: float = 1.0) -> float:
    """Gradient Magnitude Similarity Deviation (Xue et al. 2014); 0 = identical, LOWER is better.

    As the authors' GMSD.m: RGB -> luminance (0.299, 0.587, 0.114), scaled to 0..255
    (by 255 / ``data_range``); 2x2 average filter and downsampling by 2 (odd sizes are
    zero-padded, like MATLAB's ``conv2(..., 'same')``); Prewitt gradients (/3, zero
    padding); gradient magnitude similarity GMS = (2 m_r m_d + c) / (m_r^2 + m_d^2 + c)
    with c = 170; GMSD = standard deviation (N - 1) of the GMS map.
    Takes greyscale or 3-channel images.
    """
    import torch.nn.functional as F

    r, d = _image_pair(ref, deg)
    if r.shape[1] not in (1, 3):
        raise ValueError(f"gmsd needs greyscale or RGB images, got {r.shape[1]} channels")
    gray = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    prewitt = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=torch.float64) / 3
    kernels = torch.stack([prewitt, prewitt.T]).unsqueeze(1)  # (2, 1, 3, 3): x and y

    def magnitude(img: torch.Tensor) -> torch.Tensor:
        y = (img * gray).sum(dim=1, keepdim=True) if img.shape[1] == 3 else img
        y = y * (255.0 / data_range)
        y = F.pad(y, (0, y.shape[-1] % 2, 0, y.shape[-2] % 2))
        y = F.avg_pool2d(y, 2)
        g = F.conv2d(y, kernels, padding=1)
        return g.pow(2).sum(dim=1).sqrt()

    m_r, m_d = magnitude(r), magnitude(d)
    gms = (2 * m_r * m_d + GMSD_C) / (m_r**2 + m_d**2 + GMSD_C)
    if gms.numel() < 2:
        raise ValueError(f"image of {tuple(r.shape[-2:])} is too small for GMSD")
    return float(gms.flatten(1).std(dim=1).mean())


def kbps(n_bytes: int, seconds: float) -> float:
    """Bitrate in kilobits per second of ``n_bytes`` covering ``seconds`` of signal."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return 8.0 * n_bytes / seconds / 1000.0


def bpp(n_bytes: int, height: int, width: int, frames: int = 1) -> float:
    """Bits per pixel of ``n_bytes`` covering ``frames`` images of height x width."""
    pixels = height * width * frames
    if pixels <= 0:
        raise ValueError(f"need a positive pixel count, got {height}x{width}x{frames}")
    return 8.0 * n_bytes / pixels

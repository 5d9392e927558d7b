"""Objective quality and rate metrics for codecs: PESQ, STOI, mel distance, SI-SDR, PSNR, kbps, bpp.

One place for the numbers every benchmark and validation loop reports, so the
audio codecs are compared with the same definitions (and the classical anchors
in ../shared/DATA.md were measured with these). Inputs are numpy arrays or
torch tensors; the signal metrics take a reference and a degraded signal,
crop both to the shorter length (codecs may pad to a whole frame) and refuse
empty or non-finite input with ``ValueError``. ``pesq`` and ``pystoi`` are
imported lazily so importing this module stays cheap.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

__all__ = ["pesq_wb", "stoi", "mel_distance", "si_sdr", "psnr", "kbps", "bpp"]

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

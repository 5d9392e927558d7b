"""Kaldi-style log-mel filterbank features, the input of AudioMAE (Huang et al., NeurIPS 2022,
"Masked Autoencoders that Listen") and so of SemantiCodec's semantic encoder (Liu et al. 2024,
"SemantiCodec: An Ultra Low Bitrate Semantic Audio Codec for General Sound").

As both authors compute them: the waveform's mean removed, 25 ms Hanning windows every 10 ms
(Kaldi's frame layout, ``snip_edges``), HTK-compatible mel bins (128), no energy, no dither,
then normalised with AudioSet's statistics, ``(fbank - mean) / (2 std)`` with mean -4.2677393
and std 4.5689974 (so AudioSet's features have std 0.5). The filterbank itself is torchaudio's
``compliance.kaldi.fbank``, run item by item (it takes one waveform at a time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.compliance import kaldi

from codecgen.config import configurable

AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974


@configurable
class KaldiFbank(nn.Module):
    """Waveforms (B, 1, T) or (B, T) -> normalised log-mel frames (B, frames, num_mel_bins).

    Args:
        sample_rate: of the input, in Hz.
        num_mel_bins: mel bands (AudioMAE: 128).
        frame_shift_ms, frame_length_ms: Kaldi's frame layout (10 and 25 ms).
        mean, std: the normalisation (AudioSet's by default).
    """

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 128, frame_shift_ms: float = 10.0,
                 frame_length_ms: float = 25.0, mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD):
        super().__init__()
        if sample_rate <= 0 or num_mel_bins <= 0 or frame_shift_ms <= 0 or frame_length_ms <= 0 or std <= 0:
            raise ValueError("sample_rate, num_mel_bins, frame_shift_ms, frame_length_ms and std must be positive")
        self.sample_rate, self.num_mel_bins = sample_rate, num_mel_bins
        self.frame_shift_ms, self.frame_length_ms = frame_shift_ms, frame_length_ms
        self.mean, self.std = mean, std
        self.hop = int(round(sample_rate * frame_shift_ms / 1000))
        self.window = int(round(sample_rate * frame_length_ms / 1000))

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi makes of ``num_samples`` samples (0 when shorter than one window)."""
        return 0 if num_samples < self.window else 1 + (num_samples - self.window) // self.hop

    def samples_for(self, frames: int) -> int:
        """The fewest samples that make ``frames`` frames."""
        return self.window + (frames - 1) * self.hop

    def forward(self, wave: Tensor) -> Tensor:
        if wave.ndim == 3 and wave.shape[1] == 1:
            wave = wave[:, 0]
        if wave.ndim != 2:
            raise ValueError(f"expected waveforms (B, 1, T) or (B, T), got shape {tuple(wave.shape)}")
        if wave.shape[-1] < self.window:
            raise ValueError(f"a waveform of {wave.shape[-1]} samples is shorter than one {self.window}-sample frame")
        rows = []
        for w in wave.float():
            fb = kaldi.fbank((w - w.mean())[None], htk_compat=True, sample_frequency=self.sample_rate,
                             use_energy=False, window_type="hanning", num_mel_bins=self.num_mel_bins, dither=0.0,
                             frame_shift=self.frame_shift_ms, frame_length=self.frame_length_ms)
            rows.append(fb)
        return (torch.stack(rows) - self.mean) / (2 * self.std)


def fit_frames(features: Tensor, frames: int) -> Tensor:
    """(B, n, bins) cut or zero-padded (0 = AudioSet's mean after normalising) to ``frames``
    along time, as AudioMAE pads its fixed 1024-frame windows."""
    n = features.shape[1]
    if n >= frames:
        return features[:, :frames]
    return F.pad(features, (0, 0, 0, frames - n))

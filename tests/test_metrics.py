"""Tests for codecgen.metrics: identity gives the best score, noise makes every metric worse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codecgen import metrics as M
from codecgen.datamodules.signals import espeak, have_espeak

torch.set_num_threads(1)

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    return espeak("The quick brown fox jumps over the lazy dog. Please call Stella.", sr=SR)


def test_identical_signals_score_perfectly(speech: np.ndarray) -> None:
    assert M.si_sdr(speech, speech) > 100
    assert M.mel_distance(speech, speech, SR) == 0.0
    assert M.stoi(speech, speech, SR) > 0.99
    assert M.pesq_wb(speech, speech, SR) > 4.4
    assert M.psnr(speech, speech) == math.inf


def test_tensors_and_length_mismatch_are_accepted(speech: np.ndarray) -> None:
    padded = torch.from_numpy(np.concatenate([speech, np.zeros(321, dtype=np.float32)]))
    assert M.mel_distance(torch.from_numpy(speech), padded, SR) == 0.0
    assert M.si_sdr(speech, padded.unsqueeze(0)) > 100


def test_every_metric_gets_worse_with_more_noise(speech: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    white = rng.standard_normal(len(speech)).astype(np.float32)
    scores = []
    for level in (0.002, 0.01, 0.05):
        noisy = speech + level * white
        scores.append(
            dict(
                si_sdr=M.si_sdr(speech, noisy),
                psnr=M.psnr(speech, noisy),
                stoi=M.stoi(speech, noisy, SR),
                pesq=M.pesq_wb(speech, noisy, SR),
                neg_mel=-M.mel_distance(speech, noisy, SR),
            )
        )
    for better, worse in zip(scores, scores[1:]):
        for name in better:
            assert better[name] > worse[name], (name, better[name], worse[name])


def test_pesq_resamples_other_rates_and_is_nan_on_silence(speech: np.ndarray) -> None:
    import torchaudio.functional as AF

    x48 = AF.resample(torch.from_numpy(speech), SR, 48000).numpy()
    assert M.pesq_wb(x48, x48, 48000) > 4.4
    assert math.isnan(M.pesq_wb(np.zeros(SR), np.zeros(SR), SR))


@pytest.mark.parametrize("fn", [M.si_sdr, M.psnr, lambda r, d: M.mel_distance(r, d, SR),
                                lambda r, d: M.stoi(r, d, SR), lambda r, d: M.pesq_wb(r, d, SR)])
def test_empty_or_nan_input_raises(fn) -> None:
    ok = np.ones(SR, dtype=np.float32)
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros(0), ok)
    bad = ok.copy()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(ok, bad)


def test_rates_and_psnr_values() -> None:
    assert M.kbps(1000, 1.0) == pytest.approx(8.0)
    assert M.bpp(1000, 100, 80) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.kbps(10, 0.0)
    img = np.full((4, 8, 8), 0.5)
    assert M.psnr(img, img + 0.1) == pytest.approx(20.0)
    assert M.psnr(img * 255, img * 255 + 25.5, max_val=255.0) == pytest.approx(20.0)

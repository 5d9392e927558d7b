"""Small audio signals made on the fly, for tests and demos.

Tests and examples need a few seconds of speech-like audio without a corpus on
disk. espeak-ng (a Debian package, see ../shared/DATA.md) synthesises real
words in many voices at ~200x real time, so a tiny ``--data.root`` can be
written in a fraction of a second; tones and noise cover the non-speech cases.
All functions return float32 mono numpy arrays in [-1, 1].
"""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

__all__ = ["tone", "noise", "espeak", "write_test_corpus", "have_espeak"]


def tone(freq: float, seconds: float, sr: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    """A pure sine of ``freq`` Hz lasting ``seconds``."""
    t = np.arange(int(round(seconds * sr)), dtype=np.float64) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, sr: int = 16000, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    """Gaussian white noise with standard deviation ``amplitude`` (clipped to [-1, 1])."""
    rng = np.random.default_rng(seed)
    x = amplitude * rng.standard_normal(int(round(seconds * sr)))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def have_espeak() -> bool:
    """True when the ``espeak-ng`` executable is on PATH."""
    return shutil.which("espeak-ng") is not None


def espeak(
    text: str,
    voice: str = "en-us",
    sr: int = 16000,
    wpm: int = 160,
    pitch: int = 50,
) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng and return it resampled to ``sr``.

    espeak-ng writes a WAV to stdout whose header carries a placeholder length
    (it cannot seek back on a pipe); libsndfile copes with that, so the bytes
    are decoded in memory with soundfile rather than through a temp file.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(
            "espeak-ng is not installed; install the Debian package `espeak-ng` "
            "(apt-get install espeak-ng) to synthesise speech"
        )
    cmd = [exe, "-v", voice, "-s", str(int(wpm)), "-p", str(int(pitch)), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or len(proc.stdout) < 44:
        raise RuntimeError(
            f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}"
        )
    x, src_sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if src_sr != sr:
        x = AF.resample(torch.from_numpy(x), src_sr, sr).numpy()
    return np.clip(x, -1.0, 1.0).astype(np.float32)


# Short, varied sentences: enough phonetic variety for a test corpus.
_TEST_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A large size in stockings is hard to sell.",
    "She sells sea shells by the sea shore on a sunny morning.",
    "Seven slender swans swam silently across the river.",
    "How much wood would a woodchuck chuck if it could chuck wood?",
)
_TEST_VOICES = ("en-us", "en-gb", "en+f3", "en+m7", "en-gb-scotland+f2", "en-029+m3")


def _fallback_voiced(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A crude vowel-like signal (harmonics with a wobbling pitch) used when espeak-ng is absent."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0 = 110 + 40 * rng.random() + 15 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t))  # syllable-rate amplitude modulation
    x = 0.3 * x * envelope / np.abs(x).max()
    return x.astype(np.float32)


def write_test_corpus(
    directory: str | Path,
    n_files: int = 6,
    sr: int = 16000,
    seconds: float = 1.5,
) -> list[Path]:
    """Write ``n_files`` short 16-bit mono WAVs into ``directory`` and return their paths.

    Files cycle through espeak utterances (different voices), a tone and noise,
    so a datamodule built on the folder sees both speech and non-speech. Each
    file lasts about ``seconds`` (speech is cut or zero-padded to that length
    so tests know what to expect). Without espeak-ng, speech files are replaced
    by a synthetic voiced signal and a warning is issued.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sr))
    use_espeak = have_espeak()
    if not use_espeak:
        warnings.warn("espeak-ng not found: test corpus uses synthetic voiced signals instead of speech")
    paths: list[Path] = []
    for i in range(n_files):
        kind = i % 3  # 0, 1: speech, 2: tone or noise
        if kind < 2:
            voice = _TEST_VOICES[(i // 3 * 2 + kind) % len(_TEST_VOICES)]
            if use_espeak:
                x = espeak(_TEST_SENTENCES[i % len(_TEST_SENTENCES)], voice=voice, sr=sr, wpm=170 + 10 * kind)
            else:
                x = _fallback_voiced(seconds, sr, seed=i)
            name = f"{i:03d}_speech_{voice.replace('+', '-')}.wav"
        elif (i // 3) % 2 == 0:
            x = tone(220.0 * (1 + i // 3), seconds, sr)
            name = f"{i:03d}_tone.wav"
        else:
            x = noise(seconds, sr, seed=i)
            name = f"{i:03d}_noise.wav"
        x = np.pad(x[:n], (0, max(0, n - len(x))))
        path = directory / name
        sf.write(path, x, sr, subtype="PCM_16")
        paths.append(path)
    return paths

"""Phoneme timings (espeak-ng synthesis, transcripts, DTW alignment) and the viseme tracks built on them."""

from __future__ import annotations

import difflib
import gzip
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from codecgen.datamodules.corpora.phonemes import (
    align_transcript,
    dtw_path,
    espeak_available,
    read_transcripts,
    spoken_text,
    synthesize,
)
from codecgen.datamodules.corpora.visemes import REST, viseme_targets, viseme_track
from codecgen.datamodules.portrait_clips import VISEME_NAMES, TimedLabel

ROOT = Path(__file__).resolve().parent.parent
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng is not installed")
SENTENCE = "Please enter your password followed by the pound key."


def check_timings(phonemes: list[TimedLabel], seconds: float) -> None:
    """Sorted, non-empty, non-overlapping and inside [0, seconds]."""
    assert phonemes
    for p in phonemes:
        assert 0.0 <= p.start < p.end <= seconds + 1e-9, p
    for a, b in itertools.pairwise(phonemes):
        assert a.end <= b.start + 1e-9, (a, b)


def start_errors(truth: list[TimedLabel], found: list[TimedLabel]) -> np.ndarray:
    """|start error| of the phonemes the two lists share (matched by label sequence: two
    espeak voices may pronounce a few sounds differently)."""
    matcher = difflib.SequenceMatcher(a=[p.label for p in truth], b=[p.label for p in found], autojunk=False)
    errors = [
        abs(truth[block.a + k].start - found[block.b + k].start)
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    ]
    assert len(errors) >= 0.6 * len(truth), "too few phonemes in common to compare"
    return np.asarray(errors)


# --------------------------------------------------------------------------- synthesize


@needs_espeak
def test_synthesize_audio_and_timings_agree():
    audio, phonemes = synthesize(SENTENCE, sample_rate=16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.1
    seconds = len(audio) / 16000
    check_timings(phonemes, seconds)
    # The last phoneme runs to the end of the audio or to the final pause just before it.
    assert 0.0 <= seconds - phonemes[-1].end < 1 / 25
    assert phonemes[0].start < 0.1
    labels = [p.label for p in phonemes]
    assert "" not in labels  # pauses are dropped
    assert {"p", "l", "iː", "z", "k"} <= set(labels)
    # Timings do not depend on the sample rate (they come from espeak's 22050 Hz samples;
    # two calls differ by a few samples, see test_synthesize_is_thread_safe).
    audio_22k, phonemes_22k = synthesize(SENTENCE, sample_rate=22050)
    assert [p.label for p in phonemes_22k] == labels
    assert max(abs(a.start - b.start) + abs(a.end - b.end) for a, b in zip(phonemes, phonemes_22k)) < 0.005
    assert abs(len(audio_22k) / 22050 - phonemes_22k[-1].end) < 1 / 25


@needs_espeak
def test_synthesize_pause_is_a_gap_and_speech_is_where_the_phonemes_are():
    audio, phonemes = synthesize("Hello there. Goodbye now.", wpm=160)
    gaps = [b.start - a.end for a, b in itertools.pairwise(phonemes)]
    assert max(gaps) > 0.15  # the full stop is a pause: silence between the two sentences
    k = int(np.argmax(gaps))
    silent = audio[int(phonemes[k].end * 16000) + 160 : int(phonemes[k + 1].start * 16000) - 160]
    assert np.abs(silent).max() < 0.01
    inside = np.concatenate([audio[int(p.start * 16000) : int(p.end * 16000)] for p in phonemes])
    assert np.sqrt(np.mean(inside**2)) > 0.03


@needs_espeak
def test_synthesize_rate_voice_and_pitch():
    slow, slow_ph = synthesize(SENTENCE, wpm=120)
    fast, fast_ph = synthesize(SENTENCE, wpm=240)
    assert len(slow) > 1.5 * len(fast)
    assert [p.label for p in slow_ph] == [p.label for p in fast_ph]
    # A language code with a variant works like the espeak-ng command line's -v.
    _, british_ph = synthesize("Hello there", voice="en-gb+f2")
    _, american_ph = synthesize("Hello there", voice="en-us")
    assert [p.label for p in british_ph] != [p.label for p in american_ph]
    low, _ = synthesize("Hello there", pitch=10)
    high, _ = synthesize("Hello there", pitch=90)
    assert not np.array_equal(low[: min(len(low), len(high))], high[: min(len(low), len(high))])


@needs_espeak
def test_synthesize_rejects_bad_input_and_recovers():
    for voice in ("xx-not-a-voice", "", "en-zz-nothing"):
        with pytest.raises(ValueError, match="voice"):
            synthesize("hello", voice=voice)
    for text in ("", "   \n"):
        with pytest.raises(ValueError, match="empty"):
            synthesize(text)
    with pytest.raises(ValueError, match="wpm"):
        synthesize("hello", wpm=10)
    with pytest.raises(ValueError, match="pitch"):
        synthesize("hello", pitch=101)
    audio, phonemes = synthesize("hello")  # the failed calls left the engine usable
    assert len(audio) > 0 and [p.label for p in phonemes][:2] == ["h", "ə"]


@needs_espeak
def test_synthesize_is_thread_safe():
    # espeak-ng's pitch flutter runs on across calls, so an utterance can differ by a few
    # samples with what was spoken before it: compare with a tolerance, not bit for bit.
    texts = [f"Call number {n} is waiting." for n in range(6)]
    serial = [synthesize(t, wpm=200) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda t: synthesize(t, wpm=200), texts))
    for (a, pa), (b, pb) in zip(serial, threaded):
        assert [p.label for p in pa] == [p.label for p in pb]
        assert max(abs(x.start - y.start) for x, y in zip(pa, pb)) < 0.01
        assert abs(len(a) - len(b)) < 480


def test_missing_library_is_a_clear_runtime_error(monkeypatch):
    import ctypes

    from codecgen.datamodules.corpora import phonemes

    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    # A fresh, not yet loaded engine whose library cannot be found (restored afterwards).
    monkeypatch.setattr(phonemes, "_ENGINE", None)
    monkeypatch.setattr(phonemes, "_ENGINE_ERROR", None)
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert not phonemes.espeak_available()
    with pytest.raises(RuntimeError, match="espeak-ng is not installed"):
        synthesize("hello")


# --------------------------------------------------------------------------- transcripts

TRANSCRIPT_SAMPLE = """; Core Asterisk Sounds in English

activated: Activated.
digits/1: one
letters/at: at [@]
beep: [this is a simple beep tone]
confbridge-join: <beep ascending>
priv-callpending: I have a caller waiting, who introduces themselves as:
spy-iax2: IAX (note: does not say "2")
dictate/both_help: press * to toggle pause, press # to enter a new dictation filename
vm-goodbye: Goodbye"""


def test_read_transcripts_gz_and_plain(tmp_path):
    gz = tmp_path / "core-sounds-en.txt.gz"
    gz.write_bytes(gzip.compress(TRANSCRIPT_SAMPLE.encode()))
    plain = tmp_path / "core-sounds-en.txt"
    plain.write_text(TRANSCRIPT_SAMPLE.replace("\n", "\r\n"))
    for path in (gz, plain):
        transcripts = read_transcripts(path)
        assert len(transcripts) == 9
        assert transcripts["digits/1"] == "one"
        assert transcripts["vm-goodbye"] == "Goodbye"
        assert transcripts["priv-callpending"] == "I have a caller waiting, who introduces themselves as:"
        assert transcripts["spy-iax2"] == 'IAX (note: does not say "2")'
        assert transcripts["letters/at"] == "at [@]"
    assert spoken_text("at [@]") == "at"
    assert spoken_text("[this is a simple beep tone]") == ""
    assert spoken_text("<beep ascending>") == ""
    assert spoken_text('IAX (note: does not say "2")') == "IAX"
    assert spoken_text("press * to toggle, press # to exit") == "press star to toggle, press pound to exit"


def test_read_transcripts_rejects_other_files(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("; comment\nname: text\nthis line has no name\n")
    with pytest.raises(ValueError, match="notes.txt:3"):
        read_transcripts(path)


REAL_TRANSCRIPTS = sorted(
    (ROOT / "data/.cache/debs/extracted").glob(
        "asterisk-core-sounds-en_*/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    )
)


@pytest.mark.skipif(not REAL_TRANSCRIPTS, reason="asterisk-core-sounds-en is not in data/.cache/debs")
def test_read_real_transcripts():
    transcripts = read_transcripts(REAL_TRANSCRIPTS[-1])
    assert len(transcripts) > 500
    assert transcripts["vm-goodbye"] == "Goodbye"
    assert transcripts["digits/7"] == "seven"
    assert transcripts["auth-thankyou"] == "Thank you."


# --------------------------------------------------------------------------- alignment


def test_dtw_path_is_optimal():
    rng = np.random.default_rng(0)

    def best_cost(cost: np.ndarray, penalty: float) -> float:
        n, m = cost.shape
        total = np.full((n + 1, m + 1), np.inf)
        total[0, 0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                c = cost[i - 1, j - 1]
                diagonal, above, left = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
                total[i, j] = min(diagonal + 2 * c, above + c + penalty, left + c + penalty)
        return total[n, m]

    for _ in range(60):
        n, m = rng.integers(1, 12, 2)
        cost = rng.random((n, m))
        penalty = float(rng.choice([0.0, 0.3]))
        rows, cols = dtw_path(cost, penalty)
        assert (rows[0], cols[0]) == (0, 0) and (rows[-1], cols[-1]) == (n - 1, m - 1)
        steps = list(zip(np.diff(rows), np.diff(cols)))
        assert all(s in {(1, 1), (1, 0), (0, 1)} for s in steps)
        path_cost = 2 * cost[0, 0] + sum(
            (2 * cost[i, j] if s == (1, 1) else cost[i, j] + penalty) for s, i, j in zip(steps, rows[1:], cols[1:])
        )
        assert path_cost == pytest.approx(best_cost(cost, penalty), rel=1e-5)


def test_dtw_path_speed_and_shape():
    x = np.sin(np.linspace(0, 20, 1000))[:, None]
    y = np.sin(np.linspace(0, 20, 900) ** 1.1 / 900**0.1)[:, None]
    begin = time.perf_counter()
    rows, cols = dtw_path(np.abs(x - y.T))
    assert time.perf_counter() - begin < 2.0  # ~0.15 s on a busy 2-core machine
    assert np.all(np.diff(rows) >= 0) and np.all(np.diff(cols) >= 0)


@needs_espeak
def test_align_transcript_recovers_another_voices_timings():
    # The "recording" is British English at 140 wpm, aligned against American at 175 wpm:
    # different vowels, rhythm and speed. Its own espeak timings are the truth.
    recording, truth = synthesize(SENTENCE, voice="en-gb", wpm=140)
    aligned = align_transcript(recording, 16000, SENTENCE, voice="en-us", wpm=175)
    check_timings(aligned, len(recording) / 16000)
    errors = start_errors(truth, aligned)
    assert np.median(errors) < 0.04  # measured: ~2.5 ms
    assert np.percentile(errors, 90) < 0.06  # measured: ~6 ms


@needs_espeak
def test_align_transcript_trims_silence_and_follows_pauses():
    # A higher female voice whose speaker pauses where espeak does not, with silence and a
    # little noise around: the warp must shift, stretch and stall in the right places.
    rate = 16000
    first, first_truth = synthesize("Thank you for calling", voice="en-us+f3", wpm=130, pitch=70)
    second, second_truth = synthesize("please try again later", voice="en-us+f3", wpm=190, pitch=70)
    lead, gap, tail = int(0.7 * rate), int(0.5 * rate), int(0.3 * rate)
    recording = np.concatenate([np.zeros(lead), first, np.zeros(gap), second, np.zeros(tail)]).astype(np.float32)
    recording += 0.002 * np.random.default_rng(0).standard_normal(len(recording)).astype(np.float32)
    offset_2 = (lead + len(first) + gap) / rate
    truth = [TimedLabel(p.label, p.start + lead / rate, p.end + lead / rate) for p in first_truth]
    truth += [TimedLabel(p.label, p.start + offset_2, p.end + offset_2) for p in second_truth]
    aligned = align_transcript(recording, rate, "Thank you for calling please try again later")
    check_timings(aligned, len(recording) / rate)
    errors = start_errors(truth, aligned)
    assert np.median(errors) < 0.025  # measured: ~3 ms
    assert np.percentile(errors, 90) < 0.08
    assert abs(aligned[0].start - truth[0].start) < 0.04


@needs_espeak
def test_align_transcript_narrowband_recording():
    recording, truth = synthesize(SENTENCE, voice="en-gb+m3", wpm=150, sample_rate=8000)
    aligned = align_transcript(recording, 8000, SENTENCE)
    assert np.median(start_errors(truth, aligned)) < 0.03
    with pytest.raises(ValueError):
        align_transcript(np.zeros(0, np.float32), 16000, SENTENCE)
    with pytest.raises(ValueError):
        align_transcript(recording, 8000, "")


# --------------------------------------------------------------------------- visemes


def test_viseme_targets_classes():
    jaw, width, rounding = range(3)
    assert viseme_targets("m")[jaw] <= 0.06 and viseme_targets("m")[rounding] == 0.0
    assert viseme_targets("p") == viseme_targets("b") == viseme_targets("m")
    assert viseme_targets("f")[jaw] <= 0.12
    for vowel in ("ɑː", "a", "æ", "ʌ"):
        assert viseme_targets(vowel)[jaw] >= 0.6, vowel
    for rounded in ("uː", "w", "oʊ", "ɔː"):
        assert viseme_targets(rounded)[rounding] >= 0.6 and viseme_targets(rounded)[width] <= 0.25, rounded
    for spread in ("iː", "ɪ", "eɪ"):
        assert viseme_targets(spread)[width] >= 0.7, spread
    for consonant in ("t", "d", "n", "s", "k", "ɡ", "θ", "ð"):
        assert viseme_targets(consonant)[jaw] <= 0.2, consonant
    assert viseme_targets("") == REST
    # Length marks, stress and diacritics do not change the class.
    assert viseme_targets("ˈiː") == viseme_targets("i")
    assert viseme_targets("n̩") == viseme_targets("n")
    assert viseme_targets("a::") == viseme_targets("a")
    # Unknown symbols: a neutral shape, never an error.
    for odd in ("☃", "ʲ", "Q", "12", "\u0301"):
        assert all(0.0 <= v <= 1.0 for v in viseme_targets(odd))


def test_viseme_track_closes_lips_between_open_vowels():
    phonemes = [TimedLabel("ɑː", 0.0, 0.2), TimedLabel("m", 0.2, 0.26), TimedLabel("ɑː", 0.26, 0.5)]
    track = viseme_track(phonemes, frames=15, fps=25.0)
    assert track.shape == (15, len(VISEME_NAMES)) and track.dtype == np.float32
    assert track.min() >= 0.0 and track.max() <= 1.0
    jaw = track[:, 0]
    assert jaw[int(0.23 * 25)] <= 0.1  # the /m/ frame closes despite the coarticulation blur
    assert jaw[int(0.08 * 25)] > 0.5 and jaw[int(0.4 * 25)] > 0.5
    # After the speech (0.5 s) the mouth returns to rest.
    assert np.allclose(track[-1], REST, atol=0.05)


def test_viseme_track_short_closure_and_silence():
    # A 20 ms /p/ straddling two frames (0.32-0.36 and 0.36-0.40 s) still closes one of them.
    phonemes = [TimedLabel("æ", 0.1, 0.345), TimedLabel("p", 0.345, 0.365), TimedLabel("æ", 0.365, 0.6)]
    jaw = viseme_track(phonemes, frames=20)[:, 0]
    assert jaw.min() <= 0.06 and np.argmin(jaw) == 8
    # No phonemes at all: rest everywhere; phonemes past the end are ignored.
    assert np.allclose(viseme_track([], frames=5), np.tile(REST, (5, 1)))
    late = viseme_track([TimedLabel("ɑː", 10.0, 11.0)], frames=5)
    assert np.allclose(late, np.tile(REST, (5, 1)))
    assert viseme_track([], frames=0).shape == (0, 3)


def test_viseme_track_unknown_symbols_and_frame_rates():
    phonemes = [TimedLabel("☃", 0.0, 0.3), TimedLabel("ʲ", 0.3, 0.4), TimedLabel("aɪ", 0.4, 0.8)]
    for fps in (25.0, 29.97, 60.0):
        frames = int(0.9 * fps)
        track = viseme_track(phonemes, frames=frames, fps=fps, coarticulation=0.0)
        assert track.shape == (frames, 3)
        assert np.all((track >= 0) & (track <= 1))
    # The diphthong moves: open /a/ first, spread /ɪ/ at the end.
    track = viseme_track(phonemes, frames=22, fps=25.0, coarticulation=0.0)
    assert track[11, 0] > track[19, 0] and track[19, 1] > track[11, 1]
    with pytest.raises(ValueError):
        viseme_track(phonemes, frames=-1)
    with pytest.raises(ValueError):
        viseme_track(phonemes, frames=5, fps=0.0)


@needs_espeak
def test_viseme_track_from_synthetic_speech():
    audio, phonemes = synthesize("Bob, mama, pop up a map.", wpm=200)
    frames = int(len(audio) / 16000 * 25)
    track = viseme_track(phonemes, frames)
    jaw = track[:, 0]
    for p in phonemes:
        frame = int((p.start + p.end) / 2 * 25)
        if p.label in ("p", "b", "m") and frame < frames:
            assert jaw[frame] <= 0.06, p
    assert jaw.max() > 0.6

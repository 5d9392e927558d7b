"""Per-frame mouth motion from phoneme timings, for the talking-portrait corpus.

Hallo2 (Cui et al. 2024, "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait
Image Animation") is trained on clips whose lips move with the speech. The procedural
portraits of the offline corpus are drawn from a three-number mouth model per frame
(``VISEME_NAMES``: jaw opening, mouth width, lip rounding, each in [0, 1]); this module
turns the phoneme timings of :mod:`codecgen.datamodules.corpora.phonemes` (IPA labels as
espeak-ng names them) into that track:

* :func:`viseme_targets`: the mouth shape a phoneme aims at, from its articulation class
  (bilabials close the lips, open vowels drop the jaw, rounded vowels and /w/ purse the
  lips, spread vowels widen the mouth, tongue consonants leave the lips nearly alone);
* :func:`viseme_track`: those targets held over each phoneme's time, smoothed for
  coarticulation (neighbouring sounds blend) except that lip closures still close, and
  averaged into video frames.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from codecgen.datamodules.portrait_clips import VISEME_NAMES, TimedLabel

Target = tuple[float, float, float]  # (jaw opening, mouth width, lip rounding), as VISEME_NAMES

REST: Target = (0.05, 0.3, 0.0)  # silence: mouth closed and relaxed
NEUTRAL: Target = (0.3, 0.45, 0.1)  # an unknown symbol: a half-open, unremarkable mouth

# Consonants whose lips must visibly meet (bilabials) or touch the teeth (labiodentals):
# the jaw value they must reach however short they are (see viseme_track).
LIP_CLOSURES = {"p": 0.05, "b": 0.05, "m": 0.05, "f": 0.1, "v": 0.1}

_VOWEL_TARGETS: dict[str, Target] = {
    # close front, spread
    "i": (0.2, 0.9, 0.0),
    "ɪ": (0.25, 0.8, 0.0),
    "ᵻ": (0.25, 0.7, 0.0),
    "ɨ": (0.25, 0.65, 0.0),
    "ɯ": (0.2, 0.7, 0.0),
    "e": (0.35, 0.8, 0.0),
    "ɛ": (0.45, 0.7, 0.0),
    # open: the big jaw drops
    "æ": (0.7, 0.7, 0.0),
    "a": (0.8, 0.55, 0.0),
    "ɑ": (0.85, 0.45, 0.05),
    "ɐ": (0.6, 0.45, 0.0),
    "ʌ": (0.6, 0.45, 0.0),
    # central
    "ə": (0.35, 0.45, 0.0),
    "ɘ": (0.3, 0.5, 0.0),
    "ɜ": (0.4, 0.45, 0.1),
    "ɚ": (0.35, 0.4, 0.25),  # r-coloured: English /r/ is made with slightly rounded lips
    "ɝ": (0.35, 0.4, 0.25),
    # rounded: narrow and pursed
    "ɒ": (0.75, 0.3, 0.4),
    "ɔ": (0.6, 0.2, 0.65),
    "o": (0.4, 0.15, 0.8),
    "ʊ": (0.3, 0.2, 0.65),
    "u": (0.2, 0.1, 0.95),
    "ʉ": (0.2, 0.2, 0.8),
    "y": (0.2, 0.1, 0.9),
    "ʏ": (0.25, 0.15, 0.8),
    "ø": (0.35, 0.15, 0.8),
    "œ": (0.5, 0.2, 0.6),
    "ɤ": (0.4, 0.5, 0.0),
}

_CONSONANT_TARGETS: dict[str, Target] = {
    # bilabial: lips pressed together
    "p": (0.05, 0.35, 0.0),
    "b": (0.05, 0.35, 0.0),
    "m": (0.05, 0.35, 0.0),
    # labiodental: lower lip against the upper teeth
    "f": (0.1, 0.4, 0.0),
    "v": (0.1, 0.4, 0.0),
    # labial-velar approximants: strongly rounded
    "w": (0.15, 0.05, 1.0),
    "ʍ": (0.15, 0.05, 1.0),
    "ɥ": (0.15, 0.1, 0.9),
    # dental: tongue tip between the teeth, jaw slightly open
    "θ": (0.15, 0.45, 0.0),
    "ð": (0.15, 0.45, 0.0),
    # alveolar: small jaw, lips neutral
    "t": (0.15, 0.45, 0.0),
    "d": (0.15, 0.45, 0.0),
    "n": (0.15, 0.45, 0.0),
    "l": (0.2, 0.45, 0.0),
    "s": (0.1, 0.55, 0.0),
    "z": (0.1, 0.55, 0.0),
    "ɾ": (0.15, 0.45, 0.0),
    "r": (0.2, 0.4, 0.1),
    "ɹ": (0.2, 0.3, 0.35),  # English /r/ is labialised
    "ts": (0.1, 0.5, 0.0),
    "dz": (0.1, 0.5, 0.0),
    # postalveolar: lips pushed forward
    "ʃ": (0.15, 0.25, 0.5),
    "ʒ": (0.15, 0.25, 0.5),
    "tʃ": (0.15, 0.25, 0.5),
    "dʒ": (0.15, 0.25, 0.5),
    # palatal
    "j": (0.15, 0.7, 0.0),
    "ç": (0.15, 0.6, 0.0),
    "ɲ": (0.15, 0.5, 0.0),
    "ʎ": (0.2, 0.5, 0.0),
    # velar, uvular, glottal: made far back, the lips follow the neighbours (coarticulation)
    "k": (0.2, 0.4, 0.0),
    "ɡ": (0.2, 0.4, 0.0),
    "g": (0.2, 0.4, 0.0),
    "ŋ": (0.2, 0.4, 0.0),
    "x": (0.2, 0.4, 0.0),
    "ɣ": (0.2, 0.4, 0.0),
    "q": (0.25, 0.4, 0.0),
    "ʁ": (0.25, 0.4, 0.0),
    "χ": (0.25, 0.4, 0.0),
    "h": (0.3, 0.45, 0.0),
    "ɦ": (0.3, 0.45, 0.0),
    "ʔ": (0.1, 0.4, 0.0),
}

_TARGETS = {**_VOWEL_TARGETS, **_CONSONANT_TARGETS}
_LONGEST_SYMBOL = max(len(symbol) for symbol in _TARGETS)
# Length marks, stress and syllable marks that are plain characters (ASCII ':' appears in
# some espeak-ng names, e.g. "a::"); combining diacritics and modifier letters go by category.
_IGNORED = set(":ːˑˈˌ.'-_|")
_IGNORED_CATEGORIES = {"Mn", "Me", "Lm", "Sk", "Zs", "Cc", "Cf"}
FIRST_PART = 0.6  # share of a diphthong's time spent on its first vowel (see viseme_track)


def base_symbols(ipa: str) -> str:
    """``ipa`` without length marks, stress, diacritics or modifier letters ("ɔːɹ" -> "ɔɹ", "n̩" -> "n")."""
    decomposed = unicodedata.normalize("NFD", ipa)
    return "".join(
        ch for ch in decomposed if ch not in _IGNORED and unicodedata.category(ch) not in _IGNORED_CATEGORIES
    )


def _target_sequence(ipa: str) -> list[Target]:
    """The targets a phoneme label passes through: one for most, two or three for diphthongs
    and r-coloured or syllabic names ("aɪ", "ɑːɹ", "aɪə", "əl"). Rest for an empty label
    (a pause), :data:`NEUTRAL` if no symbol is known."""
    if not ipa:
        return [REST]
    symbols = base_symbols(ipa)
    if not symbols:  # only marks, e.g. a lone "ʲ"
        return [NEUTRAL]
    # Greedy longest match, so "tʃ" and "dʒ" are one consonant; unknown characters are skipped.
    targets, i = [], 0
    while i < len(symbols):
        for size in range(min(_LONGEST_SYMBOL, len(symbols) - i), 0, -1):
            target = _TARGETS.get(symbols[i : i + size])
            if target is not None:
                targets.append(target)
                i += size
                break
        else:
            i += 1
    return targets or [NEUTRAL]


def _part_weights(parts: int) -> np.ndarray:
    """Share of a phoneme's duration for each of its targets: the first gets FIRST_PART."""
    if parts == 1:
        return np.ones(1)
    return np.array([FIRST_PART] + [(1.0 - FIRST_PART) / (parts - 1)] * (parts - 1))


def viseme_targets(ipa: str) -> Target:
    """(jaw opening, mouth width, lip rounding), each in [0, 1], that phoneme ``ipa`` aims at.

    ``ipa`` is a phoneme as espeak-ng names it ("h", "oʊ", "ɜː", "dʒ", "ɑːɹ", "n̩"). Length
    marks, stress marks, diacritics and modifier letters are ignored. Classes: bilabials
    p b m close the lips (jaw 0.05); labiodentals f v nearly (0.1); rounded vowels and w
    purse the lips (high rounding, narrow width); open vowels (a ɑ æ ʌ ɐ ɒ) drop the jaw
    (0.6 to 0.85); spread vowels (i ɪ e ɛ) widen the mouth; dental, alveolar, palatal and
    velar consonants leave a small jaw opening. A label made of several sounds (a diphthong
    "aɪ", an r-coloured "ɑːɹ", a syllabic "əl") gets the duration-weighted blend of its
    parts, the first weighing 0.6 (:func:`viseme_track` plays the parts in sequence
    instead). "" (a pause) gives the rest shape :data:`REST`; a label with no known symbol
    gives :data:`NEUTRAL`, never an error.
    """
    targets = _target_sequence(ipa)
    blend = _part_weights(len(targets)) @ np.asarray(targets)
    return (float(blend[0]), float(blend[1]), float(blend[2]))


def _fine_step(fps: float) -> float:
    """The time grid: 1 ms, or finer for frame rates above 250 so every frame holds samples."""
    return min(1e-3, 0.25 / fps)


def viseme_track(
    phonemes: Sequence[TimedLabel], frames: int, fps: float = 25.0, coarticulation: float = 0.04
) -> np.ndarray:
    """Mouth shape per video frame, float32 (frames, 3) in [0, 1], columns as ``VISEME_NAMES``.

    Method, on a 1 ms grid over ``[0, frames / fps)``:

    1. Each phoneme holds its :func:`viseme_targets` shape over ``[start, end)`` (a label
       with several parts, such as the diphthong "aɪ", holds its first part for 60 % of the
       time and shares the rest among the others, so the mouth moves within it); where no
       phoneme is, the mouth rests (:data:`REST`). Phonemes outside the clip are cut off.
    2. Coarticulation: a Gaussian of ``coarticulation`` seconds standard deviation blurs
       the shapes into each other (0 disables it), as the lips anticipate and carry over.
    3. Lip closures survive the blur: within every bilabial (p b m) or labiodental (f v)
       the jaw is held at most at its closure value (0.05 / 0.1; the minimum of the blurred
       and the closure value). A plain blur would leave a 50 ms /m/ between open vowels
       half-open, and a missing closure is the most visible lip-sync error.
    4. The grid is averaged into frame ``i``'s bin ``[i / fps, (i + 1) / fps)``. A closure
       shorter than a frame would be averaged away again, so the frame holding its
       midpoint also gets at most the closure value for the jaw.

    Labels are matched as :func:`viseme_targets` does: unknown symbols give a neutral
    shape, never an error.
    """
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps}")
    if not coarticulation >= 0 or not math.isfinite(coarticulation):
        raise ValueError(f"coarticulation must be >= 0 seconds, got {coarticulation}")
    if frames == 0:
        return np.zeros((0, len(VISEME_NAMES)), np.float32)
    step = _fine_step(fps)
    duration = frames / fps
    n_fine = math.ceil(duration / step)
    shape = np.tile(np.asarray(REST, np.float64), (n_fine, 1))
    closure_jaw = np.full(n_fine, np.inf)  # the jaw limit at each instant (inf = none)
    closure_midpoints: list[tuple[float, float]] = []  # (midpoint seconds, jaw limit)

    def index(seconds: float) -> int:
        # Sample k covers [k * step, (k + 1) * step); it belongs to [start, end) if its
        # centre does, so a phoneme gets round((end - start) / step) samples.
        return int(min(max(round(seconds / step), 0), n_fine))

    for phoneme in sorted(phonemes, key=lambda p: p.start):
        if not phoneme.end > phoneme.start:
            continue
        targets = _target_sequence(phoneme.label)
        weights = _part_weights(len(targets))
        edges = phoneme.start + (phoneme.end - phoneme.start) * np.concatenate([[0.0], np.cumsum(weights)])
        for target, a, b in zip(targets, edges[:-1], edges[1:], strict=True):
            shape[index(a) : index(b)] = target
        limit = LIP_CLOSURES.get(base_symbols(phoneme.label))
        if limit is not None:
            first, last = index(phoneme.start), index(phoneme.end)
            closure_jaw[first:last] = np.minimum(closure_jaw[first:last], limit)
            closure_midpoints.append(((phoneme.start + phoneme.end) / 2, limit))

    if coarticulation > 0:
        shape = gaussian_filter1d(shape, coarticulation / step, axis=0, mode="nearest", truncate=4.0)
    shape[:, 0] = np.minimum(shape[:, 0], closure_jaw)

    # Average the grid into frame bins by the bin of each sample's centre.
    centres = (np.arange(n_fine) + 0.5) * step
    bins = np.minimum((centres * fps).astype(np.int64), frames - 1)
    counts = np.bincount(bins, minlength=frames).astype(np.float64)
    track = np.stack([np.bincount(bins, weights=shape[:, c], minlength=frames) for c in range(shape.shape[1])], 1)
    track /= np.maximum(counts, 1.0)[:, None]
    for midpoint, limit in closure_midpoints:
        frame = int(midpoint * fps)
        if 0 <= frame < frames:
            track[frame, 0] = min(track[frame, 0], limit)
    return np.clip(track, 0.0, 1.0).astype(np.float32)

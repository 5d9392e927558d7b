"""Text expression labels (Hallo2's extension, described in the paper and never released).

Hallo2 (Cui et al. 2024, Sec. 3.4) lets a user steer the expression with a text label; the
authors' code has no trace of it. Ours: each label is a short phrase
(:data:`EXPRESSION_PHRASES`), tokenised by words over a fixed vocabulary and encoded by a small
transformer (:class:`LabelTextEncoder`, on the shared ``codecgen.nn.text_encoder.TextEncoder``,
trained with the animation model) into tokens the
denoiser cross-attends to, next to the identity tokens; a video carries a label per time range
(:func:`parse_expression_schedule` reads ``"happy@0:00,neutral@0:05"``). Phrases rather than a
label embedding table, so the encoder sees words it could share with other phrases (a user's
local CLIP text weights could replace it later).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from codecgen.config import configurable
from codecgen.nn.text_encoder import TextEncoder

EXPRESSIONS = ("neutral", "happy", "sad", "surprised", "angry")
EXPRESSION_PHRASES = {
    "neutral": "a calm neutral face",
    "happy": "a happy smiling face",
    "sad": "a sad face with lowered mouth corners",
    "surprised": "a surprised face with raised brows and open mouth",
    "angry": "an angry face with lowered brows and pressed lips",
}
_WORDS = tuple(sorted({w for p in EXPRESSION_PHRASES.values() for w in p.split()}))
_MAX_WORDS = max(len(p.split()) for p in EXPRESSION_PHRASES.values())


def tokenize_phrase(phrase: str) -> list[int]:
    """Word ids of a phrase over the labels' vocabulary; ValueError naming unknown words."""
    words = phrase.lower().split()
    unknown = [w for w in words if w not in _WORDS]
    if unknown or not words:
        raise ValueError(f"cannot encode {phrase!r}: unknown words {unknown} (known: {' '.join(_WORDS)})")
    return [_WORDS.index(w) + 1 for w in words]


@configurable
class LabelTextEncoder(TextEncoder):
    """Expression labels -> (B, max_words, dim) tokens (padding positions zeroed): the shared
    ``TextEncoder`` over the label phrases' words.

    Args: token width, transformer layers and heads."""

    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__(_WORDS, dim, layers, heads, _MAX_WORDS)
        ids = self.tokenize([EXPRESSION_PHRASES[label] for label in EXPRESSIONS])
        self.register_buffer("label_ids", ids, persistent=False)

    def forward(self, labels: Tensor) -> Tensor:
        """Label indices (B,) into :data:`EXPRESSIONS` -> (B, max_words, dim)."""
        if labels.dtype != torch.long or labels.min() < 0 or labels.max() >= len(EXPRESSIONS):
            raise ValueError(f"labels must be indices into {EXPRESSIONS}")
        return super().forward(self.label_ids[labels])


def _seconds(text: str) -> float:
    if not re.fullmatch(r"\d+(:\d{1,2}){0,2}(\.\d+)?", text):
        raise ValueError(f"bad time {text!r}: use seconds or m:ss or h:mm:ss")
    value = 0.0
    for part in text.split(":"):
        value = value * 60 + float(part)
    return value


def parse_expression_schedule(text: str, seconds: float, fps: float = 25.0) -> list[int]:
    """``"happy@0:00,neutral@0:05"`` -> a label index per frame of a ``seconds`` video (each label
    from its time to the next one's; before the first, neutral). ValueError for an unknown
    label, a bad time, times out of order, or a time past the end."""
    frames = max(1, round(seconds * fps))
    out = [EXPRESSIONS.index("neutral")] * frames
    last = -1.0
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError("empty expression schedule")
    for item in items:
        label, _, at = item.partition("@")
        label = label.strip().lower()
        if label not in EXPRESSIONS:
            raise ValueError(f"unknown expression {label!r}; known: {', '.join(EXPRESSIONS)}")
        start = _seconds(at.strip() or "0")
        if start <= last:
            raise ValueError(f"expression times must increase: {item!r}")
        if start >= seconds:
            raise ValueError(f"expression {item!r} starts after the audio ends ({seconds:.2f} s)")
        last = start
        first = round(start * fps)
        out[first:] = [EXPRESSIONS.index(label)] * (frames - first)
    return out

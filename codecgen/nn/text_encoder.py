"""A small text encoder trained from scratch: words over a fixed vocabulary -> tokens to cross-attend to.

Text-conditioned diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models") cross-attends to a frozen CLIP text encoder's tokens; no CLIP weights can be
fetched here, and our corpora's captions use a few dozen words, so the encoder is a word-level
embedding + learned positions + a pre-norm transformer, trained with the model that uses it
(Hallo2's expression labels, VideoGen's captions). Text is lower-cased and split at spaces and
punctuation; a word outside the vocabulary is an error that names it, never a silent unknown
token. Padding positions come out as zeros, so an empty text (all padding) is the null condition
of classifier-free guidance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from codecgen.config import configurable

PAD = "<pad>"


def words_of(text: str) -> list[str]:
    """The words of ``text``: lower-cased, split at whitespace and punctuation."""
    return re.sub(r"[^\w'-]+", " ", text.lower()).split()


@configurable
class TextEncoder(nn.Module):
    """Texts -> (B, max_words, dim) tokens.

    Args:
        vocabulary: the words it knows (lower case, unique).
        dim, layers, heads: token width, transformer layers and heads.
        max_words: the longest text (the token count).
    """

    def __init__(self, vocabulary: Sequence[str], dim: int = 64, layers: int = 2, heads: int = 4,
                 max_words: int = 16) -> None:
        super().__init__()
        words = [str(w) for w in vocabulary]
        if not words or len(set(words)) != len(words) or any(words_of(w) != [w] for w in words) or PAD in words:
            raise ValueError("vocabulary must be unique lower-case words without spaces or punctuation")
        if max_words < 1 or dim % heads:
            raise ValueError(f"max_words must be positive and dim ({dim}) a multiple of heads ({heads})")
        self.vocabulary, self.dim, self.max_words = (PAD, *words), dim, max_words
        self._index = {w: i for i, w in enumerate(self.vocabulary)}
        self.embed = nn.Embedding(len(self.vocabulary), dim, padding_idx=0)
        self.position = nn.Parameter(torch.randn(max_words, dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` outside the vocabulary, in order, once each."""
        return list(dict.fromkeys(w for w in words_of(text) if w not in self._index))

    def tokenize(self, texts: Sequence[str], allow_empty: bool = False) -> Tensor:
        """(B, max_words) word ids, 0-padded. ValueError naming the unknown words, for a text of
        more than ``max_words`` words, and for an empty one unless ``allow_empty``."""
        ids = torch.zeros(len(texts), self.max_words, dtype=torch.long)
        for i, text in enumerate(texts):
            words = words_of(text)
            unknown = self.unknown_words(text)
            if unknown:
                raise ValueError(f"words outside the text encoder's vocabulary: {', '.join(unknown)} "
                                 f"(it knows: {' '.join(self.vocabulary[1:])})")
            if not words and not allow_empty:
                raise ValueError("the text is empty")
            if len(words) > self.max_words:
                raise ValueError(f"{text!r} has {len(words)} words; the text encoder takes at most {self.max_words}")
            ids[i, : len(words)] = torch.tensor([self._index[w] for w in words], dtype=torch.long)
        return ids

    def forward(self, ids: Tensor) -> Tensor:
        """Word ids (B, L <= max_words) -> tokens (B, L, dim), zero at padding."""
        if ids.dtype != torch.long or ids.dim() != 2 or ids.shape[1] > self.max_words:
            raise ValueError(f"ids must be int64 (B, <= {self.max_words}), got {ids.dtype} {tuple(ids.shape)}")
        pad = ids == 0
        # an all-padding row (the null text) attends to nothing: let it attend to its first
        # position, then zero it, so the transformer never sees a fully masked row (NaN)
        mask = pad.clone()
        mask[:, 0] = False
        h = self.encoder(self.embed(ids.to(self.embed.weight.device)) + self.position[: ids.shape[1]],
                         src_key_padding_mask=mask.to(self.embed.weight.device))
        return self.norm(h).masked_fill(pad[..., None].to(h.device), 0.0)

    def encode(self, texts: Sequence[str], allow_empty: bool = False) -> Tensor:
        """Texts -> tokens (B, max_words, dim)."""
        return self(self.tokenize(texts, allow_empty))

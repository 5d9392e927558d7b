"""A user's own CLIP text encoder (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"), from a local folder in Hugging Face's layout, in place of the small ``TextEncoder``.

Nothing is downloaded: ``local_dir`` holds ``config.json`` (a ``CLIPTextConfig``: vocab_size, hidden_size,
intermediate_size, num_hidden_layers, num_attention_heads, max_position_embeddings, hidden_act), ``vocab.json``
and ``merges.txt`` (CLIP's byte-level BPE) and ``model.safetensors`` (a ``CLIPTextModel``'s or a
``CLIPTextModelWithProjection``'s weights; only the text transformer's are read). The architecture is CLIP's
text transformer written here (transformers is not a dependency): token + learned position embeddings,
pre-LayerNorm blocks with causal self-attention and a quick-GELU (or GELU) MLP, a final LayerNorm; the
tokens of every position are what a denoiser cross-attends to, as Stable Diffusion does.

Its interface is ``TextEncoder``'s (``tokenize``, ``forward``, ``encode``, ``dim``, ``unknown_words``), so
a config swaps one for the other. Prompts are lower-cased, cleaned and BPE-coded between the start and
end tokens and padded with the end token to ``max_words`` (77 in CLIP); BPE has no unknown words. An
all-zero row of ids (the null text a model's condition dropout makes) gives zero tokens, as
``TextEncoder``'s empty text does. Once built, the module's spec holds the tokenizer and the
architecture, not the folder: an export of a model using it needs no copy of ``local_dir``.
``trainable=False`` (default, as Stable Diffusion) freezes it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import regex
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable, init_spec

CONFIG_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "max_position_embeddings")
MAX_VOCAB = 1_000_000
SPLIT = regex.compile(  # CLIP's pre-tokenizer: its special tokens, English clitics, letters, single digits, symbols
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map of bytes to printable characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


class CLIPTokenizer:
    """CLIP's byte-level BPE over ``vocab`` (token -> id) and ``merges`` (``"a b"`` pairs, by priority)."""

    def __init__(self, vocab: dict[str, int], merges: list[str]) -> None:
        if not isinstance(vocab, dict) or not 0 < len(vocab) <= MAX_VOCAB or not isinstance(merges, list):
            raise ValueError("a CLIP tokenizer needs a vocabulary (token -> id) and a list of merges")
        self.vocab, self.ranks = vocab, {tuple(m.split()): i for i, m in enumerate(merges) if len(m.split()) == 2}
        for special in ("<|startoftext|>", "<|endoftext|>"):
            if special not in vocab:
                raise ValueError(f"the CLIP vocabulary has no {special}")
        self.start, self.end = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
        self.byte_chars = bytes_to_unicode()
        self.cache: dict[str, list[str]] = {}

    def _bpe(self, word: str) -> list[str]:
        if word in self.cache:
            return self.cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without the start and end tokens."""
        text = " ".join(text.split()).lower()
        ids = []
        for word in SPLIT.findall(text):
            word = "".join(self.byte_chars[b] for b in word.encode("utf-8"))
            for piece in self._bpe(word):
                if piece not in self.vocab:
                    raise ValueError(f"the CLIP vocabulary cannot code {piece!r}: its merges and vocabulary disagree")
                ids.append(self.vocab[piece])
        return ids


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, act: str) -> None:
        super().__init__()
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.layer_norm1(x)
        q, k, v = (p(h).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out_proj(a.transpose(1, 2).reshape(b, n, d))
        h = self.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h) if self.act == "quick_gelu" else F.gelu(h)
        return x + self.fc2(h)


@configurable
class CLIPTextEncoder(nn.Module):
    """Texts -> (B, max_words, dim) tokens by a user's CLIP text model (see the module docstring).

    Args:
        local_dir: the folder to read (config, tokenizer, weights); None when built from a saved spec.
        max_words: the token count (CLIP: 77).
        trainable: train it with the model (default: frozen).
        config, vocab, merges: filled in from ``local_dir``; given when rebuilt from an export's spec.
    """

    def __init__(self, local_dir: str | None = None, max_words: int = 77, trainable: bool = False,
                 config: dict | None = None, vocab: dict | None = None, merges: list | None = None) -> None:
        super().__init__()
        folder = Path(local_dir) if local_dir else None
        if folder is not None:
            config, vocab, merges = self._read_folder(folder)
        if config is None or vocab is None or merges is None:
            raise ValueError("CLIPTextEncoder needs local_dir (a CLIP text model folder)")
        if any(not isinstance(config.get(k), int) or not 0 < config[k] <= MAX_VOCAB for k in CONFIG_KEYS):
            raise ValueError(f"the CLIP config needs positive integers {', '.join(CONFIG_KEYS)}")
        dim, heads = config["hidden_size"], config["num_attention_heads"]
        if dim % heads or not 2 < max_words <= config["max_position_embeddings"]:
            raise ValueError(f"hidden_size {dim} must divide by the heads ({heads}) and max_words ({max_words}) "
                             f"be 3..max_position_embeddings ({config['max_position_embeddings']})")
        self.tokenizer = CLIPTokenizer(vocab, merges)
        self.dim, self.max_words, self.vocabulary = dim, max_words, ("<clip>",)
        self.token_embedding = nn.Embedding(config["vocab_size"], dim)
        self.position_embedding = nn.Embedding(config["max_position_embeddings"], dim)
        act = config.get("hidden_act", "quick_gelu")
        self.layers = nn.ModuleList(_Block(dim, heads, config["intermediate_size"], act)
                                    for _ in range(config["num_hidden_layers"]))
        self.final_layer_norm = nn.LayerNorm(dim)
        if folder is not None:
            self._load_weights(folder / "model.safetensors")
            spec = init_spec(self)["init_args"]  # the export carries the tokenizer and sizes, not the folder
            spec.update(local_dir=None, config=config, vocab=vocab, merges=merges)
        self.requires_grad_(trainable)

    @staticmethod
    def _read_folder(folder: Path) -> tuple[dict, dict, list]:
        names = ("config.json", "vocab.json", "merges.txt", "model.safetensors")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a CLIP text model folder: no {', '.join(missing)}")
        try:
            config = json.loads((folder / "config.json").read_text())
            config = config.get("text_config", config)
            vocab = json.loads((folder / "vocab.json").read_text())
            lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read the CLIP files in {folder}: {err}") from None
        merges = [line for line in lines if line and not line.startswith("#version")]
        if not isinstance(config, dict) or not isinstance(vocab, dict):
            raise ValueError(f"{folder}: config.json and vocab.json must be JSON objects")
        return config, vocab, merges

    def _load_weights(self, path: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(path))
        ours = {}
        for key, value in state.items():
            key = key.removeprefix("text_model.")
            key = key.replace("embeddings.token_embedding", "token_embedding")
            key = key.replace("embeddings.position_embedding", "position_embedding")
            key = key.replace("encoder.layers.", "layers.").replace("self_attn.", "")
            key = key.replace("mlp.", "")
            ours[key] = value
        wanted = self.state_dict()
        missing = [k for k in wanted if k not in ours]
        wrong = [k for k in wanted if k in ours and ours[k].shape != wanted[k].shape]
        if missing or wrong:
            raise ValueError(f"{path} does not fit its config.json: missing {missing[:4]}, other shapes {wrong[:4]}")
        self.load_state_dict({k: ours[k] for k in wanted})

    def unknown_words(self, text: str) -> list[str]:
        return []  # byte-level BPE codes any text

    def tokenize(self, texts, allow_empty: bool = False) -> Tensor:
        """(B, max_words) ids: start, the text's tokens, end, padded with the end token."""
        ids = torch.full((len(texts), self.max_words), self.tokenizer.end, dtype=torch.long)
        for i, text in enumerate(texts):
            tokens = self.tokenizer.encode(text)
            if not tokens and not allow_empty:
                raise ValueError("the text is empty")
            if len(tokens) > self.max_words - 2:
                raise ValueError(f"{text!r} is {len(tokens)} CLIP tokens; at most {self.max_words - 2} fit")
            ids[i, : len(tokens) + 2] = torch.tensor([self.tokenizer.start, *tokens, self.tokenizer.end])
        return ids

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dtype != torch.long or ids.dim() != 2 or ids.shape[1] > self.max_words:
            raise ValueError(f"ids must be int64 (B, <= {self.max_words}), got {ids.dtype} {tuple(ids.shape)}")
        device = self.token_embedding.weight.device
        ids = ids.to(device)
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(ids.shape[1], device=device))
        for layer in self.layers:
            x = layer(x)
        null = (ids == 0).all(1)  # the null text of condition dropout
        return self.final_layer_norm(x).masked_fill(null[:, None, None], 0.0)

    def encode(self, texts, allow_empty: bool = False) -> Tensor:
        return self(self.tokenize(texts, allow_empty))

"""How Hallo2 turns speech features into what the denoiser attends to, and where it lets them act.

From the authors' code (Hallo / Hallo2, Cui et al. 2024; ``hallo/models/audio_proj.py`` and the
audio modules of their UNet):

- :func:`audio_windows`: each video frame takes the wav2vec features of itself and the
  ``margin`` frames either side (2: a 5-frame window), every layer kept;
- :class:`AudioProj`: that (window x layers x dim) block, flattened, through Linear ->
  ReLU -> Linear -> ReLU -> Linear to ``tokens`` x ``out_dim`` and a LayerNorm: 32 tokens a
  frame (the authors' sizes: 5 x 12 x 768 -> 512 -> 512 -> 32 x 768);
- :class:`HierarchicalAudioAttention`: three cross-attentions from the image features to the
  audio tokens, whose outputs act only inside the whole frame, the face and the lips
  respectively (masks resized to the feature map), each through a zero-initialised 1 x 1
  projection (so a pre-trained denoiser is unchanged at the start) and summed with weights
  (1.0 each by default) onto the features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable


def audio_windows(features: Tensor, margin: int = 2) -> Tensor:
    """(B, T, L, D) per-frame features of T = F + 2 x margin frames -> (B, F, 2 x margin + 1, L, D),
    frame i's window being frames i .. i + 2 x margin (its own at the centre)."""
    if features.dim() != 4:
        raise ValueError(f"expected features (B, T, layers, dim), got {tuple(features.shape)}")
    if features.shape[1] <= 2 * margin:
        raise ValueError(f"{features.shape[1]} frames of features leave none after a margin of {margin} each side")
    return features.unfold(1, 2 * margin + 1, 1).permute(0, 1, 4, 2, 3)


@configurable
class AudioProj(nn.Module):
    """Args: window (frames), layers and dim of the features in; hidden width; tokens per frame and
    their width out (the denoiser's cross-attention width)."""

    def __init__(self, window: int = 5, layers: int = 12, dim: int = 768, hidden: int = 512, tokens: int = 32,
                 out_dim: int = 768) -> None:
        super().__init__()
        self.window, self.layers, self.dim, self.tokens, self.out_dim = window, layers, dim, tokens, out_dim
        self.net = nn.Sequential(nn.Linear(window * layers * dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, tokens * out_dim))
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, windows: Tensor) -> Tensor:
        """(B, F, window, layers, dim) -> (B, F, tokens, out_dim)."""
        if windows.shape[2:] != (self.window, self.layers, self.dim):
            raise ValueError(f"expected (B, F, {self.window}, {self.layers}, {self.dim}) windows, "
                             f"got {tuple(windows.shape)}")
        b, f = windows.shape[:2]
        return self.norm(self.net(windows.reshape(b, f, -1)).view(b, f, self.tokens, self.out_dim))


class _MaskedCrossAttention(nn.Module):
    def __init__(self, channels: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.zero = nn.Linear(channels, channels)  # a 1 x 1 convolution on tokens
        nn.init.zeros_(self.zero.weight)
        nn.init.zeros_(self.zero.bias)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        out, _ = self.attention(self.norm(x), context, context, need_weights=False)
        return self.zero(out)


@configurable
class HierarchicalAudioAttention(nn.Module):
    """Args: channels of the feature map; width of the audio tokens; attention heads; weights of
    the full, face and lip terms."""

    REGIONS = ("full", "face", "lip")

    def __init__(self, channels: int, context_dim: int, heads: int = 4,
                 weights: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be a multiple of heads ({heads})")
        if len(weights) != 3:
            raise ValueError(f"weights: one per region {self.REGIONS}, got {list(weights)}")
        self.branches = nn.ModuleList(_MaskedCrossAttention(channels, context_dim, heads) for _ in self.REGIONS)
        self.weights = tuple(float(w) for w in weights)

    def forward(self, x: Tensor, audio: Tensor, face_mask: Tensor, lip_mask: Tensor) -> Tensor:
        """Feature maps (N, C, H, W) of N frames, their audio tokens (N, tokens, context_dim), and
        their face and lip masks (N, h, w) at any resolution -> the maps plus the three terms."""
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        regions = [torch.ones(n, h * w, 1, device=x.device, dtype=x.dtype)]
        for mask in (face_mask, lip_mask):
            resized = F.interpolate(mask[:, None].to(x.dtype), size=(h, w), mode="area")
            regions.append((resized > 0).to(x.dtype).flatten(2).transpose(1, 2))
        out = tokens
        for branch, region, weight in zip(self.branches, regions, self.weights):
            out = out + weight * region * branch(tokens, audio)
        return out.transpose(1, 2).view(n, c, h, w)


class AudioContext:
    """What the installed audio attentions read during one denoiser call (set before it, or None):
    ``audio`` (N, tokens, dim) and the ``face_mask`` / ``lip_mask`` (N, h, w) of the N = samples x
    frames frames the denoiser sees, frame-major within a sample."""

    def __init__(self) -> None:
        self.audio: Tensor | None = None
        self.face_mask: Tensor | None = None
        self.lip_mask: Tensor | None = None

    def set(self, audio: Tensor | None, face_mask: Tensor | None = None, lip_mask: Tensor | None = None) -> None:
        self.audio, self.face_mask, self.lip_mask = audio, face_mask, lip_mask


def _spatial_attentions(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """A diffusers UNet's spatial transformers (``...attentions.j``), in forward order of blocks."""
    out = []
    for name, module in unet.named_modules():
        parts = name.split(".")
        spatial = len(parts) >= 2 and parts[-2] == "attentions" and "motion_modules" not in name
        if spatial and hasattr(module, "in_channels"):
            out.append((name, module))
    return out


def install_audio_attention(unet: nn.Module, context_dim: int, heads: int = 4,
                            weights: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[nn.ModuleDict, AudioContext]:
    """Put a :class:`HierarchicalAudioAttention` after every spatial transformer of ``unet`` (Hallo's
    audio modules follow each spatial attention of every block, down, mid and up), acting on its
    output through a forward hook. Returns the new modules (to register as the model's own, keyed by
    the transformer's name with dots as "__") and the :class:`AudioContext` they read; with
    ``context.audio`` None they do nothing."""
    context = AudioContext()
    modules = nn.ModuleDict()
    for name, transformer in _spatial_attentions(unet):
        attention = HierarchicalAudioAttention(transformer.in_channels, context_dim, heads, weights)
        modules[name.replace(".", "__")] = attention

        def hook(module: nn.Module, args, output, attention=attention, name=name):
            if context.audio is None:
                return output
            x = output[0] if isinstance(output, tuple) else output.sample
            if x.shape[0] != context.audio.shape[0]:
                raise ValueError(f"{name}: {x.shape[0]} frames for audio tokens of {context.audio.shape[0]}")
            y = attention(x, context.audio, context.face_mask, context.lip_mask)
            if isinstance(output, tuple):
                return (y, *output[1:])
            output.sample = y
            return output

        transformer.register_forward_hook(hook)
    if not modules:
        raise ValueError("the UNet has no spatial transformers to put audio attention after")
    return modules, context

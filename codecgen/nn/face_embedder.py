"""A small face-identity embedder: a face crop -> a unit vector that is close for the same person.

Hallo2 (Cui et al. 2024) takes the reference face's identity from ArcFace (Deng et al., CVPR
2019: a ResNet trained on millions of faces with an additive angular margin), 512-d, and
projects it to 4 cross-attention tokens. Those weights cannot be fetched here, so the
identity stage trains this network on the identities of the portrait corpus with ArcFace's
loss (:class:`ArcMarginHead`), and the benchmarks use it to measure identity drift.

Architecture: a ResNet-style stack (a 3x3 stem, then stages of two residual blocks, each
stage halving the resolution and doubling the width), global average pooling, a linear map
to ``dim`` and L2 normalisation. Input: (B, 3, size, size) in [-1, 1], the face box's crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable


class _Residual(nn.Module):
    def __init__(self, channels: int, out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.PReLU(out),
            nn.Conv2d(out, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out),
        )
        self.skip = (nn.Identity() if stride == 1 and channels == out
                     else nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False), nn.BatchNorm2d(out)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.skip(x))


@configurable
class FaceEmbedder(nn.Module):
    """Args:
        widths: channels of each stage (each after the first halves the resolution).
        dim: embedding size (ArcFace: 512).
        size: the face crop's side the network expects.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), dim: int = 128, size: int = 64) -> None:
        super().__init__()
        if not widths or min(widths) < 1 or dim < 1 or size < 2 ** len(widths):
            raise ValueError(f"bad FaceEmbedder sizes: widths {widths}, dim {dim}, size {size}")
        self.dim, self.size = dim, size
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.PReLU(widths[0]))
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            stages += [_Residual(channels, width, 1 if i == 0 else 2), _Residual(width, width, 1)]
            channels = width
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels
        self.out = nn.Sequential(nn.Dropout(0.1), nn.Linear(channels, dim), nn.BatchNorm1d(dim))

    def features(self, faces: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] (resized to ``size``) -> (B, feature_dim) pooled trunk features."""
        if faces.dim() != 4 or faces.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) face crops, got {tuple(faces.shape)}")
        if faces.shape[-2:] != (self.size, self.size):
            faces = F.interpolate(faces, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                  antialias=True)
        return self.stages(self.stem(faces)).mean((2, 3))

    def forward(self, faces: Tensor) -> Tensor:
        """(B, 3, size, size) in [-1, 1] -> (B, dim) unit vectors."""
        return F.normalize(self.out(self.features(faces)), dim=1)


class ArcMarginHead(nn.Module):
    """ArcFace's classifier (Deng et al. 2019): logits s * cos(theta + m) for the true class and
    s * cos(theta) for the others, theta the angle between an embedding and a class centre."""

    def __init__(self, dim: int, classes: int, scale: float = 16.0, margin: float = 0.3) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.randn(classes, dim) / math.sqrt(dim))
        self.scale, self.margin = scale, margin

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        cos = embeddings @ F.normalize(self.centres, dim=1).T
        if labels is None:
            return self.scale * cos
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.cos(theta + self.margin)
        # Past pi - m the margin would make the logit grow again: fall back to a linear penalty (ArcFace's easy-margin fix).
        target = torch.where(theta + self.margin < math.pi, target, cos - self.margin * math.sin(self.margin))
        one_hot = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(one_hot, target, cos)


@configurable
class IdentityProj(nn.Module):
    """Hallo2's ``ImageProjModel`` (from IP-Adapter): a face embedding -> ``tokens`` cross-attention
    tokens, Linear(dim, tokens x out_dim) + LayerNorm (the authors: 512 -> 4 x 768)."""

    def __init__(self, dim: int = 512, tokens: int = 4, out_dim: int = 768) -> None:
        super().__init__()
        self.tokens, self.out_dim = tokens, out_dim
        self.proj = nn.Linear(dim, tokens * out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, embedding: Tensor) -> Tensor:
        """(B, dim) -> (B, tokens, out_dim)."""
        return self.norm(self.proj(embedding).view(-1, self.tokens, self.out_dim))

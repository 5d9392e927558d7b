"""SemantiCodec's acoustic branch (Liu et al. 2024, "SemantiCodec"): what the semantic tokens
miss, coded as a second token per frame.

As the authors: the frame's AudioMAE feature concatenated with its semantic centroid -> a
bidirectional LSTM (hidden 2x the feature width; 4, 3 or 2 layers at 100, 50 or 25 tokens/s)
-> a bias-free linear layer to the feature width -> a VQ (8192 codes, EMA decay 0.9,
commitment 1.0: ``codecgen.nn.quantizers.VQ`` in the config).
"""

from __future__ import annotations

from torch import Tensor, nn

from codecgen.config import configurable


@configurable
class AcousticEncoder(nn.Module):
    """(B, frames, 2 x feature_dim) -> (B, frames, out_dim).

    Args:
        feature_dim: the width of one semantic frame's feature (and of its centroid).
        hidden: the LSTM's hidden size per direction (authors: 2 x feature_dim).
        num_layers: LSTM layers.
        out_dim: the VQ's vector width (authors: feature_dim).
    """

    def __init__(self, feature_dim: int, hidden: int, num_layers: int, out_dim: int):
        super().__init__()
        if min(feature_dim, hidden, num_layers, out_dim) < 1:
            raise ValueError("feature_dim, hidden, num_layers and out_dim must be positive")
        self.feature_dim, self.out_dim = feature_dim, out_dim
        self.lstm = nn.LSTM(2 * feature_dim, hidden, num_layers, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != 2 * self.feature_dim:
            raise ValueError(f"expected (B, frames, {2 * self.feature_dim}), got {tuple(x.shape)}")
        return self.proj(self.lstm(x)[0])

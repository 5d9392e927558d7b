"""Optical flow by RAFT-small (Teed & Deng, ECCV 2020, "RAFT: Recurrent All-Pairs Field Transforms for Optical
Flow"): torchvision's architecture, trained here from scratch (its pretrained weights cannot be fetched).

RAFT correlates features at 1/8 of the frame size and refines the flow by a recurrent update, so it
takes frames whose sides are multiples of 8; others are padded (edge-replicated) and the flow is
cropped back. ``corr_levels`` shrinks the correlation pyramid for small frames: at 64 px the 1/8 grid
is 8 x 8, and the default 4 levels would pool it below one cell (2 levels there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable


@configurable
class FlowEstimator(nn.Module):
    """Frames a, b (N, 3, H, W) in [-1, 1] -> flow a -> b (N, 2, H, W) in pixels, (dx, dy).

    Args:
        corr_levels, corr_radius: RAFT's correlation pyramid (RAFT-small: 4 levels, radius 3).
        iterations: recurrent updates when estimating (RAFT: 12 at test time).
    """

    def __init__(self, corr_levels: int = 4, corr_radius: int = 3, iterations: int = 12) -> None:
        super().__init__()
        from torchvision.models.optical_flow import raft_small
        from torchvision.models.optical_flow.raft import CorrBlock

        if corr_levels < 1 or corr_radius < 1 or iterations < 1:
            raise ValueError("corr_levels, corr_radius and iterations must be positive")
        self.iterations = iterations
        self.raft = raft_small(weights=None, progress=False,
                               corr_block=CorrBlock(num_levels=corr_levels, radius=corr_radius))

    def forward(self, a: Tensor, b: Tensor, iterations: int | None = None) -> list[Tensor]:
        """Every update's flow estimate (the last is the best), each (N, 2, H, W)."""
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"need two (N, 3, H, W) frame batches of one shape, got {tuple(a.shape)}, "
                             f"{tuple(b.shape)}")
        h, w = a.shape[-2:]
        ph, pw = -h % 8, -w % 8
        if ph or pw:
            a = F.pad(a, (0, pw, 0, ph), mode="replicate")
            b = F.pad(b, (0, pw, 0, ph), mode="replicate")
        flows = self.raft(a, b, num_flow_updates=iterations or self.iterations)
        return [f[..., :h, :w] for f in flows]

    @torch.no_grad()
    def estimate(self, a: Tensor, b: Tensor) -> Tensor:
        """The final flow a -> b, without gradients, in inference mode."""
        was = self.training
        self.eval()
        try:
            return self(a, b)[-1]
        finally:
            self.train(was)

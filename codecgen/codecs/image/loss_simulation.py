"""Which indices a lossy channel drops: the patterns the lost-index restoration of
Mao et al. 2023 ("Extreme Image Compression using Fine-tuned VQGANs") is tested on.

- ``random``: each position independently (packets of one index, interleaved);
- ``burst``: runs of consecutive indices in raster order (a lost packet of a
  raster-ordered stream), run lengths geometric with mean ``burst_length``.
Both hit the requested fraction exactly (rounded), reproducibly from ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PATTERNS = ("random", "burst")


def lost_positions(grid: Sequence[int], fraction: float, pattern: str = "random", seed: int = 0,
                   burst_length: float = 8.0) -> torch.Tensor:
    """Boolean (h, w) mask with ``round(fraction * h * w)`` positions lost."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    h, w = (int(v) for v in grid)
    n, target = h * w, round(fraction * h * w)
    g = torch.Generator().manual_seed(seed)
    lost = torch.zeros(n, dtype=torch.bool)
    if pattern == "random":
        lost[torch.randperm(n, generator=g)[:target]] = True
        return lost.reshape(h, w)
    while int(lost.sum()) < target:
        length = int(torch.empty(()).geometric_(1.0 / burst_length, generator=g))  # >= 1
        start = int(torch.randint(0, n, (), generator=g))
        need = target - int(lost.sum())
        run = lost[start : start + length]
        free = (~run).nonzero().flatten()[:need]
        run[free] = True
    return lost.reshape(h, w)

"""A square face crop from a face box, as the face models here (identity embedder, face probe) take it.

A square of ``margin`` times the box's larger side, centred on the box, resized to the model's
input with one bilinear resampling (``grid_sample``), the frame's border pixels repeated
outside it; in training, ``jitter`` shifts and scales the square a little (box units).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def crop_face(frame: torch.Tensor, box: Sequence[float], size: int, margin: float = 1.2,
              jitter: torch.Tensor | None = None) -> torch.Tensor:
    """A square crop (side ``margin`` x the box's larger side, centred on the box, shifted and
    scaled by ``jitter`` = (dx, dy, ds) in box units) of a (3, H, W) frame, resized to ``size``;
    outside the frame is edge-padded."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0) * margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if jitter is not None:
        cx, cy, side = cx + float(jitter[0]) * side, cy + float(jitter[1]) * side, side * (1 + float(jitter[2]))
    h, w = frame.shape[-2:]
    # An affine grid does crop, resize and edge padding in one step.
    theta = torch.tensor([[side / w, 0.0, 2 * cx / w - 1], [0.0, side / h, 2 * cy / h - 1]], dtype=frame.dtype)
    grid = F.affine_grid(theta[None], [1, 3, size, size], align_corners=False)
    return F.grid_sample(frame[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]

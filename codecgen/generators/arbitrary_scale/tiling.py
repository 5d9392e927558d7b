"""Tiled denoising: a latent larger than the denoiser should see at once (its activations
grow with the latent, its attention quadratically) is denoised tile by tile at EVERY
step, and the tiles' outputs are blended into one output for the whole latent before
the scheduler steps it (as MultiDiffusion, Bar-Tal et al. 2023, "MultiDiffusion: Fusing
Diffusion Paths for Controlled Image Generation", with linear ramps for weights). The
tiles agree on the shared latent at every step, so there are no seams to hide afterwards,
and the initial and per-step noise are those of the untiled latent (same seed, same draws).

The layout is ``codecgen.datamodules.image.iter_tiles`` on the grid of whole UNet cells,
so every tile's sides are multiples of the UNet's downsampling factor.

The first stage (encoder, feature decoder, LIIF) needs no blending: ``first_stage_windows``
gives windows of a core plus a margin of context, and each keeps its core only (as the
VQGAN image codec codes blocks with a margin of context).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from codecgen.datamodules.image import Tile, iter_tiles
from codecgen.nn.diffusion import Denoiser, map_condition

Box = tuple[int, int, int, int]  # top, left, bottom, right


def _ramp(start: int, end: int, n: int, overlap: int) -> Tensor:
    """Weights of positions start..end-1 along an axis of n: rising over the 2 x overlap
    positions shared with the previous tile, falling over those shared with the next."""
    i = torch.arange(start, end, dtype=torch.float32) + 0.5
    weight = torch.ones(end - start)
    if overlap > 0:
        if start > 0:
            weight = torch.minimum(weight, (i - start) / (2 * overlap))
        if end < n:
            weight = torch.minimum(weight, (end - i) / (2 * overlap))
    return weight


def tile_boxes(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[Box, Tensor]]:
    """Boxes covering a ``height`` x ``width`` latent, each at most ``tile`` on a side,
    neighbours sharing 2 x ``overlap`` positions (both rounded to whole ``multiple``s),
    with their blending weights (h, w). One box for a latent no larger than ``tile``."""
    if height % multiple or width % multiple:
        raise ValueError(f"latent {height}x{width} is not made of whole {multiple}x{multiple} UNet cells")
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and tile_overlap >= 0, got {tile} and {overlap}")
    cells, context = tile // multiple, -(-overlap // multiple)
    if cells < 1:
        raise ValueError(f"tile must be at least {multiple} latent positions (the UNet's downsampling), got {tile}")
    if cells <= 2 * context and (height > tile or width > tile):
        raise ValueError(f"tile ({cells * multiple}) must be larger than 2 x tile_overlap ({context * multiple}, "
                         f"rounded up to a multiple of {multiple}): lower tile_overlap or raise tile")
    boxes = []
    context = min(context, max(cells - 1, 0) // 2)
    for top, left, bottom, right in iter_tiles(height // multiple, width // multiple, cells, context):
        box = (top * multiple, left * multiple, bottom * multiple, right * multiple)
        o = context * multiple
        weight = _ramp(box[0], box[2], height, o)[:, None] * _ramp(box[1], box[3], width, o)[None, :]
        boxes.append((box, weight))
    return boxes


def tiled(denoise: Denoiser, boxes: list[tuple[Box, Tensor]], on_tile: Callable[[], None] | None = None) -> Denoiser:
    """``denoise`` run box by box on the latent and on each spatial condition tensor, the
    outputs blended by the boxes' weights; ``on_tile()`` after each box. A single box is
    the plain ``denoise`` (bit-identical)."""
    def run(x: Tensor, t: Tensor, cond) -> Tensor:
        if len(boxes) == 1:
            out = denoise(x, t, cond)
            if on_tile is not None:
                on_tile()
            return out
        out, total = None, torch.zeros(x.shape[-2:], device=x.device, dtype=torch.float32)
        for (top, left, bottom, right), weight in boxes:
            def crop(c: Tensor) -> Tensor:
                return c[..., top:bottom, left:right]

            piece = denoise(crop(x), t, map_condition(crop, cond))
            if out is None:
                out = torch.zeros(*piece.shape[:-2], *x.shape[-2:], device=x.device, dtype=torch.float32)
            weight = weight.to(x.device)
            out[..., top:bottom, left:right] += piece.float() * weight
            total[top:bottom, left:right] += weight
            if on_tile is not None:
                on_tile()
        return (out / total).to(x.dtype)
    return run


def first_stage_windows(height: int, width: int, tile: int, margin: int) -> list[Tile]:
    """Windows over a ``height`` x ``width`` latent, none larger than ``tile + 2 * margin``
    a side: cores partitioning it (``.core``; at most ``tile`` cells along a side longer
    than ``tile + 2 * margin``), each grown by ``margin`` cells of context where it is not
    the latent's border. One window, the whole latent, when it fits."""
    if tile < 1 or margin < 0:
        raise ValueError(f"tile must be >= 1 and margin >= 0, got {tile} and {margin}")
    return list(iter_tiles(height, width, tile + 2 * margin, margin))

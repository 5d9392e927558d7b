"""Local implicit image function (Chen et al. 2021, "Learning Continuous Image
Representation with Local Implicit Image Function"; code: yinboc/liif).

A grid of features (B, C, h, w) becomes an image of any size: the colour at a
continuous coordinate is an MLP of the nearest feature vector, the offset of the query
from that feature's centre (in units of feature cells) and, with ``cell_decode``, the
size of the pixel being rendered (in the same units). With ``local_ensemble`` the four
feature vectors around the query each predict, and the predictions are blended with
the area of the rectangle between the query and the DIAGONALLY OPPOSITE feature centre
(bilinear weights, LIIF's swap of areas 0<->3 and 1<->2), so the output is continuous
across cell borders. ``feat_unfold`` concatenates each feature with its 3x3
neighbours (zero-padded), as LIIF does by default; Kim & Kim 2024 (arbitrary-scale
diffusion, code zhenshij/arbitrary-scale-diffusion) turn it off.

Coordinates follow LIIF: (y, x) pairs in [-1, 1], pixel ``i`` of ``n`` centred at
``-1 + (2 i + 1) / n``; a cell is ``(2 / H, 2 / W)``.

Deviation from LIIF's code, for a reason: the nearest feature is found by computing its
index (``floor``) and gathering it, instead of ``grid_sample(mode="nearest")`` on the
features and again on a grid of feature coordinates. It is the same cell, except at an
exact tie, which LIIF's 1e-6 shift avoids (the upper cell here, grid_sample rounds half
to even); the feature's centre is computed in float32 whatever the features' dtype, and
one index serves the feature and its centre.

Deviation from LIIF's code: an area is ``(|dy| + 1e-9) (|dx| + 1e-9)``, where LIIF adds
1e-9 to ``|dy dx|``. The weights differ by about 1e-9, except where LIIF's weights
degenerate: a query exactly level with a last-row (or last-column) feature centre has
both its vertical neighbours in that row, all four areas zero, and LIIF averages the
two columns equally instead of interpolating between them (at every such pixel when an
image is rendered at an odd multiple of the feature grid's size).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable

_EPS_SHIFT = 1e-6  # LIIF: keeps a query on a cell border from hitting the same cell twice
_EPS_AREA = 1e-9  # no division by zero where a query sits on a feature centre (see the module docstring)


def _centres(index: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """Centre, in [-1, 1], of pixel ``index`` along an axis of ``n`` pixels."""
    return (2 * index + 1).to(dtype) / n - 1


def make_coord(shape: Sequence[int], device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel-centre coordinates of a grid: ``shape`` (H, W) -> (H, W, 2), (y, x) in [-1, 1]."""
    axes = [_centres(torch.arange(n, device=device), n, dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def pixel_queries(index: Tensor, height: int, width: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Flat pixel indices (..., N) of an ``height`` x ``width`` image -> their centres and
    cells, each (..., N, 2) (y, x)."""
    coords = torch.stack([_centres(index // width, height, dtype), _centres(index % width, width, dtype)], dim=-1)
    cells = torch.tensor([2.0 / height, 2.0 / width], device=index.device, dtype=dtype).expand_as(coords)
    return coords, cells


def sample_queries(image: Tensor, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` distinct random pixels of each image (B, C, H, W) -> (coords, cells, targets):
    (B, n, 2), (B, n, 2), (B, n, C). For training on sampled query points, as LIIF
    (2304 per image)."""
    b, c, h, w = image.shape
    if not 1 <= n <= h * w:
        raise ValueError(f"cannot sample {n} distinct pixels from a {h}x{w} image")
    device = generator.device if generator is not None else image.device
    index = torch.rand(b, h * w, generator=generator, device=device).argsort(dim=1)[:, :n].to(image.device)
    coords, cells = pixel_queries(index, h, w)
    targets = image.flatten(2).gather(2, index[:, None].expand(b, c, n)).transpose(1, 2)
    return coords, cells, targets


def hw_pair(value, name: str, least: int = 1) -> tuple[int, int]:
    """A (height, width) argument (an int: square) as two ints >= ``least``, or one clear error."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, Sequence) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < least for v in value)):
        raise ValueError(f"{name} must be (height, width), whole numbers >= {least}, got {value!r}")
    return int(value[0]), int(value[1])


@configurable
class LIIF(nn.Module):
    """Features (B, in_channels, h, w) -> colours at any coordinates, or an image of any size.

    Args:
        in_channels: feature channels (before unfolding).
        out_channels: channels predicted per query (3: RGB).
        hidden: widths of the MLP's hidden layers (ReLU between; LIIF: 256 x 4).
        feat_unfold: concatenate the 3x3 neighbourhood of each feature (9x the channels).
        local_ensemble: blend the four surrounding features' predictions (else the nearest only).
        cell_decode: give the MLP the rendered pixel's size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 3,
        hidden: Sequence[int] = (256, 256, 256, 256),
        feat_unfold: bool = False,
        local_ensemble: bool = True,
        cell_decode: bool = True,
    ):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"channels and hidden widths must be positive, got {in_channels}, {out_channels}, "
                             f"{list(hidden)}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.feat_unfold, self.local_ensemble, self.cell_decode = feat_unfold, local_ensemble, cell_decode
        width = in_channels * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]  # in place: one allocation less per layer
            width = h
        layers.append(nn.Linear(width, out_channels))
        self.imnet = nn.Sequential(*layers)

    def _check_features(self, features: Tensor) -> None:
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(f"expected features (B, {self.in_channels}, h, w), got {tuple(features.shape)}")

    def _unfold(self, features: Tensor) -> Tensor:
        if not self.feat_unfold:
            return features
        b, c, h, w = features.shape
        return F.unfold(features, 3, padding=1).view(b, c * 9, h, w)

    def query(self, features: Tensor, coords: Tensor, cells: Tensor | None = None) -> Tensor:
        """Colours (B, N, out_channels) at ``coords`` (B, N, 2), (y, x) in [-1, 1], for
        pixels of size ``cells`` (B, N, 2) (needed with ``cell_decode``)."""
        self._check_features(features)
        if coords.ndim != 3 or coords.shape[0] != features.shape[0] or coords.shape[-1] != 2:
            raise ValueError(f"expected coords (B={features.shape[0]}, N, 2), got {tuple(coords.shape)}")
        if self.cell_decode and (cells is None or cells.shape != coords.shape):
            raise ValueError(f"cell_decode needs cells shaped like coords {tuple(coords.shape)}")
        return self._query(self._unfold(features), coords, cells)

    def _query(self, features: Tensor, coords: Tensor, cells: Tensor | None,
               window: tuple[int, int, int, int] | None = None) -> Tensor:
        """``window`` = (top, left, grid_h, grid_w): ``features`` are rows top..top+h and
        columns left..left+w of a grid_h x grid_w feature grid, and ``coords`` are relative
        to that whole grid (None: the features are the whole grid). Every index is computed
        on the whole grid, then shifted into the window: a query gets the same features,
        centres and offsets from any window that holds its neighbourhood."""
        b, c, h, w = features.shape
        top, left, grid_h, grid_w = window if window is not None else (0, 0, h, w)
        n = coords.shape[1]
        coords = coords.float()
        flat = features.flatten(2)
        scale = torch.tensor([grid_h, grid_w], device=coords.device, dtype=coords.dtype)
        radius = 1.0 / scale  # half a feature cell, in [-1, 1] units
        shifts = [(-1, -1), (-1, 1), (1, -1), (1, 1)] if self.local_ensemble else [(0, 0)]
        eps = _EPS_SHIFT if self.local_ensemble else 0.0
        preds, areas = [], []
        for vy, vx in shifts:
            shifted = coords + torch.tensor([vy, vx], device=coords.device, dtype=coords.dtype) * radius + eps
            shifted = shifted.clamp(-1 + 1e-6, 1 - 1e-6)
            # the feature cell holding the shifted point (grid_sample nearest, align_corners=False)
            iy = ((shifted[..., 0] + 1) * (grid_h / 2)).floor().long().clamp(0, grid_h - 1)
            ix = ((shifted[..., 1] + 1) * (grid_w / 2)).floor().long().clamp(0, grid_w - 1)
            if window is not None:
                self._check_window(iy - top, ix - left, window, h, w)
            index = (iy - top) * w + (ix - left)
            feature = flat.gather(2, index[:, None].expand(b, c, n)).transpose(1, 2)
            centre = torch.stack([_centres(iy, grid_h, coords.dtype), _centres(ix, grid_w, coords.dtype)], dim=-1)
            rel = (coords - centre) * scale
            inputs = [feature, rel.to(feature.dtype)]
            if self.cell_decode:
                inputs.append((cells.float() * scale).to(feature.dtype))
            preds.append(self.imnet(torch.cat(inputs, dim=-1)))
            areas.append((rel[..., 0].abs() + _EPS_AREA) * (rel[..., 1].abs() + _EPS_AREA))
        if not self.local_ensemble:
            return preds[0]
        total = areas[0] + areas[1] + areas[2] + areas[3]
        areas = [areas[3], areas[2], areas[1], areas[0]]  # each prediction weighted by its opposite's area
        return sum(p * (a / total).unsqueeze(-1).to(p.dtype) for p, a in zip(preds, areas))

    def _check_window(self, iy: Tensor, ix: Tensor, window: tuple[int, int, int, int], h: int, w: int) -> None:
        """The cells a window's queries read must lie in it; with ``feat_unfold`` also their
        3x3 neighbourhoods, except across the whole grid's own borders (zero padding there
        as in the whole grid; the window's other borders would pad with zeros wrongly)."""
        top, left, grid_h, grid_w = window
        k = 1 if self.feat_unfold else 0
        low_y, low_x = (k if top > 0 else 0), (k if left > 0 else 0)
        high_y = h - (k if top + h < grid_h else 0)
        high_x = w - (k if left + w < grid_w else 0)
        if iy.numel() and (int(iy.min()) < low_y or int(iy.max()) >= high_y
                           or int(ix.min()) < low_x or int(ix.max()) >= high_x):
            raise ValueError(f"the feature window ({h}x{w} cells at ({top}, {left}) of {grid_h}x{grid_w}) does not "
                             "hold the neighbourhood of every query: give it a margin of cells around the region")

    def forward(self, features: Tensor, size: int | Sequence[int], chunk: int | None = 16384) -> Tensor:
        """Render (B, out_channels, H, W) for ``size`` = (H, W) (or an int: square), querying
        the pixel centres ``chunk`` at a time over the whole batch (``None``: all at once),
        so that, without gradients, memory beyond the output is bounded by the chunk."""
        self._check_features(features)
        height, width = hw_pair(size, "output size")
        return self._render(features, None, (0, 0, height, width), (height, width), chunk)

    def render_region(self, features: Tensor, window: Sequence[int], grid_size: Sequence[int],
                      box: Sequence[int], size: int | Sequence[int], chunk: int | None = 16384) -> Tensor:
        """Pixels ``box`` = (top, left, bottom, right) of the (H, W) = ``size`` image that
        ``forward`` renders from a ``grid_size`` (gh, gw) feature grid, from a window of it
        alone: ``features`` (B, C, h, w) are its cells from ``window`` = (top, left) on.
        The same pixels as ``forward`` gives (to float rounding: the MLP runs on other
        batches) when the window holds the cells around the box: 1 cell of margin (2 with
        ``feat_unfold``) on every side that is not the grid's border; else a ValueError.
        For rendering an image tile by tile with memory bounded by the tile."""
        self._check_features(features)
        height, width = hw_pair(size, "output size")
        grid_h, grid_w = (int(v) for v in grid_size)
        top, left = (int(v) for v in window)
        if not (0 <= top and top + features.shape[-2] <= grid_h and 0 <= left and left + features.shape[-1] <= grid_w):
            raise ValueError(f"a {tuple(features.shape[-2:])} window at ({top}, {left}) does not fit in the "
                             f"{grid_h}x{grid_w} grid")
        y0, x0, y1, x1 = (int(v) for v in box)
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(f"box {tuple(box)} is not a non-empty region of the {height}x{width} image")
        return self._render(features, (top, left, grid_h, grid_w), (y0, x0, y1, x1), (height, width), chunk)

    def _render(self, features: Tensor, window: tuple[int, int, int, int] | None, box: tuple[int, int, int, int],
                size: tuple[int, int], chunk: int | None) -> Tensor:
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be positive or None, got {chunk}")
        (height, width), (y0, x0, y1, x1) = size, box
        b, rows, cols = features.shape[0], y1 - y0, x1 - x0
        unfolded = self._unfold(features)
        total = rows * cols
        step = total if chunk is None else max(1, chunk // max(b, 1))
        out = torch.empty(b, self.out_channels, total, device=features.device, dtype=features.dtype)
        for start in range(0, total, step):
            local = torch.arange(start, min(start + step, total), device=features.device)
            index = ((local // cols + y0) * width + local % cols + x0).expand(b, -1)
            coords, cells = pixel_queries(index, height, width)
            out[:, :, start : start + index.shape[1]] = self._query(unfolded, coords, cells, window).transpose(1, 2)
        return out.view(b, self.out_channels, rows, cols)

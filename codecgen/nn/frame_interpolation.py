"""Frame interpolation by optical flow: softmax splatting of both neighbours, weighted by brightness constancy.

VideoGen (Li et al. 2023) raises the key frames' frame rate by "flow-based temporal upsampling"; the
paper's text we could read names no method, so ours is softmax splatting (Niklaus & Liu, CVPR
2020, "Softmax Splatting for Video Frame Interpolation") without its synthesis network:

- each pixel q of frame a moves to q + t F_ab(q) at time t in (0, 1), and each pixel of frame b to
  q + (1 - t) F_ba(q); values (frames or latents) are splatted there bilinearly;
- where several pixels land on one spot, the one that agrees with the other frame wins: the
  weight is exp(-beta |a(q) - b(q + F_ab(q))|) (brightness constancy: a background point that the
  moving object covers in b disagrees, so the object is in front), times (1 - t) for a and t for b;
- a spot nobody lands on (rare: a hole in a diverging flow) takes the plain blend (1 - t) a + t b.

Occlusion needs no separate mask: a point hidden in b splats only from a (b has nothing there),
a point revealed in b only from b. ``interpolate_frames`` fills x2 / x4 / ... frame rates.
``backward_warp`` is the usual sampling of a frame at p + flow(p) (the flow network's loss, the
flicker metric).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BETA = 20.0  # sharpness of the brightness-constancy weight, per unit of mean absolute difference


def _check(x: Tensor, flow: Tensor) -> None:
    if x.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2 or flow.shape[0] != x.shape[0] \
            or flow.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"need x (N, C, H, W) and flow (N, 2, H, W) of the same N, H, W; got {tuple(x.shape)} and "
                         f"{tuple(flow.shape)}")


def backward_warp(x: Tensor, flow: Tensor) -> Tensor:
    """``x`` (N, C, H, W) sampled at p + flow(p) (flow in pixels, (dx, dy)); bilinear, borders repeated."""
    _check(x, flow)
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype) + 0.5,
                            torch.arange(w, device=x.device, dtype=x.dtype) + 0.5, indexing="ij")
    gx = (xs + flow[:, 0]) / w * 2 - 1
    gy = (ys + flow[:, 1]) / h * 2 - 1
    return F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=False)


def splat(values: Tensor, flow: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear forward splatting: each pixel's ``values`` (N, C, H, W) times ``weight`` (N, 1, H, W) added at
    p + flow(p); returns (the sums (N, C, H, W), the summed weights (N, 1, H, W)). Out-of-frame mass is dropped."""
    _check(values, flow)
    n, c, h, w = values.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=values.device, dtype=flow.dtype),
                            torch.arange(w, device=values.device, dtype=flow.dtype), indexing="ij")
    tx, ty = xs + flow[:, 0], ys + flow[:, 1]  # pixel-index coordinates of the targets
    x0, y0 = tx.floor(), ty.floor()
    num = values.new_zeros(n, c, h * w)
    den = values.new_zeros(n, 1, h * w)
    stacked = torch.cat([values * weight, weight], 1).flatten(2)  # (N, C + 1, HW)
    for dx in (0, 1):
        for dy in (0, 1):
            cx, cy = x0 + dx, y0 + dy
            bw = (1 - (tx - cx).abs()) * (1 - (ty - cy).abs())
            inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h) & (bw > 0)
            index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long().flatten(1)  # (N, HW)
            part = stacked * (bw * inside).flatten(1)[:, None]
            num.scatter_add_(2, index[:, None].expand(-1, c, -1), part[:, :c])
            den.scatter_add_(2, index[:, None], part[:, c:])
    return num.view(n, c, h, w), den.view(n, 1, h, w)


def interpolate(a: Tensor, b: Tensor, flow_ab: Tensor, flow_ba: Tensor, t: float,
                guide_a: Tensor | None = None, guide_b: Tensor | None = None, beta: float = BETA) -> Tensor:
    """The frame at time ``t`` in (0, 1) between ``a`` and ``b`` (N, C, H, W), from the flows a -> b and b -> a
    (N, 2, H, W) in pixels of this grid (see the module docstring). ``guide_a`` / ``guide_b`` (N, C', H, W) are
    what brightness constancy is measured on (default: ``a`` and ``b``; e.g. decoded frames when ``a`` and ``b``
    are latents)."""
    if not 0.0 < t < 1.0:
        raise ValueError(f"t must be strictly between 0 and 1, got {t}")
    _check(a, flow_ab)
    _check(b, flow_ba)
    guide_a = a if guide_a is None else guide_a
    guide_b = b if guide_b is None else guide_b
    agree_a = (guide_a - backward_warp(guide_b, flow_ab)).abs().mean(1, keepdim=True)
    agree_b = (guide_b - backward_warp(guide_a, flow_ba)).abs().mean(1, keepdim=True)
    # the weights' scale cancels in the ratio: subtract the smallest disagreement so exp() never underflows to 0/0
    low = torch.minimum(agree_a.amin((1, 2, 3), keepdim=True), agree_b.amin((1, 2, 3), keepdim=True))
    num_a, den_a = splat(a, flow_ab * t, (1 - t) * torch.exp(-beta * (agree_a - low)))
    num_b, den_b = splat(b, flow_ba * (1 - t), t * torch.exp(-beta * (agree_b - low)))
    den = den_a + den_b
    blend = (1 - t) * a + t * b
    mass = den > 1e-6
    return torch.where(mass, (num_a + num_b) / den.clamp_min(1e-6), blend)


def interpolate_frames(frames: Tensor, flows_forward: Tensor, flows_backward: Tensor, factor: int,
                       guides: Tensor | None = None) -> Tensor:
    """Key frames (K, C, H, W) with the flows between neighbours, forward (K-1, 2, H, W: k -> k+1) and backward
    (K-1, 2, H, W: k+1 -> k) -> (K - 1) x ``factor`` + 1 frames: each pair gets ``factor - 1`` frames between."""
    if factor < 1:
        raise ValueError(f"factor must be at least 1, got {factor}")
    k = frames.shape[0]
    if flows_forward.shape[0] != k - 1 or flows_backward.shape[0] != k - 1:
        raise ValueError(f"{k} key frames need {k - 1} flows each way, got {flows_forward.shape[0]} and "
                         f"{flows_backward.shape[0]}")
    out = [frames[:1]]
    for i in range(k - 1):
        a, b = frames[i : i + 1], frames[i + 1 : i + 2]
        ga = None if guides is None else guides[i : i + 1]
        gb = None if guides is None else guides[i + 1 : i + 2]
        for j in range(1, factor):
            out.append(interpolate(a, b, flows_forward[i : i + 1], flows_backward[i : i + 1], j / factor, ga, gb))
        out.append(b)
    return torch.cat(out)

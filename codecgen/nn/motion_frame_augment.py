"""Hallo2's augmentation of the motion frames, the paper's contribution to long-duration animation.

Hallo2 (Cui et al. 2024, Sec. 3.2) generates a long video clip by clip, each clip conditioned on
the last frames of the one before (the motion frames). Errors in those frames (blur, wrong
colour) are copied forward and grow: the video drifts. The paper's remedy is to corrupt the
motion frames in training so the model takes only motion from them and appearance from the
reference image: PATCH DROPPING (the motion frames' latents are cut into non-overlapping
``patch_size`` patches and a ``drop_rate`` share of them zeroed) and Gaussian noise. The
authors' released code does something else: PIXEL dropping (each latent position zeroed
with probability 0.25) outside the face box, and noise from the diffusion schedule at a
timestep below 50 (``add_noise``), at inference too. Both are here (``mode``: "patch" the
paper's, "pixel" the authors', "none"); so is their noise (``noise_timesteps``: the
scheduler's forward process at t in [0, noise_timesteps); 0 turns it off).

``keep_face``: no patch or position overlapping the face box is dropped (the authors keep
the face for pixel dropping; we do the same for patches, so the mouth motion the next clip
continues is never erased); the drop rate is the share of the droppable patches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MODES = ("patch", "pixel", "none")


def face_region(boxes: Tensor, height: int, width: int, image_size: float) -> Tensor:
    """(B, 4) face boxes in pixels of an ``image_size`` frame -> (B, height, width) bool masks
    on a latent grid (a cell is in when it overlaps the box)."""
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device) / image_size
    b = boxes * scale
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype)
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype)
    in_x = (xs[None] + 1 > b[:, 0:1]) & (xs[None] < b[:, 2:3])
    in_y = (ys[None] + 1 > b[:, 1:2]) & (ys[None] < b[:, 3:4])
    return in_y[:, :, None] & in_x[:, None, :]


def drop_mask(shape: tuple[int, int, int, int], mode: str, drop_rate: float, patch_size: int,
              keep: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """(B, M, H, W) float mask, 0 where a motion frame's latent is dropped, 1 where kept.

    ``mode`` "patch": whole ``patch_size`` patches (each frame its own draw); "pixel": single
    positions; "none": all ones. ``keep`` (B, H, W) bool: positions never dropped (a patch
    touching one is kept). ``drop_rate`` is the share dropped among the droppable units.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0.0 <= drop_rate <= 1.0:
        raise ValueError(f"drop_rate must be in [0, 1], got {drop_rate}")
    b, m, h, w = shape
    device = keep.device if keep is not None else None
    if mode == "none" or drop_rate == 0.0:
        return torch.ones(shape, device=device)
    unit = patch_size if mode == "patch" else 1
    if unit < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    gh, gw = math.ceil(h / unit), math.ceil(w / unit)
    dropped = torch.rand((b, m, gh, gw), generator=generator, device=device) < drop_rate
    if keep is not None:
        # A unit is protected when any of its positions is (max-pool of the keep mask over units).
        padded = F.pad(keep.float()[:, None], (0, gw * unit - w, 0, gh * unit - h))
        protected = F.max_pool2d(padded, unit)[:, 0] > 0  # (B, gh, gw)
        dropped &= ~protected[:, None]
    mask = (~dropped).float().repeat_interleave(unit, 2).repeat_interleave(unit, 3)
    return mask[..., :h, :w]


def augment_motion_frames(latents: Tensor, mode: str = "patch", drop_rate: float = 0.25, patch_size: int = 2,
                          noise_timesteps: int = 50, scheduler=None, face_boxes: Tensor | None = None,
                          image_size: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Motion-frame latents (B, M, C, H, W) dropped (``drop_mask``) and noised (the ``scheduler``'s
    ``add_noise`` at t uniform in [0, ``noise_timesteps``), one t per sample), as Hallo2 trains
    and samples with them. ``face_boxes`` (B, 4) in pixels of ``image_size`` frames: kept whole."""
    if latents.dim() != 5:
        raise ValueError(f"expected motion latents (B, M, C, H, W), got {tuple(latents.shape)}")
    b, m, c, h, w = latents.shape
    keep = None
    if face_boxes is not None:
        if image_size is None:
            raise ValueError("face_boxes need image_size (the frames' side in pixels)")
        keep = face_region(face_boxes.to(latents.device, torch.float32), h, w, image_size)
    mask = drop_mask((b, m, h, w), mode, drop_rate, patch_size, keep, generator).to(latents)
    out = latents * mask[:, :, None]
    if noise_timesteps > 0:
        if scheduler is None:
            raise ValueError("noise_timesteps > 0 needs the diffusion scheduler (its add_noise)")
        t = torch.randint(0, noise_timesteps, (b,), generator=generator, device=latents.device)
        noise = torch.randn(out.shape, generator=generator, device=latents.device, dtype=out.dtype)
        flat = scheduler.add_noise(out.flatten(1), noise.flatten(1), t)
        out = flat.view_as(out)
    return out

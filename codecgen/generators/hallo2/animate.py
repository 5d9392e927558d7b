"""Hallo2's long-video loop: a portrait and speech of any length -> frames, clip by clip.

As in the authors' inference (Hallo2, Cui et al. 2024): the speech is cut into clips of F
frames (25 fps); each clip is denoised with the speech of its frames plus ``audio_margin``
frames either side (zeros past the ends), and with the last M latents of the clip before as
its motion frames (the first clip takes the portrait's latent M times, as training samples at
a video's start do). The motion frames are corrupted as in training (the authors' inference
does so too): dropped (``augment``, the model's mode by default) and noised by the schedule at
t < ``noise_timesteps``. Memory stays that of one clip whatever the length: each clip's frames
are decoded and handed out before the next one starts. Seeds: clip k samples with
``seed + k``, so a run is repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from codecgen.generators.hallo2.animator import HOP, PortraitAnimator
from codecgen.nn.motion_frame_augment import MODES, augment_motion_frames


def clip_count(samples: int, frames_per_clip: int) -> tuple[int, int]:
    """(video frames, clips) for ``samples`` of 16 kHz speech."""
    frames = max(1, math.ceil(samples / HOP))
    return frames, math.ceil(frames / frames_per_clip)


def _speech_span(speech: Tensor, first: int, frames: int, margin: int) -> Tensor:
    """The speech of ``frames`` frames from ``first`` with ``margin`` frames either side, zero-padded."""
    start, stop = (first - margin) * HOP, (first + frames + margin) * HOP
    out = speech.new_zeros(stop - start)
    lo, hi = max(start, 0), min(stop, speech.shape[0])
    if hi > lo:
        out[lo - start: hi - start] = speech[lo:hi]
    return out


def to_uint8(frames: Tensor) -> Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def animate_portrait(model: PortraitAnimator, portrait: Tensor, face_box: Sequence[float], speech: Tensor | np.ndarray,
                     expressions: Sequence[int] | None = None, frames_per_clip: int | None = None, num_steps: int = 25,
                     guidance: float = 3.5, seed: int = 0, scheduler=None, augment: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Iterator[Tensor]:
    """Yield the video's frames clip by clip as (n, H, W, 3) uint8 tensors (n = F, the last one
    shorter), for ``portrait`` (3, H, W) in [-1, 1] (sides multiples of the VAE x UNet factor),
    its ``face_box`` (x0, y0, x1, y1 in pixels), mono 16 kHz ``speech`` and one expression label
    index per video frame (default: neutral); clips of ``frames_per_clip`` frames (default: the
    model's). ``augment``: how the motion frames are dropped before each clip ("patch",
    "pixel", "none"; default: the model's training mode, as the authors' inference does); the
    schedule's noise at t < ``noise_timesteps`` is always added. ``progress(clips_done, clips)``."""
    if model.stage != 2:
        raise ValueError("animation needs a stage-2 PortraitAnimator (motion modules and audio trained)")
    speech = torch.as_tensor(np.asarray(speech, dtype=np.float32))
    if speech.dim() != 1 or speech.numel() == 0:
        raise ValueError(f"speech must be a non-empty mono waveform, got shape {tuple(speech.shape)}")
    if not torch.isfinite(speech).all():
        raise ValueError("speech has NaN or infinite samples")
    if portrait.dim() != 3 or portrait.shape[0] != 3:
        raise ValueError(f"portrait must be (3, H, W), got {tuple(portrait.shape)}")
    frames_per_clip = frames_per_clip or model.frames_per_clip
    if not 1 <= frames_per_clip <= model.max_frames - model.motion_frames:
        raise ValueError(f"frames_per_clip must be in 1..{model.max_frames - model.motion_frames} (the motion modules "
                         f"see at most {model.max_frames} frames, {model.motion_frames} of them motion frames)")
    total, clips = clip_count(speech.shape[0], frames_per_clip)
    labels = torch.zeros(clips * frames_per_clip, dtype=torch.long)
    if expressions is not None:
        if len(expressions) != total:
            raise ValueError(f"{len(expressions)} expression labels for {total} frames")
        labels[:total] = torch.as_tensor(list(expressions), dtype=torch.long)
        labels[total:] = labels[total - 1]
    mode = model.motion_augment if augment is None else augment
    if mode not in MODES:
        raise ValueError(f"augment must be one of {MODES}, got {augment!r}")
    device = model.device
    pipe = model.pipeline(scheduler)
    reference = portrait[None].to(device, torch.float32)
    box = torch.tensor([list(face_box)], dtype=torch.float32, device=device)
    m, f = model.motion_frames, frames_per_clip
    motion = model.encode_frames(reference)[:, None].expand(-1, m, -1, -1, -1)
    for k in range(clips):
        generator = torch.Generator().manual_seed(seed + k)
        noisy_motion = augment_motion_frames(motion.cpu(), mode, model.drop_rate, model.patch_size,
                                             model.noise_timesteps, model.noise_schedule, box.cpu(),
                                             portrait.shape[-1], generator=generator).to(device)
        audio = _speech_span(speech, k * f, f, model.audio_margin)[None].to(device)
        latents = pipe(reference, box, noisy_motion, labels[k * f:(k + 1) * f][None].to(device), audio,
                       num_steps=num_steps, seed=seed + k, guidance=guidance).samples  # (1, C, F, h, w)
        latents = latents[0].transpose(0, 1)  # (F, C, h, w)
        if m:
            motion = latents[-m:][None]
        keep = min(f, total - k * f)
        yield to_uint8(model.decode_latents(latents[:keep]))
        if progress is not None:
            progress(k + 1, clips)

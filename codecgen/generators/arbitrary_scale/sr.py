"""Arbitrary-scale super-resolution with a latent diffusion model and an implicit neural
decoder (Kim & Kim, CVPR 2024, "Arbitrary-Scale Image Generation and Upsampling using
Latent Diffusion Model and Implicit Neural Decoder"; code: zhenshij/arbitrary-scale-diffusion,
``SRDiffusion`` with ``configs/latent-diffusion/ldm_sr_div2k_48_48x48x3_192.yaml`` and
``FinetuningSRDiffusion`` in ``ldm/models/diffusion/ddpm_finetuning.py``).

A low-resolution (LR) image is enlarged to the output size by nearest-neighbour, encoded
by the frozen first stage (``ImplicitAutoencoder``, f=4) and concatenated as channels to
the noisy latent (the UNet takes 2 x 3 channels, gives 3); the sampled latent is rendered
by the first stage's LIIF decoder at any size. The denoiser predicts the noise (the
authors' LDM: CompVis ``bsr_sr`` UNet, 1000 steps, betas 0.0015..0.0155 sqrt-spaced).

Two training stages, one class (``alignment``):
1. denoising: the plain ``Generator`` loss on (x0 = encode(HR), cond = encode(LR enlarged));
2. alignment fine-tuning, started from stage 1 (``init_from``): the clean latent the UNet
   implies, x0_hat, is pulled towards x0 and, decoded through the frozen (but
   differentiable) first stage at a random size, towards the HR crop resized to that size:
   ``alignment_weight * mean_b w(t_b) (L1(x0_hat, x0) + L1(D(x0_hat, size), HR@size))
   + denoising_weight * denoising loss``, w(t) = sqrt(a-bar / (1 - a-bar)) = sqrt(SNR).
   The paper trains the denoising term jointly (``denoising_weight: 1``); the released
   code has none (``denoising_weight: 0``). Only the UNet is optimised.

Geometry (a choice; the authors' code differs, see below): for an output of H x W the LR
is enlarged to H x W, replicate-padded on the bottom/right to the WORKING size (the next
multiple of 4 x the UNet's downsampling) and encoded, so the condition latent and the
sampled latent lie on the output's own grid (working size / 4), exactly where
x0 = encode(HR) lies in training. The sampled latent is rendered at the working size and
cropped to H x W, so a size that is no multiple of anything costs at most a few padded
rows and columns and no geometric distortion. The first stage's decoder always renders
at 4x its grid, the ratio it was trained at; the diffusion model synthesises detail at
the output's resolution, so its cost grows with the output's area. ``tile`` bounds the
memory of every network: the UNet denoises tile by tile, blended at every step
(``codecgen.generators.arbitrary_scale.tiling``); the condition is encoded, and the
sampled latent decoded to features and rendered by the LIIF, window by window: each
window is a core of at most ``tile`` latent cells plus ``tile_margin`` cells of context
on every side that is not the image's border, and keeps its core's cells (pixels). The
enlarged LR is never built whole: each window's pixels are gathered from the LR by
nearest-neighbour indices (the same pixels as enlarging the whole image and padding it).
Only the latents and the output are whole-image tensors. This is an approximation: the
first stage's middle-block self-attention and its GroupNorms see the window, not the
image (global in the untiled model, local to tile + margin here), so tiled output
differs from untiled by a little (the test measures it) and more with a smaller margin;
convolutions alone would match exactly once the margin covers their receptive field.
The LIIF part is exact: a core's pixels read only the 2 x 2 features around them, which
a margin of 1 cell holds (``LIIF.render_region``). ``tile=None``: every network runs on
the whole image at once (the LIIF still in chunks).

``diffusion=False`` skips sampling and renders the condition latent itself: the first
stage's reconstruction of the nearest-neighbour-enlarged LR, through its LIIF (the
"LIIF only" reference: what the implicit decoder does without the diffusion model; it
stays blocky, since the autoencoder reproduces what it is given).

Deviations from the authors' code, each for a reason:
- The authors enlarge the LR to a FIXED ``inp_size`` (192 = 4 x their 48-px LR), so the
  latent sits on the LR's grid and the LIIF does the rest of the scaling (x8: 8x the
  latent's grid, beyond its training). Here the latent sits on the output's grid (above).
  At the trained x4 the two agree.
- Training LR scales are drawn per sample, uniformly in ``lr_scale_range`` (the authors
  train x4 only: 48-px LR from 192-px crops; ``paper.yaml`` keeps ``[4, 4]``); LR images
  are antialiased bicubic downscales clamped to [-1, 1] (the authors: PIL bicubic, uint8).
- Validation conditions at the largest training scale, so its losses compare across runs.
- Alignment: the pixel term decodes at a random size drawn as the first stage draws its
  training sizes (``min_size``..``max_size``); the authors' ``gt_min = gt_max`` makes it
  always the crop's size. The loss is L1 with weight sqrt(SNR), as the paper; the authors'
  ``get_fine_loss`` follows the config's ``loss_type`` (their SR config says ``l2``, which
  makes it SNR x MSE). sqrt(SNR) is finite on this schedule (beta_start > 0): it peaks
  at ~25.8 at t = 0; ``alignment_max_weight`` clamps it (None: the raw weight). The
  authors compute LPIPS but leave it out of the loss: not computed here. The alignment
  stage trains without condition dropout.
- The authors start the UNet from CompVis's pretrained ``bsr_sr`` LDM; none is available
  here, so stage 1 trains from scratch. Optimiser: AdamW (the authors: Adam).
"""

from __future__ import annotations

from typing import ClassVar

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import SchedulerMixin
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.generators.arbitrary_scale.first_stage import ImplicitAutoencoder, resize
from codecgen.generators.arbitrary_scale.latent import LatentGenerator
from codecgen.nn.liif import hw_pair
from codecgen.generators.arbitrary_scale.tiling import first_stage_windows, tile_boxes, tiled
from codecgen.generators.base import GeneratorPipeline
from codecgen.nn.diffusion import copy_scheduler, diffusion_loss, predicted_x0, snr, training_target


@dataclass
class UpscaleOutput:
    images: Tensor  # (B, 3, H, W) in [0, 1]


def enlarge(images: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour enlargement to ``size`` (the authors' conditioning; pixel centres
    kept, ``nearest-exact``); an antialiased bicubic resize where ``size`` is smaller."""
    size = tuple(size)
    if size[0] >= images.shape[-2] and size[1] >= images.shape[-1]:
        return F.interpolate(images.float(), size=size, mode="nearest-exact")
    return resize(images, size)


def _nearest_sources(n_in: int, n_out: int, padded: int, device) -> Tensor:
    """For each of ``padded`` positions of an axis enlarged from ``n_in`` to ``n_out`` by
    ``enlarge`` (nearest-exact) and replicate-padded to ``padded``: the input position it
    copies. Computed by ``F.interpolate`` itself, so the arithmetic is exactly its own."""
    source = F.interpolate(torch.arange(n_in, dtype=torch.float32, device=device)[None, None], size=n_out,
                           mode="nearest-exact")[0, 0].long()
    return source[torch.arange(padded, device=device).clamp(max=n_out - 1)]


def condition_pixels(lr: Tensor, size: Sequence[int], multiple: int) -> Callable[[int, int, int, int], Tensor]:
    """LR images (B, 3, h, w) in [-1, 1] -> ``pixels(top, left, bottom, right)``: that region
    of the LR enlarged to ``size`` (``enlarge``) and replicate-padded on the bottom/right to
    the next multiples of ``multiple``. Enlarging, the region is gathered from the LR alone
    (memory: the region); where ``size`` shrinks a side (bicubic) the whole image is made once."""
    size = tuple(size)
    padded = (size[0] + -size[0] % multiple, size[1] + -size[1] % multiple)
    if size[0] >= lr.shape[-2] and size[1] >= lr.shape[-1]:
        lr = lr.float()
        rows, cols = (_nearest_sources(lr.shape[-2 + i], size[i], padded[i], lr.device) for i in range(2))
        return lambda top, left, bottom, right: lr[..., rows[top:bottom], :][..., cols[left:right]]
    image = enlarge(lr, size)
    if padded != size:
        image = F.pad(image, (0, padded[1] - size[1], 0, padded[0] - size[0]), mode="replicate")
    return lambda top, left, bottom, right: image[..., top:bottom, left:right]


def _images(image) -> Tensor:
    if not isinstance(image, Tensor) or not image.is_floating_point():
        raise ValueError("image must be a float tensor (3, h, w) or (B, 3, h, w) with values in [0, 1]")
    batch = image[None] if image.ndim == 3 else image
    if batch.ndim != 4 or batch.shape[1] != 3 or 0 in batch.shape:
        raise ValueError(f"image must be (3, h, w) or (B, 3, h, w), got shape {tuple(image.shape)}")
    if not torch.isfinite(batch).all() or batch.min() < 0 or batch.max() > 1:
        raise ValueError("image values must be finite and lie in [0, 1]")
    return batch


def output_size(height: int, width: int, scale=None, size=None) -> tuple[int, int]:
    """The output's (H, W): exactly one of ``scale`` (> 0: (round(h scale), round(w scale)))
    and ``size`` ((H, W), positive)."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < float(scale) < float("inf"):
            raise ValueError(f"scale must be a number > 0, got {scale!r}")
        out = (round(height * float(scale)), round(width * float(scale)))
        if min(out) < 1:
            raise ValueError(f"scale {scale} makes a {height}x{width} image smaller than 1x1")
        return out
    return hw_pair(size, "size")


class UpscalePipeline(GeneratorPipeline):
    """``pipe(image, scale=|size=, num_steps=, seed=, guidance=, diffusion=, tile=,
    tile_overlap=, tile_margin=, progress=) -> UpscaleOutput``. One call at a time per pipeline."""

    def __init__(self, model: ArbitraryScaleSR, scheduler):
        super().__init__(model, scheduler)
        self._run: dict | None = None

    @property
    def max_trained_scale(self) -> float:
        return self.model.max_trained_scale

    def __call__(self, image: Tensor, scale: float | None = None, size: Sequence[int] | None = None,
                 num_steps: int = 50, seed: int | None = None, guidance: float = 1.0, diffusion: bool = True,
                 tile: int | None = None, tile_overlap: int = 8, tile_margin: int = 8,
                 progress: Callable[[int, int], None] | None = None) -> UpscaleOutput:
        """``image`` (3, h, w) or (B, 3, h, w) in [0, 1] -> (B, 3, H, W) in [0, 1] for ``scale``
        or ``size``. ``tile``: the largest latent side the UNet sees at once (positions; a
        multiple of its downsampling, rounded down), neighbours sharing 2 x ``tile_overlap``;
        None: the whole latent. With ``tile``, the first stage's encoder and feature
        decoder also run window by window: cores of ``tile`` latent cells with
        ``tile_margin`` cells of context (>= 1; see the module docstring's Geometry).
        ``progress(done, total)`` counts UNet calls: steps x tiles.
        ``diffusion=False``: the first stage alone (see the module docstring)."""
        lr = _images(image)
        size = output_size(*lr.shape[-2:], scale=scale, size=size)
        for name, value, least in (("tile", tile, 1), ("tile_overlap", tile_overlap, 0),
                                   ("tile_margin", tile_margin, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                                      or value < least):
                raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
        model = self.model
        if not diffusion:
            with model.sampling():
                cond = model.condition(lr, size, tile, tile_margin)
                return UpscaleOutput(images=model.render(cond, size, tile, tile_margin))
        self._run = {"size": size, "tile": tile, "overlap": tile_overlap, "margin": tile_margin,
                     "progress": progress, "steps": num_steps}
        try:
            return super().__call__(lr, num_steps=num_steps, seed=seed, guidance=guidance)
        finally:
            self._run = None

    def prepare(self, lr: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        run, model = self._run, self.model
        cond = model.condition(lr, run["size"], run["tile"], run["margin"])
        h, w = cond.shape[-2:]
        tile = run["tile"] or max(h, w)
        boxes = tile_boxes(h, w, tile, run["overlap"] if run["tile"] else 0, model.unet_factor)
        scheduler = copy_scheduler(self.scheduler)
        scheduler.set_timesteps(int(run["steps"]))
        total, done = len(scheduler.timesteps) * len(boxes), [0]

        def on_tile():
            done[0] += 1
            if run["progress"] is not None:
                run["progress"](done[0], total)

        run["denoise"] = tiled(model.denoise, boxes, on_tile)
        return cond, (cond.shape[0], model.z_channels, h, w)

    def denoise(self, x_t: Tensor, t: Tensor, cond) -> Tensor:
        return self._run["denoise"](x_t, t, cond)

    def finish(self, latents: Tensor) -> UpscaleOutput:
        run = self._run
        return UpscaleOutput(images=self.model.render(latents, run["size"], run["tile"], run["margin"]))


@configurable
class ArbitraryScaleSR(LatentGenerator):
    """Latent diffusion SR at any scale (see the module docstring).

    Args:
        unet: ``diffusers.UNet2DModel`` taking 2 x z channels (noisy latent + condition),
            giving z (paper: ch 160, mult [1, 2, 2, 4], attention at 8x downsampling,
            32-d heads).
        scheduler: a diffusers scheduler (paper: ``DDPMScheduler``, 1000 steps,
            ``scaled_linear`` 0.0015..0.0155, epsilon, no clipping).
        first_stage: a trained ``ImplicitAutoencoder`` (its weights: ``first_stage_ckpt``
            when training from scratch); frozen.
        first_stage_ckpt: a first-stage .ckpt or export loaded at the start of a fresh
            run; not read otherwise (a trained model carries the first stage's weights).
        scale_by_std: scale latents to unit variance, measured on the first batch (LDM).
        lr_scale_range: (min, max) LR downscaling factor drawn per training sample.
        alignment: train the alignment fine-tuning stage instead of plain denoising.
        denoising_weight, alignment_weight: the alignment stage's two terms.
        alignment_max_weight: clamp of sqrt(SNR) in the alignment term; None: unclamped.
        init_from: a trained ArbitraryScaleSR (.ckpt or export) whose inference weights
            (EMA) a fresh run starts from (the alignment stage).
        **kwargs: ``Generator``'s (prediction_type, min_snr_gamma, lr, ema_decay, ...).
    """

    task: ClassVar[str] = "upscale"  # infer.py's command for it (codecgen.cli.generate)

    pipeline_class = UpscalePipeline

    def __init__(self, unet: nn.Module, scheduler: SchedulerMixin, first_stage: ImplicitAutoencoder,
                 first_stage_ckpt: str | None = None, scale_by_std: bool = True,
                 lr_scale_range: tuple[float, float] = (1.0, 4.0), alignment: bool = False,
                 denoising_weight: float = 1.0, alignment_weight: float = 1.0,
                 alignment_max_weight: float | None = None, init_from: str | None = None, **kwargs):
        super().__init__(unet, scheduler, first_stage, first_stage_ckpt, scale_by_std, **kwargs)
        self._check_unet_channels(2 * self.z_channels)
        low, high = (float(s) for s in lr_scale_range)
        if not 1.0 <= low <= high:
            raise ValueError(f"lr_scale_range must be (min, max) with 1 <= min <= max, got {list(lr_scale_range)}")
        if denoising_weight < 0 or alignment_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got {denoising_weight}, {alignment_weight}")
        if alignment_max_weight is not None and alignment_max_weight <= 0:
            raise ValueError(f"alignment_max_weight must be > 0 or None, got {alignment_max_weight}")
        self.lr_scale_range, self.alignment = (low, high), alignment
        self.denoising_weight, self.alignment_weight = denoising_weight, alignment_weight
        self.alignment_max_weight, self.init_from = alignment_max_weight, init_from

    @property
    def max_trained_scale(self) -> float:
        """The largest upscaling factor seen in training (callers may warn beyond it)."""
        return self.lr_scale_range[1]

    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "init_from")

    # -- conditioning and rendering -----------------------------------------------------
    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.unet(torch.cat([x_t, cond], 1), t).sample

    def condition(self, lr: Tensor, size: Sequence[int], tile: int | None = None, margin: int = 8) -> Tensor:
        """LR images (B, 3, h, w) in [0, 1] -> the condition latent for an output of ``size``:
        enlarged to ``size``, replicate-padded to the working size, encoded; with ``tile``,
        window by window (``tile`` latent cells + ``margin`` of context, the enlarged image
        never whole; see the module docstring)."""
        q, f = self.pixel_multiple, self.first_stage.downsampling_factor
        pixels = condition_pixels(lr.to(self.device) * 2 - 1, size, q)
        gh, gw = -(-size[0] // q) * q // f, -(-size[1] // q) * q // f
        if tile is None:
            return self.encode(pixels(0, 0, gh * f, gw * f))
        cond = None
        with torch.no_grad():
            for window in first_stage_windows(gh, gw, tile, margin):
                top, left, bottom, right = window
                z = self.encode(pixels(top * f, left * f, bottom * f, right * f))
                if cond is None:
                    cond = z.new_empty(*z.shape[:2], gh, gw)
                ct, cl, cb, cr = window.core
                cond[..., ct:cb, cl:cr] = z[..., ct - top : cb - top, cl - left : cr - left]
        return cond

    def render(self, latents: Tensor, size: Sequence[int], tile: int | None = None, margin: int = 8) -> Tensor:
        """Latents on a working grid -> images (B, 3, H, W) in [0, 1]: rendered at the
        working size, cropped to ``size``; with ``tile``, window by window into the output
        (the feature decoder on ``tile`` + ``margin`` cells, the LIIF on the core's pixels)."""
        f, (gh, gw) = self.first_stage.downsampling_factor, latents.shape[-2:]
        working = (gh * f, gw * f)
        if tile is None:
            return self.decode_latents(latents, working)[..., : size[0], : size[1]].contiguous()
        stage, latents = self.first_stage, latents.to(self.device)
        out = torch.empty(latents.shape[0], stage.liif.out_channels, *size, device=self.device)
        with torch.no_grad():
            for window in first_stage_windows(gh, gw, tile, margin):
                top, left, bottom, right = window
                ct, cl, cb, cr = window.core
                box = (ct * f, cl * f, min(cb * f, size[0]), min(cr * f, size[1]))
                if box[0] >= box[2] or box[1] >= box[3]:
                    continue  # a core wholly in the padding
                features = stage.features(latents[..., top:bottom, left:right] / self.latent_scale)
                pixels = stage.liif.render_region(features, (top, left), (gh, gw), box, working, chunk=stage.chunk)
                out[..., box[0] : box[2], box[1] : box[3]] = (pixels.clamp(-1, 1) + 1) / 2
        return out

    def degrade(self, hr: Tensor) -> Tensor:
        """HR crops (B, 3, H, W) in [-1, 1] -> their LR versions (per-sample scale in
        ``lr_scale_range`` in training, the largest in evaluation) enlarged back to H x W."""
        low, high = self.lr_scale_range
        n, (height, width) = hr.shape[0], hr.shape[-2:]
        scales = low + (high - low) * torch.rand(n) if self.training else torch.full((n,), high)
        out = []
        for image, s in zip(hr, scales.tolist()):
            small = resize(image[None], (max(1, round(height / s)), max(1, round(width / s)))).clamp(-1, 1)
            out.append(enlarge(small, (height, width)))
        return torch.cat(out)

    def latents_and_condition(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        self._check_crops(batch)
        with torch.no_grad():
            return self.encode(batch), self.encode(self.degrade(batch))

    # -- alignment fine-tuning ----------------------------------------------------------
    def alignment_loss(self, hr: Tensor, x0: Tensor, cond: Tensor, noise: Tensor, t: Tensor,
                       size: Sequence[int]) -> tuple[Tensor, dict[str, Tensor]]:
        """The alignment stage's loss and its parts (see the module docstring)."""
        schedule = self.noise_schedule
        x_t = schedule.add_noise(x0, noise, t)
        output = self.denoise(x_t, t, cond)
        x0_hat = predicted_x0(schedule, x_t, output, t, self.prediction_type)
        weight = snr(schedule, t).sqrt()
        if self.alignment_max_weight is not None:
            weight = weight.clamp(max=self.alignment_max_weight)
        latent = (x0_hat.float() - x0.float()).abs().flatten(1).mean(1)
        pixel = (self.decode(x0_hat, tuple(size)).float() - resize(hr, tuple(size))).abs().flatten(1).mean(1)
        align = (weight * (latent + pixel)).mean()
        loss = self.alignment_weight * align
        parts = {"align": align, "align_latent": latent.mean(), "align_pixel": pixel.mean()}
        if self.denoising_weight > 0:
            target = training_target(schedule, x0, noise, t, self.prediction_type)
            parts["denoise"] = diffusion_loss(output, target, t, schedule, self.min_snr_gamma, self.prediction_type)
            loss = loss + self.denoising_weight * parts["denoise"]
        return loss, {k: v.detach() for k, v in parts.items()}

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        if not self.alignment:
            return super().training_step(batch, batch_idx)
        x0, cond = self.latents_and_condition(batch)
        n = x0.shape[0]
        t = self._timesteps(n).to(x0.device)
        size = self.first_stage._target_size(*batch.shape[-2:])  # as the first stage trained
        loss, parts = self.alignment_loss(batch, x0, cond, torch.randn_like(x0), t, size)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=n)
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """``Generator``'s losses; in the alignment stage also ``val/align`` (the stage's
        loss at fixed draws, decoded at the crop's size)."""
        super().validation_step(batch, batch_idx)
        if self.alignment:
            x0, cond = self.latents_and_condition(batch)
            noise, t = self.validation_draws(x0, batch_idx)
            loss, _ = self.alignment_loss(batch, x0, cond, noise, t, tuple(batch.shape[-2:]))
            self.log("val/align", loss, batch_size=x0.shape[0], sync_dist=True)

    def load_initial_weights(self) -> bool:
        if not self.init_from:
            return False
        from codecgen import hub

        # the weights it samples with (its EMA); this run's EMA starts from them
        hub.load_model_weights(self, self.init_from, map_location=self.device)
        return True

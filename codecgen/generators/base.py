"""The Generator contract: a denoising-diffusion model (DDPM, Ho et al. 2020) that every
codecgen generator trains, samples and exports the same way.

A ``Generator`` is a ``codecgen.module.Module`` built around an injected diffusers denoiser
(``unet``) and scheduler. A subclass says only how a batch becomes a clean latent and a
condition (``latents_and_condition``) and how the denoiser is called (``denoise``), which
fits concatenation conditioning (super-resolution: the low-resolution latent as extra
channels) and cross-attention conditioning alike. The base provides:
- training: uniform timesteps, the target of the prediction type and the (min-SNR
  weighted) loss from ``codecgen.nn.diffusion``, condition dropout for classifier-free
  guidance (``drop_condition``, zeroing by default), AdamW;
- validation: the same loss at timesteps and noise fixed per batch, so curves compare;
- an EMA of the denoiser's weights (``codecgen.nn.ema``) held in the state dict (so a
  checkpoint resumes it exactly), sampled with, and exported under the live weights' names:
  ``codecgen.load`` of an export samples with the EMA weights;
- ``pipeline(scheduler=None)``: a plain object (no Lightning) that samples,
  ``pipe(condition, num_steps=, seed=, guidance=, progress=) -> GeneratorOutput``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from diffusers import SchedulerMixin
from torch import Tensor

from codecgen.module import Module
from codecgen.nn.diffusion import (batch_size_of, check_prediction_type, diffusion_loss, make_scheduler, sample,
                                   training_target, zero_condition)
from codecgen.nn.ema import EMA

VALIDATION_SEED = 0


@dataclass
class GeneratorOutput:
    samples: Tensor  # (B, C, ...) in the denoiser's space (latents for a latent model)


def check_num_steps(num_steps: int, scheduler) -> None:
    """Sampling steps must be a whole number in 1..the schedule's training timesteps."""
    limit = scheduler.config.num_train_timesteps
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or not 1 <= num_steps <= limit:
        raise ValueError(f"num_steps must be a whole number from 1 to {limit} (the training timesteps), "
                         f"got {num_steps!r}")


class GeneratorPipeline:
    """Sampling with a Generator. A subclass turns its inputs into a condition and the shape
    to sample (``prepare``) and the sampled latents into its output (``finish``)."""

    def __init__(self, model: Generator, scheduler):
        self.model, self.scheduler = model, scheduler

    def prepare(self, condition: Any = None, batch_size: int = 1) -> tuple[Any, tuple[int, ...]]:
        """``condition`` in the denoiser's format (its batch size wins) or None."""
        return condition, self.model.sample_shape(batch_size_of(condition) or batch_size)

    def finish(self, latents: Tensor) -> GeneratorOutput:
        return GeneratorOutput(samples=latents)

    def denoise(self, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        """What the sampling loop calls: the model's ``denoise`` (a subclass may tile it)."""
        return self.model.denoise(x_t, t, cond)

    def __call__(self, *inputs, num_steps: int = 50, seed: int | None = None, guidance: float = 1.0,
                 progress: Callable[[int, int], None] | None = None, latents: Tensor | None = None,
                 **kwargs) -> GeneratorOutput:
        """``seed`` fixes the output (initial noise and stochastic steps); ``guidance`` is the
        classifier-free guidance scale (1: none); ``progress(steps_done, total)``."""
        model = self.model
        check_num_steps(num_steps, self.scheduler)
        with model.sampling():
            cond, shape = self.prepare(*inputs, **kwargs)
            if guidance != 1.0 and cond is None:
                raise ValueError("guidance needs a condition to guide towards")
            uncond = model.unconditional(cond) if guidance != 1.0 else None
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            latents = sample(self.denoise, self.scheduler, shape, num_steps, cond=cond, uncond=uncond,
                             guidance=guidance, generator=generator, latents=latents, progress=progress,
                             device=model.device, dtype=model.dtype)
            return self.finish(latents)


class Generator(Module):
    modality: ClassVar[str] = "image"
    inference_modules: ClassVar[tuple[str, ...]] = ("unet",)
    pipeline_class: ClassVar[type[GeneratorPipeline]] = GeneratorPipeline

    def __init__(self, unet: torch.nn.Module, scheduler: SchedulerMixin, prediction_type: str | None = None,
                 min_snr_gamma: float | None = None, lr: float = 1e-4, ema_decay: float | None = 0.999,
                 ema_start_step: int = 0, condition_dropout: float = 0.0):
        """
        Args:
            unet: the denoiser (a diffusers model, e.g. ``diffusers.UNet2DModel``).
            scheduler: the diffusers scheduler the model samples with by default; training
                uses its noise schedule (``num_train_timesteps``, betas).
            prediction_type: "epsilon", "v_prediction" or "sample"; default: the scheduler's.
            min_snr_gamma: min-SNR-gamma loss weighting (5 in the paper); None: plain MSE.
            lr: AdamW learning rate.
            ema_decay: decay of the weights' EMA (sampled with, exported); None: no EMA.
            ema_start_step: the EMA copies the live weights for this many optimiser steps.
            condition_dropout: probability of training a sample on the unconditional input.
        """
        super().__init__()
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {condition_dropout}")
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {min_snr_gamma}")
        self.prediction_type = check_prediction_type(prediction_type or scheduler.config.prediction_type)
        self.unet = unet
        self.scheduler = self._predicting(scheduler)
        # the training schedule as a DDPM scheduler: add_noise and get_velocity whatever samples
        self.noise_schedule = make_scheduler("ddpm", self.scheduler.config)
        self.min_snr_gamma, self.lr, self.condition_dropout = min_snr_gamma, lr, condition_dropout
        self.ema = None if ema_decay is None else EMA({"unet": unet}, ema_decay, ema_start_step)

    # -- what a subclass provides -----------------------------------------------------------
    def latents_and_condition(self, batch) -> tuple[Tensor, Any]:
        """A training batch as (clean latents x0 (B, C, ...), condition or None)."""
        raise NotImplementedError

    def denoise(self, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        """The denoiser's output (of ``prediction_type``) for noisy ``x_t`` at timesteps ``t`` (B,)."""
        raise NotImplementedError

    def drop_condition(self, cond: Any, mask: Tensor) -> Any:
        """``cond`` with the samples where ``mask`` (B,) is True made unconditional."""
        return zero_condition(cond, mask)

    def sample_shape(self, batch_size: int) -> tuple[int, ...]:
        """The shape ``pipeline`` samples: (B, out_channels, *sample_size) of a 2-D UNet."""
        size = self.unet.config.sample_size
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        return (batch_size, self.unet.config.out_channels, *size)

    def add_to_ema(self, name: str) -> None:
        """Average the trainable sub-module ``name`` too (a condition encoder); call after
        assigning it in the subclass's constructor."""
        if self.ema is not None:
            self.ema.add(name, getattr(self, name))

    # -- training -------------------------------------------------------------------------
    def denoising_loss(self, x0: Tensor, cond: Any, noise: Tensor, t: Tensor) -> Tensor:
        schedule = self.noise_schedule
        output = self.denoise(schedule.add_noise(x0, noise, t), t, cond)
        target = training_target(schedule, x0, noise, t, self.prediction_type)
        return diffusion_loss(output, target, t, schedule, self.min_snr_gamma, self.prediction_type)

    def _timesteps(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(0, self.noise_schedule.config.num_train_timesteps, (batch_size,), generator=generator)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x0, cond = self.latents_and_condition(batch)
        n = x0.shape[0]
        if self.condition_dropout > 0 and cond is not None:
            cond = self.drop_condition(cond, torch.rand(n, device=x0.device) < self.condition_dropout)
        noise = torch.randn_like(x0)
        loss = self.denoising_loss(x0, cond, noise, self._timesteps(n).to(x0.device))
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def validation_draws(self, x0: Tensor, batch_idx: int) -> tuple[Tensor, Tensor]:
        """Noise and timesteps for ``x0``, drawn from a seed fixed per validation batch."""
        generator = torch.Generator().manual_seed(VALIDATION_SEED + batch_idx)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        return noise, self._timesteps(x0.shape[0], generator).to(x0.device)

    def validation_step(self, batch, batch_idx: int) -> None:
        """The training loss at noise and timesteps drawn from a seed fixed per batch, with
        the live weights (``val/loss``) and the EMA ones (``val/loss_ema``)."""
        x0, cond = self.latents_and_condition(batch)
        noise, t = self.validation_draws(x0, batch_idx)
        self.log("val/loss", self.denoising_loss(x0, cond, noise, t), batch_size=x0.shape[0], sync_dist=True)
        if self.ema is not None:
            with self.ema.swapped_in(self._ema_live()):
                loss = self.denoising_loss(x0, cond, noise, t)
            self.log("val/loss_ema", loss, batch_size=x0.shape[0], sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr)

    # -- EMA ------------------------------------------------------------------------------
    def _ema_live(self) -> dict[str, torch.nn.Module]:
        return {name: getattr(self, name) for name in self.ema.averaged}

    def on_train_start(self) -> None:
        # a fresh run whose weights changed after construction (loaded from elsewhere)
        # averages from those weights; a resumed run keeps its EMA
        if self.ema is not None and self.ema.num_updates == 0:
            self.ema.reset(self._ema_live())

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self._ema_live())

    def inference_state_dict(self) -> dict[str, Tensor]:
        """The EMA weights under the live names: what is hashed and exported."""
        state = super().inference_state_dict()
        if self.ema is not None:
            state.update({k: v for k, v in self.ema.averaged_state(self._ema_live()).items() if k in state})
        return state

    def training_only_args(self) -> tuple[str, ...]:
        # an export holds the EMA weights as the model's own: it has no EMA of its own
        return (*super().training_only_args(), "ema_decay")

    # -- sampling -------------------------------------------------------------------------
    def unconditional(self, cond: Any) -> Any:
        """The unconditional input of classifier-free guidance for ``cond``."""
        return self.drop_condition(cond, torch.ones(batch_size_of(cond), dtype=torch.bool, device=self.device))

    @contextmanager
    def sampling(self):
        """Eval mode, no gradients, the EMA weights in place; all restored on exit."""
        was_training = self.training
        self.eval()
        swap = nullcontext() if self.ema is None else self.ema.swapped_in(self._ema_live())
        try:
            with torch.no_grad(), swap:
                yield
        finally:
            self.train(was_training)

    def _predicting(self, scheduler):
        """``scheduler`` set to this model's prediction type."""
        if scheduler.config.prediction_type == self.prediction_type:
            return scheduler
        return type(scheduler).from_config(scheduler.config, prediction_type=self.prediction_type)

    def pipeline(self, scheduler=None) -> GeneratorPipeline:
        """A sampler: ``scheduler`` None (the model's), a name ("ddpm", "ddim", "dpm") on the
        model's noise schedule, or a diffusers scheduler."""
        if scheduler is None:
            scheduler = self.scheduler
        elif isinstance(scheduler, str):
            scheduler = make_scheduler(scheduler, self.scheduler.config)
        return self.pipeline_class(self, self._predicting(scheduler))

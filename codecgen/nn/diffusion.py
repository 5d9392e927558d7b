"""Denoising-diffusion training targets, losses and one sampling loop over diffusers schedulers.

What diffusers does not provide as functions, for every codecgen generator:
- ``training_target``: what the denoiser learns to predict, for the three prediction types:
  the noise ("epsilon", DDPM: Ho et al. 2020, "Denoising Diffusion Probabilistic Models"),
  the velocity ("v_prediction", Salimans & Ho 2022, "Progressive Distillation for Fast
  Sampling of Diffusion Models") or the clean sample ("sample");
- ``diffusion_loss``: per-sample MSE with optional min-SNR-gamma weighting (Hang et al.
  2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy"), the weight applied
  to each sample before the batch mean;
- ``predicted_x0``: the clean sample a model output implies at its timestep;
- ``sample``: the reverse process with any diffusers scheduler (DDPM, DDIM, DPM-Solver++,
  ...) and classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion
  Guidance"), seeded end to end by one ``torch.Generator``;
- ``make_scheduler``: another scheduler type on the same training noise schedule.

The noise schedule is the scheduler's ``alphas_cumprod`` (a-bar): x_t = sqrt(a-bar) x0 +
sqrt(1 - a-bar) eps, SNR(t) = a-bar / (1 - a-bar). A condition (``cond``) is whatever the
denoiser takes: a tensor (channels to concatenate, tokens to cross-attend), a tuple, list
or dict of them, or None; its first dimension is the batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

# The names a user types (CLI, pipeline calls); specs name the diffusers class instead.
SCHEDULERS: dict[str, tuple[type, dict]] = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpm": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
}

Denoiser = Callable[[Tensor, Tensor, Any], Tensor]


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}; got {prediction_type!r}")
    return prediction_type


def make_scheduler(name: str, config, **overrides):
    """A fresh scheduler of the type ``name`` ("ddpm", "ddim", "dpm": DPM-Solver++ 2M) on
    the noise schedule of ``config`` (a scheduler or its ``.config``); ``overrides`` win."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    cls, defaults = SCHEDULERS[name]
    return cls.from_config(getattr(config, "config", config), **{**defaults, **overrides})


def copy_scheduler(scheduler):
    """A fresh instance with the same config: a scheduler keeps state (``set_timesteps``,
    a multistep solver's past outputs), so a shared one is never stepped."""
    return type(scheduler).from_config(scheduler.config)


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """A (B,) tensor shaped to broadcast over ``like`` (B, ...)."""
    return values.reshape(-1, *[1] * (like.dim() - 1))


def _alpha_bar(scheduler, timesteps: Tensor, like: Tensor) -> Tensor:
    alphas_cumprod = scheduler.alphas_cumprod.to(device=like.device, dtype=like.dtype)
    return _per_sample(alphas_cumprod[timesteps.to(like.device)], like)


def training_target(scheduler, x0: Tensor, noise: Tensor, timesteps: Tensor, prediction_type: str) -> Tensor:
    """What the denoiser should output for ``scheduler.add_noise(x0, noise, timesteps)``."""
    if check_prediction_type(prediction_type) == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)  # sqrt(a-bar) eps - sqrt(1 - a-bar) x0
    return x0


def predicted_x0(scheduler, x_t: Tensor, model_output: Tensor, timesteps: Tensor, prediction_type: str) -> Tensor:
    """The clean sample implied by ``model_output`` at ``timesteps`` (B,)."""
    if check_prediction_type(prediction_type) == "sample":
        return model_output
    alpha_bar = _alpha_bar(scheduler, timesteps, x_t)
    if prediction_type == "epsilon":
        return (x_t - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()
    return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * model_output


def snr(scheduler, timesteps: Tensor) -> Tensor:
    """SNR(t) = a-bar / (1 - a-bar) per timestep, float32 on the timesteps' device."""
    alpha_bar = scheduler.alphas_cumprod.to(device=timesteps.device, dtype=torch.float32)[timesteps]
    return alpha_bar / (1 - alpha_bar)


def min_snr_weight(scheduler, timesteps: Tensor, gamma: float, prediction_type: str) -> Tensor:
    """Per-sample loss weight of min-SNR-gamma (Hang et al. 2023), for the MSE of the given
    prediction type: min(SNR, g) on x0, min(SNR, g) / SNR on eps, min(SNR, g) / (SNR + 1) on v."""
    ratio = snr(scheduler, timesteps)
    clipped = ratio.clamp(max=gamma)
    if check_prediction_type(prediction_type) == "epsilon":
        # SNR = 0 (a zero-terminal-SNR schedule's last step): the limit of min(SNR, g) / SNR is 1
        return torch.where(ratio > 0, clipped / ratio.clamp(min=torch.finfo(ratio.dtype).tiny), torch.ones_like(ratio))
    if prediction_type == "v_prediction":
        return clipped / (ratio + 1)
    return clipped


def diffusion_loss(model_output: Tensor, target: Tensor, timesteps: Tensor, scheduler,
                   min_snr_gamma: float | None = None, prediction_type: str | None = None) -> Tensor:
    """Mean over the batch of each sample's MSE (mean over its non-batch dims), each sample
    weighted by min-SNR-gamma when ``min_snr_gamma`` is set. ``prediction_type`` defaults
    to the scheduler's."""
    per_sample = (model_output.float() - target.float()).pow(2).flatten(1).mean(1)
    if min_snr_gamma is not None:
        prediction_type = prediction_type or scheduler.config.prediction_type
        per_sample = per_sample * min_snr_weight(scheduler, timesteps.to(per_sample.device), min_snr_gamma,
                                                 prediction_type)
    return per_sample.mean()


# -- conditions -----------------------------------------------------------------------------
def map_condition(fn: Callable[..., Tensor], *conds):
    """``fn`` applied to the tensors of one or more conditions of the same structure."""
    first = conds[0]
    if first is None:
        return None
    if isinstance(first, Tensor):
        return fn(*conds)
    if isinstance(first, dict):
        return {k: map_condition(fn, *(c[k] for c in conds)) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(map_condition(fn, *parts) for parts in zip(*conds))
    raise TypeError(f"a condition is a tensor, a tuple, list or dict of them, or None; got {type(first).__name__}")


def zero_condition(cond, mask: Tensor):
    """``cond`` with the samples where ``mask`` (B,) is True set to zero: the unconditional
    input of classifier-free guidance, unless a model learns its own."""
    return map_condition(lambda c: c.masked_fill(_per_sample(mask.to(c.device), c), 0), cond)


def batch_size_of(cond) -> int | None:
    """The batch size of a condition (its first tensor's first dimension); None for no condition."""
    if cond is None or isinstance(cond, Tensor):
        return None if cond is None else cond.shape[0]
    for part in cond.values() if isinstance(cond, dict) else cond:
        size = batch_size_of(part)
        if size is not None:
            return size
    return None


# -- sampling -------------------------------------------------------------------------------
def sample(denoise: Denoiser, scheduler, shape: tuple[int, ...], num_steps: int, *, cond=None, uncond=None,
           guidance: float = 1.0, generator: torch.Generator | None = None, latents: Tensor | None = None,
           progress: Callable[[int, int], None] | None = None, device: torch.device | str | None = None,
           dtype: torch.dtype = torch.float32) -> Tensor:
    """Run the reverse process from noise to a sample of ``shape`` in ``num_steps`` steps.

    ``denoise(x_t, t, cond)`` returns the model output, with ``t`` a (B,) tensor. With
    ``guidance`` != 1 each step calls it once on the conditional and unconditional rows
    concatenated along the batch and combines them as ``u + guidance * (c - u)``; at 1 the
    unconditional pass is skipped. ``generator`` draws the initial noise and the stochastic
    steps' noise (DDPM, SDE solvers): a seeded generator makes the output reproducible.
    ``latents`` replaces the initial unit-variance noise. Both are scaled by the scheduler's
    ``init_noise_sigma``. ``progress(steps_done, total)`` is called after every step.
    ``scheduler`` itself is never stepped; a fresh copy is.
    """
    if guidance != 1.0 and uncond is None:
        raise ValueError("guidance != 1 needs an unconditional condition (uncond)")
    scheduler = copy_scheduler(scheduler)
    scheduler.set_timesteps(num_steps, device=device)
    if latents is None:
        latents = randn_tensor(tuple(shape), generator=generator, device=torch.device(device or "cpu"), dtype=dtype)
    else:
        latents = latents.to(device=device, dtype=dtype)
    latents = latents * scheduler.init_noise_sigma
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    both = map_condition(lambda c, u: torch.cat([c, u]), cond, uncond) if guidance != 1.0 else None
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        x_in = scheduler.scale_model_input(latents, t)
        if guidance == 1.0:
            output = denoise(x_in, t.expand(x_in.shape[0]), cond)
        else:
            conditional, unconditional = denoise(torch.cat([x_in, x_in]), t.expand(2 * x_in.shape[0]), both).chunk(2)
            output = unconditional + guidance * (conditional - unconditional)
        latents = scheduler.step(output, t, latents, return_dict=False, **step_kwargs)[0]
        if progress is not None:
            progress(i + 1, len(timesteps))
    return latents

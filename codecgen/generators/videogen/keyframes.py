"""VideoGen's reference-guided latent video diffusion: key frames from text + a reference image (Li et al. 2023,
"VideoGen: A Reference-Guided Latent Diffusion Approach for High Definition Text-to-Video Generation").

The paper conditions a cascaded latent video diffusion model on the text and on a reference image
(drawn by a text-to-image model at inference, the clip's FIRST ground-truth frame in training), so
that the video model spends its capacity on motion rather than on appearance; the cascade's
output is at a low frame rate and a flow-based temporal upsampling step raises it
(``codecgen.nn.frame_interpolation``). The paper's text we could read gives no sizes or wiring, so
these choices are ours:

- The denoiser is a diffusers ``UNet3DConditionModel`` (spatial convolutions and attention with
  temporal convolutions and attention after each; cross-attention to the text tokens of the shared
  ``TextEncoder``). It denoises F key-frame latents of our frozen ``FrameVAE``
  (``codecgen.generators.latent_space``), taken every ``stride``-th frame of a clip.
- The reference enters by concatenation: its latent is repeated on every frame as extra input
  channels, with one more channel that is 1 where a reference is given (so "no reference" is not
  the same input as a black one). ``in_channels`` = 2 x latent channels + 1.
- Classifier-free guidance over both conditions: ``condition_dropout`` drops text and reference
  together (the unconditional branch), and ``reference_dropout`` drops the reference alone, so the
  model also generates from text only (``--no-reference``) and guidance can push towards the text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import SchedulerMixin
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.generators.base import Generator, GeneratorOutput, GeneratorPipeline
from codecgen.generators.latent_space import FrameLatentSpace
from codecgen.nn.diffusion import zero_condition


class KeyFramePipeline(GeneratorPipeline):
    """``pipe(prompts, references=None, frames=None, num_steps=, seed=, guidance=, progress=) -> GeneratorOutput``
    with ``samples`` the key-frame latents (N, C, F, h, w). ``references``: images (N, 3, H, W) in [-1, 1]
    or None (generate from the text alone)."""

    def prepare(self, prompts: Sequence[str], references: Tensor | None = None,
                frames: int | None = None) -> tuple[dict, tuple[int, ...]]:
        model = self.model
        if isinstance(prompts, str):
            prompts = [prompts]
        n = len(prompts)
        ids = model.text_encoder.tokenize(list(prompts)).to(model.device)
        h = w = int(model.unet.config.sample_size)
        if references is None:
            ref = torch.zeros(n, model.latent_channels, h, w, device=model.device)
            present = torch.zeros(n, device=model.device)
        else:
            if references.dim() != 4 or references.shape[0] != n or references.shape[1] != 3:
                raise ValueError(f"references must be (N={n}, 3, H, W) images, got {tuple(references.shape)}")
            ref = model.encode_frames(references.to(model.device))
            present = torch.ones(n, device=model.device)
            h, w = ref.shape[-2:]
        frames = model.frames if frames is None else frames
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        return {"ids": ids, "reference": ref, "present": present}, (n, model.latent_channels, frames, h, w)


@configurable
class ReferenceVideoDiffusion(FrameLatentSpace, Generator):
    """Caption + reference image -> key-frame latents (see the module docstring).

    Args:
        unet: ``diffusers.UNet3DConditionModel`` with 2 x latent + 1 channels in, the latent channels out,
            ``cross_attention_dim`` the text encoder's width; ``sample_size`` the latent side.
        scheduler, vae, text_encoder, vae_ckpt: as ``TextToImage``.
        frames: key frames the model makes by default (a training batch's clips set their own).
        reference_dropout: probability of training a sample without its reference (the text kept).
        init_text_from: a trained ``TextToImage`` whose text encoder a fresh run starts from.
        prediction_type, min_snr_gamma, lr, ema_decay, ema_start_step, condition_dropout: as ``Generator``.
    """

    modality = "video"
    frozen_modules = ("vae",)
    inference_modules = ("unet", "text_encoder", "vae")
    pipeline_class = KeyFramePipeline

    def __init__(self, unet: nn.Module, scheduler: SchedulerMixin, vae: nn.Module, text_encoder: nn.Module,
                 frames: int = 8, reference_dropout: float = 0.1, vae_ckpt: str | None = None,
                 init_text_from: str | None = None, prediction_type: str | None = None,
                 min_snr_gamma: float | None = None, lr: float = 1e-4, ema_decay: float | None = 0.999,
                 ema_start_step: int = 0, condition_dropout: float = 0.1):
        super().__init__(unet, scheduler, prediction_type, min_snr_gamma, lr, ema_decay, ema_start_step,
                         condition_dropout)
        if not 0.0 <= reference_dropout < 1.0 or frames < 1:
            raise ValueError(f"reference_dropout must be in [0, 1) and frames >= 1; got {reference_dropout}, {frames}")
        self.text_encoder = text_encoder
        self.add_to_ema("text_encoder")
        self.init_latent_space(vae, vae_ckpt)
        self.frames, self.reference_dropout, self.init_text_from = frames, reference_dropout, init_text_from
        c = self.latent_channels
        if unet.config.in_channels != 2 * c + 1 or unet.config.out_channels != c:
            raise ValueError(f"the UNet must take 2 x {c} + 1 = {2 * c + 1} channels (noisy latents, reference, "
                             f"its flag) and give {c}")
        if unet.config.cross_attention_dim != text_encoder.dim:
            raise ValueError(f"the UNet's cross_attention_dim ({unet.config.cross_attention_dim}) must be the text "
                             f"encoder's width ({text_encoder.dim})")

    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "vae_ckpt", "init_text_from")

    @property
    def frame_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_factor

    def sample_shape(self, batch_size: int) -> tuple[int, ...]:
        side = int(self.unet.config.sample_size)
        return (batch_size, self.latent_channels, self.frames, side, side)

    def latents_and_condition(self, batch: dict) -> tuple[Tensor, dict]:
        """Key-frame latents (B, C, F, h, w); the condition: caption word ids, the first frame's latent as the
        reference (dropped with ``reference_dropout`` in training) and its flag."""
        frames = batch["frames"]  # (B, F, 3, H, W)
        b, f = frames.shape[:2]
        x0 = self.training_latents(frames.flatten(0, 1)).unflatten(0, (b, f))  # (B, F, C, h, w)
        present = torch.ones(b, device=frames.device)
        cond = {"ids": self.text_encoder.tokenize(batch["caption"]).to(frames.device), "reference": x0[:, 0],
                "present": present}
        if self.training and self.reference_dropout > 0:
            drop = torch.rand(b, device=frames.device) < self.reference_dropout
            cond["reference"] = zero_condition(cond["reference"], drop)
            cond["present"] = zero_condition(present, drop)
        return x0.transpose(1, 2), cond

    def denoise(self, x_t: Tensor, t: Tensor, cond: dict) -> Tensor:
        b, _, f, h, w = x_t.shape
        ref = cond["reference"][:, :, None].expand(-1, -1, f, -1, -1)
        flag = cond["present"].to(x_t.dtype).view(b, 1, 1, 1, 1).expand(-1, 1, f, h, w)
        x_in = torch.cat([x_t, ref.to(x_t.dtype), flag], 1)
        return self.unet(x_in, t, encoder_hidden_states=self.text_encoder(cond["ids"])).sample

    def on_fit_start(self) -> None:
        from codecgen import hub
        from codecgen.generators.videogen.text_to_image import TextToImage

        self._weights_hash = None
        if self.trainer.ckpt_path is not None:
            return
        self.start_latent_space()
        if self.init_text_from:
            hub.load_stage_weights(self.text_encoder, self.init_text_from, TextToImage, "init_text_from", self.device,
                                   part="text_encoder")  # the EMA starts from it (Generator.on_train_start)

    def decode_frames(self, latents: Tensor) -> Tensor:
        """Key-frame latents (N, C, F, h, w) -> frames (N, F, 3, H, W) in [-1, 1] by the image decoder."""
        n, _, f = latents.shape[:3]
        return self.decode_latents(latents.transpose(1, 2).flatten(0, 1)).unflatten(0, (n, f))

    def generate(self, prompts: Sequence[str], references: Tensor | None = None, frames: int | None = None,
                 num_steps: int = 25, guidance: float = 3.0, seed: int | None = None, scheduler: str | None = None,
                 progress=None) -> GeneratorOutput:
        """Key-frame latents (N, C, F, h, w) for the prompts (and references: images in [-1, 1], or None)."""
        return self.pipeline(scheduler)(list(prompts), references, frames, num_steps=num_steps, guidance=guidance,
                                        seed=seed, progress=progress)

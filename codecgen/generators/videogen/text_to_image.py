"""VideoGen's reference image: text-to-image latent diffusion (Li et al. 2023, "VideoGen: A Reference-Guided
Latent Diffusion Approach for High Definition Text-to-Video Generation").

VideoGen takes an off-the-shelf text-to-image model (Stable Diffusion) to draw a reference image
from the prompt. None can be downloaded here, so this stage is a small Stable Diffusion trained on
the captioned-video corpus: a diffusers ``UNet2DConditionModel`` over the latents of our frozen
``FrameVAE`` (``codecgen.generators.latent_space``), cross-attending to the tokens of the shared
``TextEncoder`` (trained with it, in place of CLIP's). The training image of a clip is its FIRST
frame: the frame the video model is trained to follow as its reference, so the two stages agree
on what a reference looks like. Classifier-free guidance: the caption is dropped
(``condition_dropout``) to the empty text, whose tokens are zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

from diffusers import SchedulerMixin
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.generators.base import Generator, GeneratorOutput, GeneratorPipeline
from codecgen.generators.latent_space import FrameLatentSpace


class TextToImagePipeline(GeneratorPipeline):
    """``pipe(prompts, num_steps=, seed=, guidance=, progress=) -> GeneratorOutput`` whose ``samples`` are
    images (N, 3, H, W) in [-1, 1]."""

    def prepare(self, prompts: Sequence[str]) -> tuple[Tensor, tuple[int, ...]]:
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = self.model.text_encoder.tokenize(list(prompts)).to(self.model.device)
        return ids, self.model.sample_shape(len(prompts))

    def finish(self, latents: Tensor) -> GeneratorOutput:
        return GeneratorOutput(samples=self.model.decode_latents(latents))


@configurable
class TextToImage(FrameLatentSpace, Generator):
    """Caption -> image by latent diffusion (see the module docstring).

    Args:
        unet: ``diffusers.UNet2DConditionModel`` with the VAE's latent channels in and out and
            ``cross_attention_dim`` the text encoder's width; ``sample_size`` the latent side.
        scheduler: its diffusers scheduler (training noise schedule, default sampler).
        vae: ``diffusers.AutoencoderKL`` as a ``FrameVAE`` trains it (frozen here).
        text_encoder: ``codecgen.nn.text_encoder.TextEncoder`` (trained here).
        vae_ckpt: the ``FrameVAE`` run or export a fresh run takes its VAE from.
        prediction_type, min_snr_gamma, lr, ema_decay, ema_start_step, condition_dropout: as ``Generator``.
    """

    frozen_modules = ("vae",)
    inference_modules = ("unet", "text_encoder", "vae")
    pipeline_class = TextToImagePipeline

    def __init__(self, unet: nn.Module, scheduler: SchedulerMixin, vae: nn.Module, text_encoder: nn.Module,
                 vae_ckpt: str | None = None, prediction_type: str | None = None, min_snr_gamma: float | None = None,
                 lr: float = 1e-4, ema_decay: float | None = 0.999, ema_start_step: int = 0,
                 condition_dropout: float = 0.1):
        super().__init__(unet, scheduler, prediction_type, min_snr_gamma, lr, ema_decay, ema_start_step,
                         condition_dropout)
        self.text_encoder = text_encoder
        self.add_to_ema("text_encoder")
        self.init_latent_space(vae, vae_ckpt)
        if unet.config.in_channels != self.latent_channels or unet.config.out_channels != self.latent_channels:
            raise ValueError(f"the UNet must take and give the VAE's {self.latent_channels} latent channels")
        if unet.config.cross_attention_dim != text_encoder.dim:
            raise ValueError(f"the UNet's cross_attention_dim ({unet.config.cross_attention_dim}) must be the text "
                             f"encoder's width ({text_encoder.dim})")

    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "vae_ckpt")

    @property
    def image_size(self) -> int:
        """The side of the square images the model draws."""
        return int(self.unet.config.sample_size) * self.vae_factor

    def latents_and_condition(self, batch: dict) -> tuple[Tensor, Tensor]:
        """The clip's first frame's latent, and its caption's word ids (the denoiser encodes them)."""
        first = batch["frames"][:, 0]
        ids = self.text_encoder.tokenize(batch["caption"]).to(first.device)
        return self.training_latents(first), ids

    def denoise(self, x_t: Tensor, t: Tensor, ids: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=self.text_encoder(ids)).sample

    def on_fit_start(self) -> None:
        self._weights_hash = None
        if self.trainer.ckpt_path is None:
            self.start_latent_space()

    def generate(self, prompts: Sequence[str], num_steps: int = 25, guidance: float = 3.0, seed: int | None = None,
                 scheduler: str | None = None, progress=None) -> Tensor:
        """Images (N, 3, H, W) in [-1, 1] for the prompts."""
        return self.pipeline(scheduler)(list(prompts), num_steps=num_steps, guidance=guidance, seed=seed,
                                        progress=progress).samples


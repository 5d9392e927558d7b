"""Hallo2's animation model: a portrait and speech -> the latents of a talking-head clip.

Hallo2 (Cui et al. 2024; code: fudan-generative-vision/hallo2, built on Hallo) denoises the
VAE latents of F frames at once with an AnimateDiff-style UNet (spatial layers of an image UNet
plus temporal "motion modules") conditioned on:
- the reference portrait and the motion frames (the last frames of the previous clip), both
  encoded at t = 0 by the reference net, a second image UNet: its spatial self-attention inputs
  join the denoiser's keys and values (``codecgen.nn.reference_attention``), and the motion
  frames' features are prepended on the time axis of the motion modules
  (``codecgen.nn.motion_frame_context``); the motion frames' latents are corrupted in training
  (``codecgen.nn.motion_frame_augment``: the paper's patch dropping + the authors' noise);
- the speech: wav2vec features at the frame rate, +-2-frame windows, ``AudioProj`` to 32 tokens
  a frame, three masked cross-attentions after every spatial transformer
  (``codecgen.nn.audio_conditioning``);
- the identity: a face embedding of the portrait -> 4 cross-attention tokens (``IdentityProj``),
  which both UNets cross-attend to;
- the face region: a mask encoded by the face locator and added after ``conv_in``;
- the text expression label of each frame (the paper's, unreleased): a phrase encoded into
  tokens placed after the identity tokens in the denoiser's cross-attention
  (``codecgen.nn.expression_text``); the reference net sees the identity tokens alone.

Training, as the authors: stage 1 (``stage=1``) on single frames (no motion modules, no audio)
trains the reference net, the denoiser's spatial layers, the face locator, the identity
projection and the label encoder; stage 2 (``stage=2``, started from stage 1 with
``init_from``) trains only the motion modules and the audio parts on clips of F frames with M
motion frames. The frozen stages (VAE, audio encoder, face embedder) are trained here first
(``frame_vae``, ``audio_encoder``, ``identity``) and seed a fresh run (``vae_ckpt``,
``audio_ckpt``, ``identity_ckpt``); their weights are part of this model's state.

Schedule: one DDIM schedule with zero terminal SNR, trailing spacing and v-prediction in training
AND sampling (the authors train with scaled-linear betas and sample with linear ones); CFG
drops the audio, identity and label tokens (``condition_dropout``; the authors' 0.05), and the
reference is zeroed for ``reference_dropout`` of the samples.

Our deviations, each because of what exists here:
- Latents are the VAE posterior's mean times ``latent_scale`` (1 / std, measured on the first
  batch of a fresh stage-1 run: LDM's scale_by_std) instead of SD's fixed 0.18215: our VAE is
  trained here.
- Face, lip and locator masks come from the reference's face box (the face: the box grown by
  Hallo's expand ratio 1.2; the lips: a fixed part of the box, ``LIP_REGION``), in training and
  in inference alike; Hallo takes them from MediaPipe landmarks, which do not exist for a user's
  portrait here.
- The motion frames of a generated clip are the previous clip's latents themselves (the
  authors decode them and encode the pixels again).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from diffusers import UNetMotionModel
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.datamodules.portrait_clips import CLIP_FPS, CLIP_SAMPLE_RATE
from codecgen.generators.base import Generator, GeneratorPipeline
from codecgen.generators.latent_space import FrameLatentSpace
from codecgen.kl_autoencoder import autoencoder_factor
from codecgen.nn.audio_conditioning import audio_windows, install_audio_attention
from codecgen.nn.expression_text import EXPRESSIONS
from codecgen.nn.face_crop import crop_face
from codecgen.nn.face_locator import attach_face_locator
from codecgen.nn.motion_frame_augment import MODES, augment_motion_frames
from codecgen.nn.motion_frame_context import install_motion_frame_context
from codecgen.nn.reference_attention import install_reference_attention

FACE_EXPAND = 1.2  # Hallo's face_expand_ratio
LIP_REGION = (0.22, 0.58, 0.78, 0.98)  # the lips' part of a face box: x0, y0, x1, y1 in box units
TOKEN_KEYS = ("identity", "labels", "audio")  # what classifier-free guidance drops
HOP = CLIP_SAMPLE_RATE // int(CLIP_FPS)  # speech samples a video frame (640)


def box_region(boxes: Tensor, size: int, part: tuple[float, float, float, float] | None = None,
               expand: float = 1.0) -> Tensor:
    """(B, 4) boxes in pixels of a ``size`` frame -> (B, size, size) float masks of ``part`` of each
    box (x0, y0, x1, y1 in box units; None: the box), grown ``expand`` times about its centre."""
    x0, y0, x1, y1 = boxes.float().unbind(1)
    w, h = x1 - x0, y1 - y0
    if part is not None:
        x0, y0, x1, y1 = x0 + part[0] * w, y0 + part[1] * h, x0 + part[2] * w, y0 + part[3] * h
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * expand / 2, (y1 - y0) * expand / 2
    grid = torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5
    in_x = (grid[None] >= (cx - hw)[:, None]) & (grid[None] <= (cx + hw)[:, None])
    in_y = (grid[None] >= (cy - hh)[:, None]) & (grid[None] <= (cy + hh)[:, None])
    return (in_y[:, :, None] & in_x[:, None, :]).float()


class AnimationPipeline(GeneratorPipeline):
    """Samples one clip: ``pipe(reference, face_box, motion, labels, audio, num_steps=, seed=,
    guidance=)`` with the inputs of ``PortraitAnimator.condition`` -> latents (B, C, F, h, w).
    The reference net runs once a clip: it sees t = 0 only, so its features serve every step."""

    def __init__(self, model, scheduler):
        super().__init__(model, scheduler)
        self._prepared = None

    def denoise(self, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        if self._prepared is not cond:
            self.model.prepare_condition(cond, x_t.shape[2])
            self._prepared = cond
        return self.model.denoise_prepared(x_t, t, cond)

    def prepare(self, reference: Tensor, face_box: Tensor, motion: Tensor, labels: Tensor,
                audio: Tensor | None) -> tuple[dict[str, Tensor], tuple[int, ...]]:
        model = self.model
        cond = model.condition(reference, face_box, motion, labels, audio)
        b, f = labels.shape
        h, w = (s // model.vae_factor for s in reference.shape[-2:])
        return cond, (b, model.unet.config.out_channels, f, h, w)


@contextlib.contextmanager
def _diffusers_quiet():
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _frozen(module: nn.Module) -> nn.Module:
    return module.requires_grad_(False).eval()


@configurable
class PortraitAnimator(FrameLatentSpace, Generator):
    """Args:
        reference_net: a diffusers ``UNet2DConditionModel`` (the reference net; the denoiser is
            ``UNetMotionModel.from_unet2d(reference_net, motion_adapter)``, starting from its weights).
        motion_adapter: a diffusers ``MotionAdapter`` (the motion modules' sizes).
        scheduler: the DDIM schedule (zero SNR, trailing, v-prediction; module docstring).
        vae: the frame VAE (a diffusers ``AutoencoderKL``; frozen).
        audio_encoder: ``Wav2Vec2Features`` (frozen); audio_proj: ``AudioProj``.
        face_embedder: ``FaceEmbedder`` (frozen); identity_proj: ``IdentityProj``.
        face_locator: ``FaceLocator`` (its factor must be the VAE's); label_encoder: ``LabelTextEncoder``.
        stage: 1 (single frames: appearance, identity, labels) or 2 (clips: motion and audio).
        motion_frames: M; audio_margin: the +-frames of speech around each frame.
        audio_heads, audio_weights: the hierarchical audio attention's heads and region weights.
        motion_augment, drop_rate, patch_size, noise_timesteps: the motion frames' corruption
            (``augment_motion_frames``; noise also at sampling, as the authors).
        reference_dropout: share of training samples whose reference is zeroed.
        frames_per_clip: the clip length F the model samples by default (the authors: 16).
        vae_ckpt, audio_ckpt, identity_ckpt: trained stages that seed a fresh run.
        init_from: a trained PortraitAnimator (stage 1) whose weights start a fresh run (stage 2); a
            ``*_ckpt`` given with it replaces that part.
        Others: as ``Generator``.
    """

    modality = "video"
    pipeline_class = AnimationPipeline
    frozen_modules = ("vae", "audio_encoder", "face_embedder")  # trained stages, always in inference mode
    inference_modules = ("unet", "reference_net", "vae", "audio_encoder", "audio_proj", "audio_attention",
                         "face_embedder", "identity_proj", "face_locator", "label_encoder")

    def __init__(self, reference_net: nn.Module, motion_adapter: nn.Module, scheduler, vae: nn.Module,
                 audio_encoder: nn.Module, audio_proj: nn.Module, face_embedder: nn.Module,
                 identity_proj: nn.Module, face_locator: nn.Module, label_encoder: nn.Module, stage: int = 2,
                 motion_frames: int = 2, audio_margin: int = 2, audio_heads: int = 4,
                 audio_weights: tuple[float, float, float] = (1.0, 1.0, 1.0), motion_augment: str = "patch",
                 drop_rate: float = 0.25, patch_size: int = 2, noise_timesteps: int = 50,
                 reference_dropout: float = 0.05, frames_per_clip: int = 16, vae_ckpt: str | None = None,
                 audio_ckpt: str | None = None, identity_ckpt: str | None = None, init_from: str | None = None,
                 prediction_type: str | None = None, min_snr_gamma: float | None = None, lr: float = 1e-5,
                 ema_decay: float | None = 0.999, ema_start_step: int = 0, condition_dropout: float = 0.05):
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 (single frames) or 2 (clips with audio), got {stage}")
        if motion_augment not in MODES:
            raise ValueError(f"motion_augment must be one of {MODES}, got {motion_augment!r}")
        if not 0.0 <= reference_dropout < 1.0:
            raise ValueError(f"reference_dropout must be in [0, 1), got {reference_dropout}")
        with _diffusers_quiet():  # from_unet2d warns about float32 modules it has none of
            unet = UNetMotionModel.from_unet2d(copy.deepcopy(reference_net), motion_adapter)
        for name, p in unet.named_parameters():  # AnimateDiff: a new motion module starts as the identity
            if "motion_modules" in name and ".proj_out." in name:
                nn.init.zeros_(p)
        super().__init__(unet, scheduler, prediction_type, min_snr_gamma, lr, None, ema_start_step,
                         condition_dropout)
        self._check_sizes(reference_net, vae, audio_encoder, audio_proj, face_embedder, identity_proj,
                          face_locator, label_encoder, audio_margin)
        self.reference_net = reference_net
        self.init_latent_space(_frozen(vae), vae_ckpt)
        self.audio_encoder, self.face_embedder = _frozen(audio_encoder), _frozen(face_embedder)
        self.audio_proj, self.identity_proj = audio_proj, identity_proj
        self.face_locator, self.label_encoder = face_locator, label_encoder
        self.bank = install_reference_attention(reference_net, unet)
        install_motion_frame_context(reference_net, unet, self.bank)
        self.locator_features = attach_face_locator(unet)
        cross = unet.config.cross_attention_dim
        self.audio_attention, self.audio_context = install_audio_attention(unet, cross, audio_heads, audio_weights)
        self.stage, self.motion_frames, self.audio_margin = stage, motion_frames, audio_margin
        self.motion_augment, self.drop_rate, self.patch_size = motion_augment, drop_rate, patch_size
        self.noise_timesteps, self.reference_dropout = noise_timesteps, reference_dropout
        max_frames = motion_adapter.config.motion_max_seq_length
        if not 1 <= frames_per_clip <= max_frames - motion_frames:
            raise ValueError(f"frames_per_clip + motion_frames must be at most the motion modules' "
                             f"motion_max_seq_length {max_frames}, got {frames_per_clip} + {motion_frames}")
        self.frames_per_clip, self.max_frames = frames_per_clip, max_frames
        self.audio_ckpt, self.identity_ckpt = audio_ckpt, identity_ckpt
        self.init_from = init_from
        self._set_trainable()
        if ema_decay is not None:
            from codecgen.nn.ema import EMA

            self.ema = EMA({name: getattr(self, name) for name in self.trained_modules()}, ema_decay, ema_start_step)

    # -- construction ---------------------------------------------------------------------
    @staticmethod
    def _check_sizes(reference_net, vae, audio_encoder, audio_proj, face_embedder, identity_proj, face_locator,
                     label_encoder, audio_margin) -> None:
        cross, first = reference_net.config.cross_attention_dim, reference_net.config.block_out_channels[0]
        latent, factor = vae.config.latent_channels, autoencoder_factor(vae)
        problems = []
        if reference_net.config.in_channels != latent or reference_net.config.out_channels != latent:
            problems.append(f"the UNets must take and give the VAE's {latent} latent channels")
        if audio_proj.out_dim != cross or identity_proj.out_dim != cross or label_encoder.dim != cross:
            problems.append(f"audio, identity and label tokens must be {cross} wide (the cross-attention width)")
        if audio_proj.window != 2 * audio_margin + 1:
            problems.append(f"AudioProj's window must be 2 x audio_margin + 1 = {2 * audio_margin + 1}")
        if audio_proj.layers != audio_encoder.num_layers or audio_proj.dim != audio_encoder.dim:
            problems.append("AudioProj's layers and dim must be the audio encoder's")
        if identity_proj.proj.in_features != face_embedder.dim:
            problems.append("IdentityProj's dim must be the face embedder's")
        if face_locator.factor != factor or face_locator.conv_out.out_channels != first:
            problems.append(f"the face locator must downsample {factor}x (the VAE) to {first} channels (conv_in)")
        if problems:
            raise ValueError("PortraitAnimator: " + "; ".join(problems))

    def trained_modules(self) -> tuple[str, ...]:
        if self.stage == 1:
            return ("unet", "reference_net", "face_locator", "identity_proj", "label_encoder")
        return ("unet", "audio_proj", "audio_attention")

    def _set_trainable(self) -> None:
        for name in self.inference_modules:
            getattr(self, name).requires_grad_(False)
        for name in self.trained_modules():
            getattr(self, name).requires_grad_(True)
        for name, p in self.unet.named_parameters():  # stage 1: spatial layers; stage 2: motion modules
            p.requires_grad_(("motion_modules" in name) == (self.stage == 2))

    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "vae_ckpt", "audio_ckpt", "identity_ckpt", "init_from")

    # -- the latent space -----------------------------------------------------------------
    @property
    def frame_size(self) -> int:
        """The side of the square frames the model was built for (the UNets' sample size x the VAE's factor)."""
        return int(self.reference_net.config.sample_size) * self.vae_factor

    # -- conditions ---------------------------------------------------------------------
    def identity_tokens(self, reference: Tensor, face_box: Tensor) -> Tensor:
        """References (B, 3, H, W) in [-1, 1] and their face boxes (B, 4) -> (B, 4, D)."""
        size = self.face_embedder.size
        crops = torch.stack([crop_face(r, b.tolist(), size) for r, b in zip(reference, face_box)])
        with torch.no_grad():
            embedding = self.face_embedder(crops)
        return self.identity_proj(embedding)

    def condition(self, reference: Tensor, face_box: Tensor, motion: Tensor, labels: Tensor,
                  audio: Tensor | None) -> dict[str, Tensor]:
        """The denoiser's condition for B samples: the reference frames (B, 3, H, W) in [-1, 1] and
        their face boxes (B, 4) in pixels, the motion-frame LATENTS (B, M, C, h, w) (already
        corrupted), expression labels (B, F), and the speech (B, samples) of the clip's frames with
        ``audio_margin`` frames either side (None in stage 1)."""
        size = reference.shape[-1]
        ref_latent = self.encode_frames(reference)[:, None]
        b, f = labels.shape
        face = box_region(face_box, size, expand=FACE_EXPAND)
        cond = {"reference": torch.cat([ref_latent, motion], 1), "identity": self.identity_tokens(reference, face_box),
                "labels": self.label_encoder(labels.flatten()).unflatten(0, (b, f)), "face_mask": face,
                "lip_mask": box_region(face_box, size, LIP_REGION)}
        if audio is not None:
            if audio.shape[1] % HOP:
                raise ValueError(f"speech of {audio.shape[1]} samples is not a whole number of {HOP}-sample frames")
            with torch.no_grad():
                features = self.audio_encoder(audio, audio.shape[1] // HOP)  # (B, F + 2 margin, layers, dim)
            cond["audio"] = self.audio_proj(audio_windows(features, self.audio_margin))  # (B, F, tokens, D)
        return cond

    def latents_and_condition(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        frames = batch["frames"]  # (B, F, 3, H, W)
        b, f = frames.shape[:2]
        x0 = self.training_latents(frames.flatten(0, 1)).unflatten(0, (b, f))
        m = self.motion_frames if self.stage == 2 else 0
        motion = x0.new_zeros((b, 0, *x0.shape[2:]))
        if m:
            if batch["motion"].shape[1] != m:
                raise ValueError(f"the model takes {m} motion frames, the batch has {batch['motion'].shape[1]}")
            motion = self.encode_frames(batch["motion"].flatten(0, 1)).unflatten(0, (b, m))
            if self.training:
                motion = augment_motion_frames(motion, self.motion_augment, self.drop_rate, self.patch_size,
                                               self.noise_timesteps, self.noise_schedule,
                                               batch["frame_boxes"][:, 0], frames.shape[-1])
        labels = batch["expression"]
        audio = batch["audio"] if self.stage == 2 else None
        cond = self.condition(batch["reference"], batch["face_box"], motion, labels, audio)
        if self.training and self.reference_dropout > 0:
            dropped = torch.rand(b, device=x0.device) < self.reference_dropout
            cond["reference"] = cond["reference"].masked_fill(dropped[:, None, None, None, None], 0)
        return x0.transpose(1, 2), cond  # (B, C, F, h, w): UNetMotionModel's layout

    def drop_condition(self, cond: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """Classifier-free guidance's unconditional input: no audio, identity or label tokens (the
        reference, motion frames and face region stay)."""
        out = dict(cond)
        for key in TOKEN_KEYS:
            if key in cond:
                out[key] = cond[key].masked_fill(mask.view(-1, *[1] * (cond[key].dim() - 1)), 0)
        return out

    # -- the denoiser ---------------------------------------------------------------------
    def prepare_condition(self, cond: dict[str, Tensor], frames: int) -> None:
        """Run the reference net on [reference, motion frames] and set every hook's inputs."""
        ref = cond["reference"]  # (B, 1 + M, C, h, w)
        b, items = ref.shape[:2]
        self.bank.clear()
        self.bank.per_sample = items
        zero = torch.zeros(b * items, device=ref.device, dtype=torch.long)
        self.reference_net(ref.flatten(0, 1), zero, encoder_hidden_states=cond["identity"].repeat_interleave(items, 0))
        self.locator_features.value = self.face_locator(cond["face_mask"])
        if "audio" in cond:
            audio = cond["audio"]
            if audio.shape[1] != frames:
                raise ValueError(f"audio tokens for {audio.shape[1]} frames, denoising {frames}")
            self.audio_context.set(audio.flatten(0, 1), cond["face_mask"].repeat_interleave(frames, 0),
                                   cond["lip_mask"].repeat_interleave(frames, 0))
        else:
            self.audio_context.set(None)

    def denoise(self, x_t: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """x_t (B, C, F, h, w): the reference net on ``cond``, then the denoiser."""
        self.prepare_condition(cond, x_t.shape[2])
        return self.denoise_prepared(x_t, t, cond)

    def denoise_prepared(self, x_t: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """The denoiser alone, with the hooks ``prepare_condition`` set for ``cond``."""
        frames = x_t.shape[2]
        labels = cond["labels"]
        if labels.shape[1] != frames:
            raise ValueError(f"expression labels for {labels.shape[1]} frames, denoising {frames}")
        # UNetMotionModel cross-attends per frame: (B x F, tokens, D), frame-major within a sample
        tokens = torch.cat([cond["identity"].repeat_interleave(frames, 0), labels.flatten(0, 1)], dim=1)
        return self.unet(x_t, t, encoder_hidden_states=tokens).sample

    def sample_shape(self, batch_size: int) -> tuple[int, ...]:
        raise TypeError("a PortraitAnimator samples through its pipeline with a condition (see animate_portrait)")

    # -- training -------------------------------------------------------------------------
    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr)

    def on_fit_start(self) -> None:
        from codecgen import hub

        self._measure_scale, self._weights_hash = False, None
        if self.trainer.ckpt_path is not None:
            return  # a resumed run: everything is in its checkpoint
        if self.init_from:
            hub.load_model_weights(self, self.init_from, map_location=self.device)
            self._load_stages(hub, only_given=True)  # a stage given as well replaces the one init_from brought
            return
        self._load_stages(hub)
        self._measure_scale = True

    def _load_stages(self, hub, only_given: bool = False) -> None:
        from codecgen.generators.hallo2.audio_encoder import PhonemePretraining
        from codecgen.frame_vae import FrameVAE
        from codecgen.generators.hallo2.identity import IdentityPretraining

        for path, owner, part, target, role in (
                (self.vae_ckpt, FrameVAE, "vae", self.vae, "vae_ckpt"),
                (self.audio_ckpt, PhonemePretraining, "encoder", self.audio_encoder, "audio_ckpt"),
                (self.identity_ckpt, IdentityPretraining, "embedder", self.face_embedder, "identity_ckpt")):
            if path:
                hub.load_stage_weights(target, path, owner, role, self.device, part=part)
            elif not only_given:
                rank_zero_warn(f"{role} is not set: the animation model trains on an UNTRAINED {part}")

    # -- sampling -------------------------------------------------------------------------
    def expression_index(self, label: str) -> int:
        if label not in EXPRESSIONS:
            raise ValueError(f"unknown expression {label!r}; known: {', '.join(EXPRESSIONS)}")
        return EXPRESSIONS.index(label)

"""VideoGen's enhanced video decoder: the frame autoencoder's decoder with temporal layers, trained on unlabeled
video (Li et al. 2023, "VideoGen: A Reference-Guided Latent Diffusion Approach for High Definition Text-to-Video
Generation").

The paper fine-tunes a video decoder on unlabeled videos so that decoded latent videos flicker
less; its text we could read gives no architecture, so ours is diffusers'
``AutoencoderKLTemporalDecoder`` (Stable Video Diffusion's decoder: every ResNet block followed by a
temporal ResNet block and a learned mix, a temporal convolution at the output). Its encoder and
``quant_conv`` are our ``FrameVAE``'s, frozen, so it decodes the same latents the diffusion models
make (the FrameVAE must be built with 32-channel groups, mid-block attention and no
``post_quant_conv``: diffusers' temporal VAE has none). A fresh run also copies the image decoder
into the spatial half of every block (``temporal_decoder_from_image_decoder``) and starts every
temporal block and the output's temporal convolution at the identity, so training starts from the
image decoder (the same frames) and only learns what time adds.

Loss (ours): L1 of the frames at full, 1/2 and 1/4 resolution, plus ``temporal_weight`` x the L1 of
the frame-to-frame differences against the true ones (flicker is a wrong temporal difference).
Validation logs PSNR and that temporal-difference error for this decoder and, for comparison, for
the image decoder it started from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.module import Module


def temporal_difference_error(video: Tensor, target: Tensor) -> Tensor:
    """Mean |(v[t+1] - v[t]) - (x[t+1] - x[t])| over clips (B, T, C, H, W): the flicker a decoder adds."""
    return ((video[:, 1:] - video[:, :-1]) - (target[:, 1:] - target[:, :-1])).abs().mean()


def temporal_decoder_from_image_decoder(temporal_vae: nn.Module, image_vae: nn.Module) -> None:
    """Copy an ``AutoencoderKL``'s encoder, ``quant_conv`` and decoder into an ``AutoencoderKLTemporalDecoder``
    (the decoder's blocks into their spatial halves) and start every temporal block and the output's temporal
    convolution at the identity: the result decodes as the image decoder does until it trains. Both must have
    the same widths and ``layers_per_block`` (the temporal mid-block has ``layers_per_block`` ResNets, the
    image one always 2: so 2)."""
    if getattr(image_vae.config, "use_post_quant_conv", True):
        raise ValueError("the image VAE has a post_quant_conv, which the temporal decoder lacks: build it with "
                         "use_post_quant_conv: false")
    source = image_vae.state_dict()
    target = temporal_vae.state_dict()
    mapped = {}
    for key, value in source.items():
        if key.startswith("decoder."):
            key = re.sub(r"(mid_block|up_blocks\.\d+)\.resnets\.(\d+)\.", r"\1.resnets.\2.spatial_res_block.", key)
        if key in target:
            mapped[key] = value
    missing_spatial = [k for k in target if not k.startswith("decoder.") and k not in mapped]
    wrong = [k for k, v in mapped.items() if v.shape != target[k].shape]
    if missing_spatial or wrong:
        raise ValueError(f"the image VAE does not fit the temporal one: missing {missing_spatial[:4]}, "
                         f"other shapes {wrong[:4]}")
    temporal_vae.load_state_dict(mapped, strict=False)
    with torch.no_grad():
        for name, module in temporal_vae.decoder.named_modules():
            if name.endswith("temporal_res_block"):  # x + conv2(...): zeroed, the block starts as the identity
                module.conv2.weight.zero_()
                module.conv2.bias.zero_()
        conv = temporal_vae.decoder.time_conv_out
        conv.weight.zero_()
        conv.weight[:, :, conv.weight.shape[2] // 2] = torch.eye(conv.weight.shape[0])[..., None, None]
        conv.bias.zero_()


def decode_video(vae: nn.Module, latents: Tensor) -> Tensor:
    """Raw (unscaled) latents (B, T, C, h, w) -> frames (B, T, 3, H, W) in [-1, 1] by a temporal-decoder VAE."""
    b, t = latents.shape[:2]
    return vae.decode(latents.flatten(0, 1), num_frames=t).sample.unflatten(0, (b, t)).clamp(-1, 1)


@configurable
class VideoDecoderTraining(Module):
    """Args:
        vae: ``diffusers.AutoencoderKLTemporalDecoder`` (its encoder the FrameVAE's).
        image_vae: the FrameVAE's ``diffusers.AutoencoderKL``: the start and the comparison (frozen, training
            only: an export has none).
        vae_ckpt: the ``FrameVAE`` run or export a fresh run takes ``image_vae`` from.
        temporal_weight: of the temporal-difference L1.
        scales: the frame L1's resolutions (average pooling factors).
        lr: Adam's.
    """

    modality = "video"
    inference_modules = ("vae",)
    frozen_modules = ("image_vae", "vae.encoder")

    def __init__(self, vae: nn.Module, image_vae: nn.Module | None = None, vae_ckpt: str | None = None,
                 temporal_weight: float = 1.0, scales: Sequence[int] = (1, 2, 4), lr: float = 1e-4) -> None:
        super().__init__()
        if image_vae is None and vae_ckpt is not None:
            raise ValueError("vae_ckpt needs image_vae: the FrameVAE's AutoencoderKL to load it into")
        self.vae, self.vae_ckpt = vae, vae_ckpt
        self.image_vae = None if image_vae is None else image_vae.requires_grad_(False)
        self.vae.encoder.requires_grad_(False)
        self.vae.quant_conv.requires_grad_(False)
        self.temporal_weight, self.scales, self.lr = temporal_weight, [int(s) for s in scales], lr

    def training_only_args(self) -> tuple[str, ...]:
        return ("image_vae", "vae_ckpt")

    def latents(self, frames: Tensor) -> Tensor:
        """Clips (B, T, 3, H, W) -> raw latents (B, T, C, h, w): the frozen encoder's posterior means."""
        with torch.no_grad():
            return self.vae.encode(frames.flatten(0, 1)).latent_dist.mode().unflatten(0, frames.shape[:2])

    def losses(self, video: Tensor, target: Tensor) -> dict[str, Tensor]:
        rec, true = video.flatten(0, 1), target.flatten(0, 1)
        out = {}
        for s in self.scales:
            a, b = (rec, true) if s == 1 else (F.avg_pool2d(rec, s), F.avg_pool2d(true, s))
            out["l1" if s == 1 else f"l1_pool{s}"] = F.l1_loss(a, b)
        out["temporal"] = temporal_difference_error(video, target)
        return out

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        frames = batch["frames"]
        b, t = frames.shape[:2]
        video = self.vae.decode(self.latents(frames).flatten(0, 1), num_frames=t).sample.unflatten(0, (b, t))
        losses = self.losses(video, frames)
        loss = sum(v for k, v in losses.items() if k != "temporal") + self.temporal_weight * losses["temporal"]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=b)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        frames = batch["frames"]
        b = frames.shape[0]
        z = self.latents(frames)
        outputs = {"": decode_video(self.vae, z)}
        if self.image_vae is not None:
            outputs["image_decoder_"] = self.image_vae.decode(z.flatten(0, 1)).sample.unflatten(0, z.shape[:2])
        for name, out in outputs.items():
            out = out.clamp(-1, 1)
            mse = ((out - frames) / 2).square().mean()
            self.log(f"val/{name}psnr", -10 * torch.log10(mse.clamp_min(1e-10)), prog_bar=not name, batch_size=b,
                     sync_dist=True)
            self.log(f"val/{name}temporal", temporal_difference_error(out, frames), batch_size=b, sync_dist=True)

    def on_fit_start(self) -> None:
        from codecgen import hub
        from codecgen.frame_vae import FrameVAE

        self._weights_hash = None
        if self.trainer.ckpt_path is not None:
            return
        if self.image_vae is None:
            raise ValueError("a fresh run needs image_vae (and vae_ckpt): the decoder starts from it")
        if self.vae_ckpt:
            hub.load_stage_weights(self.image_vae, self.vae_ckpt, FrameVAE, "vae_ckpt", self.device, part="vae")
        temporal_decoder_from_image_decoder(self.vae, self.image_vae)

    def configure_optimizers(self):
        return torch.optim.Adam([p for p in self.vae.parameters() if p.requires_grad], lr=self.lr)

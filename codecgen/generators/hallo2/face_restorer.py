"""Hallo2's high-resolution stage: VQ face restoration with temporal alignment.

Hallo2 (Cui et al. 2024, Sec. 3.3; code: fudan-generative-vision/hallo2) raises its videos to
high resolution with CodeFormer (Zhou et al. 2022): a VQGAN trained on clean faces (1024 codes)
whose code indices a transformer predicts from the features of a degraded face; the clean codes
decode to a sharp face. Per-frame prediction flickers, so Hallo2 adds temporal attention across
the 16 frames of a clip to the code-prediction transformer and trains only those temporal parts
(latent MSE + 0.5 x cross-entropy on the indices).

Ours, trained here in three runs (``configs/hallo2/face_vq_*``, ``restorer_*``,
``restorer_temporal_*``):
1. a VQGAN on face crops: the image codec's ``VQGANCompression`` (stage ``autoencoder``) on
   ``PortraitFaceDataModule(faces_only=True)`` crops; frozen here (``vqgan_ckpt``);
2. ``stage="spatial"`` (CodeFormer's stage 2, which Hallo2 takes pre-trained): single frames;
   the degraded-face encoder (a copy of the VQGAN's encoder) and the predictor's spatial layers
   train, with CodeFormer's feature loss (the encoder's features against the clean face's
   quantized latent) besides Hallo2's two terms;
3. ``stage="temporal"`` (Hallo2's): clips of F frames; only the predictor's temporal layers train.

The latent MSE is taken on the predictor's expected latent (the codebook weighted by its
probabilities) against the clean face's quantized latent: the code's own latent, so the loss
reaches the predictor. Degradation (``degrade``): the clean crop downsampled ``scale`` times
(antialiased) and upsampled back (bicubic): what a face rendered ``scale`` times smaller than
the output looks like once enlarged, which is the job here: ``enhance`` upscales generated
frames ``scale`` times and pastes the restored face (a crop of ``margin`` x the face box, the
same box in every frame of a clip, feathered at its edges) into them. The clean crops come from
the corpus at its own resolution: a corpus rendered at ``scale`` x the animation's frame size
makes the restored faces real detail (docs/hallo2.md).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from codecgen.codecs.image.vqgan_compression import VQGANCompression
from codecgen.config import configurable
from codecgen.metrics import batch_psnr
from codecgen.module import Module
from codecgen.nn.face_crop import crop_face
from codecgen.nn.index_transformer import TemporalIndexTransformer

STAGES = ("spatial", "temporal")


def degrade(crops: Tensor, scale: int) -> Tensor:
    """(N, 3, S, S) in [-1, 1] -> the same seen at 1 / ``scale`` of the resolution, enlarged back."""
    size = crops.shape[-1]
    small = F.interpolate(crops, size=(size // scale, size // scale), mode="bilinear", antialias=True,
                          align_corners=False)
    return F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def union_box(boxes: Tensor) -> Tensor:
    """(..., F, 4) per-frame boxes -> (..., 4) the box around all of them."""
    return torch.cat([boxes[..., :2].amin(-2), boxes[..., 2:].amax(-2)], dim=-1)


def paste_mask(size: int, feather: float = 0.15) -> Tensor:
    """(size, size) weights: 1 inside, falling linearly to 0 over the outer ``feather`` of each side."""
    ramp = torch.clamp((torch.arange(size, dtype=torch.float32) + 0.5) / (feather * size), max=1.0)
    ramp = torch.minimum(ramp, ramp.flip(0))
    return ramp[:, None] * ramp[None, :]


@configurable
class FaceRestorer(Module):
    """Args:
        vqgan: a ``VQGANCompression`` trained on face crops (frozen; ``vqgan_ckpt`` seeds it).
        predictor: a ``TemporalIndexTransformer`` over the VQGAN's codebook and embedding width.
        crop_size: crop side S (a multiple of the VQGAN's factor); scale: the upscaling factor;
        margin: crop side over the face box's larger side.
        stage: "spatial" or "temporal" (module docstring); codebook_size: which of the VQGAN's
            levels (default: its full codebook); ce_weight: Hallo2's 0.5; lr: AdamW's.
        vqgan_ckpt: the trained face VQGAN; init_from: a trained FaceRestorer (the spatial stage)
            that starts a fresh temporal run.
    """

    modality = "image"
    frozen_modules = ("vqgan",)  # trained stages, always in inference mode
    inference_modules = ("vqgan", "lq_encoder", "predictor")

    def __init__(self, vqgan: VQGANCompression, predictor: TemporalIndexTransformer, crop_size: int = 64,
                 scale: int = 2, margin: float = 1.3, stage: str = "spatial", codebook_size: int | None = None,
                 ce_weight: float = 0.5, lr: float = 2e-4, vqgan_ckpt: str | None = None,
                 init_from: str | None = None):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        k = codebook_size or vqgan.codebook_sizes[0]
        level = vqgan.level(k)
        if predictor.codebook_sizes != [k] or predictor.feature_proj.in_features != level.quant_conv.out_channels:
            raise ValueError(f"the predictor must cover the VQGAN's {k} codes of width {level.quant_conv.out_channels}")
        if crop_size % vqgan.factor or crop_size // vqgan.factor > predictor.max_grid:
            raise ValueError(f"crop_size {crop_size} must be a multiple of the VQGAN's factor {vqgan.factor} with at "
                             f"most {predictor.max_grid} codes a side (the predictor's max_grid)")
        if scale < 1 or crop_size % scale:
            raise ValueError(f"scale must be a whole number >= 1 dividing crop_size {crop_size}, got {scale}")
        self.vqgan = vqgan.requires_grad_(False).eval()
        self.lq_encoder = copy.deepcopy(vqgan.encoder)
        self.predictor = predictor
        self.size, self.scale, self.margin, self.stage, self.codebook_size = crop_size, scale, margin, stage, k
        self.ce_weight, self.lr, self.vqgan_ckpt, self.init_from = ce_weight, lr, vqgan_ckpt, init_from
        self.lq_encoder.requires_grad_(stage == "spatial")
        for name, p in predictor.named_parameters():
            p.requires_grad_((name.startswith("temporal.")) == (stage == "temporal"))

    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "vqgan_ckpt", "init_from")

    # -- the networks ---------------------------------------------------------------------
    @property
    def level(self):
        return self.vqgan.level(self.codebook_size)

    def features(self, lq: Tensor) -> Tensor:
        """(N, 3, S, S) degraded crops in [-1, 1] -> (N, D, S / f, S / f) features in the code space."""
        return self.level.quant_conv(self.lq_encoder(lq))

    def logits(self, lq: Tensor) -> Tensor:
        """(B, F, 3, S, S) degraded clips -> (B, F, h, w, K)."""
        b, f = lq.shape[:2]
        z = self.features(lq.flatten(0, 1))
        return self.predictor.predict(z.unflatten(0, (b, f)))

    @torch.no_grad()
    def restore(self, lq: Tensor) -> Tensor:
        """(B, F, 3, S, S) degraded face crops in [-1, 1] -> restored crops in [-1, 1]."""
        codes = self.logits(lq).argmax(-1)  # (B, F, h, w)
        images = self.vqgan.decode(codes.flatten(0, 1)[:, None], self.codebook_size)  # [0, 1]
        return (images * 2 - 1).unflatten(0, lq.shape[:2])

    # -- training -------------------------------------------------------------------------
    def crops(self, batch: dict[str, Tensor]) -> Tensor:
        """The clean face crops of a clip batch: (B, F, 3, S, S), one box (around all frames') a clip."""
        frames, boxes = batch["frames"], union_box(batch["frame_boxes"])
        return torch.stack([torch.stack([crop_face(frame, box.tolist(), self.size, self.margin) for frame in clip])
                            for clip, box in zip(frames, boxes)]).clamp(-1, 1)

    def losses(self, hq: Tensor) -> dict[str, Tensor]:
        b, f = hq.shape[:2]
        lq = degrade(hq.flatten(0, 1), self.scale).unflatten(0, (b, f))
        level = self.level
        with torch.no_grad():
            codes = level.quantizer.encode(level.quant_conv(self.vqgan.encoder(hq.flatten(0, 1))))  # (BF, 1, h, w)
            target = level.quantizer.decode(codes)  # (BF, D, h, w)
        z = self.features(lq.flatten(0, 1))
        logits = self.predictor.predict(z.unflatten(0, (b, f))).flatten(0, 1)  # (BF, h, w, K)
        expected = (logits.softmax(-1) @ level.quantizer.codebook).permute(0, 3, 1, 2)
        out = {"ce": F.cross_entropy(logits.flatten(0, 2), codes.flatten()), "latent": F.mse_loss(expected, target)}
        if self.stage == "spatial":
            out["feature"] = F.mse_loss(z, target)
        out["loss"] = out["latent"] + self.ce_weight * out["ce"] + out.get("feature", 0.0)
        with torch.no_grad():
            out["accuracy"] = (logits.argmax(-1) == codes[:, 0]).float().mean()
        return out

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.losses(self.crops(batch))
        n = batch["frames"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, batch_size=n)
        self.log("loss", out["loss"].detach(), prog_bar=True, batch_size=n)
        return out["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        hq = self.crops(batch)
        b, f = hq.shape[:2]
        lq = degrade(hq.flatten(0, 1), self.scale).unflatten(0, (b, f))
        restored = self.restore(lq)
        to_unit = lambda x: (x.flatten(0, 1) + 1) / 2  # noqa: E731
        out = self.losses(hq)
        self.log_dict({"val/ce": out["ce"], "val/accuracy": out["accuracy"],
                       "val/psnr": batch_psnr(to_unit(restored), to_unit(hq)),
                       "val/psnr_degraded": batch_psnr(to_unit(lq), to_unit(hq)),
                       "val/flicker": (restored[:, 1:] - restored[:, :-1]).abs().mean() if f > 1 else out["ce"] * 0},
                      batch_size=b, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr)

    def on_fit_start(self) -> None:
        from codecgen import hub

        self._weights_hash = None
        if self.trainer.ckpt_path is not None:
            return
        if self.init_from:
            hub.load_model_weights(self, self.init_from, map_location=self.device)
            return
        if self.vqgan_ckpt:
            hub.load_stage_weights(self.vqgan, self.vqgan_ckpt, VQGANCompression, "vqgan_ckpt", self.device)
            self.lq_encoder.load_state_dict(self.vqgan.encoder.state_dict())  # CodeFormer starts from it

    # -- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def enhance(self, frames: Tensor, face_box: Sequence[float]) -> Tensor:
        """(F, H, W, 3) uint8 frames of one clip and the face box (pixels) -> (F, scale H, scale W, 3)
        uint8: the frames enlarged (bicubic) with the restored face pasted in."""
        x = frames.permute(0, 3, 1, 2).float().to(self.device) / 127.5 - 1
        h, w = x.shape[-2:]
        big = F.interpolate(x, size=(h * self.scale, w * self.scale), mode="bicubic", align_corners=False)
        box = [v * self.scale for v in face_box]
        hq = torch.stack([crop_face(frame, box, self.size, self.margin) for frame in big])
        restored = self.restore(hq[None])[0]  # (F, 3, S, S): the enlarged crop is already "degraded"
        # paste: where each output pixel falls in the crop (the inverse of crop_face's square)
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0, 1.0) * self.margin
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ys = (torch.arange(big.shape[-2], device=x.device) + 0.5 - (cy - side / 2)) / side * 2 - 1
        xs = (torch.arange(big.shape[-1], device=x.device) + 0.5 - (cx - side / 2)) / side * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None].expand(len(big), -1, -1, -1)
        face = F.grid_sample(restored, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        weight = F.grid_sample(paste_mask(self.size, 0.15).to(x.device)[None, None].expand(len(big), 1, -1, -1),
                               grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = big * (1 - weight) + face * weight
        return ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()

"""First stage of arbitrary-scale latent diffusion: an autoencoder with an implicit
neural decoder (Kim & Kim, CVPR 2024, "Arbitrary-Scale Image Generation and Upsampling
using Latent Diffusion Model and Implicit Neural Decoder"; code:
zhenshij/arbitrary-scale-diffusion, ``FirstStageModel`` and its SR config
``first_stage_sr_div2k_48_48x48x3_192.yaml``).

image (B, 3, H, W) -> LDM encoder (f=4) -> 1x1 ``quant_conv`` -> latent z (B, 3, H/4, W/4)
-> 1x1 ``post_quant_conv`` -> LDM decoder without its upsampling layers, ``norm_out`` and
``conv_out`` (features at the latent's resolution) -> LIIF (Chen et al. 2021,
``codecgen.nn.liif``) -> an image of ANY size, rendered pixel centre by pixel centre.
The latent is deterministic (no KL term, ``double_z: False``), the loss plain L1.

Training (the authors' recipe): each batch of HR crops (192 px) is encoded, and
decoded at one random square size in [``min_size``, ``max_size``] (48..192) drawn per
batch; the target is the HR crop resized to that size. The loss is L1 over the whole
decoded image (``n_queries=None``, as the authors), or over ``n_queries`` random pixels
per image (LIIF's own training: 2304). Adam.

The networks work in [-1, 1] (taming / LDM); the public ``encode_image`` /
``decode_image`` take and return [0, 1].

Deviations from the authors' code, each for a reason:
- targets are resized with ``antialias=True`` (bicubic); the authors call
  ``F.interpolate(mode="bicubic")`` without antialiasing, which aliases when it shrinks
  a 192-px crop to 48 px, so the decoder would learn to reproduce aliasing.
- the target size is drawn in [min_size, max_size] inclusive (the authors'
  ``int(random.uniform(48, 192))`` almost never reaches 192).
- the HR crops come from ``ImageDataModule``: random crops with horizontal flips (the
  authors' DIV2K loader also flips vertically and transposes).
- ``lr`` is the learning rate itself: the authors' config says 4.5e-6, which LDM's
  ``main.py`` multiplies by the batch size and GPU count (8 x 1 = 3.6e-5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.metrics import batch_psnr
from codecgen.module import Module
from codecgen.nn.liif import sample_queries


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of a batch (B, C, H, W), antialiased when shrinking (float32)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x.float()
    return F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False, antialias=True)


def _conv_layout(x: Tensor) -> Tensor:
    """``x`` channels-last when no gradient is recorded (sampling, validation, a frozen
    first stage): oneDNN then runs the convolutions NHWC, measured 1.6x faster for the
    encoder and the feature decoder on one CPU thread (x86-64, AVX2). With gradients NHWC
    was 1.5x slower, so training keeps the default layout. Values agree to float rounding."""
    return x if torch.is_grad_enabled() else x.contiguous(memory_format=torch.channels_last)


@configurable
class ImplicitAutoencoder(Module):
    """Encoder to a small latent, decoder to an image of any size (LIIF).

    Args:
        encoder: ``VQGANEncoder`` (paper: ch 128, ch_mult (1, 2, 4), 2 res blocks, no
            attention levels, z_channels 3).
        decoder: ``VQGANDecoder`` with the same widths, ``upsample=False``,
            ``output_features=True`` (its ``out_features`` feed the LIIF).
        liif: ``LIIF(in_channels=decoder.out_features)`` (paper: hidden 256 x 4, no unfolding).
        lr, betas: Adam's.
        min_size, max_size: range of the training targets' height (the width keeps the
            crop's aspect ratio); ``max_size`` must not exceed the crops.
        n_queries: pixels per image the training loss is taken over; None: all.
        val_scales: validation decodes at the crop's size divided by each of these.
        chunk: query points per chunk when rendering without gradients. 16384: the
            MLP's activations (chunk x width floats) stay under glibc's 32 MiB mmap
            threshold, so freed chunks are reused; at 65536 x 128 every activation was a
            fresh mapping, page-faulted in again, and rendering took 1.9x as long.
    """

    # ``modality`` stays Module's "none": this is no codec, and infer.py's image verbs
    # would take an "image" model for one
    inference_modules = ("encoder", "quant_conv", "post_quant_conv", "decoder", "liif")

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        liif: nn.Module,
        lr: float = 4.5e-6 * 8,
        betas: tuple[float, float] = (0.9, 0.999),
        min_size: int = 48,
        max_size: int = 192,
        n_queries: int | None = None,
        val_scales: Sequence[float] = (1, 2, 3),
        chunk: int = 16384,
    ):
        super().__init__()
        if encoder.z_channels != decoder.z_channels:
            raise ValueError(f"encoder z_channels {encoder.z_channels} != decoder z_channels {decoder.z_channels}")
        if liif.in_channels != decoder.out_features:
            raise ValueError(f"the LIIF takes {liif.in_channels} channels, the decoder gives {decoder.out_features}")
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
        if n_queries is not None and not 1 <= n_queries <= min_size**2:
            raise ValueError(f"n_queries must lie in [1, min_size**2 = {min_size**2}] (distinct pixels of the "
                             f"smallest target), got {n_queries}")
        if not val_scales or any(s < 1 for s in val_scales):
            raise ValueError(f"val_scales must be a non-empty list of factors >= 1, got {list(val_scales)}")
        if chunk < 1:
            raise ValueError(f"chunk must be positive, got {chunk}")
        z = encoder.z_channels
        self.encoder, self.decoder, self.liif = encoder, decoder, liif
        self.quant_conv = nn.Conv2d(z, z, 1)
        self.post_quant_conv = nn.Conv2d(z, z, 1)
        self.lr, self.betas = lr, tuple(betas)
        self.min_size, self.max_size, self.n_queries = min_size, max_size, n_queries
        self.val_scales, self.chunk = [float(s) for s in val_scales], chunk

    @property
    def downsampling_factor(self) -> int:
        """Image pixels per latent position along each side."""
        return self.encoder.factor

    @property
    def z_channels(self) -> int:
        return self.encoder.z_channels

    # -- networks, in [-1, 1] ----------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1], H and W multiples of ``downsampling_factor`` -> z (B, z, H/f, W/f)."""
        return self.quant_conv(self.encoder(_conv_layout(x)))

    def features(self, z: Tensor) -> Tensor:
        """z -> the LIIF's feature grid, at the latent's resolution."""
        return self.decoder(self.post_quant_conv(_conv_layout(z)))

    def decode(self, z: Tensor, size: int | Sequence[int], chunk: int | None = None) -> Tensor:
        """z -> (B, 3, H, W) in [-1, 1] (unclamped) for ``size`` (H, W) or an int (square)."""
        return self.liif(self.features(z), size, chunk=chunk)

    def forward(self, x: Tensor, size: int | Sequence[int] | None = None) -> Tensor:
        return self.decode(self.encode(x), tuple(x.shape[-2:]) if size is None else size, self.chunk)

    # -- public API, in [0, 1] ---------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [0, 1], H and W multiples of ``downsampling_factor`` ->
        latents (B, z_channels, H/f, W/f)."""
        if images.ndim != 4 or images.shape[1] != 3 or 0 in images.shape:
            raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        f = self.downsampling_factor
        if images.shape[-2] % f or images.shape[-1] % f:
            raise ValueError(f"height and width must be multiples of {f}, got {tuple(images.shape[-2:])}")
        return self.encode(images.to(self.device) * 2 - 1)

    @torch.no_grad()
    def decode_image(self, z: Tensor, size: int | Sequence[int]) -> Tensor:
        """Latents (B, z_channels, h, w) -> images (B, 3, H, W) in [0, 1] for ``size`` (H, W)
        (or an int: square), any size, rendered ``chunk`` query points at a time."""
        if z.ndim != 4 or z.shape[1] != self.z_channels or 0 in z.shape:
            raise ValueError(f"expected latents (B, {self.z_channels}, h, w), got shape {tuple(z.shape)}")
        return ((self.decode(z.to(self.device), size, self.chunk).clamp(-1, 1) + 1) / 2).float()

    # -- training ----------------------------------------------------------------------
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.betas)

    def _target_size(self, height: int, width: int) -> tuple[int, int]:
        if self.max_size > height:
            raise ValueError(f"max_size {self.max_size} exceeds the training crops' height {height}: the targets "
                             "would be upsampled crops; lower model.init_args.max_size or raise the crop size")
        t = int(torch.randint(self.min_size, self.max_size + 1, ()))  # one size per batch, as the authors
        return t, max(1, round(t * width / height))

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        x = batch
        size = self._target_size(*x.shape[-2:])
        target = resize(x, size)
        features = self.features(self.encode(x))
        if self.n_queries is None:
            loss = F.l1_loss(self.liif(features, size, chunk=None).float(), target)
        else:
            coords, cells, values = sample_queries(target, self.n_queries)
            loss = F.l1_loss(self.liif.query(features, coords, cells).float(), values)
        self.log_dict({"train/l1": loss.detach(), "train/size": float(size[0])}, batch_size=x.shape[0])
        self.log("loss", loss.detach(), prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """PSNR of the decode at the crop's size (``val/psnr``) and at the crop's size
        divided by each other ``val_scales`` entry (``val/psnr_down2``, ...), against the
        antialiased resized crop; deterministic."""
        x = batch
        features = self.features(self.encode(x))
        for s in self.val_scales:
            size = (max(1, round(x.shape[-2] / s)), max(1, round(x.shape[-1] / s)))
            target = resize(x, size).clamp(-1, 1)
            out = self.liif(features, size, chunk=self.chunk).float().clamp(-1, 1)
            name = "val/psnr" if s == 1 else f"val/psnr_down{s:g}"
            self.log(name, batch_psnr((out + 1) / 2, (target + 1) / 2), prog_bar=s == 1, batch_size=x.shape[0], sync_dist=True)
            if s == 1:
                self.log("val/l1", F.l1_loss(out, target), batch_size=x.shape[0], sync_dist=True)

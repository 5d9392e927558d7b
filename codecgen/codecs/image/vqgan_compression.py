"""Extreme image compression with a fine-tuned VQGAN (Mao et al. 2023, "Extreme Image
Compression using Fine-tuned VQGANs"; base model: Esser et al. 2021, taming-transformers).

An image is coded as the VQ indices of a VQGAN (f=16: one index per 16x16 pixels).
- Variable rate: the trained codebook is k-means-shrunk to smaller sizes K, and for
  each K only the codebook and the two 1x1 quant convs are fine-tuned, encoder and
  decoder frozen (the paper's recipe). One checkpoint holds every K (``levels``);
  ``codebook_size=K`` picks the rate.
- Entropy coding, better than the paper's uniform PMF (log2 K bits per index): each
  file uses the cheapest of (a) uniform, (b) the model's per-K index histogram
  (``CodePrior``, counted over training crops), (c) a context model: the index
  transformer predicts each of four 2x2-interleaved groups from the groups already
  coded (the first group uses the histogram).
- Lost-index restoration: a file may mark positions whose indices were lost; a
  MaskGIT-style bidirectional transformer (``codecgen.nn.index_transformer``) fills
  them (``restore=True``), each with the entry nearest to its predicted mean codebook
  vector rather than MaskGIT's most probable index (see ``MaskedIndexTransformer.restore``).
- The file around the index grid (header, lost mask, alpha plane, validation) is
  ``codecgen.codecs.image.format``.

Training is three Lightning runs of this one module, chosen by ``stage``, each
starting from the previous one's checkpoint (``init_from``):
1. ``autoencoder``: L1 + perceptual + codebook losses, then the PatchGAN hinge loss
   with taming's adaptive weight ``||grad nll|| / ||grad g||`` at the decoder's last
   layer (clamped to [0, 1e4], times ``loss_weights["gan"]``) after ``disc_start_step``;
2. ``shrink``: k-means shrink to every K in ``shrink_sizes``, fine-tune codebooks and
   quant convs (L1 + perceptual + codebook losses; encoder/decoder frozen);
3. ``restorer``: train the index transformer on every level's indices (and count each
   level's index histogram).

Deviations from the papers, each for a reason:
- The perceptual term is pluggable (``perceptual_loss``): no pretrained VGG/LPIPS
  weights exist here, so the default is weight-free MS-SSIM (``MSSSIMLoss``);
  ``VGGPerceptualLoss`` takes a user's local weights. ``perceptual_name`` (a property,
  also in every file header's model section via the checkpoint) says which was used.
- The trained codebook uses EMA updates, k-means initialisation and dead-code
  replacement (taming learns it by gradient with a uniform init): on small corpora
  taming's codebook collapses to a few entries, which wastes rate. Shrunk codebooks
  are fine-tuned by gradient, as in the paper.
- The shrink stage drops the GAN term: the decoder is frozen, so only the codebook and
  quant convs move and the reconstruction losses suffice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.adversarial import AdversarialTraining
from codecgen.codecs import bitstream
from codecgen.codecs.base import Codec, CodecError
from codecgen.codecs.image import format as image_format
from codecgen.codecs.image.format import ENTROPY_KINDS, HASH_CHARS, MODES, index_payload_bytes  # noqa: F401 (re-exported)
from codecgen.codecs.limits import DecodeLimits
from codecgen.config import configurable
from codecgen.metrics import batch_psnr
from codecgen.nn import entropy
from codecgen.nn.index_transformer import group_masks
from codecgen.nn.losses import MSSSIMLoss, hinge_discriminator_loss, hinge_generator_loss, ms_ssim
from codecgen.nn.quantizers import VQ, kmeans_shrink

STAGES = ("autoencoder", "shrink", "restorer")


class RateLevel(nn.Module):
    """One rate: quant conv (z -> embedding), a codebook, post-quant conv (back to z)."""

    def __init__(self, z_channels: int, embed_dim: int, quantizer: VQ):
        super().__init__()
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.quantizer = quantizer
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        # shrunk levels hold random weights until the shrink stage fits them
        self.register_buffer("ready", torch.tensor(False))

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size


@configurable
class VQGANCompression(AdversarialTraining, Codec):
    """VQGAN image codec with k-means-shrunk rates, a learned index prior and
    lost-index restoration.

    Args:
        encoder, decoder: ``codecgen.nn.vqgan`` modules (their ``factor`` is the codec's).
        quantizer: the trained codebook (``VQ`` over ``embed_dim``-vectors).
        embed_dim: codebook vector size (taming: 256).
        shrink_sizes: the smaller codebook sizes made from the trained one.
        perceptual_loss: the perceptual term (default ``MSSSIMLoss``; None: L1 only).
        discriminator: PatchGAN (training only).
        restorer: ``MaskedIndexTransformer`` over every level's indices.
        loss_weights: ``l1``, ``perceptual``, ``codebook``, ``gan`` (taming's disc_weight).
        disc_start_step: generator steps before the GAN loss switches on.
        stage, init_from: what this training run trains, and the checkpoint it starts from.
        block: side, in indices, of the blocks the image is coded in (encoder, decoder,
            and context model each see one block plus ``margin`` indices of context), so
            memory stays bounded on huge images. Must not exceed the restorer's ``max_grid``.
    """

    modality = "image"
    inference_modules = ("encoder", "decoder", "levels", "restorer", "priors")

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        quantizer: nn.Module | None = None,
        embed_dim: int = 256,
        shrink_sizes: Sequence[int] = (1024, 256, 64, 16, 8),
        perceptual_loss: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        restorer: nn.Module | None = None,
        loss_weights: dict[str, float] | None = None,
        disc_start_step: int = 10000,
        lr: float = 4.5e-6 * 8,
        restorer_lr: float = 4e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        stage: str = "autoencoder",
        init_from: str | None = None,
        block: int = 32,
        margin: int = 4,
        restore_steps: int = 8,
    ):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if encoder.factor != decoder.factor:
            raise ValueError(f"encoder factor {encoder.factor} != decoder factor {decoder.factor}")
        self.encoder, self.decoder = encoder, decoder
        self.factor = encoder.factor
        quantizer = quantizer if quantizer is not None else VQ(embed_dim, 1024)
        if quantizer.dim != embed_dim:
            raise ValueError(f"quantizer dim {quantizer.dim} != embed_dim {embed_dim}")
        self.trained_size = quantizer.codebook_size
        sizes = [self.trained_size] + sorted({int(k) for k in shrink_sizes if int(k) < self.trained_size}, reverse=True)
        if min(sizes) < 2:
            raise ValueError(f"codebook sizes must be >= 2, got {sizes}")
        self.codebook_sizes = sizes
        levels = {str(self.trained_size): RateLevel(encoder.z_channels, embed_dim, quantizer)}
        for k in sizes[1:]:
            levels[str(k)] = RateLevel(encoder.z_channels, embed_dim, VQ(
                embed_dim, k, ema=False, kmeans_init=False, threshold_dead_code=0.0))
        self.levels = nn.ModuleDict(levels)
        self.levels[str(self.trained_size)].ready.fill_(True)
        self.priors = nn.ModuleDict({str(k): entropy.CodePrior([k]) for k in sizes})
        self.perceptual_loss = perceptual_loss if perceptual_loss is not None else MSSSIMLoss()
        self.discriminator, self.restorer = discriminator, restorer
        if restorer is not None and list(restorer.codebook_sizes) != sizes:
            raise ValueError(f"restorer codebook sizes {restorer.codebook_sizes} != codec's {sizes}")
        if restorer is not None and block + 2 * margin > restorer.max_grid:
            raise ValueError(f"block + 2 * margin ({block + 2 * margin}) exceeds the restorer's max_grid")
        self.loss_weights = {"l1": 1.0, "perceptual": 1.0, "codebook": 1.0, "gan": 0.8} | dict(loss_weights or {})
        self.disc_start_step, self.lr, self.restorer_lr, self.betas = disc_start_step, lr, restorer_lr, tuple(betas)
        self.stage, self.init_from = stage, init_from
        self.block, self.margin, self.restore_steps = block, margin, restore_steps
        self.automatic_optimization = False

    def training_only_args(self) -> tuple[str, ...]:
        return ("discriminator",)

    @property
    def perceptual_name(self) -> str:
        return getattr(self.perceptual_loss, "name", type(self.perceptual_loss).__name__)

    # -- rates ------------------------------------------------------------------------
    def available_sizes(self) -> list[int]:
        return [k for k in self.codebook_sizes if bool(self.levels[str(k)].ready)]

    def level(self, codebook_size: int | None) -> RateLevel:
        k = self.trained_size if codebook_size is None else int(codebook_size)
        if str(k) not in self.levels:
            raise CodecError(f"no codebook of size {k}; this model has {self.codebook_sizes}")
        if not bool(self.levels[str(k)].ready):
            raise CodecError(f"codebook size {k} has not been fitted (run the shrink stage); "
                             f"available: {self.available_sizes()}")
        return self.levels[str(k)]

    def bits_per_pixel(self, codebook_size: int | None = None) -> float:
        """Rate with the uniform model: log2(K) / factor^2 (the paper's numbers)."""
        k = self.trained_size if codebook_size is None else codebook_size
        return math.log2(k) / self.factor**2

    def nominal_rate(self) -> dict:
        return {"value": self.bitrate(), "unit": "bpp"}

    def bitrate(self, codebook_size: int | None = None) -> float:
        return self.bits_per_pixel(codebook_size)

    # -- batches ----------------------------------------------------------------------
    def _check_batch(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise CodecError(f"expected images (B, 3, H, W), got shape {tuple(x.shape)}")
        if x.shape[-1] == 0 or x.shape[-2] == 0:
            raise CodecError("empty image")
        if not torch.isfinite(x).all():
            raise CodecError("image contains NaN or infinite values")

    def quantize(self, x: Tensor, codebook_size: int | None = None):
        """Training-mode pass through one level: (QuantizerOutput, reconstruction)."""
        lvl = self.level(codebook_size)
        q = lvl.quantizer(lvl.quant_conv(self.encoder(x)))
        return q, self.decoder(lvl.post_quant_conv(q.quantized))

    @torch.no_grad()
    def encode(self, x: Tensor, codebook_size: int | None = None) -> Tensor:
        """(B, 3, H, W) in [0, 1] (the range ``compress`` takes), H and W multiples of
        ``factor`` -> codes (B, 1, H/f, W/f). The networks work in [-1, 1], as taming's."""
        self._check_batch(x)
        lvl = self.level(codebook_size)
        return lvl.quantizer.encode(lvl.quant_conv(self.encoder(x * 2 - 1)))

    @torch.no_grad()
    def decode(self, codes: Tensor, codebook_size: int | None = None) -> Tensor:
        """codes (B, 1, h, w) -> images (B, 3, h f, w f) in [0, 1]."""
        lvl = self.level(codebook_size)
        return ((self.decoder(lvl.post_quant_conv(lvl.quantizer.decode(codes))).clamp(-1.0, 1.0) + 1) / 2).clamp(0.0, 1.0)

    @property
    def downsampling_factor(self) -> int:
        return self.factor

    def forward(self, x: Tensor, codebook_size: int | None = None) -> Tensor:
        return self.quantize(x, codebook_size)[1]

    # -- images of any size, block by block --------------------------------------------
    def _blocks(self, gh: int, gw: int) -> Iterator[tuple[int, int, int, int]]:
        for top in range(0, gh, self.block):
            for left in range(0, gw, self.block):
                yield top, left, min(top + self.block, gh), min(left + self.block, gw)

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        return math.ceil(height / self.factor), math.ceil(width / self.factor)

    def n_blocks(self, height: int, width: int) -> int:
        gh, gw = self.grid_shape(height, width)
        return math.ceil(gh / self.block) * math.ceil(gw / self.block)

    def hash_extra(self) -> bytes:
        # the context model's probabilities depend on the coding block size: a file is
        # decodable only with the same weights *and* the same block
        return f"block={self.block}".encode()

    @torch.no_grad()
    def encode_image(self, image: Tensor, codebook_size: int | None = None,
                     progress: Callable[[int], None] | None = None) -> Tensor:
        """One image (3, H, W) in [0, 1], any size -> index grid (gh, gw).

        Block by block: each block of indices is computed from its pixels plus ``margin``
        indices of real image around it, so memory is bounded and an image that fits in
        one block is coded exactly as a whole."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise CodecError(f"expected an image (3, H, W), got shape {tuple(image.shape)}")
        self._check_batch(image[None])
        f, (h, w) = self.factor, image.shape[-2:]
        gh, gw = math.ceil(h / f), math.ceil(w / f)
        x = F.pad(image[None], (0, gw * f - w, 0, gh * f - h), mode="replicate").to(self.device)
        grid = torch.zeros(gh, gw, dtype=torch.long)
        for top, left, bottom, right in self._blocks(gh, gw):
            t0, l0 = max(0, top - self.margin), max(0, left - self.margin)
            b0, r0 = min(gh, bottom + self.margin), min(gw, right + self.margin)
            codes = self.encode(x[..., t0 * f : b0 * f, l0 * f : r0 * f], codebook_size)[0, 0].cpu()
            grid[top:bottom, left:right] = codes[top - t0 : bottom - t0, left - l0 : right - l0]
            if progress:
                progress(1)
        return grid

    @torch.no_grad()
    def decode_image(self, grid: Tensor, height: int, width: int, codebook_size: int | None = None,
                     progress: Callable[[int], None] | None = None) -> Tensor:
        """Index grid (gh, gw) -> image (3, height, width) in [0, 1], block by block with
        ``margin`` indices of context (no seams from GroupNorm / attention)."""
        f, (gh, gw) = self.factor, grid.shape
        out = torch.empty(3, gh * f, gw * f)
        for top, left, bottom, right in self._blocks(gh, gw):
            t0, l0 = max(0, top - self.margin), max(0, left - self.margin)
            b0, r0 = min(gh, bottom + self.margin), min(gw, right + self.margin)
            y = self.decode(grid[None, None, t0:b0, l0:r0].to(self.device), codebook_size)[0].float().cpu()
            out[:, top * f : bottom * f, left * f : right * f] = y[
                :, (top - t0) * f : (bottom - t0) * f, (left - l0) * f : (right - l0) * f]
            if progress:
                progress(1)
        return out[:, :height, :width]

    # -- entropy coding of the index grid ----------------------------------------------
    def entropy_kinds(self, codebook_size: int) -> list[str]:
        kinds = ["uniform"]
        if self.priors[str(codebook_size)].fitted:
            kinds.append("prior")
            if self.restorer is not None:
                kinds.append("context")
        return kinds

    def _static_model(self, kind: str, k: int) -> entropy.EntropyModel:
        if kind == "uniform":
            return entropy.uniform_model([k])
        return self.priors[str(k)].entropy_model(1)

    @torch.no_grad()
    def _context_probabilities(self, block: Tensor, hidden: Tensor, level: int) -> Tensor:
        return self.restorer.probabilities(block[None].to(self.device), hidden.to(self.device), level)[0].cpu()

    def encode_grid(self, grid: Tensor, k: int, kind: str, lost: Tensor | None = None) -> bytes:
        """Index grid -> payload bytes under ``kind``; positions in ``lost`` are skipped."""
        if kind not in self.entropy_kinds(k):
            raise CodecError(f"entropy model {kind!r} is not available for K={k}; have {self.entropy_kinds(k)}")
        writer = entropy.RangeWriter()
        if kind != "context":
            keep = grid if lost is None else grid[~lost]
            writer.write_model(keep.reshape(-1).numpy(), self._static_model(kind, k), 0)
            return writer.getvalue()
        if lost is not None and lost.any():
            raise CodecError("the context model cannot code a grid with lost positions; use 'prior' or 'uniform'")
        level, prior = self.codebook_sizes.index(k), self._static_model("prior", k)
        for top, left, bottom, right in self._blocks(*grid.shape):
            block = grid[top:bottom, left:right]
            groups = group_masks(*block.shape)
            writer.write_model(block[groups[0]].numpy(), prior, 0)
            for g in range(1, len(groups)):
                if groups[g].any():
                    probs = self._context_probabilities(block, torch.stack(groups[g:]).any(0), level)
                    writer.write(block[groups[g]].numpy(), probs[groups[g]].numpy())
        return writer.getvalue()

    def decode_grid(self, data: bytes, gh: int, gw: int, k: int, kind: str, lost: Tensor | None = None) -> Tensor:
        """Inverse of ``encode_grid``; lost positions come back as -1."""
        if kind not in self.entropy_kinds(k):
            raise CodecError(f"this file uses the {kind!r} model, which this model lacks for K={k}")
        if kind != "context":
            known = torch.ones(gh, gw, dtype=torch.bool) if lost is None else ~lost
            n_known, model = int(known.sum()), self._static_model(kind, k)
            entropy.check_capacity(len(data), [(n_known, model, 0)])
            reader = entropy.RangeReader(data)
            grid = torch.full((gh, gw), -1, dtype=torch.long)
            grid[known] = torch.from_numpy(reader.read_model(n_known, model, 0))
            reader.finish()
            return grid
        level, prior = self.codebook_sizes.index(k), self._static_model("prior", k)
        # the first group of every block is coded under the prior: a bound before decoding
        n_first = sum(math.ceil((b - t) / 2) * math.ceil((r - l) / 2) for t, l, b, r in self._blocks(gh, gw))
        entropy.check_capacity(len(data), [(n_first, prior, 0)])
        reader = entropy.RangeReader(data)
        grid = torch.full((gh, gw), -1, dtype=torch.long)
        for top, left, bottom, right in self._blocks(gh, gw):
            block = torch.zeros(bottom - top, right - left, dtype=torch.long)
            groups = group_masks(*block.shape)
            block[groups[0]] = torch.from_numpy(reader.read_model(int(groups[0].sum()), prior, 0))
            for g in range(1, len(groups)):
                if groups[g].any():
                    probs = self._context_probabilities(block, torch.stack(groups[g:]).any(0), level)
                    block[groups[g]] = torch.from_numpy(reader.read(int(groups[g].sum()), probs[groups[g]].numpy()))
            grid[top:bottom, left:right] = block
        reader.finish()
        return grid

    @torch.no_grad()
    def restore_grid(self, grid: Tensor, lost: Tensor, k: int, progress: Callable[[int], None] | None = None) -> Tensor:
        """Fill lost positions (block by block, with ``margin`` indices of context)."""
        if self.restorer is None:
            raise CodecError("this model has no restoration transformer")
        level, out = self.codebook_sizes.index(k), grid.clone()
        for top, left, bottom, right in self._blocks(*grid.shape):
            t0, l0 = max(0, top - self.margin), max(0, left - self.margin)
            b0, r0 = min(grid.shape[0], bottom + self.margin), min(grid.shape[1], right + self.margin)
            window, window_lost = out[t0:b0, l0:r0].clamp(min=0), lost[t0:b0, l0:r0]
            if window_lost[top - t0 : bottom - t0, left - l0 : right - l0].any():
                filled = self.restorer.restore(window[None].to(self.device), window_lost[None].to(self.device),
                                               level, self.restore_steps, self.levels[str(k)].quantizer.codebook)[0].cpu()
                out[top:bottom, left:right] = filled[top - t0 : bottom - t0, left - l0 : right - l0]
            if progress:
                progress(1)
        return out

    # -- files ------------------------------------------------------------------------
    def compress(self, image: Tensor, codebook_size: int | None = None, entropy_kind: str = "auto",
                 mode: str = "RGB", alpha: Tensor | None = None,
                 progress: Callable[[int], None] | None = None) -> bytes:
        """One image (3, H, W) in [0, 1] -> ``.cgc`` bytes. ``entropy_kind`` 'auto' picks
        the smallest payload; ``alpha`` (1, H, W) is stored losslessly (zlib) when not opaque."""
        k = self.trained_size if codebook_size is None else int(codebook_size)
        self.level(k)
        if mode not in MODES:
            raise CodecError(f"mode must be one of {MODES}, got {mode!r}")
        grid = self.encode_image(image, k, progress)
        return bitstream.pack(*self.pack_grid(grid, image.shape[-2], image.shape[-1], k, entropy_kind, mode, alpha))

    def pack_grid(self, grid: Tensor, height: int, width: int, k: int, entropy_kind: str = "auto",
                  mode: str = "RGB", alpha: Tensor | None = None, lost: Tensor | None = None) -> tuple[dict, bytes]:
        kinds = self.entropy_kinds(k)
        if lost is not None and lost.any():
            kinds = [kind for kind in kinds if kind != "context"]
        if entropy_kind == "auto":
            payloads = {kind: self.encode_grid(grid, k, kind, lost) for kind in kinds}
            entropy_kind = min(payloads, key=lambda kind: len(payloads[kind]))
            codes_bytes = payloads[entropy_kind]
        else:
            codes_bytes = self.encode_grid(grid, k, entropy_kind, lost)
        return image_format.make_header(self.weights_hash(), width, height, k, entropy_kind, codes_bytes, mode,
                                        alpha, lost)

    def unpack_grid(self, header: dict, payload: bytes, limits: DecodeLimits | None = None
                    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Validate a header against this model and ``limits`` (default ``DEFAULT_LIMITS``:
        ``max_pixels``) -> (grid with -1 at lost positions, lost mask or None, alpha
        (1, H, W) or None). Everything is checked before anything is decoded."""
        image_format.check_header(header, limits)
        if not self.weights_hash().startswith(header["weights_hash"]):
            raise CodecError(
                f"this file was written by a model with weights {header['weights_hash']}; the model given is "
                f"{self.model_name} with weights {self.weights_hash()[:HASH_CHARS]}: use the model that encoded it")
        (w, h), k = header["size"], header["K"]
        if k not in self.codebook_sizes:
            raise bitstream.BitstreamError(f"codebook size {k} is not one of this model's {self.codebook_sizes}")
        self.level(k)
        grid_shape = self.grid_shape(h, w)
        parts = image_format.read_payload(header, payload, grid_shape)
        try:
            grid = self.decode_grid(parts.codes, *grid_shape, k, header["entropy"], parts.lost)
        except ValueError as error:
            raise bitstream.BitstreamError(f"corrupt payload: {error}") from None
        return grid, parts.lost, parts.alpha

    def fill_lost(self, grid: Tensor, lost: Tensor, k: int, restore: bool,
                  progress: Callable[[int], None] | None = None) -> Tensor:
        """Lost indices: restored by the transformer, or (without ``restore``) set to the
        most frequent index of the prior (index 0 when there is none)."""
        if restore:
            return self.restore_grid(grid, lost, k, progress)
        prior = self.priors[str(k)]
        fill = int(prior.counts[0, :k].argmax()) if prior.fitted else 0
        return torch.where(lost, torch.full_like(grid, fill), grid)

    def decompress(self, data: bytes, restore: bool = False, limits: DecodeLimits | None = None) -> Tensor:
        """``.cgc`` bytes -> image (3, H, W) in [0, 1] (lost indices filled, see ``fill_lost``);
        ``limits`` as ``unpack_grid``."""
        header, payload = bitstream.unpack(data)
        grid, lost, _ = self.unpack_grid(header, payload, limits)
        (width, height), k = header["size"], header["K"]
        if lost is not None:
            grid = self.fill_lost(grid, lost, k, restore)
        return self.decode_image(grid, height, width, k)

    def damage(self, data: bytes, lost: Tensor) -> bytes:
        """Simulate a transport that lost the indices at ``lost`` (gh, gw): the returned
        file marks those positions lost and carries only the others."""
        header, payload = bitstream.unpack(data)
        grid, old_lost, alpha = self.unpack_grid(header, payload)
        lost = lost.bool() if old_lost is None else (lost.bool() | old_lost)
        (width, height), k = header["size"], header["K"]
        kind = "prior" if "prior" in self.entropy_kinds(k) else "uniform"
        new_header, new_payload = self.pack_grid(grid, height, width, k, kind, header.get("mode", "RGB"), alpha, lost)
        return bitstream.pack(new_header, new_payload)

    # -- training ---------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.init_from and self.trainer.ckpt_path is None:
            from codecgen import hub

            source = hub.load(self.init_from, map_location=self.device)
            state = {k: v for k, v in source.state_dict().items() if not k.startswith("discriminator.")
                     or self.stage == "autoencoder"}
            missing, unexpected = self.load_state_dict(state, strict=False)
            if unexpected:
                raise CodecError(f"init_from {self.init_from} has weights this model lacks: {unexpected[:5]}")
        if self.stage == "shrink":
            self._shrink_codebooks()
        self._weights_hash = None

    @torch.no_grad()
    def _shrink_codebooks(self) -> None:
        """k-means-shrink the trained codebook into every level not fitted yet; copy the
        trained quant convs as their starting point."""
        main = self.levels[str(self.trained_size)]
        for k in self.codebook_sizes[1:]:
            lvl = self.levels[str(k)]
            if bool(lvl.ready):
                continue
            small, _ = kmeans_shrink(main.quantizer.codebook.detach(), k)
            lvl.quantizer.codebook.data.copy_(small)
            lvl.quantizer.initialized.fill_(True)
            lvl.quant_conv.load_state_dict(main.quant_conv.state_dict())
            lvl.post_quant_conv.load_state_dict(main.post_quant_conv.state_dict())
            lvl.ready.fill_(True)

    def _trainable(self) -> list[nn.Parameter]:
        if self.stage == "autoencoder":
            modules = [self.encoder, self.decoder, self.levels[str(self.trained_size)]]
        elif self.stage == "shrink":
            modules = [self.levels[str(k)] for k in self.codebook_sizes[1:]]
        else:
            if self.restorer is None:
                raise ValueError("stage 'restorer' needs a restorer")
            modules = [self.restorer]
        return [p for m in modules for p in m.parameters()]

    def configure_optimizers(self):
        trainable = set(map(id, self._trainable()))
        if self.stage == "autoencoder" and self.discriminator is not None:
            trainable |= set(map(id, self.discriminator.parameters()))
        for p in self.parameters():  # frozen parts get no gradient (and DDP ignores them)
            p.requires_grad_(id(p) in trainable)
        if self.stage == "restorer":
            opt = torch.optim.AdamW(self._trainable(), lr=self.restorer_lr, betas=(0.9, 0.95), weight_decay=0.01)
            return opt
        opt_g = torch.optim.Adam(self._trainable(), lr=self.lr, betas=self.betas)
        if self.stage == "autoencoder" and self.discriminator is not None:
            return [opt_g, torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas)]
        return opt_g

    def gan_active(self) -> bool:
        return self.discriminator is not None and self.stage == "autoencoder" and self.global_step >= self.disc_start_step

    def _reconstruction_losses(self, x_hat: Tensor, x: Tensor) -> dict[str, Tensor]:
        losses = {"l1": (x_hat - x).abs().mean()}
        if self.perceptual_loss is not None and self.loss_weights.get("perceptual", 0.0) > 0:
            losses["perceptual"] = self.perceptual_loss(x_hat, x)
        return losses

    def _weighted(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(self.loss_weights.get(name, 0.0) * value for name, value in losses.items())

    def training_step(self, batch: Tensor, batch_idx: int):
        x = batch
        if self.stage == "restorer":
            return self._restorer_step(x)
        optimizers = self.optimizer_list()
        logs: dict[str, Tensor] = {}
        if self.stage == "autoencoder":
            q, x_hat = self.quantize(x)
            losses = self._reconstruction_losses(x_hat, x)
            nll = self._weighted(losses)
            total = nll + self.loss_weights["codebook"] * q.loss
            if self.gan_active():
                g_loss = hinge_generator_loss(self.discriminator(x_hat)[0])
                weight = self.adaptive_gan_weight(nll, g_loss, self.decoder.last_layer) if torch.is_grad_enabled() else torch.tensor(0.0)
                total = total + weight * self.loss_weights["gan"] * g_loss
                logs.update({"train/gan": g_loss.detach(), "train/gan_weight": weight})
            logs["vq/perplexity"] = q.metrics["perplexity"]
            losses["codebook"] = q.loss
        else:  # shrink: every level in one step, sharing one encoder pass
            with torch.no_grad():
                z = self.encoder(x)
            losses, total = {}, 0.0
            for k in self.codebook_sizes[1:]:
                lvl = self.levels[str(k)]
                q = lvl.quantizer(lvl.quant_conv(z))
                x_hat = self.decoder(lvl.post_quant_conv(q.quantized))
                level_losses = self._reconstruction_losses(x_hat, x) | {"codebook": q.loss}
                total = total + self._weighted(level_losses)
                for name, value in level_losses.items():
                    losses[f"{name}_{k}"] = value
        opt_g = optimizers[0]
        opt_g.zero_grad()
        self.manual_backward(total)
        opt_g.step()
        if self.gan_active():
            opt_d = optimizers[1]
            real, fake = self.discriminator(x)[0], self.discriminator(x_hat.detach())[0]
            loss_d = hinge_discriminator_loss(real, fake)
            self.discriminator_step(opt_d, loss_d)
            logs["train/disc"] = loss_d.detach()
        logs.update({f"train/{k}": v.detach() for k, v in losses.items()})
        logs["train/loss"] = total.detach()
        self.log_dict(logs, batch_size=x.shape[0])
        self.log("loss", total.detach(), prog_bar=True, batch_size=x.shape[0])
        return total.detach()

    def _restorer_step(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            z = self.encoder(x)
        total = 0.0
        for level, k in enumerate(self.codebook_sizes):
            lvl = self.levels[str(k)]
            if not bool(lvl.ready):
                continue
            with torch.no_grad():
                codes = lvl.quantizer.encode(lvl.quant_conv(z))
                self.priors[str(k)].update(codes)
            loss = self.restorer.loss(codes[:, 0], level)
            self.log(f"train/ce_{k}", loss.detach(), batch_size=x.shape[0])
            total = total + loss
        opt = self.optimizer_list()[0]
        opt.zero_grad()
        self.manual_backward(total)
        opt.step()
        self.log("loss", total.detach(), prog_bar=True, batch_size=x.shape[0])
        return total.detach()

    def validation_step(self, batch: Tensor, batch_idx: int):
        x = batch
        psnr = {}
        for k in self.available_sizes():
            codes = self.encode((x + 1) / 2, k)  # batches are in [-1, 1], encode takes [0, 1]
            psnr[k] = batch_psnr(self.decode(codes, k), (x + 1) / 2)
            self.log(f"val/psnr_{k}", psnr[k], batch_size=x.shape[0], sync_dist=True)
            if self.restorer is not None and self.stage == "restorer":
                level = self.codebook_sizes.index(k)
                lost = torch.rand(codes[:, 0].shape, device=x.device) < 0.2
                restored = self.restorer.restore(codes[:, 0], lost, level, self.restore_steps,
                                                 self.levels[str(k)].quantizer.codebook)
                self.log(f"val/psnr_restored20_{k}", batch_psnr(self.decode(restored[:, None], k), (x + 1) / 2),
                         batch_size=x.shape[0], sync_dist=True)
        # the headline number: the trained rate, or the smallest one while shrinking
        main = self.trained_size if self.stage != "shrink" else self.codebook_sizes[-1]
        if main in psnr:
            self.log("val/psnr", psnr[main], prog_bar=True, batch_size=x.shape[0], sync_dist=True)
            target = (x + 1) / 2
            lvl = self.level(main)
            # the ceiling of the learning curves: the decoder fed the unquantized latent
            ceiling = ((self.decoder(lvl.post_quant_conv(lvl.quant_conv(self.encoder(x)))).clamp(-1, 1) + 1) / 2)
            outputs = {"val/ms_ssim": self.decode(self.encode(target, main), main), "val/ceiling_ms_ssim": ceiling}
            for name, out in outputs.items():
                self.log(name, ms_ssim(out, target), batch_size=x.shape[0], sync_dist=True)
            self.log("val/ceiling_psnr", batch_psnr(ceiling, target),
                     batch_size=x.shape[0], sync_dist=True)

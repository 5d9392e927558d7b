"""AudioMAE (Huang et al., NeurIPS 2022, "Masked Autoencoders that Listen"; code:
facebookresearch/AudioMAE): a ViT over 16x16 patches of a log-mel filterbank, pre-trained by
reconstructing the 80 % of patches it does not see. SemantiCodec (Liu et al. 2024) takes its
encoder, frozen, as the semantic feature extractor.

Layout, as the authors': the input is (B, 1, frames, mel bins), patches run time-major (for a
1024 x 128 window: a 64 x 8 grid, all 8 frequency patches of the first 160 ms first), a CLS
token is prepended, fixed 2-D sine-cosine positions; the MAE decoder (``decoder_*``) sees the
encoded visible patches plus mask tokens and predicts every patch's pixels; the loss is the MSE
on masked patches against per-patch normalised pixels (``norm_pix_loss``).

``features``: SemantiCodec's semantic feature, the MEAN of the final-normed outputs of the last
``feature_layers`` blocks (3), without the CLS token, from the whole (unmasked) input.

Deviation: AudioMAE's decoder uses shifted-window local attention over the spectrogram; this
one uses the global attention of image MAE (simpler, and only pre-training sees the decoder).
Key names follow the authors' checkpoint (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N...``, ``norm``, ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``,
``decoder_blocks.N...``, ``decoder_norm``, ``decoder_pred``): ``load_audiomae_weights`` reads
a user's local AudioMAE checkpoint into this module.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.nn.vit import Block, PatchEmbed, sincos_2d


@configurable
class AudioMAE(nn.Module):
    """Args:
        num_frames, num_mel_bins: the input window (AudioMAE: 1024 frames x 128 bins).
        patch_size: square patches (16).
        embed_dim, depth, num_heads: the encoder (ViT-B: 768, 12, 12).
        decoder_embed_dim, decoder_depth, decoder_num_heads: the pre-training decoder
            (AudioMAE: 512, 16, 16); ``decoder_depth=0`` builds none (an encoder only).
        mlp_ratio: MLP width / embed width (4).
        feature_layers: how many last blocks ``features`` averages (SemantiCodec: 3).
        norm_pix_loss: normalise each target patch by its own mean and variance (True).
    """

    def __init__(self, num_frames: int = 1024, num_mel_bins: int = 128, patch_size: int = 16, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, decoder_embed_dim: int = 512, decoder_depth: int = 16,
                 decoder_num_heads: int = 16, mlp_ratio: float = 4.0, feature_layers: int = 3,
                 norm_pix_loss: bool = True):
        super().__init__()
        if num_frames % patch_size or num_mel_bins % patch_size:
            raise ValueError(f"the {num_frames} x {num_mel_bins} window is not made of whole {patch_size}-patches")
        if not 1 <= feature_layers <= depth:
            raise ValueError(f"feature_layers must be 1..depth ({depth}), got {feature_layers}")
        self.num_frames, self.num_mel_bins, self.patch_size = num_frames, num_mel_bins, patch_size
        self.grid = (num_frames // patch_size, num_mel_bins // patch_size)
        self.embed_dim, self.feature_layers, self.norm_pix_loss = embed_dim, feature_layers, norm_pix_loss
        n = self.grid[0] * self.grid[1]
        self.patch_embed = PatchEmbed(patch_size, 1, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", self._positions(embed_dim))  # fixed, but a user's checkpoint may hold its own
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.has_decoder = decoder_depth > 0
        if self.has_decoder:
            self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
            self.register_buffer("decoder_pos_embed", self._positions(decoder_embed_dim))
            self.decoder_blocks = nn.ModuleList(Block(decoder_embed_dim, decoder_num_heads, mlp_ratio)
                                                for _ in range(decoder_depth))
            self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
            self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2)
        self.num_patches = n
        self._init_weights()

    def _positions(self, dim: int) -> Tensor:
        """(1, 1 + patches, dim): zeros for the CLS token, then the 2-D table (MAE)."""
        return torch.cat([torch.zeros(1, dim), sincos_2d(dim, *self.grid)])[None]

    def _init_weights(self) -> None:
        # MAE's initialisation: xavier-uniform linears and patch projection, small normal tokens
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        if self.has_decoder:
            nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- patches ------------------------------------------------------------------------
    def _check(self, spec: Tensor) -> None:
        if spec.ndim != 4 or tuple(spec.shape[1:]) != (1, self.num_frames, self.num_mel_bins):
            raise ValueError(f"expected filterbanks (B, 1, {self.num_frames}, {self.num_mel_bins}), "
                             f"got {tuple(spec.shape)}")

    def patchify(self, spec: Tensor) -> Tensor:
        """(B, 1, frames, bins) -> (B, patches, p*p), time-major like the encoder's tokens."""
        b, p, (gt, gf) = spec.shape[0], self.patch_size, self.grid
        return spec.reshape(b, gt, p, gf, p).permute(0, 1, 3, 2, 4).reshape(b, gt * gf, p * p)

    # -- encoder ------------------------------------------------------------------------
    def _tokens(self, spec: Tensor) -> Tensor:
        self._check(spec)
        return self.patch_embed(spec) + self.pos_embed[:, 1:]

    def _with_cls(self, x: Tensor) -> Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def features(self, spec: Tensor) -> Tensor:
        """(B, 1, frames, bins) -> (B, patches, embed_dim): the mean of ``norm`` applied to
        each of the last ``feature_layers`` blocks' outputs, CLS token dropped."""
        x = self._with_cls(self._tokens(spec))
        total, first = None, len(self.blocks) - self.feature_layers
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i >= first:
                normed = self.norm(x)
                total = normed if total is None else total + normed
        return (total / self.feature_layers)[:, 1:]

    # -- pre-training -------------------------------------------------------------------
    def random_masking(self, x: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
        """Keep a random (1 - mask_ratio) of each sequence's tokens (MAE: argsort of uniform
        noise, from torch's global RNG): (kept tokens, mask (B, N) with 1 = hidden,
        the permutation that restores the order)."""
        b, n, d = x.shape
        keep = max(1, int(n * (1 - mask_ratio)))
        shuffle = torch.rand(b, n, device=x.device).argsort(dim=1)
        restore = shuffle.argsort(dim=1)
        kept = x.gather(1, shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(b, n, device=x.device)
        mask[:, :keep] = 0
        return kept, mask.gather(1, restore), restore

    def pretraining_loss(self, spec: Tensor, mask_ratio: float = 0.8) -> tuple[Tensor, Tensor, Tensor]:
        """MAE's objective on a batch: (loss, predicted patches (B, N, p*p), mask (B, N))."""
        if not self.has_decoder:
            raise ValueError("this AudioMAE has no decoder (decoder_depth=0): it cannot be pre-trained")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        kept, mask, restore = self.random_masking(self._tokens(spec), mask_ratio)
        x = self._with_cls(kept)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_embed(self.norm(x))
        b, n = mask.shape
        hidden = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
        tokens = torch.cat([x[:, 1:], hidden], dim=1).gather(1, restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        target = self.patchify(spec)
        if self.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        per_patch = (pred - target).pow(2).mean(-1)
        return (per_patch * mask).sum() / mask.sum(), pred, mask


def load_audiomae_weights(model: AudioMAE, path: str | Path) -> list[str]:
    """Read a user's local AudioMAE checkpoint (the authors' ``pretrained.pth``: a dict whose
    ``"model"`` entry, or itself, maps their key names to tensors) into ``model``, tensors only
    (``weights_only``). Returns the checkpoint keys left unused (e.g. a decoder ``model`` has
    none of); a missing encoder key or a shape mismatch raises ValueError."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} is not an AudioMAE state dict (name -> tensor)")
    own = model.state_dict()
    encoder = [k for k in own if not k.startswith(("decoder_", "mask_token"))]
    missing = [k for k in encoder if k not in state]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} encoder weights, e.g. {missing[:3]}")
    usable = {k: v for k, v in state.items() if k in own}
    wrong = [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in usable.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"{path} does not fit this AudioMAE's sizes: {'; '.join(wrong[:3])}")
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in state if k not in own)

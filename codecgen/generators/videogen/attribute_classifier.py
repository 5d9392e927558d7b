"""The judge of VideoGen's benchmark: a small video classifier of what a captioned-video clip shows.

Text-to-video papers score caption consistency with CLIP similarity; no CLIP weights can be fetched
here, and our captions state exact attributes, so the judge is a classifier trained on the corpus's
real clips to read them back: shape (or none, for camera clips), colour (or none), motion (the 7
object motions and 6 camera moves) and count (0, 1, 2). Its accuracy on held-out real clips is the
ceiling a generated video can be held to; a generated clip is scored against the attributes of its
own prompt (``parse_caption``). A 3-D CNN (ours): three strided spatio-temporal convolutions with
group norm and SiLU, global average pooling, one linear head per attribute.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.datamodules.corpora.captioned_video import CAMERA_MOTIONS, COLOURS, MOTIONS, SHAPES, parse_caption
from codecgen.module import Module

ATTRIBUTES: dict[str, tuple] = {
    "shape": ("none", *SHAPES),
    "colour": ("none", *COLOURS),
    "motion": (*MOTIONS, *CAMERA_MOTIONS),
    "count": (0, 1, 2),
}
SCORED = ("shape", "colour", "motion")  # the benchmark's "all attributes right"


def attribute_targets(captions: Sequence[str]) -> dict[str, Tensor]:
    """Class indices per attribute for captions of the corpus's grammar; ValueError for any other text."""
    out: dict[str, list[int]] = {name: [] for name in ATTRIBUTES}
    for caption in captions:
        attrs = parse_caption(caption)
        if attrs is None:
            raise ValueError(f"{caption!r} is not a caption of the captioned-video corpus")
        values = {"shape": attrs.shape or "none", "colour": attrs.colour or "none", "motion": attrs.motion,
                  "count": attrs.count}
        for name, value in values.items():
            out[name].append(ATTRIBUTES[name].index(value))
    return {name: torch.tensor(v, dtype=torch.long) for name, v in out.items()}


@configurable
class VideoAttributeClassifier(Module):
    """Clips (B, F, 3, H, W) in [-1, 1] -> logits per attribute (see the module docstring).

    Args:
        channels: widths of the three convolutions.
        lr: AdamW's.
    """

    modality = "video"
    inference_modules = ("net", "heads")

    def __init__(self, channels: Sequence[int] = (16, 32, 64), lr: float = 1e-3) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.net = nn.Sequential(
            nn.Conv3d(3, c1, 3, stride=(1, 2, 2), padding=1), nn.GroupNorm(min(8, c1), c1), nn.SiLU(),
            nn.Conv3d(c1, c2, 3, stride=(1, 2, 2), padding=1), nn.GroupNorm(min(8, c2), c2), nn.SiLU(),
            nn.Conv3d(c2, c3, 3, stride=2, padding=1), nn.GroupNorm(min(8, c3), c3), nn.SiLU(),
            nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(c3, len(values)) for name, values in ATTRIBUTES.items()})
        self.lr = lr

    def forward(self, frames: Tensor) -> dict[str, Tensor]:
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"clips must be (B, F, 3, H, W), got {tuple(frames.shape)}")
        features = self.net(frames.transpose(1, 2))
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, frames: Tensor) -> dict[str, Tensor]:
        """Class indices per attribute (B,)."""
        return {name: logits.argmax(-1) for name, logits in self(frames).items()}

    def _step(self, batch: dict, stage: str) -> Tensor:
        logits = self(batch["frames"])
        targets = {k: v.to(batch["frames"].device) for k, v in attribute_targets(batch["caption"]).items()}
        loss = sum(F.cross_entropy(logits[k], targets[k]) for k in ATTRIBUTES)
        n = batch["frames"].shape[0]
        right = {k: logits[k].argmax(-1) == targets[k] for k in ATTRIBUTES}
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n, sync_dist=stage == "val")
        for k in ATTRIBUTES:
            self.log(f"{stage}/{k}_accuracy", right[k].float().mean(), batch_size=n, sync_dist=stage == "val")
        all_right = torch.stack([right[k] for k in SCORED]).all(0).float().mean()
        self.log(f"{stage}/accuracy", all_right, prog_bar=stage == "val", batch_size=n, sync_dist=stage == "val")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)

"""The referees of the Hallo2 benchmark: a network that reads a face crop's mouth opening and expression.

Hallo2 (Cui et al. 2024) reports Sync-C / Sync-D (SyncNet, trained on real talking faces) and
expression quality by eye; neither SyncNet's weights nor real talking faces exist here. The
portrait corpus knows, for every frame, the jaw opening (the viseme track) and the expression
label, so this stage trains a probe on them: the face crop (the frame's face box) through a
small ResNet (:class:`~codecgen.nn.face_embedder.FaceEmbedder`'s trunk), one head regressing
the jaw opening in [0, 1] (MSE) and one classifying the expression (cross-entropy over
:data:`EXPRESSIONS`). The benchmark then correlates the probe's jaw reading of generated frames
with the ground-truth viseme track of held-out speech (a lip-sync proxy; shuffled audio gives
the floor, real frames the ceiling) and scores generated expressions against the labels asked
for. Validation on held-out identities: ``val/jaw_corr`` and ``val/expression_accuracy``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.module import Module
from codecgen.nn.expression_text import EXPRESSIONS
from codecgen.nn.face_crop import crop_face
from codecgen.nn.face_embedder import FaceEmbedder
from codecgen.nn.optim import warmup_cosine


@configurable
class FaceProbe(Module):
    """Args:
        trunk: a ``FaceEmbedder`` whose features (before its embedding layer) feed the heads.
        margin: the face crop's side over the face box's.
        lr, weight_decay, warmup_steps: AdamW with a warm-up and a cosine decay.
    """

    inference_modules = ("trunk", "jaw", "expression")

    def __init__(self, trunk: FaceEmbedder, margin: float = 1.2, lr: float = 1e-3, weight_decay: float = 1e-4,
                 warmup_steps: int = 100) -> None:
        super().__init__()
        self.trunk, self.margin = trunk, margin
        width = trunk.feature_dim
        self.jaw = nn.Linear(width, 1)
        self.expression = nn.Linear(width, len(EXPRESSIONS))
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps
        self._val: list[tuple[Tensor, ...]] = []

    def crops(self, frames: Tensor, boxes: Tensor) -> Tensor:
        """Frames (N, 3, H, W) in [-1, 1] and their face boxes (N, 4) -> face crops."""
        return torch.stack([crop_face(f, b, self.trunk.size, self.margin) for f, b in zip(frames, boxes)])

    def forward(self, frames: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """-> (jaw opening (N,) in [0, 1], expression logits (N, 5))."""
        h = self.trunk.features(self.crops(frames, boxes))
        return torch.sigmoid(self.jaw(h))[:, 0], self.expression(h)

    def _targets(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (batch["frames"].flatten(0, 1), batch["frame_boxes"].flatten(0, 1), batch["visemes"][..., 0].flatten(),
                batch["expression"].flatten())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        frames, boxes, jaw, label = self._targets(batch)
        jaw_hat, logits = self(frames, boxes)
        losses = {"jaw": F.mse_loss(jaw_hat, jaw), "expression": F.cross_entropy(logits, label)}
        loss = 10.0 * losses["jaw"] + losses["expression"]  # the jaw's variance is ~0.05: balance the two
        n = len(frames)
        self.log("loss", loss.detach(), prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        frames, boxes, jaw, label = self._targets(batch)
        jaw_hat, logits = self(frames, boxes)
        self._val.append((jaw_hat.detach(), jaw, logits.argmax(1), label))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        jaw_hat, jaw, guess, label = (torch.cat(x) for x in zip(*self._val))
        self._val.clear()
        self.log("val/expression_accuracy", (guess == label).float().mean(), prog_bar=True)
        if len(jaw) > 2 and jaw.std() > 0 and jaw_hat.std() > 0:
            self.log("val/jaw_corr", torch.corrcoef(torch.stack([jaw_hat, jaw]))[0, 1], prog_bar=True)
        self.log("val/jaw_mse", F.mse_loss(jaw_hat, jaw))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return [opt], [warmup_cosine(opt, self.training_steps(), self.warmup_steps)]

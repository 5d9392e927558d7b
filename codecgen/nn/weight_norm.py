"""Weight normalisation (Salimans & Kingma 2016) folded away for inference: the audio
encoders and decoders train with ``torch.nn.utils.parametrizations.weight_norm``."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-norm parametrization into a plain weight (faster inference)."""
    # Collect first: removing a parametrization edits the module tree we would iterate.
    parametrized = [m for m in module.modules() if parametrize.is_parametrized(m, "weight")]
    for m in parametrized:
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module

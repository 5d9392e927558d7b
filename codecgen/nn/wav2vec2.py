"""wav2vec 2.0 (Baevski et al., NeurIPS 2020) as Hallo2 uses it: every layer's features at the video's frame rate.

Hallo2 (Cui et al. 2024; its code: ``hallo/models/wav2vec.py``) runs wav2vec2-base on the
speech of a clip, but not as wav2vec 2.0 was trained: the CNN feature encoder's 50 Hz
features are linearly interpolated (``align_corners=True``) to the number of video
frames BEFORE the transformer, and the outputs of all transformer layers are kept. This
module does the same with torchaudio's architecture (``torchaudio.models.wav2vec2_model``,
any size): :meth:`Wav2Vec2Features.forward` gives (B, frames, layers, dim). The waveform
is normalised to zero mean and unit variance per utterance first, as
``Wav2Vec2FeatureExtractor(do_normalize=True)`` does for wav2vec2-base.

No pre-trained weights can be fetched here; a user who has them loads them with
:func:`load_wav2vec2_weights` (torchaudio's or Hugging Face's key names, a ``.pt``/``.bin``
state dict read with ``weights_only=True`` or a ``.safetensors`` file).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable

# wav2vec2-base's CNN: 512 channels, strides 5, 2, 2, 2, 2, 2, 2 (320 samples = 20 ms at 16 kHz).
BASE_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


@configurable
class Wav2Vec2Features(nn.Module):
    """A wav2vec 2.0 model (torchaudio's layout) whose forward returns every layer's features
    at a requested frame count (Hallo2's use). Defaults: wav2vec2-base.

    Args:
        conv_layers: (channels, kernel, stride) of each CNN layer.
        dim, num_layers, num_heads, ffn_dim: the transformer's sizes.
        pos_conv_kernel, pos_conv_groups: the convolutional position embedding's.
        dropout: of the transformer (attention, projection and residual dropouts).
        layer_norm_first: False for wav2vec2-base (post-norm), True for -large.
        extractor_mode: "group_norm" (base) or "layer_norm" (large).
    """

    def __init__(self, conv_layers: Sequence[Sequence[int]] = BASE_CONV, dim: int = 768, num_layers: int = 12,
                 num_heads: int = 12, ffn_dim: int = 3072, pos_conv_kernel: int = 128, pos_conv_groups: int = 16,
                 dropout: float = 0.1, layer_norm_first: bool = False, extractor_mode: str = "group_norm") -> None:
        super().__init__()
        from torchaudio.models import wav2vec2_model

        conv = [tuple(int(v) for v in layer) for layer in conv_layers]
        if not conv or any(len(layer) != 3 or min(layer) < 1 for layer in conv):
            raise ValueError(f"conv_layers must be (channels, kernel, stride) triples of positive ints, got {conv_layers}")
        self.model = wav2vec2_model(
            extractor_mode=extractor_mode, extractor_conv_layer_config=conv, extractor_conv_bias=False,
            encoder_embed_dim=dim, encoder_projection_dropout=dropout, encoder_pos_conv_kernel=pos_conv_kernel,
            encoder_pos_conv_groups=pos_conv_groups, encoder_num_layers=num_layers, encoder_num_heads=num_heads,
            encoder_attention_dropout=dropout, encoder_ff_interm_features=ffn_dim, encoder_ff_interm_dropout=0.0,
            encoder_dropout=dropout, encoder_layer_norm_first=layer_norm_first, encoder_layer_drop=0.0,
            aux_num_out=None)
        self.dim, self.num_layers = dim, num_layers
        # The CNN's hop (samples per feature) and receptive field (the shortest input it takes).
        self.hop, self.receptive = 1, 1
        for _, kernel, stride in conv:
            self.receptive += (kernel - 1) * self.hop
            self.hop *= stride

    def forward(self, wave: Tensor, frames: int | None = None) -> Tensor:
        """Waveforms (B, N) at 16 kHz -> (B, frames, num_layers, dim): the CNN's features
        interpolated to ``frames`` (default: its own rate), then every transformer layer."""
        if wave.dim() != 2 or wave.shape[1] < self.receptive:
            raise ValueError(f"expected waveforms (B, N >= {self.receptive}), got {tuple(wave.shape)}")
        if frames is not None and frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        wave = (wave - wave.mean(1, keepdim=True)) / torch.sqrt(wave.var(1, keepdim=True) + 1e-7)
        features, _ = self.model.feature_extractor(wave, None)  # (B, T, C) at 16000 / hop Hz
        if frames is not None and frames != features.shape[1]:
            features = F.interpolate(features.transpose(1, 2), size=frames, mode="linear",
                                     align_corners=True).transpose(1, 2)
        layers = self.model.encoder.extract_features(features)
        return torch.stack(layers, dim=2)


def _torchaudio_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face wav2vec2 key names -> torchaudio's (torchaudio's own pass through)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("model.").removeprefix("wav2vec2.")
        if key.startswith(("lm_head.", "masked_spec_embed", "quantizer.", "project_")):
            continue  # heads and pre-training parts: not the feature model
        if key.startswith("feature_projection."):
            key = "encoder." + key
        elif key.startswith("encoder.") and not key.startswith(("encoder.transformer.", "encoder.feature_projection.")):
            key = "encoder.transformer." + key.removeprefix("encoder.")
        out[key] = value
    return out


def _weight_norm_keys(state: dict[str, Tensor], own: dict[str, Tensor]) -> dict[str, Tensor]:
    """Weight norm's two names: ``weight_g`` / ``weight_v`` (old torch and checkpoints) and
    ``parametrizations.weight.original0`` / ``original1`` (torch >= 2.1): renamed to the model's."""
    legacy, current = ("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1")
    src, dst = (legacy, current) if any(current[0] in k for k in own) else (current, legacy)
    out = {}
    for key, value in state.items():
        for a, b in zip(src, dst):
            key = key.replace(a, b)
        out[key] = value
    return out


def load_wav2vec2_weights(features: Wav2Vec2Features, path: str | Path) -> None:
    """Load a user's wav2vec 2.0 weights into ``features`` (strictly: every tensor of the
    model must be there, with its shape). ValueError naming the file if not."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"wav2vec2 weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: one clear message
        raise ValueError(f"cannot read wav2vec2 weights from {path}: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    own = features.model.state_dict()
    state = _weight_norm_keys(_torchaudio_keys(state), own)
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k in own if k in state and state[k].shape != own[k].shape)
    if missing or wrong:
        detail = (f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}" if missing
                  else f"shape mismatch at {wrong[0]}: {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}")
        raise ValueError(f"{path} does not fit this wav2vec2 (its sizes must match the config): {detail}")
    features.model.load_state_dict({k: state[k] for k in own})

"""Vocos (Siuzdak 2023, "Vocos: Closing the gap between time-domain and Fourier-based
neural vocoders for high-quality audio synthesis"): a ConvNeXt backbone at frame rate
(``VocosBlock``) and an inverse-STFT head. Language-Codec (Ji et al. 2024,
"Language-Codec: Reducing the Gaps Between Discrete Codec Representation and Speech
Language Models") decodes with it, its LayerNorms conditioned on the bandwidth (number
of codebooks) through AdaLayerNorm.

Shapes are channels-first: latents (B, D, frames), waveforms (B, 1, T).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

from codecgen.config import configurable

@configurable
class AdaLayerNorm(nn.Module):
    """LayerNorm over the last axis whose scale and shift are looked up per condition id
    (Vocos, Siuzdak 2023; Language-Codec's bandwidth embedding, Ji et al. 2024).

    forward(x (B, T, C), cond_id LongTensor (B,)) -> (B, T, C); a single id (shape () or
    (1,)) applies to the whole batch. Scales start at one and shifts at zero, so an
    untrained AdaLayerNorm is a plain LayerNorm without affine parameters.
    """

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        if num_embeddings < 1:
            raise ValueError(f"num_embeddings must be >= 1, got {num_embeddings}")
        self.num_embeddings, self.dim, self.eps = num_embeddings, dim, eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor) -> torch.Tensor:
        ids = _condition_ids(cond_id, x.shape[0], self.num_embeddings, x.device)
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x * self.scale(ids)[:, None] + self.shift(ids)[:, None]


def _condition_ids(cond_id, batch: int, num_embeddings: int, device, check_range: bool | None = None) -> torch.Tensor:
    """Condition ids as a (B,) LongTensor on `device`; a single id is broadcast.

    The range check reads the ids, a host sync on an accelerator, so by default it
    runs on CPU tensors only; `VocosBackbone` checks once per forward instead.
    """
    ids = torch.as_tensor(cond_id, device=device)
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"condition ids must be an integer tensor, got {ids.dtype}")
    ids = ids.long().reshape(-1)
    if ids.numel() == 1:
        ids = ids.expand(batch)
    if ids.shape != (batch,):
        raise ValueError(f"expected one condition id per batch item ({batch}), got shape {tuple(ids.shape)}")
    if check_range if check_range is not None else ids.device.type == "cpu":
        if bool(((ids < 0) | (ids >= num_embeddings)).any()):
            raise ValueError(f"condition ids must lie in [0, {num_embeddings}), got {ids.tolist()}")
    return ids


@configurable
class VocosBlock(nn.Module):
    """Vocos' 1-D ConvNeXt block (Siuzdak 2023) on (B, dim, T):
    x + gamma * Linear(GELU(Linear(Norm(dwconv_k7(x))))), the Linears dim -> intermediate_dim
    -> dim applied channels-last; Norm is an AdaLayerNorm when `adanorm_num_embeddings`
    is set, else a LayerNorm; gamma (layer scale) is omitted when the init value is
    None or <= 0."""

    def __init__(
        self,
        dim: int,
        intermediate_dim: int,
        layer_scale_init_value: float | None = None,
        adanorm_num_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.adanorm = adanorm_num_embeddings is not None
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if self.adanorm else nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        if layer_scale_init_value is not None and layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma = None

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        if self.adanorm:
            if cond_id is None:
                raise ValueError("this VocosBlock uses AdaLayerNorm: pass a condition id")
            h = self.norm(h, cond_id)
        else:
            h = self.norm(h)
        h = self.pwconv2(self.act(self.pwconv1(h)))
        if self.gamma is not None:
            h = h * self.gamma
        return x + h.transpose(1, 2)


@configurable
class VocosBackbone(nn.Module):
    """Vocos' backbone (Siuzdak 2023): (B, input_channels, T) -> (B, dim, T).

    conv k7 input_channels -> dim, (Ada)LayerNorm, `num_layers` ConvNeXt blocks, final
    LayerNorm; no up-sampling (the iSTFT head does that). Convs and Linears start from
    N(0, 0.02) truncated, biases 0, as in Vocos. With `adanorm_num_embeddings` set
    (Language-Codec: 4 bandwidth ids, Ji et al. 2024) every norm but the last is an
    AdaLayerNorm and `forward` needs `bandwidth_id` (B,); with None the norms are plain
    LayerNorms and `bandwidth_id` is ignored. `layer_scale_init_value` defaults to
    1 / num_layers.

    Deviation: Vocos returns channels-last (B, T, dim); we return channels-first like
    every module here, and `ISTFTHead` takes channels-first.
    """

    def __init__(
        self,
        input_channels: int = 128,
        dim: int = 384,
        intermediate_dim: int = 1152,
        num_layers: int = 12,
        layer_scale_init_value: float | None = None,
        adanorm_num_embeddings: int | None = 4,
    ) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.input_channels, self.dim = input_channels, dim
        self.adanorm_num_embeddings = adanorm_num_embeddings
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        adanorm = adanorm_num_embeddings is not None
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if adanorm else nn.LayerNorm(dim, eps=1e-6)
        if layer_scale_init_value is None:
            layer_scale_init_value = 1.0 / max(num_layers, 1)
        self.blocks = nn.ModuleList(
            VocosBlock(dim, intermediate_dim, layer_scale_init_value, adanorm_num_embeddings)
            for _ in range(num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.input_channels:
            raise ValueError(f"expected (B, {self.input_channels}, T), got {tuple(x.shape)}")
        ids = None
        if self.adanorm_num_embeddings is not None:
            if bandwidth_id is None:
                raise ValueError("this VocosBackbone is bandwidth-conditioned (AdaLayerNorm): pass bandwidth_id")
            ids = _condition_ids(bandwidth_id, x.shape[0], self.adanorm_num_embeddings, x.device, check_range=True)
        h = self.embed(x).transpose(1, 2)
        h = self.norm(h, ids) if ids is not None else self.norm(h)
        h = h.transpose(1, 2)
        for block in self.blocks:
            h = block(h, ids)
        return self.final_layer_norm(h.transpose(1, 2)).transpose(1, 2)


@configurable
class ISTFT(nn.Module):
    """Inverse STFT of a (B, n_fft // 2 + 1, T) complex spectrogram with a periodic Hann window.

    padding="same" (Vocos, Siuzdak 2023): irfft per frame, window, overlap-add
    (`F.fold`), divide by the overlap-added squared window, then trim the
    (win_length - hop_length) samples the frames overhang, half on each side (the odd
    one on the right), so T frames give exactly T * hop_length samples.
    padding="center": `torch.istft(center=True)`, (T - 1) * hop_length samples.
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int | None = None, padding: str = "same") -> None:
        super().__init__()
        win_length = n_fft if win_length is None else win_length
        if padding not in ("same", "center"):
            raise ValueError(f"padding must be 'same' or 'center', got {padding!r}")
        if not 0 < hop_length < win_length <= n_fft:
            raise ValueError(f"need 0 < hop_length < win_length <= n_fft, got {hop_length}, {win_length}, {n_fft}")
        self.n_fft, self.hop_length, self.win_length, self.padding = n_fft, hop_length, win_length, padding
        self.trim_left = (win_length - hop_length) // 2
        self.trim_right = win_length - hop_length - self.trim_left
        window = torch.hann_window(win_length)
        # Each kept sample sits at offset [trim_left, trim_left + hop) of some frame; the
        # window there bounds the envelope from below for every T.
        if padding == "same" and window[self.trim_left : self.trim_left + hop_length].square().min() <= 1e-11:
            raise ValueError(f"hop_length {hop_length} is too large for window {win_length}: the envelope vanishes")
        self.register_buffer("window", window, persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, n_fft // 2 + 1, T) complex -> (B, T * hop_length) real ("same")."""
        if spec.dim() != 3 or spec.shape[1] != self.n_fft // 2 + 1:
            raise ValueError(f"expected (B, {self.n_fft // 2 + 1}, T) complex, got {tuple(spec.shape)}")
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)
        frames = spec.shape[-1]
        # torch.stft centres a shorter window inside the n_fft frame: keep that part
        frame_signals = torch.fft.irfft(spec, n=self.n_fft, dim=1, norm="backward")
        if self.win_length < self.n_fft:
            offset = (self.n_fft - self.win_length) // 2
            frame_signals = frame_signals[:, offset : offset + self.win_length]
        frame_signals = frame_signals * self.window[None, :, None]
        total = (frames - 1) * self.hop_length + self.win_length
        fold = functools.partial(
            F.fold, output_size=(1, total), kernel_size=(1, self.win_length), stride=(1, self.hop_length)
        )
        y = fold(frame_signals)[:, 0, 0]
        envelope = fold(self.window.square()[None, :, None].expand(1, -1, frames))[0, 0, 0]
        end = total - self.trim_right
        return y[:, self.trim_left : end] / envelope[self.trim_left : end]


@configurable
class ISTFTHead(nn.Module):
    """Vocos' iSTFT head (Siuzdak 2023): features (B, dim, T) -> waveform (B, 1, T * hop).

    A Linear maps each frame to n_fft + 2 numbers: n_fft/2 + 1 log-magnitudes and as
    many phases; magnitude = exp(log-magnitude) clipped at 1e2 (computed as
    exp(min(log-magnitude, ln 100)), the same value without an overflow to inf),
    S = magnitude * (cos phase + i sin phase), then `ISTFT`.
    """

    def __init__(self, dim: int = 384, n_fft: int = 1280, hop_length: int = 320, padding: str = "same") -> None:
        super().__init__()
        if n_fft % 2:
            raise ValueError(f"n_fft must be even, got {n_fft}")
        self.dim, self.n_fft, self.hop = dim, n_fft, hop_length
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, n_fft, padding)

    @property
    def hop_length(self) -> int:
        return self.hop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.dim:
            raise ValueError(f"expected (B, {self.dim}, T), got {tuple(x.shape)}")
        h = self.out(x.transpose(1, 2)).transpose(1, 2).float()  # the FFT wants float32
        log_mag, phase = h.chunk(2, dim=1)
        mag = torch.exp(log_mag.clamp(max=math.log(1e2)))
        spec = torch.polar(mag, phase)
        return self.istft(spec).unsqueeze(1)


@configurable
class VocosDecoder(nn.Module):
    """Vocos (Siuzdak 2023) as a codec decoder: `VocosBackbone` + `ISTFTHead`,
    latent (B, input_channels, T) -> waveform (B, 1, T * hop_length).

    The defaults are Language-Codec's decoder (Ji et al. 2024): 128-d latent, 12
    ConvNeXt blocks of dim 384 / hidden 1152, AdaLayerNorm over 4 bandwidth ids,
    n_fft 1280, hop 320 (24 kHz, 75 Hz). Pass `bandwidth_id` (B,) when
    `adanorm_num_embeddings` is set.
    """

    def __init__(
        self,
        input_channels: int = 128,
        dim: int = 384,
        intermediate_dim: int = 1152,
        num_layers: int = 12,
        adanorm_num_embeddings: int | None = 4,
        n_fft: int = 1280,
        hop_length: int = 320,
        layer_scale_init_value: float | None = None,
    ) -> None:
        super().__init__()
        self.backbone = VocosBackbone(
            input_channels, dim, intermediate_dim, num_layers, layer_scale_init_value, adanorm_num_embeddings
        )
        self.head = ISTFTHead(dim, n_fft, hop_length, padding="same")

    @property
    def input_channels(self) -> int:
        return self.backbone.input_channels

    @property
    def hop_length(self) -> int:
        return self.head.hop_length

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(x, bandwidth_id))

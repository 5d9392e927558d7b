"""Compressing a network's own weights: learnable-scale quantization and a per-tensor
Gaussian entropy model, as the NeRV-family video codecs need (the network *is* the file).

- ``WeightQuantizer``: uniform quantization to signed ``bits``-bit integers with a
  learnable step (LSQ: Esser et al. 2020, "Learned Step Size Quantization"), rounding
  with a straight-through gradient, per tensor or per output channel.
- ``GaussianRate``: the "consistent entropy minimisation" model of the conditional-decoder
  boost (Zhang et al. 2024): each tensor's integers are modelled by a discretised Gaussian
  with the tensor's own mean and standard deviation. In training, uniform noise stands in
  for rounding and the rate is differentiable; for the file, the same model drives
  constriction's range coder (``encode_tensors`` / ``decode_tensors``), so the estimate
  and the real size agree to a few bytes per tensor.

Lossless by construction: the decoder rebuilds each tensor's model from its mean and
standard deviation, which travel as float32 in the header, and decodes the very integers
that were encoded; dequantized weights are then bit-identical on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import constriction
import numpy as np
import torch
from torch import Tensor, nn

from codecgen.nn import entropy

MIN_STD = 0.05  # a constant tensor still gets a proper (narrow) distribution


def _round_ste(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


class WeightQuantizer(nn.Module):
    """``x -> round(clamp(x / s, -2^(b-1), 2^(b-1) - 1)) * s`` with a learnable step ``s``.

    ``per_channel``: one step per slice along dim 0 (output channels), else one per
    tensor. The step starts at LSQ's ``2 mean|x| / sqrt(2^(b-1) - 1)``, and its gradient
    is scaled by ``1 / sqrt(numel * q_max)`` as in the paper, so it trains at the
    weights' learning rate.
    """

    def __init__(self, weight: Tensor, bits: int = 8, per_channel: bool = False):
        super().__init__()
        if not 2 <= bits <= 16:
            raise ValueError(f"bits must be in [2, 16], got {bits}")
        self.bits, self.per_channel = bits, per_channel
        self.q_min, self.q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        shape = (weight.shape[0],) + (1,) * (weight.ndim - 1) if per_channel and weight.ndim > 1 else ()
        dims = tuple(range(1, weight.ndim)) if shape else tuple(range(weight.ndim))
        init = 2 * weight.detach().abs().mean(dim=dims, keepdim=bool(shape)) / math.sqrt(self.q_max)
        self.step = nn.Parameter(init.clamp(min=1e-8).reshape(shape) if shape else init.clamp(min=1e-8))
        self._grad_scale = 1.0 / math.sqrt(weight.numel() * self.q_max)

    def _scaled_step(self) -> Tensor:
        step = self.step.abs().clamp(min=1e-8)
        # LSQ's gradient scaling: value unchanged, gradient multiplied by _grad_scale
        return step * self._grad_scale + (step - step * self._grad_scale).detach()

    def integers(self, x: Tensor) -> Tensor:
        """The int64 codes of ``x`` (no gradient)."""
        with torch.no_grad():
            return torch.round(x / self.step.abs().clamp(min=1e-8)).clamp(self.q_min, self.q_max).long()

    def dequantize(self, q: Tensor) -> Tensor:
        return q.to(self.step.dtype) * self.step.abs().clamp(min=1e-8)

    def forward(self, x: Tensor) -> Tensor:
        step = self._scaled_step()
        return _round_ste((x / step).clamp(self.q_min, self.q_max)) * step


def _gaussian_bits(q: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """-log2 P(q) for integers (or noisy reals) q under a Gaussian discretised to unit bins."""
    normal = torch.distributions.Normal(mean, std)
    p = normal.cdf(q + 0.5) - normal.cdf(q - 0.5)
    return -torch.log2(p.clamp(min=1e-9))


def tensor_stats(q: Tensor) -> tuple[float, float]:
    """(mean, std) of an integer tensor as the float32 values both coder sides use."""
    qf = q.double()
    mean = float(np.float32(qf.mean())) if q.numel() else 0.0
    std = float(np.float32(max(float(qf.std(unbiased=False)) if q.numel() > 1 else 0.0, MIN_STD)))
    return mean, std


class GaussianRate(nn.Module):
    """Estimated bits of quantized tensors under their own discretised Gaussians."""

    def forward(self, scaled: Mapping[str, Tensor]) -> Tensor:
        """``scaled``: tensors already divided by their step (real-valued). In training,
        uniform noise in [-0.5, 0.5) replaces rounding; in eval, values are rounded."""
        total = 0.0
        for x in scaled.values():
            y = x + torch.empty_like(x).uniform_(-0.5, 0.5) if self.training else torch.round(x)
            mean, std = y.mean().detach(), y.std(unbiased=False).detach().clamp(min=MIN_STD)
            total = total + _gaussian_bits(y, mean, std).sum()
        return total


# --------------------------------------------------------------------------- the file


def _model(q_min: int, q_max: int, mean: float, std: float):
    return constriction.stream.model.QuantizedGaussian(q_min, q_max, mean, std)


def _mask_model(n: int, kept: int):
    """Kept / pruned flags under their own frequencies (integer counts: identical on both sides)."""
    counts = np.array([max(n - kept, 1), max(kept, 1)], dtype=np.float64)
    return constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)


def encode_tensors(tensors: Mapping[str, Tensor], bits: Mapping[str, int],
                   masks: Mapping[str, Tensor] | None = None) -> tuple[list[dict], bytes]:
    """Integer tensors (each within its ``bits``-bit signed range) -> (per-tensor header
    records, one range-coded payload). Records hold name, shape, bits, mean, std.

    A tensor with a pruning mask (``masks[name]``, 1 = kept) is coded as the mask (one
    flag per entry under the kept fraction, ``kept`` in its record) and then only its kept
    values: a Gaussian cannot model the spike of pruned zeros, this pays ~H(kept) bits per
    entry for them instead of -log2 G(0)."""
    writer = entropy.RangeWriter()
    records = []
    masks = masks or {}
    for name, q in tensors.items():
        b = int(bits[name])
        q_min, q_max = -(2 ** (b - 1)), 2 ** (b - 1) - 1
        if q.numel() and (int(q.min()) < q_min or int(q.max()) > q_max):
            raise ValueError(f"{name}: integers outside the {b}-bit range")
        record = {"name": name, "shape": list(q.shape), "bits": b}
        values = q.reshape(-1)
        if name in masks:
            keep = masks[name].reshape(-1).bool()
            if keep.shape != values.shape:
                raise ValueError(f"{name}: mask shape does not match")
            record["kept"] = int(keep.sum())
            writer.write_with(keep.long().numpy(), _mask_model(values.numel(), record["kept"]))
            values = values[keep]
        record["mean"], record["std"] = tensor_stats(values)
        records.append(record)
        writer.write_with(values.numpy(), _model(q_min, q_max, record["mean"], record["std"]))
    return records, writer.getvalue()


def decode_tensors(records: list[dict], data: bytes, max_elements: int = 1 << 28) -> dict[str, Tensor]:
    """Inverse of ``encode_tensors`` (pruned entries come back as 0); ValueError on corrupt
    records or payload."""
    reader = entropy.RangeReader(data)
    out, total = {}, 0
    for record in records:
        try:
            name, shape, b = str(record["name"]), [int(s) for s in record["shape"]], int(record["bits"])
            mean, std = float(record["mean"]), float(record["std"])
            kept = int(record["kept"]) if "kept" in record else None
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"corrupt tensor record {record!r}: {error}") from None
        if not 2 <= b <= 16 or any(s < 0 for s in shape) or not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"corrupt tensor record for {name}")
        n = math.prod(shape)
        total += n
        if total > max_elements:
            raise ValueError(f"tensors hold more than {max_elements} values")
        if kept is not None and not 0 <= kept <= n:
            raise ValueError(f"corrupt tensor record for {name}: kept {kept} of {n}")
        q_min, q_max = -(2 ** (b - 1)), 2 ** (b - 1) - 1
        if kept is None:
            out[name] = torch.from_numpy(reader.read_with(n, _model(q_min, q_max, mean, std))).reshape(shape)
            continue
        keep = torch.from_numpy(reader.read_with(n, _mask_model(n, kept))).bool()
        if int(keep.sum()) != kept:
            raise ValueError(f"corrupt payload: {name} mask keeps {int(keep.sum())}, record says {kept}")
        values = torch.zeros(n, dtype=torch.long)
        values[keep] = torch.from_numpy(reader.read_with(kept, _model(q_min, q_max, mean, std)))
        out[name] = values.reshape(shape)
    reader.finish()
    return out

"""Learnable-scale weight quantization and Gaussian entropy coding of integer tensors."""

import math

import pytest
import torch

from codecgen.nn.weight_compression import (
    GaussianRate,
    WeightQuantizer,
    decode_tensors,
    encode_tensors,
)


def test_quantizer_output_lies_on_the_grid_and_trains_its_step():
    torch.manual_seed(0)
    w = torch.randn(16, 8)
    quant = WeightQuantizer(w, bits=4)
    y = quant(w)
    steps = y / quant.step.abs()
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert steps.min() >= -8 and steps.max() <= 7
    assert torch.equal(quant.dequantize(quant.integers(w)), y.detach())
    # the step learns: minimising the quantization error moves it
    opt = torch.optim.Adam(quant.parameters(), lr=1e-2)
    first = float((quant(w) - w).pow(2).mean())
    for _ in range(100):
        opt.zero_grad()
        loss = (quant(w) - w).pow(2).mean()
        loss.backward()
        opt.step()
    assert float((quant(w) - w).pow(2).mean()) < first


def test_per_channel_steps():
    w = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 10.0, 0.1, 1.0])[:, None, None, None]
    quant = WeightQuantizer(w, bits=8, per_channel=True)
    assert quant.step.shape == (4, 1, 1, 1)
    assert quant.step[1] > quant.step[0] > quant.step[2]
    with pytest.raises(ValueError, match="bits"):
        WeightQuantizer(w, bits=1)


def test_tensors_round_trip_exactly_and_match_the_rate_estimate():
    torch.manual_seed(0)
    tensors = {
        "conv.weight": torch.round(torch.randn(32, 16, 3, 3) * 12).clamp(-128, 127).long(),
        "conv.bias": torch.round(torch.randn(32) * 3).long(),
        "embedding": torch.round(torch.randn(8, 16, 2, 2) * 5).clamp(-32, 31).long(),
        "empty": torch.zeros(0, 4, dtype=torch.long),
        "constant": torch.full((10,), 3, dtype=torch.long),
    }
    bits = {"conv.weight": 8, "conv.bias": 8, "embedding": 6, "empty": 8, "constant": 8}
    records, data = encode_tensors(tensors, bits)
    back = decode_tensors(records, data)
    for name, q in tensors.items():
        assert torch.equal(back[name], q), name
    rate = GaussianRate().eval()
    estimate = float(rate({k: v.float() for k, v in tensors.items() if v.numel()}))
    assert abs(8 * len(data) - estimate) < 0.02 * estimate + 64
    # far below the raw bit width
    raw = sum(v.numel() * bits[k] for k, v in tensors.items())
    assert 8 * len(data) < 0.8 * raw


def test_rate_is_differentiable_and_falls_when_weights_shrink():
    torch.manual_seed(0)
    x = (torch.randn(1000) * 20).requires_grad_()
    rate = GaussianRate().train()
    bits = rate({"x": x})
    bits.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(rate({"x": x.detach() * 0.25})) < float(bits)


def test_corrupt_records_and_payload_raise_value_error():
    q = {"w": torch.arange(-5, 5).long()}
    records, data = encode_tensors(q, {"w": 4})
    with pytest.raises(ValueError, match="outside"):
        encode_tensors({"w": torch.tensor([100])}, {"w": 4})
    for bad in ({**records[0], "std": -1.0}, {**records[0], "bits": 99}, {**records[0], "shape": "x"},
                {k: v for k, v in records[0].items() if k != "mean"}):
        with pytest.raises(ValueError):
            decode_tensors([bad], data)
    with pytest.raises(ValueError):
        decode_tensors([{**records[0], "shape": [10**9]}], data)
    assert math.isfinite(records[0]["mean"])


def test_pruned_tensors_code_their_mask_and_only_kept_values():
    torch.manual_seed(0)
    q = torch.round(torch.randn(64, 64) * 20).clamp(-128, 127).long()
    keep = torch.rand(64, 64) > 0.6
    pruned = torch.where(keep, q, torch.zeros_like(q))
    plain_records, plain = encode_tensors({"w": pruned}, {"w": 8})
    records, data = encode_tensors({"w": pruned}, {"w": 8}, masks={"w": keep})
    assert records[0]["kept"] == int(keep.sum())
    assert torch.equal(decode_tensors(records, data)["w"], pruned)
    assert len(data) < 0.8 * len(plain)
    with pytest.raises(ValueError):
        decode_tensors([{**records[0], "kept": 10**7}], data)

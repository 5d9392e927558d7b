"""Adan (codecgen.nn.optim): its first step, that it minimises, bad arguments, and its
use by the boosted video recipe."""

import pytest
import torch

from codecgen.codecs.video.nerv import NeRVVideoCodec, recipe
from codecgen.nn.nerv import NeRVDecoder
from codecgen.nn.optim import Adan

torch.set_num_threads(1)


def test_first_step_is_a_sign_step_and_weight_decay_divides():
    # step 1: the gradient difference is zero and the bias-corrected moments are g and g^2
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    p.grad = torch.tensor([0.5, -4.0, 1e-3])
    Adan([p], lr=0.1, eps=0.0).step()
    assert torch.allclose(p.detach(), torch.tensor([0.9, -1.9, 2.9]))
    q = torch.nn.Parameter(torch.tensor([1.0]))
    q.grad = torch.tensor([2.0])
    Adan([q], lr=0.1, eps=0.0, weight_decay=0.5).step()
    assert torch.allclose(q.detach(), torch.tensor([0.9 / 1.05]))


def test_minimises_least_squares():
    torch.manual_seed(0)
    a = torch.randn(64, 8)
    target = a @ torch.randn(8) + 0.01 * torch.randn(64)
    w = torch.nn.Parameter(torch.zeros(8))
    opt = Adan([w], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = ((a @ w - target) ** 2).mean()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 1e-2 * float((target ** 2).mean())


def test_bad_arguments():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="betas"):
        Adan(p, betas=(0.9, 0.9))
    with pytest.raises(ValueError, match="betas"):
        Adan(p, betas=(0.9, 1.0, 0.9))
    with pytest.raises(ValueError, match="lr"):
        Adan(p, lr=-1.0)


def test_recipes_follow_the_papers():
    plain, boosted = recipe(False, True, 5), recipe(True, True, 5)
    assert (plain["optimizer"], plain["lr"], plain["decoder"]) == ("adam", 1e-3, {})
    assert (boosted["optimizer"], boosted["lr"]) == ("adan", 3e-3)
    assert boosted["decoder"] == {"boosted": True, "extra_blocks": [0, 0, 1, 1, 1], "k_max": 3}
    assert boosted["loss_weights"]["fft"] > 0 == plain["loss_weights"]["fft"]
    assert recipe(True, False, 2)["decoder"] == {"boosted": True, "extra_blocks": [1, 1]}
    decoder = NeRVDecoder((16, 16), (2, 2), 8, **recipe(True, False, 2)["decoder"])
    codec = NeRVVideoCodec(decoder, n_frames=4, frame_size=(16, 16), optimizer="adan")

    class _Trainer:
        estimated_stepping_batches = 10

    codec.trainer = _Trainer()  # configure_optimizers reads only the step count
    (opt,), _ = codec.configure_optimizers()
    assert isinstance(opt, Adan)
    with pytest.raises(ValueError, match="optimizer"):
        NeRVVideoCodec(NeRVDecoder((16, 16), (2, 2), 8), optimizer="sgd")

"""NeRV / HNeRV / boosted decoders (codecgen.nn.nerv): shapes, structure, TAT, budget, fitting."""

import json

import pytest
import torch

from codecgen.config import build, init_spec
from codecgen.nn.nerv import (
    ConvNeXtEncoder,
    HNeRVDecoder,
    NeRVBlock,
    NeRVDecoder,
    PositionalEncoding,
    TemporalAffine,
    TimeEmbedding,
    count_parameters,
    embedding_params,
    hnerv_for_budget,
    nerv_for_budget,
    solve_stem_channels,
)

torch.set_num_threads(1)

T4 = torch.tensor([0.0, 0.25, 0.5, 0.75])


def _models():
    return {
        "nerv": NeRVDecoder((32, 32), (2, 2, 2), 16),
        "nerv_boosted": NeRVDecoder((32, 32), (2, 2, 2), 16, boosted=True, extra_blocks=(0, 1, 1)),
        "hnerv": HNeRVDecoder(8, (2, 2, 2), 16),
        "hnerv_boosted": HNeRVDecoder(8, (2, 2, 2), 16, boosted=True, extra_blocks=(0, 1, 1)),
    }


def _run(name, model, t):
    if name.startswith("nerv"):
        return model(t)
    return model(torch.randn(len(t), 8, 4, 4), t)


@pytest.mark.parametrize("name", ["nerv", "nerv_boosted", "hnerv", "hnerv_boosted"])
def test_shapes_and_range(name):
    torch.manual_seed(0)
    out = _run(name, _models()[name], T4)
    assert out.shape == (4, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1


def test_positional_encoding_and_time_embedding():
    pe = PositionalEncoding()
    out = pe(torch.tensor([0.0, 0.5]))
    assert out.shape == (2, 160)
    assert torch.allclose(out[0, :80], torch.zeros(80)) and torch.allclose(out[0, 80:], torch.ones(80))
    assert torch.allclose(out[1, 0], torch.tensor(1.0))  # sin(pi / 2)
    assert TimeEmbedding()(torch.rand(3)).shape == (3, 32)


def test_nerv_block_and_encoder_shapes():
    block = NeRVBlock(8, 5, kernel=3, scale=2, activation="sine")
    assert block(torch.randn(2, 8, 4, 6)).shape == (2, 5, 8, 12)
    enc = ConvNeXtEncoder(strides=(4, 2, 2), dims=(8, 8, 12), embed_channels=16)
    assert enc(torch.rand(2, 3, 32, 48)).shape == (2, 16, 2, 3)
    with pytest.raises(ValueError, match="divisible"):
        enc(torch.rand(1, 3, 30, 32))


def test_kernels_grow_and_channels_shrink_with_floor():
    dec = HNeRVDecoder(16, (2, 2, 2, 2, 2), 30, k_min=1, k_max=5, reduction=1.2, min_channels=20)
    blocks = [stage[0] for stage in dec.trunk.stages]
    assert [b.kernel for b in blocks] == [1, 3, 5, 5, 5]
    assert [b.conv.kernel_size[0] for b in blocks] == [1, 3, 5, 5, 5]
    # 30 -> round(25) -> round(20.8)=21 -> round(17.5)=18 -> floor 20 -> 20
    assert [b.out_ch for b in blocks] == [25, 21, 20, 20, 20]


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        NeRVDecoder((30, 32), (2, 2, 2), 8)
    with pytest.raises(ValueError, match="extra_blocks"):
        HNeRVDecoder(8, (2, 2), 8, extra_blocks=(1,))
    with pytest.raises(ValueError, match="activation"):
        HNeRVDecoder(8, (2, 2), 8, activation="relu")
    with pytest.raises(ValueError, match="frame positions"):
        HNeRVDecoder(8, (2, 2), 8, boosted=True)(torch.randn(1, 8, 2, 2))


def test_temporal_affine_is_a_time_conditioned_residual():
    torch.manual_seed(0)
    tat, time = TemporalAffine(6, 32), TimeEmbedding()
    x = torch.randn(1, 6, 5, 5).expand(2, -1, -1, -1)  # one feature map, two frame times
    out = tat(x, time(torch.tensor([0.1, 0.9])))
    assert out.shape == x.shape
    assert not torch.allclose(out[0], out[1])  # the time changes the output from the start
    with torch.no_grad():
        tat.conv1.weight.zero_()
        tat.conv1.bias.zero_()
    assert torch.equal(tat(x, time(torch.tensor([0.1, 0.9]))), x)  # x + branch: a residual


def test_boosted_trunk_has_a_tat_after_the_stem_and_every_block():
    model = HNeRVDecoder(8, (2, 2, 2), 16, boosted=True, extra_blocks=(0, 1, 2), k_max=3)
    trunk = model.trunk
    assert [len(stage) for stage in trunk.stages] == [len(tats) for tats in trunk.tats] == [1, 2, 3]
    assert trunk.stem_tat is not None
    assert max(b.kernel for stage in trunk.stages for b in stage) == 3
    assert HNeRVDecoder(8, (2, 2, 2), 16).trunk.stem_tat is None


@pytest.mark.parametrize("millions", [0.05, 0.2, 1.0])
def test_budget_solver(millions):
    target = millions * 1e6
    h = hnerv_for_budget(millions, 8, (64, 64), (4, 2, 2), embed_channels=16)
    total = count_parameters(h) + embedding_params(8, 16, 4, 4)
    assert abs(total - target) <= 0.05 * target
    n = nerv_for_budget(millions, (64, 64), (4, 2, 2))
    assert abs(count_parameters(n) - target) <= 0.05 * target
    if millions > 0.1:  # the boosted decoders' floor is above 0.05M at 64x64
        hb = hnerv_for_budget(millions, 8, (64, 64), (4, 2, 2), boosted=True, extra_blocks=(1, 1, 2))
        assert hb.boosted and abs(count_parameters(hb) + 2048 - target) <= 0.05 * target


def test_budget_solver_generic_and_unreachable():
    assert solve_stem_channels(lambda c: c * c, 1000) == 32  # 31^2=961, 32^2=1024
    with pytest.raises(ValueError, match="embeddings alone"):
        hnerv_for_budget(0.001, 100, (64, 64), (4, 2, 2))
    with pytest.raises(ValueError, match="within 5%"):
        nerv_for_budget(1e-4, (64, 64), (4, 2, 2))


def _clip(n=4, size=32):
    """A horizontal colour gradient moving right by 1/8 of the width per frame."""
    coords = torch.linspace(0, 1, size)
    frames = []
    for k in range(n):
        x = (coords[None, :] + k / 8) % 1.0
        y = coords[:, None]
        frames.append(torch.stack([x.expand(size, size), y.expand(size, size), (0.5 * x + 0.5 * y)]))
    return torch.stack(frames)


@pytest.mark.parametrize("name", ["nerv", "nerv_boosted", "hnerv", "hnerv_boosted"])
def test_fitting_reduces_loss(name):
    torch.manual_seed(0)
    frames = _clip()
    model = _models()[name]
    params = list(model.parameters())
    encoder = None
    if name.startswith("hnerv"):
        encoder = ConvNeXtEncoder(strides=(2, 2, 2), dims=8, embed_channels=8)
        params += list(encoder.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)

    def loss():
        out = model(T4) if encoder is None else model(encoder(frames), T4)
        return torch.mean((out - frames) ** 2)

    first = None
    for _ in range(60):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
        first = value.item() if first is None else first
    with torch.no_grad():
        assert loss().item() < 0.5 * first


def test_rebuild_from_spec():
    models = list(_models().values()) + [ConvNeXtEncoder(strides=(2, 2), dims=(4, 6), embed_channels=3)]
    for m in models:
        spec = json.loads(json.dumps(init_spec(m)))
        assert count_parameters(build(spec)) == count_parameters(m)

"""Quantizer contract: exact code round trips, learning on a fixed batch, MCRVQ masks, k-means shrink."""

import pytest
import torch

from codecgen.config import build, init_spec
from codecgen.nn.quantizers import GRVQ, MCRVQ, RVQ, VQ, QuantizerOutput, kmeans_shrink

torch.set_num_threads(1)

SPATIAL = [(50,), (6, 7), (3, 4, 5)]  # 1-D audio, 2-D image, 3-D video latents


def make(name: str, dim: int, **vq):
    vq = {"kmeans_iters": 5, **vq}
    return {
        "VQ": lambda: VQ(dim, 64, **vq),
        "RVQ": lambda: RVQ(dim, n_q=3, codebook_size=32, vq=vq),
        "GRVQ": lambda: GRVQ(dim, groups=2, n_q_per_group=2, codebook_size=32, vq=vq),
        "MCRVQ": lambda: MCRVQ(dim, n_q=5, n_masked=3, codebook_size=32, quantizer_dropout=0.0, vq=vq),
    }[name]()


QUANTIZERS = ["VQ", "RVQ", "GRVQ", "MCRVQ"]


@pytest.mark.parametrize("name", QUANTIZERS)
@pytest.mark.parametrize("spatial", SPATIAL)
def test_codes_round_trip_exactly(name, spatial):
    torch.manual_seed(0)
    q = make(name, 12)
    z = torch.randn(2, 12, *spatial)
    q.train()
    q(z)  # k-means init + one EMA update
    q.eval()
    out = q(z)
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.shape == z.shape
    assert out.codes.dtype == torch.long
    assert out.codes.shape == (2, q.n_codebooks, *spatial)
    assert len(q.codebook_sizes) == q.n_codebooks
    codes = q.encode(z)
    assert torch.equal(codes, out.codes)
    assert torch.allclose(q.decode(codes), out.quantized, atol=1e-5)
    for i, size in enumerate(q.codebook_sizes):
        assert 0 <= codes[:, i].min() and codes[:, i].max() < size


def test_single_vq_decode_then_encode_is_identity():
    torch.manual_seed(0)
    q = VQ(8, 32, kmeans_iters=5)
    q.train()
    q(torch.randn(4, 8, 100))
    q.eval()
    codes = torch.randint(0, 32, (3, 1, 9))
    assert torch.equal(q.encode(q.decode(codes)), codes)


@pytest.mark.parametrize("name", QUANTIZERS)
@pytest.mark.parametrize("ema", [True, False])
def test_loss_falls_on_fixed_batch(name, ema):
    """From a cold codebook (no k-means), EMA or gradient updates fit clustered data."""
    torch.manual_seed(0)
    dim = 12
    q = make(name, dim, ema=ema, kmeans_init=False)
    centers = 3 * torch.randn(16, dim)
    z = (centers[torch.randint(0, 16, (8 * 40,))] + 0.1 * torch.randn(8 * 40, dim)).reshape(8, 40, dim)
    z = z.transpose(1, 2).contiguous()
    params = [p for p in q.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=0.05) if params else None
    losses = []
    q.train()
    for _ in range(40):
        out = q(z)
        loss = torch.nn.functional.mse_loss(out.quantized, z) + out.loss
        if opt:
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses[::5]


def test_gradient_reaches_encoder_once_through_residual_stages():
    torch.manual_seed(0)
    q = RVQ(6, n_q=4, codebook_size=16, vq={"kmeans_iters": 2})
    q.train()
    z = torch.randn(2, 6, 10, requires_grad=True)
    q(z).quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # straight-through: identity, not n_q x identity


def test_rvq_n_q_selects_bitrate():
    torch.manual_seed(0)
    q = RVQ(8, n_q=4, codebook_size=16, vq={"kmeans_iters": 2})
    q.train()
    q(torch.randn(2, 8, 30))
    q.eval()
    z = torch.randn(2, 8, 30)
    assert q.encode(z, n_q=2).shape == (2, 2, 30)
    assert torch.allclose(q.decode(q.encode(z, n_q=2)), q(z, n_q=2).quantized, atol=1e-5)
    assert q.bits_per_frame(2) == pytest.approx(8.0)
    # more stages -> smaller error
    err = [torch.mean((q.decode(q.encode(z, n_q=k)) - z) ** 2).item() for k in (1, 2, 4)]
    assert err[0] > err[1] > err[2]
    with pytest.raises(ValueError):
        q.encode(z, n_q=5)


def test_quantizer_dropout_varies_stages_in_training():
    torch.manual_seed(0)
    q = RVQ(4, n_q=5, codebook_size=8, quantizer_dropout=1.0, min_n_q=2, vq={"kmeans_iters": 2})
    q.train()
    seen = {q(torch.randn(1, 4, 20)).codes.shape[1] for _ in range(40)}
    assert seen <= {2, 3, 4, 5} and len(seen) >= 3
    q.eval()
    assert q(torch.randn(1, 4, 20)).codes.shape[1] == 5


def test_grvq_is_hificodec_default_and_orders_codes_stage_major():
    q = GRVQ()
    assert q.codebook_sizes == [1024] * 4
    torch.manual_seed(0)
    q = GRVQ(8, groups=2, n_q_per_group=3, codebook_size=16, vq={"kmeans_iters": 2})
    q.train()
    q(torch.randn(2, 8, 40))
    q.eval()
    z = torch.randn(2, 8, 40)
    codes = q.encode(z)
    # group g's stage r is codebook r * G + g: group 0 only depends on channels 0..3
    z2 = z.clone()
    z2[:, 4:] = torch.randn_like(z2[:, 4:])
    codes2 = q.encode(z2)
    assert torch.equal(codes[:, 0::2], codes2[:, 0::2])
    assert not torch.equal(codes[:, 1::2], codes2[:, 1::2])
    assert torch.equal(q.encode(z, n_q=4), codes[:, :4])
    with pytest.raises(ValueError):
        q.encode(z, n_q=3)


def test_mcrvq_masked_stages_see_only_their_slice():
    torch.manual_seed(0)
    dim = 128
    q = MCRVQ(dim, n_q=8, n_masked=3, codebook_size=32, vq={"kmeans_iters": 2})
    q.train()
    for _ in range(3):
        q(torch.randn(4, dim, 30))
    q.eval()
    z = torch.randn(2, dim, 30)
    codes = q.encode(z)
    assert codes.shape == (2, 8, 30)
    for i, (lo, hi) in enumerate([(0, 42), (42, 85), (85, 128)]):
        perturbed = z + 5 * torch.randn_like(z)
        perturbed[:, lo:hi] = z[:, lo:hi]
        other = q.encode(perturbed)
        assert torch.equal(other[:, i], codes[:, i]), f"stage {i} changed when other channels did"
        assert not torch.equal(other[:, 3:], codes[:, 3:])  # residual stages see everything


def test_mcrvq_bandwidth_dropout_and_n_q():
    torch.manual_seed(0)
    q = MCRVQ(24, n_q=8, n_masked=3, codebook_size=16, quantizer_dropout=1.0, vq={"kmeans_iters": 2})
    q.train()
    seen = {q(torch.randn(2, 24, 10)).codes.shape[1] for _ in range(40)}
    assert min(seen) >= 3 and len(seen) >= 3
    q.eval()
    z = torch.randn(2, 24, 10)
    assert torch.allclose(q.decode(q.encode(z, n_q=4)), q(z, n_q=4).quantized, atol=1e-5)
    with pytest.raises(ValueError):
        q.encode(z, n_q=2)


def test_kmeans_shrink_maps_every_old_index_to_nearest_new_entry():
    torch.manual_seed(0)
    codebook = torch.randn(256, 16)
    small, index_map = kmeans_shrink(codebook, 16)
    assert small.shape == (16, 16) and index_map.shape == (256,)
    distances = torch.cdist(codebook, small)
    assert torch.equal(index_map, distances.argmin(-1))
    assert len(index_map.unique()) > 8
    same, identity = kmeans_shrink(codebook, 256)
    assert torch.equal(identity, torch.arange(256))
    with pytest.raises(ValueError):
        kmeans_shrink(codebook, 0)


def test_bad_input_is_refused():
    q = VQ(8, 16)
    with pytest.raises(ValueError):
        q(torch.randn(2, 7, 10))
    with pytest.raises(ValueError):
        q.decode(torch.full((1, 1, 4), 16))
    with pytest.raises(ValueError):
        q.decode(torch.zeros(1, 1, 4))  # float codes


def test_spec_rebuilds_an_equal_quantizer():
    q = MCRVQ(24, n_q=6, n_masked=3, codebook_size=16, vq={"ema": False})
    rebuilt = build(init_spec(q))
    assert type(rebuilt) is MCRVQ and rebuilt.codebook_sizes == q.codebook_sizes
    assert init_spec(rebuilt) == init_spec(q)


def test_ema_codebook_stays_on_the_data_with_small_batches_and_dead_codes():
    """Small batches (fewer vectors than codes) make most entries 'dead' each step; the
    replaced entries must equal the vectors they were replaced with, not a multiple."""
    torch.manual_seed(0)
    q = VQ(8, 256, kmeans_init=False, threshold_dead_code=2.0)
    q.train()
    for _ in range(150):
        q(torch.randn(1, 8, 40))
    data_norm = 3 * torch.randn(1000, 8).norm(dim=1).max()
    assert q.codebook.norm(dim=1).max() < data_norm
    n = q.cluster_size.sum()
    smoothed = (q.cluster_size + q.epsilon) / (n + q.codebook_size * q.epsilon) * n
    assert torch.allclose(q.codebook, q.embed_sum / smoothed[:, None], rtol=1e-4, atol=1e-5)

"""Tests for Language-Codec's parts in codecgen.nn.seanet and codecgen.nn.vocos: EnCodec's SEANet encoder and the
Vocos decoder (AdaLayerNorm, ConvNeXt backbone, iSTFT head). CPU, tiny sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from codecgen.nn.seanet import SEANetEncoder
from codecgen.nn.vocos import (
    ISTFT,
    AdaLayerNorm,
    ISTFTHead,
    VocosBackbone,
    VocosBlock,
    VocosDecoder,
)
from codecgen.config import build, init_spec
from codecgen.nn.losses import MultiResolutionMelLoss
from tests.conftest import n_params, sine_sweep

torch.set_num_threads(1)

TINY_SEANET = {"n_filters": 4, "ratios": (2, 2), "dimension": 8, "lstm_layers": 1}
TINY_VOCOS = {"input_channels": 8, "dim": 16, "intermediate_dim": 32, "num_layers": 2}




# ------------------------------------------------------------------ SEANet


def test_seanet_paper_size_shape():
    enc = SEANetEncoder()
    assert enc.hop_length == 320
    with torch.no_grad():
        z = enc(torch.randn(2, 1, 320 * 10))
    assert z.shape == (2, 128, 10)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("ratios", [(2, 2), (3, 1, 2), (5, 4)])
def test_seanet_tiny_shapes_are_exact(ratios, causal):
    enc = SEANetEncoder(n_filters=4, ratios=ratios, dimension=6, lstm_layers=1, causal=causal)
    hop = math.prod(ratios)
    assert enc.hop_length == hop
    for frames in (1, 2, 7):  # one frame exercises reflect padding of inputs shorter than the pad
        assert enc(torch.randn(3, 1, frames * hop)).shape == (3, 6, frames)


def test_seanet_stereo_and_no_lstm():
    enc = SEANetEncoder(channels=2, n_filters=4, ratios=(2, 2), dimension=5, lstm_layers=0, n_residual_layers=2)
    assert enc(torch.randn(1, 2, 16)).shape == (1, 5, 4)


def test_seanet_rejects_bad_inputs():
    enc = SEANetEncoder(**TINY_SEANET)
    for length in (15, 17, 0):
        with pytest.raises(ValueError, match="multiple of its hop"):
            enc(torch.randn(1, 1, length))
    with pytest.raises(ValueError):
        enc(torch.randn(1, 2, 16))
    with pytest.raises(ValueError):
        SEANetEncoder(ratios=())


def test_seanet_causal_output_ignores_the_future():
    torch.manual_seed(0)
    enc = SEANetEncoder(**TINY_SEANET, causal=True).eval()
    x = torch.randn(1, 1, 64)
    x2 = x.clone()
    x2[..., 40:] = torch.randn(24)
    with torch.no_grad():
        a, b = enc(x), enc(x2)
    assert torch.allclose(a[..., :10], b[..., :10], atol=1e-6)  # frames 0..9 end at sample 40
    assert not torch.allclose(a[..., -1], b[..., -1])


def test_seanet_spec_round_trip():
    enc = SEANetEncoder(**TINY_SEANET)
    rebuilt = build(init_spec(enc))
    assert isinstance(rebuilt, SEANetEncoder) and n_params(rebuilt) == n_params(enc)
    assert init_spec(enc)["init_args"]["ratios"] == [2, 2]


# ------------------------------------------------------------------ Vocos


def test_ada_layer_norm_conditions_on_the_id():
    torch.manual_seed(0)
    norm = AdaLayerNorm(4, 8)
    x = torch.randn(3, 5, 8)
    # At init every id is the same plain LayerNorm.
    plain = F.layer_norm(x, (8,), eps=1e-6)
    assert torch.allclose(norm(x, torch.tensor([0, 1, 3])), plain, atol=1e-6)
    with torch.no_grad():
        norm.scale.weight.add_(torch.randn_like(norm.scale.weight))
        norm.shift.weight.add_(torch.randn_like(norm.shift.weight))
    same = x[:1].expand(4, -1, -1)
    y = norm(same, torch.arange(4))
    for i in range(4):
        expected = plain[0] * norm.scale.weight[i] + norm.shift.weight[i]
        assert torch.allclose(y[i], expected, atol=1e-5)
        for j in range(i + 1, 4):
            assert not torch.allclose(y[i], y[j])
    # a single id applies to the whole batch
    assert torch.allclose(norm(same, torch.tensor(2)), y[2:3].expand(4, -1, -1))
    with pytest.raises(ValueError):
        norm(x, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError):
        norm(x, torch.tensor([0, 1]))


def test_convnext_block_shapes_and_layer_scale():
    x = torch.randn(2, 16, 9)
    block = VocosBlock(16, 32, 0.5)
    assert block(x).shape == x.shape and torch.allclose(block.gamma, torch.full((16,), 0.5))
    assert VocosBlock(16, 32, None).gamma is None
    ada = VocosBlock(16, 32, 0.1, adanorm_num_embeddings=3)
    assert ada(x, torch.tensor([0, 2])).shape == x.shape
    with pytest.raises(ValueError):
        ada(x)


def test_vocos_backbone_bandwidth_id():
    torch.manual_seed(0)
    backbone = VocosBackbone(**TINY_VOCOS, adanorm_num_embeddings=4)
    assert all(b.gamma[0].item() == pytest.approx(0.5) for b in backbone.blocks)  # 1 / num_layers
    x = torch.randn(2, 8, 11)
    assert backbone(x, torch.tensor([0, 3])).shape == (2, 16, 11)
    with pytest.raises(ValueError):
        backbone(x)
    with pytest.raises(ValueError):
        backbone(x, torch.tensor([0, 7]))
    plain = VocosBackbone(**TINY_VOCOS, adanorm_num_embeddings=None)
    assert torch.equal(plain(x), plain(x, torch.tensor([0, 1])))  # ignored without AdaLayerNorm


@pytest.mark.parametrize("n_fft, hop", [(1280, 320), (256, 64), (200, 75)])
def test_istft_same_inverts_a_same_padded_stft(n_fft, hop):
    torch.manual_seed(0)
    istft = ISTFT(n_fft, hop)
    frames = 12
    x = torch.randn(2, frames * hop, dtype=torch.float64)
    pad = n_fft - hop
    padded = F.pad(x[:, None], (pad // 2, pad - pad // 2), mode="reflect")[:, 0]
    spec = torch.stft(padded, n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64), center=False,
                      return_complex=True)
    assert spec.shape[-1] == frames
    istft.window = istft.window.double()
    y = istft(spec)
    assert y.shape == x.shape
    assert torch.allclose(y, x, atol=1e-9)


def test_istft_rejects_bad_sizes():
    with pytest.raises(ValueError):
        ISTFT(256, 256)
    with pytest.raises(ValueError):
        ISTFT(256, 64, padding="valid")
    with pytest.raises(ValueError):
        ISTFTHead(16, 255, 64)


def test_istft_head_clips_the_magnitude():
    head = ISTFTHead(4, 16, 4)
    phase = -math.pi * torch.arange(9.0)  # linear phase: each frame's impulse sits at the window centre
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias[:9] = 1e3  # log-magnitudes far above ln(100): a plain exp would overflow
        head.out.bias[9:] = phase
    y = head(torch.zeros(1, 4, 6))
    assert y.shape == (1, 1, 24) and torch.isfinite(y).all()
    expected = head.istft(torch.polar(torch.full((1, 9, 6), 100.0), phase[None, :, None].expand(1, 9, 6)))
    assert torch.allclose(y[:, 0], expected, atol=1e-4)
    # one impulse of height 100 per frame (samples 2, 6, ...), divided by the squared-window
    # envelope there: 1 + 2 * 0.5**2 away from the ends
    assert y[0, 0, 10].item() == pytest.approx(100 / 1.5, rel=1e-4)
    assert y[0, 0, 11].abs().item() < 1e-3


@pytest.mark.parametrize(
    "kwargs, hop",
    [({}, 320), ({**TINY_VOCOS, "n_fft": 256, "hop_length": 64}, 64)],
)
def test_vocos_decoder_output_length_is_exact(kwargs, hop):
    dec = VocosDecoder(**kwargs)
    assert dec.hop_length == hop
    channels = kwargs.get("input_channels", 128)
    with torch.no_grad():
        for frames in (1, 5):
            y = dec(torch.randn(2, channels, frames), torch.tensor([0, 3]))
            assert y.shape == (2, 1, frames * hop)
            assert torch.isfinite(y).all()
    assert isinstance(build(init_spec(dec)), VocosDecoder)


def test_tiny_seanet_vocos_autoencoder_learns_a_sine_sweep():
    torch.manual_seed(0)
    enc = SEANetEncoder(n_filters=8, ratios=(4, 4), dimension=16, lstm_layers=1)
    dec = VocosDecoder(16, 32, 64, 2, adanorm_num_embeddings=2, n_fft=64, hop_length=16)
    mel_loss = MultiResolutionMelLoss(16000, resolutions=((512, 128, 40), (256, 64, 40)))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    # a fixed noise floor, as real audio has: a pure chirp leaves mel bins at zero energy
    y = sine_sweep(2, 2048) + 0.01 * torch.randn(2, 1, 2048, generator=torch.Generator().manual_seed(1234))
    ids = torch.tensor([0, 1])
    losses = []
    for _ in range(40):
        loss = mel_loss(dec(enc(y), ids), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = mel_loss(dec(enc(y), ids), y).item()
    assert final < 0.7 * losses[0], (losses[0], final)


def test_paper_size_parameter_counts():
    # Measured with this implementation (weight-norm g and v both counted):
    #   SEANetEncoder, EnCodec 24 kHz / Language-Codec (32 filters, 8-5-4-2, 128-d, 2-layer LSTM): 7.34 M
    #     (of which the LSTM at 512 channels is 4.20 M)
    #   VocosBackbone, Language-Codec (128 in, 12 x 384 / 1152, AdaLayerNorm x 4): 11.06 M;
    #     VocosDecoder (+ iSTFT head, n_fft 1280): 11.56 M
    #   Vocos' own mel-24 kHz model (100 mels, 8 x 512 / 1536, n_fft 1024): 13.53 M,
    #     the 13.5 M of the Vocos paper
    counts = {
        "seanet": n_params(SEANetEncoder()),
        "seanet_lstm": n_params(SEANetEncoder().model[-3]),
        "backbone": n_params(VocosBackbone()),
        "decoder": n_params(VocosDecoder()),
        "vocos_mel": n_params(VocosBackbone(100, 512, 1536, 8, adanorm_num_embeddings=None))
        + n_params(ISTFTHead(512, 1024, 256)),
    }
    print({k: f"{v / 1e6:.2f}M" for k, v in counts.items()})
    assert 7.2e6 < counts["seanet"] < 7.5e6
    assert counts["seanet_lstm"] == 2 * 4 * (2 * 512 * 512 + 2 * 512)
    assert 11.0e6 < counts["backbone"] < 11.2e6
    assert 11.5e6 < counts["decoder"] < 11.6e6
    assert 13.4e6 < counts["vocos_mel"] < 13.6e6

"""Tests for codecgen.nn.hifigan, codecgen.nn.discriminators and codecgen.nn.losses (CPU, tiny sizes)."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from torch.nn.utils import parametrize

from codecgen.nn.hifigan import HiFiCodecEncoder, HiFiGANGenerator, ResBlock1
from codecgen.nn.discriminators import (
    DiscriminatorGroup,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
    PeriodDiscriminator,
    ScaleDiscriminator,
    STFTDiscriminator,
)
from codecgen.nn.losses import (
    LogMelSpectrogram,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from tests.conftest import n_params, sine_sweep

torch.set_num_threads(1)

TINY_RES = {"resblock_kernel_sizes": (3,), "resblock_dilation_sizes": ((1, 3),)}




# ------------------------------------------------------------------ audio.py

HOP_CONFIGS = [
    ((8, 5, 4, 2), (16, 11, 8, 4)),  # HiFi-Codec 320 (decoder order)
    ((2, 4, 5, 8), (4, 8, 11, 16)),  # HiFi-Codec 320 (encoder order)
    ((6, 5, 4, 2), (12, 11, 8, 4)),  # 240
    ((2, 4, 5, 6), (4, 8, 11, 12)),  # 240, encoder order
    ((8, 5, 3, 2), (16, 11, 7, 4)),  # HiFi-Codec 24 kHz / 240
    ((3, 2), (4, 5)),  # odd kernel - rate at both stages
    ((2, 2), (4, 4)),  # tiny
]


@pytest.mark.parametrize(("rates", "kernels"), HOP_CONFIGS)
def test_generator_output_length_is_exact(rates, kernels):
    gen = HiFiGANGenerator(8, 32, rates, kernels, **TINY_RES)
    assert gen.hop_length == math.prod(rates)
    for frames in (1, 5):
        out = gen(torch.randn(2, 8, frames))
        assert out.shape == (2, 1, frames * gen.hop_length)
        assert out.abs().max() <= 1.0  # tanh output


@pytest.mark.parametrize(("rates", "kernels"), HOP_CONFIGS)
def test_encoder_output_length_is_exact(rates, kernels):
    enc = HiFiCodecEncoder(4, rates, kernels, **TINY_RES, latent_dim=12)
    assert enc.hop_length == math.prod(rates)
    for frames in (1, 3):
        z = enc(torch.randn(2, 1, frames * enc.hop_length))
        assert z.shape == (2, 12, frames)


def test_encoder_rejects_lengths_off_the_hop():
    enc = HiFiCodecEncoder(8, (2, 2), (4, 4), **TINY_RES, latent_dim=8)
    with pytest.raises(ValueError, match="multiple of its hop 4"):
        enc(torch.randn(1, 1, 4 * 5 + 1))
    with pytest.raises(ValueError):
        enc(torch.randn(1, 2, 16))  # not mono


def test_invalid_layer_configs_raise():
    with pytest.raises(ValueError):
        HiFiGANGenerator(8, 32, (4,), (3,))  # kernel < rate
    with pytest.raises(ValueError):
        HiFiGANGenerator(8, 32, (2, 2), (4,))  # lengths differ
    with pytest.raises(ValueError):
        ResBlock1(8, kernel_size=4)


def test_remove_weight_norm_keeps_outputs():
    torch.manual_seed(0)
    enc = HiFiCodecEncoder(8, (2, 2), (4, 4), **TINY_RES, latent_dim=8).eval()
    gen = HiFiGANGenerator(8, 16, (2, 2), (4, 4), **TINY_RES).eval()
    x = torch.randn(2, 1, 64)
    with torch.no_grad():
        before = gen(enc(x))
        enc.remove_weight_norm()
        gen.remove_weight_norm()
        after = gen(enc(x))
    assert not any(parametrize.is_parametrized(m) for m in [*enc.modules(), *gen.modules()])
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-4)


def test_encoder_group_norm_orders_share_parameters():
    torch.manual_seed(0)
    ours = HiFiCodecEncoder(8, (2, 2), (4, 4), (3, 5), ((1,), (1,)), latent_dim=8)
    authors = HiFiCodecEncoder(8, (2, 2), (4, 4), (3, 5), ((1,), (1,)), latent_dim=8, norm_running_sum=True)
    authors.load_state_dict(ours.state_dict())  # same parameters, only the order differs
    x = torch.randn(2, 1, 64)
    a, b = ours(x), authors(x)
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_paper_size_parameter_counts():
    # Measured with this implementation (weight-norm g and v both counted):
    #   HiFiGANGenerator (512 latent in, 512 ch, rates 8,5,4,2):  15.35 M
    #     (with 80 mel bins in, i.e. HiFi-GAN V1: 13.81 M; the HiFi-GAN paper says 13.92 M)
    #   HiFiCodecEncoder (32 ch, rates 2,4,5,8, latent 512):    47.23 M
    #     (the k11 ResBlock1 at 512 channels alone is 17 M)
    #   MultiPeriodDiscriminator 41.11 M, MultiScaleDiscriminator 29.62 M,
    #   MultiScaleSTFTDiscriminator 0.28 M, MultiResolutionDiscriminator 0.15 M (32 ch) / 0.60 M (64 ch)
    counts = {
        "generator": n_params(HiFiGANGenerator()),
        "generator_80mel": n_params(HiFiGANGenerator(in_channels=80)),
        "encoder": n_params(HiFiCodecEncoder()),
        "mpd": n_params(MultiPeriodDiscriminator()),
        "msd": n_params(MultiScaleDiscriminator()),
        "ms_stft": n_params(MultiScaleSTFTDiscriminator()),
        "mrd": n_params(MultiResolutionDiscriminator()),
    }
    print({k: f"{v / 1e6:.2f}M" for k, v in counts.items()})
    assert 15.2e6 < counts["generator"] < 15.5e6
    assert 13.7e6 < counts["generator_80mel"] < 14.0e6
    assert 47.0e6 < counts["encoder"] < 47.5e6
    assert 41.0e6 < counts["mpd"] < 41.2e6
    assert 29.5e6 < counts["msd"] < 29.7e6
    assert 0.27e6 < counts["ms_stft"] < 0.29e6
    assert 0.14e6 < counts["mrd"] < 0.16e6


# ---------------------------------------------------------- discriminators.py


def tiny_discriminators() -> dict[str, tuple[torch.nn.Module, int]]:
    """name -> (discriminator, expected number of sub-discriminators)."""
    mpd = MultiPeriodDiscriminator(periods=(2, 3), channels=(4, 8, 8))
    msd = MultiScaleDiscriminator(n_scales=2, channels=(4, 4, 8, 8, 8, 8, 8))
    stft = MultiScaleSTFTDiscriminator(filters=4, n_ffts=(128, 64), hop_lengths=(32, 16), win_lengths=(128, 48))
    mrd = MultiResolutionDiscriminator(resolutions=((128, 32, 128), (64, 16, 64)), channels=4)
    return {
        "period": (PeriodDiscriminator(5, channels=(4, 8)), 1),
        "scale": (ScaleDiscriminator(channels=(4, 4, 8, 8, 8, 8, 8)), 1),
        "stft": (STFTDiscriminator(filters=4, n_fft=64, hop_length=16, win_length=64, dilations=(1, 2)), 1),
        "mpd": (mpd, 2),
        "msd": (msd, 2),
        "ms_stft": (stft, 2),
        "mrd": (mrd, 2),
        "group": (DiscriminatorGroup([MultiPeriodDiscriminator((2,), (4, 4)), mrd]), 3),
    }


@pytest.mark.parametrize("name", list(tiny_discriminators()))
def test_discriminators_share_one_interface_and_pass_gradients(name):
    torch.manual_seed(0)
    disc, n_sub = tiny_discriminators()[name]
    y = (0.1 * torch.randn(2, 1, 1001)).requires_grad_()  # odd length: exercises MPD padding
    logits, fmaps = disc(y)
    assert isinstance(logits, list) and isinstance(fmaps, list)
    assert len(logits) == len(fmaps) == n_sub
    for logit, layers in zip(logits, fmaps):
        assert logit.dim() == 2 and logit.shape[0] == 2 and torch.isfinite(logit).all()
        assert len(layers) >= 2 and all(f.shape[0] == 2 for f in layers)
    # Same structure on a second input, as the losses pair real and fake lists.
    logits2, fmaps2 = disc(torch.randn(2, 1, 1001))
    assert [tuple(t.shape) for t in logits] == [tuple(t.shape) for t in logits2]
    assert [[tuple(f.shape) for f in ls] for ls in fmaps] == [[tuple(f.shape) for f in ls] for ls in fmaps2]
    loss = sum(t.mean() for t in logits) + sum(f.mean() for ls in fmaps for f in ls)
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_msd_uses_spectral_norm_on_first_scale_only():
    msd = MultiScaleDiscriminator(n_scales=3, channels=(4, 4, 8, 8, 8, 8, 8))
    kinds = [type(d.convs[0].parametrizations.weight[0]).__name__ for d in msd.discriminators]
    assert "Spectral" in kinds[0] and all("Spectral" not in k for k in kinds[1:])


def test_lsgan_step_on_tiny_generator_and_mpd():
    torch.manual_seed(0)
    gen = HiFiGANGenerator(8, 16, (2, 2), (4, 4), **TINY_RES)
    mpd = MultiPeriodDiscriminator(periods=(2, 3), channels=(8, 16, 16))
    z = torch.randn(2, 8, 64)
    real = sine_sweep(2, 256)
    fake = gen(z)

    # Discriminator step on a fixed (real, fake) pair lowers its loss.
    opt_d = torch.optim.SGD(mpd.parameters(), lr=1e-2)

    def d_loss() -> torch.Tensor:
        real_logits, _ = mpd(real)
        fake_logits, _ = mpd(fake.detach())
        return lsgan_discriminator_loss(real_logits, fake_logits)

    before = d_loss()
    opt_d.zero_grad()
    before.backward()
    opt_d.step()
    with torch.no_grad():
        after = d_loss()
    assert torch.isfinite(before) and after < before

    # Generator side: adversarial + feature matching reach the generator's weights.
    real_logits, real_fmaps = mpd(real)
    fake_logits, fake_fmaps = mpd(fake)
    g_loss = lsgan_generator_loss(fake_logits) + 2 * feature_matching_loss(real_fmaps, fake_fmaps)
    g_loss.backward()
    assert torch.isfinite(g_loss)
    grads = [p.grad for p in gen.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0


# ------------------------------------------------------------------ losses.py


def test_gan_losses_values_and_reduction():
    ones, zeros = [torch.ones(2, 5), torch.ones(2, 3)], [torch.zeros(2, 5), torch.zeros(2, 3)]
    assert lsgan_discriminator_loss(ones, zeros) == 0
    assert lsgan_generator_loss(ones) == 0
    assert lsgan_generator_loss(zeros) == 1
    assert lsgan_generator_loss(zeros, reduction="sum") == 2
    minus = [-t for t in ones]
    assert hinge_discriminator_loss(ones, minus) == 0
    assert hinge_discriminator_loss(minus, ones) == 4
    assert hinge_generator_loss(ones) == 0
    assert hinge_generator_loss(minus) == 2
    with pytest.raises(ValueError):
        lsgan_discriminator_loss(ones, zeros[:1])
    with pytest.raises(ValueError):
        lsgan_generator_loss(zeros, reduction="max")


def test_feature_matching_is_plain_l1_with_real_detached():
    real = [[torch.zeros(2, 4, requires_grad=True), torch.zeros(2, 3)], [torch.zeros(2, 6)]]
    fake = [[torch.ones(2, 4, requires_grad=True), 2 * torch.ones(2, 3)], [3 * torch.ones(2, 6)]]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(((1 + 2) / 2 + 3) / 2)
    assert feature_matching_loss(real, fake, reduction="sum").item() == pytest.approx(6)
    loss.backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None
    assert feature_matching_loss(real, real) == 0


def test_log_mel_matches_torchaudio():
    x = torch.randn(2, 1, 4000)
    ours = LogMelSpectrogram(16000, n_fft=512, hop_length=128, n_mels=64)(x)
    ref_mel = torchaudio.transforms.MelSpectrogram(
        16000, n_fft=512, hop_length=128, n_mels=64, power=1.0, norm="slaney", mel_scale="slaney"
    )
    ref = torch.log(ref_mel(x.squeeze(1)).clamp(min=1e-5))
    assert ours.shape == (2, 64, 4000 // 128 + 1)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    assert LogMelSpectrogram(16000)(x.squeeze(1)).shape == (2, 80, 4000 // 256 + 1)
    assert not LogMelSpectrogram(16000).state_dict()  # no buffers leak into checkpoints


def test_mel_and_stft_losses_zero_on_identity_and_grow_with_noise():
    torch.manual_seed(0)
    y = sine_sweep(2, 8000)
    for loss_fn in (MultiResolutionMelLoss(16000), MultiResolutionSTFTLoss()):
        clean = loss_fn(y, y)
        small = loss_fn(y + 0.01 * torch.randn_like(y), y)
        large = loss_fn(y + 0.1 * torch.randn_like(y), y)
        assert clean.dim() == 0 and clean.item() == pytest.approx(0.0, abs=1e-6)
        assert 0 < small < large
    with pytest.raises(ValueError):
        MultiResolutionMelLoss(16000)(y, y[..., :-1])


def test_tiny_autoencoder_learns_a_sine_sweep():
    torch.manual_seed(0)
    enc = HiFiCodecEncoder(8, (2, 2), (4, 4), **TINY_RES, latent_dim=16)
    gen = HiFiGANGenerator(16, 32, (2, 2), (4, 4), **TINY_RES)
    mel_loss = MultiResolutionMelLoss(16000, resolutions=((512, 128, 40), (256, 64, 40)))
    params = [*enc.parameters(), *gen.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3, betas=(0.5, 0.9))
    # A pure chirp leaves most mel bins at exactly zero energy, where the log-mel L1 punishes
    # any generator noise; real audio has a noise floor, so the target gets a fixed one too.
    y = sine_sweep(2, 2048) + 0.01 * torch.randn(2, 1, 2048, generator=torch.Generator().manual_seed(1234))
    losses = []
    for _ in range(40):
        loss = mel_loss(gen(enc(y)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = mel_loss(gen(enc(y)), y).item()
    assert final < 0.7 * losses[0], (losses[0], final)

"""Image losses, metrics and the PatchGAN discriminator for the VQGAN image codec."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch.nn import functional as F

from codecgen import metrics as M
from codecgen.config import build, init_spec
from codecgen.nn.discriminators import PatchGANDiscriminator
from codecgen.nn.losses import (
    GradientLoss,
    MSSSIMLoss,
    VGGPerceptualLoss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    ms_ssim,
    ssim,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """A 128x128 RGB crop of a natural image, float64 in [0, 1], (H, W, C)."""
    from skimage import data

    return data.astronaut()[40:168, 160:288].astype(np.float64) / 255.0


def _noisy(img: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (img + sigma * torch.randn(img.shape, generator=g, dtype=img.dtype)).clamp(0, 1)


@pytest.fixture(scope="module")
def image(astronaut: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(astronaut).permute(2, 0, 1).unsqueeze(0).float()  # (1, 3, 128, 128)


# ------------------------------------------------------------------- SSIM / MS-SSIM


def test_ssim_of_identical_images_is_one(image: torch.Tensor) -> None:
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-5)
    assert ms_ssim(image, image).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(image.repeat(2, 1, 1, 1), image.repeat(2, 1, 1, 1), reduction="none").shape == (2,)


def test_ssim_matches_scikit_image(astronaut: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    deg = _noisy(torch.from_numpy(astronaut), 0.1).numpy()
    expected = structural_similarity(
        astronaut, deg, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1
    )
    ours = M.ssim(astronaut, deg)
    assert abs(ours - expected) < 0.01, (ours, expected)
    # The torch layout gives the same number.
    as_chw = lambda a: torch.from_numpy(a).permute(2, 0, 1)  # noqa: E731
    assert M.ssim(as_chw(astronaut), as_chw(deg)) == pytest.approx(ours, abs=1e-9)


def test_ms_ssim_decreases_with_noise(image: torch.Tensor) -> None:
    scores = [ms_ssim(image, _noisy(image, s)).item() for s in (0.02, 0.08, 0.25)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0, scores
    metric_scores = [M.ms_ssim(image[0], _noisy(image, s)[0]) for s in (0.02, 0.08, 0.25)]
    assert metric_scores == pytest.approx(scores, abs=1e-5)


def test_ms_ssim_loss_gradient_is_finite_and_nonzero(image: torch.Tensor) -> None:
    x = image * 2 - 1
    x_hat = (x + 0.2 * torch.randn_like(x)).requires_grad_(True)
    loss = MSSSIMLoss()(x_hat, x)
    loss.backward()
    assert torch.isfinite(loss) and 0 < loss.item() < 1
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    assert MSSSIMLoss.name == "ms-ssim"
    # Pure noise: cs <= 0 at a coarse scale, clamped to 0; the gradient is then 0, not NaN.
    noise = (torch.randn_like(x) * 0.5).requires_grad_(True)
    MSSSIMLoss()(noise, x).backward()
    assert torch.isfinite(noise.grad).all()


def test_small_images_drop_coarse_scales() -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = _noisy(x, 0.1)
    value = ms_ssim(x, y)
    assert torch.isfinite(value) and 0 < value.item() < 1
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    # One usable scale (16 pixels: the 8-pixel next scale is smaller than the window): MS-SSIM == SSIM.
    assert ms_ssim(x[..., :16, :16], y[..., :16, :16]).item() == pytest.approx(
        ssim(x[..., :16, :16], y[..., :16, :16]).item(), abs=1e-6
    )
    with pytest.raises(ValueError, match="smaller than"):
        ms_ssim(x[..., :8, :8], y[..., :8, :8])


def test_bad_shapes_raise() -> None:
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError):
        ssim(x, torch.rand(1, 3, 32, 31))
    with pytest.raises(ValueError):
        ms_ssim(x[0], x[0])
    with pytest.raises(ValueError):
        MSSSIMLoss()(x, torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError):
        M.ssim(np.zeros((32, 32)), np.zeros((32, 30)))


# ------------------------------------------------------------------------- GMSD


def test_gmsd_is_zero_for_identical_images_and_grows_with_noise(astronaut: np.ndarray) -> None:
    assert M.gmsd(astronaut, astronaut) == pytest.approx(0.0, abs=1e-12)
    u8 = (astronaut * 255).round().astype(np.uint8)
    assert M.gmsd(u8, u8, data_range=255) == pytest.approx(0.0, abs=1e-12)
    ref = torch.from_numpy(astronaut)
    scores = [M.gmsd(astronaut, _noisy(ref, s).numpy()) for s in (0.02, 0.08, 0.25)]
    assert 0 < scores[0] < scores[1] < scores[2], scores
    # Odd sizes and greyscale work too.
    assert M.gmsd(astronaut[:63, :65, 0], _noisy(ref, 0.05).numpy()[:63, :65, 0]) > 0


# ------------------------------------------------------------------ other losses


def test_gradient_loss() -> None:
    loss = GradientLoss()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0
    assert loss(x.flip(-1), x).item() > 0
    assert loss(x + 0.3, x).item() == pytest.approx(0.0, abs=1e-6)  # gradients ignore a constant shift
    assert build(init_spec(loss)).scales == 3 and GradientLoss.name == "gradient"


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> str:
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    # == vgg16(weights=None).features.state_dict(), without the costly classifier init.
    torch.save(make_layers(cfgs["D"]).state_dict(), path)
    return str(path)


def test_vgg_perceptual_loss(vgg_file: str, tmp_path) -> None:
    loss = VGGPerceptualLoss(vgg_file)
    assert loss.name == "lpips-vgg"
    assert list(loss.parameters()) == [] and loss.state_dict() == {}  # frozen, not checkpointed
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-8)
    x_hat = (x + 0.5 * torch.randn_like(x)).requires_grad_(True)
    value = loss(x_hat, x)
    assert value.item() > 0
    value.backward()
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0

    # LPIPS lin weights and safetensors files are accepted; the spec rebuilds it.
    from safetensors.torch import save_file

    widths = (64, 128, 256, 512, 512)
    lin_path = tmp_path / "lin.safetensors"
    save_file({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(widths)}, str(lin_path))
    weighted = build(init_spec(VGGPerceptualLoss(vgg_file, lpips_lin=str(lin_path))))
    assert weighted(x_hat.detach(), x).item() > 0

    with pytest.raises(FileNotFoundError):
        VGGPerceptualLoss(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError):
        VGGPerceptualLoss(str(bad))
    bad_lin = tmp_path / "bad_lin.pth"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, bad_lin)
    with pytest.raises(ValueError):
        VGGPerceptualLoss(vgg_file, lpips_lin=str(bad_lin))


# ----------------------------------------------------------------------- PatchGAN


def test_patchgan_shapes_and_hinge_losses() -> None:
    disc = PatchGANDiscriminator(ndf=8)
    x = torch.randn(2, 3, 64, 64)
    logits, fmaps = disc(x)
    assert len(logits) == 1 and logits[0].shape == (2, 6 * 6)  # 64 -> 32 -> 16 -> 8 -> 7 -> 6
    assert [f.shape[1] for f in fmaps[0]] == [8, 16, 32, 64]
    assert PatchGANDiscriminator(ndf=8)(torch.randn(1, 3, 256, 256))[0][0].shape == (1, 30 * 30)
    fake_logits, _ = disc(torch.randn(2, 3, 64, 64))
    d_loss = hinge_discriminator_loss(logits, fake_logits)
    g_loss = hinge_generator_loss(fake_logits)
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    # Taming's conv layout: no bias before BatchNorm; without BN the convs get a bias.
    assert disc.blocks[1][0].bias is None and isinstance(disc.blocks[1][1], torch.nn.BatchNorm2d)
    plain = PatchGANDiscriminator(ndf=8, use_batchnorm=False)
    assert plain.blocks[1][0].bias is not None and isinstance(plain.blocks[1][1], torch.nn.Identity)
    with pytest.raises(ValueError):
        disc(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError):
        disc(torch.randn(3, 64, 64))


def test_tiny_patchgan_learns_real_from_fake() -> None:
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(ndf=8, n_layers=2)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.9))

    def real_batch() -> torch.Tensor:  # smooth images: upsampled low-resolution noise
        return F.interpolate(torch.rand(8, 3, 4, 4) * 2 - 1, size=32, mode="bilinear", align_corners=False)

    losses = []
    for _ in range(30):
        real, fake = real_batch(), torch.rand(8, 3, 32, 32) * 2 - 1
        loss = hinge_discriminator_loss(disc(real)[0], disc(fake)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    disc.eval()
    with torch.no_grad():
        assert disc(real_batch())[0][0].mean() > disc(torch.rand(8, 3, 32, 32) * 2 - 1)[0][0].mean()


def test_frequency_loss_sees_high_frequencies_that_blur_removes():
    from codecgen.nn.losses import FrequencyLoss

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    loss = FrequencyLoss()
    assert float(loss(x, x)) == 0.0
    assert float(loss(blurred, x)) > 0.01
    y = x.clone().requires_grad_()
    loss(y * 0.9, x).backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0

"""Arbitrary-scale latent diffusion (Kim & Kim 2024): the SR model (``ArbitraryScaleSR``) and
its alignment stage, the generator (``ArbitraryScaleGenerator``), trained through
``train.py`` on the tiny configs, and their pipelines (sizes, tiling, seeds, checkpoints,
exports, bad arguments)."""

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import ROOT, column, fit_run

import codecgen
from codecgen.config import build
from codecgen.generators.arbitrary_scale import ArbitraryScaleGenerator, ArbitraryScaleSR, GenerateOutput, UpscaleOutput
from codecgen.generators.arbitrary_scale.first_stage import resize
from codecgen.generators.arbitrary_scale.tiling import tile_boxes

pytest.importorskip("diffusers")

pytestmark = [
    pytest.mark.filterwarnings("ignore:first_stage_ckpt is not set"),
    pytest.mark.filterwarnings("ignore:.*module\\(s\\) in eval mode"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers"),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

SR_TINY = ROOT / "configs" / "arbitrary_sr" / "tiny.yaml"
ALIGN_TINY = ROOT / "configs" / "arbitrary_sr" / "align_tiny.yaml"
GEN_TINY = ROOT / "configs" / "arbitrary_gen" / "tiny.yaml"


def batch_of(images: Path) -> torch.Tensor:
    from codecgen.datamodules.image import load_image

    return torch.stack([load_image(p)[0] for p in sorted(images.rglob("*.png"))]) * 2 - 1


def fit(config: Path, images: Path, root: Path, *extra: str) -> tuple[list[dict], Path]:
    return fit_run(config, root, "--data.init_args.root", str(images), "--data.init_args.min_scale", "1.0", *extra)


def median(values: list[float]) -> float:
    return float(np.median(values))


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
    """A tiny first stage (untrained, seeded) exported to a folder, and its weights."""
    torch.manual_seed(123)
    spec = yaml.safe_load(open(SR_TINY))["model"]["init_args"]["first_stage"]
    model = build(spec)
    folder = model.export(tmp_path_factory.mktemp("first_stage") / "export")
    return folder, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def sr_run(images, first_stage, tmp_path_factory):
    """The tiny SR model trained 40 steps from the exported first stage, which is then
    deleted: whatever loads the SR model afterwards must not need it."""
    root = tmp_path_factory.mktemp("sr_run")
    rows, ckpt = fit(SR_TINY, images, root, "--model.init_args.first_stage_ckpt", str(first_stage[0]))
    shutil.rmtree(first_stage[0])
    return rows, ckpt


@pytest.fixture(scope="module")
def sr(sr_run) -> ArbitraryScaleSR:
    return codecgen.load(sr_run[1])


# ----------------------------------------------------------------------------- training
def test_sr_trains_through_train_py_and_its_loss_falls(sr_run):
    rows, ckpt = sr_run
    loss = column(rows, "train/loss")
    assert len(loss) == 40 and ckpt.is_file()
    assert median(loss[-10:]) < 0.7 * median(loss[:10]), loss[::4]  # measured: 1.0 -> 0.4
    assert column(rows, "val/loss") and column(rows, "val/loss_ema")


def test_first_stage_is_frozen_and_comes_from_the_models_own_state(sr, first_stage):
    # the export it was seeded from is gone (sr_run deleted it): the weights are the checkpoint's own
    state = sr.first_stage.state_dict()
    assert all(torch.equal(state[k], v) for k, v in first_stage[1].items())
    assert not any(p.requires_grad for p in sr.first_stage.parameters())
    sr.train()
    try:
        assert sr.unet.training and not sr.first_stage.training
        optimised = {id(p) for group in sr.configure_optimizers().param_groups for p in group["params"]}
        assert optimised == {id(p) for p in sr.unet.parameters()}
    finally:
        sr.eval()
    assert float(sr.latent_scale) != 1.0  # measured on the first batch (scale_by_std)
    assert sr.spec()["init_args"]["first_stage_ckpt"] == str(first_stage[0])  # recorded, never read by load


def alignment_at_fixed_draws(model: ArbitraryScaleSR, hr: torch.Tensor) -> float:
    """The alignment term (without the denoising term) averaged over fixed noise and timesteps."""
    generator, total = torch.Generator().manual_seed(0), 0.0
    with torch.no_grad():
        x0, cond = model.latents_and_condition(hr)
        for _ in range(4):
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, 1000, (x0.shape[0],), generator=generator)
            total += model.alignment_loss(hr, x0, cond, noise, t, hr.shape[-2:])[1]["align"].item()
    return total / 4


def test_alignment_stage_starts_from_the_sr_checkpoint_and_its_loss_falls(sr_run, sr, images, tmp_path):
    rows, ckpt = fit(ALIGN_TINY, images, tmp_path, "--model.init_args.init_from", str(sr_run[1]),
                     "--model.init_args.denoising_weight", "0")  # the authors' code: alignment terms only
    aligned = codecgen.load(ckpt)
    assert aligned.alignment and len(column(rows, "train/align")) == 30
    assert column(rows, "val/align") and not column(rows, "train/denoise")
    assert aligned.spec(inference_only=True)["init_args"]["init_from"] is None
    for name, tensor in sr.first_stage.state_dict().items():  # frozen through the fine-tuning
        assert torch.equal(aligned.first_stage.state_dict()[name], tensor)
    assert float(aligned.latent_scale) == float(sr.latent_scale)  # kept, not measured again
    hr = batch_of(images)
    before, after = alignment_at_fixed_draws(sr, hr), alignment_at_fixed_draws(aligned, hr)
    assert after < 0.93 * before, (before, after)  # measured: 0.62 -> 0.54


@pytest.fixture(scope="module")
def generator_run(images, tmp_path_factory):
    return fit(GEN_TINY, images, tmp_path_factory.mktemp("gen_run"), "--trainer.max_steps", "30")


def test_generator_trains_and_renders_one_latent_at_every_size(generator_run):
    rows, ckpt = generator_run
    loss = column(rows, "train/loss")
    assert len(loss) == 30 and median(loss[-8:]) < 0.7 * median(loss[:8]), loss[::3]
    model = codecgen.load(ckpt)
    assert isinstance(model, ArbitraryScaleGenerator)
    pipe = model.pipeline("ddim")
    out = pipe(num_images=2, sizes=[(32, 32), (48, 48), (20, 28)], num_steps=3, seed=0)
    assert isinstance(out, GenerateOutput) and out.latents.shape == (2, 3, 8, 8)
    assert [tuple(i.shape) for i in out.images] == [(2, 3, 32, 32), (2, 3, 48, 48), (2, 3, 20, 28)]
    assert all(0 <= i.min() and i.max() <= 1 for i in out.images)
    small, large = out.images[0], out.images[1]
    assert -10 * torch.log10(F.mse_loss(resize(large, (32, 32)), small)) > 25.0
    assert small.std() > 1e-3  # not a flat image agreeing trivially
    default = pipe(num_steps=2, seed=1)
    assert default.latents.shape == (1, 3, 8, 8) and default.images[0].shape == (1, 3, 32, 32)
    assert torch.equal(pipe(num_images=2, latent_size=(8, 12), num_steps=2, seed=5).latents,
                       pipe(num_images=2, latent_size=(8, 12), num_steps=2, seed=5).latents)
    for kwargs, message in (({"num_images": 0}, "num_images"), ({"latent_size": (7, 8)}, "multiples of 2"),
                            ({"sizes": [(0, 4)]}, "sizes"), ({"sizes": []}, "sizes"),
                            ({"num_steps": 0}, "num_steps")):
        with pytest.raises(ValueError, match=message):
            pipe(**{"num_steps": 2, **kwargs})


# ----------------------------------------------------------------------------- the upscaling pipeline
def test_upscale_returns_exact_sizes(sr):
    pipe = sr.pipeline("ddim")
    image = torch.rand(3, 10, 13)
    out = pipe(image, scale=3.5, num_steps=2, seed=0)
    assert isinstance(out, UpscaleOutput) and out.images.shape == (1, 3, 35, round(13 * 3.5))
    batch = torch.rand(2, 3, 9, 7)
    out = pipe(batch, size=(31, 50), num_steps=2, seed=0)
    assert out.images.shape == (2, 3, 31, 50) and 0 <= out.images.min() and out.images.max() <= 1
    assert pipe(batch, scale=1, num_steps=1, seed=0).images.shape == (2, 3, 9, 7)
    assert pipe.max_trained_scale == sr.max_trained_scale == 4.0


def test_liif_only_path_is_the_condition_latent_rendered(sr):
    pipe = sr.pipeline()
    image = torch.rand(1, 3, 8, 12)
    plain = pipe(image, size=(30, 45), diffusion=False)
    assert plain.images.shape == (1, 3, 30, 45)
    with torch.no_grad():
        want = sr.render(sr.condition(image, (30, 45)), (30, 45))
    assert torch.equal(plain.images, want)
    assert torch.equal(pipe(image, size=(30, 45), diffusion=False).images, plain.images)
    assert not torch.allclose(pipe(image, size=(30, 45), num_steps=2, seed=0).images, plain.images)


def test_sampling_is_deterministic_per_seed(sr):
    image = torch.rand(3, 8, 8)
    for name in ("ddpm", "ddim"):
        pipe = sr.pipeline(name)
        first = pipe(image, scale=2, num_steps=3, seed=7).images
        assert torch.equal(pipe(image, scale=2, num_steps=3, seed=7).images, first), name
        assert not torch.allclose(pipe(image, scale=2, num_steps=3, seed=8).images, first), name


def test_tiled_sampling_bounds_the_unet_input_and_stays_close(sr, monkeypatch):
    seen = []
    forward = sr.unet.forward

    def recording(sample, timestep, *args, **kwargs):
        seen.append(tuple(sample.shape[-2:]))
        return forward(sample, timestep, *args, **kwargs)

    monkeypatch.setattr(sr.unet, "forward", recording)
    pipe = sr.pipeline("ddim")
    image = torch.rand(1, 3, 16, 16)
    whole = pipe(image, scale=4, num_steps=4, seed=3).images  # latent 16 x 16
    assert seen == [(16, 16)] * 4
    seen.clear()
    calls = []
    tiles = pipe(image, scale=4, num_steps=4, seed=3, tile=8, tile_overlap=2,
                 progress=lambda done, total: calls.append((done, total))).images
    assert tiles.shape == whole.shape == (1, 3, 64, 64)
    # 8 UNet cells a side, cores of 2 cells (a tile of 4 less 1 cell of context each side): 4 x 4 tiles
    assert max(max(s) for s in seen) <= 8 and len(seen) == 4 * 16
    assert calls == [(i, 64) for i in range(1, 65)]
    other_seed = pipe(image, scale=4, num_steps=4, seed=4).images
    # tiling changes the result far less than the seed does
    assert (tiles - whole).abs().mean() < 0.5 * (other_seed - whole).abs().mean()
    seen.clear()
    assert torch.equal(pipe(image, scale=4, num_steps=2, seed=3, tile=16).images,
                       pipe(image, scale=4, num_steps=2, seed=3).images)  # one tile: the plain path


def test_tile_boxes_cover_the_latent_with_a_partition_of_unity():
    def coverage(*args, **kwargs):
        total = torch.zeros(args[:2])
        for (top, left, bottom, right), weight in tile_boxes(*args, **kwargs):
            assert (bottom - top) % 4 == 0 and (right - left) % 4 == 0 and max(bottom - top, right - left) <= 16
            total[top:bottom, left:right] += weight
        return total

    # cores (tile - 2 x overlap) no narrower than the shared strips (2 x overlap): the ramps sum to one
    torch.testing.assert_close(coverage(24, 40, tile=16, overlap=4, multiple=4), torch.ones(24, 40))
    assert coverage(24, 40, tile=12, overlap=4, multiple=4).min() > 0  # narrower: still covered (tiled() normalises)
    assert len(tile_boxes(8, 8, tile=16, overlap=8, multiple=2)) == 1
    with pytest.raises(ValueError, match="larger than 2 x tile_overlap"):
        tile_boxes(32, 32, tile=8, overlap=4, multiple=2)
    with pytest.raises(ValueError, match="at least 8"):
        tile_boxes(32, 32, tile=4, overlap=0, multiple=8)


def test_checkpoint_and_export_round_trip_and_sample_identically(sr_run, sr, tmp_path):
    spec = sr.spec()["init_args"]
    assert spec["unet"]["class_path"] == "diffusers.UNet2DModel"
    assert spec["scheduler"]["class_path"] == "diffusers.DDPMScheduler"
    assert spec["scheduler"]["init_args"]["beta_schedule"] == "scaled_linear"
    exported = codecgen.load(sr.export(tmp_path / "export"))
    assert exported.ema is None and exported.weights_hash() == sr.weights_hash()
    assert exported.spec()["init_args"]["first_stage_ckpt"] is None
    assert float(exported.latent_scale) == float(sr.latent_scale)
    image = torch.rand(2, 3, 6, 9)
    want = sr.pipeline()(image, scale=2.5, num_steps=3, seed=11).images
    for model in (exported, codecgen.load(sr_run[1])):
        assert torch.equal(model.pipeline()(image, scale=2.5, num_steps=3, seed=11).images, want)


def test_bad_arguments_are_one_clear_error(sr):
    pipe = sr.pipeline()
    image = torch.rand(3, 8, 8)
    for kwargs, message in (({"scale": 0}, "scale must be a number > 0"), ({"scale": -2}, "scale must be"),
                            ({"scale": float("nan")}, "scale must be"), ({}, "exactly one of scale and size"),
                            ({"scale": 2, "size": (16, 16)}, "exactly one of scale and size"),
                            ({"size": (0, 16)}, "size must be"), ({"size": (16,)}, "size must be"),
                            ({"scale": 2, "num_steps": 0}, "num_steps must be a whole number from 1 to 1000"),
                            ({"scale": 2, "num_steps": 1001}, "from 1 to 1000"),
                            ({"scale": 2, "num_steps": 2.5}, "num_steps"),
                            ({"scale": 2, "tile": 0}, "tile must be"),
                            ({"scale": 2, "tile_overlap": -1}, "tile_overlap must be"),
                            ({"scale": 2, "tile": 4, "tile_margin": 0}, "tile_margin must be"),
                            ({"scale": 0.01}, "smaller than 1x1")):
        with pytest.raises(ValueError, match=message):
            pipe(image, **kwargs)
    bad_images = (torch.rand(4, 8, 8), torch.rand(8, 8), torch.full((3, 8, 8), 2.0),
                  torch.zeros(3, 8, 8, dtype=torch.uint8))
    for bad in bad_images:
        with pytest.raises(ValueError, match="image"):
            pipe(bad, scale=2, num_steps=1)
    with pytest.raises(ValueError, match="lr_scale_range"):
        build({**sr.spec(), "init_args": {**sr.spec()["init_args"], "lr_scale_range": [0.5, 4]}})
    with pytest.raises(ValueError, match="UNet must take 6"):
        spec = copy.deepcopy(sr.spec())
        spec["init_args"]["unet"]["init_args"]["in_channels"] = 3
        build(spec)


# ----------------------------------------------------------------------------- tiled first stage
def test_liif_renders_a_region_from_a_feature_window_as_the_whole_image():
    from codecgen.nn.liif import LIIF

    torch.manual_seed(0)
    for unfold, margin in ((False, 1), (True, 2)):
        liif = LIIF(5, hidden=(16, 16), feat_unfold=unfold)
        features = torch.randn(2, 5, 9, 12)
        whole = liif(features, (37, 50), chunk=None)
        # regions inside, at the borders, and at odd scales of the 9 x 12 grid
        for box in ((0, 0, 37, 50), (10, 13, 22, 31), (0, 40, 5, 50), (30, 0, 37, 8)):
            y0, x0, y1, x1 = box
            top, left = max(0, int(y0 * 9 / 37) - margin), max(0, int(x0 * 12 / 50) - margin)
            bottom, right = min(9, -(-y1 * 9 // 37) + margin), min(12, -(-x1 * 12 // 50) + margin)
            window = features[..., top:bottom, left:right]
            region = liif.render_region(window, (top, left), (9, 12), box, (37, 50), chunk=97)
            torch.testing.assert_close(region, whole[..., y0:y1, x0:x1], atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="neighbourhood"):  # no margin: the window misses cells
            liif.render_region(features[..., 3:5, 4:8], (3, 4), (9, 12), (13, 17, 20, 33), (37, 50))


def test_condition_pixels_are_the_enlarged_padded_image():
    from codecgen.generators.arbitrary_scale.sr import condition_pixels, enlarge

    lr = torch.rand(2, 3, 7, 11) * 2 - 1
    for size in ((37, 50), (7, 11), (64, 13), (5, 30)):  # the last shrinks a side: bicubic
        want = enlarge(lr, size)
        padded = (-(-size[0] // 8) * 8, -(-size[1] // 8) * 8)
        want = F.pad(want, (0, padded[1] - size[1], 0, padded[0] - size[0]), mode="replicate")
        pixels = condition_pixels(lr, size, 8)
        assert torch.equal(pixels(0, 0, *padded), want)
        assert torch.equal(pixels(4, 8, padded[0], 12), want[..., 4:, 8:12])


def test_tiled_first_stage_is_close_to_untiled_and_bounds_every_network(sr, monkeypatch):
    stage, seen = sr.first_stage, {"encoder": [], "decoder": [], "unet": []}
    for name, module in (("encoder", stage.encoder), ("decoder", stage.decoder), ("unet", sr.unet)):
        def recording(x, *args, _name=name, _forward=module.forward, **kwargs):
            seen[_name].append(tuple(x.shape[-2:]))
            return _forward(x, *args, **kwargs)
        monkeypatch.setattr(module, "forward", recording)
    pipe = sr.pipeline("ddim")
    image = torch.rand(1, 3, 13, 15)
    size = (77, 90)  # working size 80 x 96: a latent of 20 x 24 cells
    whole = pipe(image, size=size, diffusion=False).images
    assert seen["encoder"] == [(80, 96)] and seen["decoder"] == [(20, 24)]
    seen.update(encoder=[], decoder=[])
    tiles = pipe(image, size=size, diffusion=False, tile=8, tile_margin=3).images
    assert tiles.shape == whole.shape == (1, 3, *size)
    assert len(seen["encoder"]) == len(seen["decoder"]) == 9  # 3 x 3 cores
    assert max(max(s) for s in seen["encoder"]) <= 4 * (8 + 2 * 3)
    assert max(max(s) for s in seen["decoder"]) <= 8 + 2 * 3
    # GroupNorm statistics and the middle attention see the window, not the image: close, not
    # equal, and closer with more margin. Tolerance for this UNTRAINED tiny first stage (whose
    # output barely varies, std ~0.05, and hangs on the global statistics): mean |difference|
    # < 0.02 and max < 0.2 in [0, 1] (measured: 0.012 / 0.11 with 3 cells, 0.008 / 0.09 with 6)
    difference = (tiles - whole).abs()
    assert difference.mean() < 0.02 and difference.max() < 0.2, (difference.mean(), difference.max())
    wider = (pipe(image, size=size, diffusion=False, tile=8, tile_margin=6).images - whole).abs()
    assert wider.mean() < difference.mean(), (wider.mean(), difference.mean())
    seen.update(encoder=[], decoder=[], unet=[])
    out = pipe(image, size=size, num_steps=2, seed=0, tile=8, tile_overlap=2, tile_margin=3).images
    assert out.shape == (1, 3, *size) and 0 <= out.min() and out.max() <= 1
    for name in seen:
        assert seen[name] and max(max(s) for s in seen[name]) <= (4 if name == "encoder" else 1) * (8 + 2 * 3), name
    # a latent no larger than the tile is one window: the untiled result exactly
    assert torch.equal(pipe(image, size=size, diffusion=False, tile=24).images, whole)


def test_shipped_models_load_by_name_and_sample_reproducibly():
    """The shipped checkpoints (``checkpoints/arbitrary-sr``, ``arbitrary-gen``): loaded by name,
    their tasks are the CLI's, and a seeded sample is the same twice and differs across seeds."""
    sr_model, gen_model = codecgen.load("arbitrary-sr"), codecgen.load("arbitrary-gen")
    assert (sr_model.task, gen_model.task) == ("upscale", "generate")
    image = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    pipe = sr_model.pipeline()
    first = pipe(image, scale=2, num_steps=2, seed=3).images
    assert first.shape == (1, 3, 24, 32)
    assert torch.equal(first, pipe(image, scale=2, num_steps=2, seed=3).images)
    assert not torch.equal(first, pipe(image, scale=2, num_steps=2, seed=4).images)
    out = gen_model.pipeline()(num_images=1, sizes=[(40, 40), (24, 56)], num_steps=2, seed=0)
    assert [tuple(img.shape[-2:]) for img in out.images] == [(40, 40), (24, 56)]

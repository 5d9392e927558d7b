"""LIIF (``codecgen.nn.liif``), the VQGAN decoder's feature mode, and the arbitrary-scale
first stage (``ImplicitAutoencoder``) trained through ``train.py``, loaded and exported."""

import csv
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import codecgen
from tests.conftest import ROOT
from codecgen import hub
from codecgen.generators.arbitrary_scale.first_stage import ImplicitAutoencoder, resize
from codecgen.nn.liif import LIIF, make_coord, sample_queries
from codecgen.nn.vqgan import VQGANDecoder, VQGANEncoder

TINY = str(ROOT / "configs" / "arbitrary_sr" / "first_stage_tiny.yaml")


class _Take(torch.nn.Module):
    """Stands in for the MLP: returns the first ``n`` inputs (the neighbour's feature)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        return x[..., : self.n]


def _pixel_queries(h: int, w: int, batch: int):
    coords = make_coord((h, w)).view(1, -1, 2).expand(batch, -1, -1)
    return coords, torch.tensor([2 / h, 2 / w]).expand_as(coords)


# ----------------------------------------------------------------------------- LIIF
@pytest.mark.parametrize("size", [(7, 13), (1, 1), (64, 33)])
def test_exact_sizes_and_chunking_does_not_change_the_image(size):
    torch.manual_seed(0)
    liif = LIIF(6, hidden=(16, 16))
    features = torch.randn(2, 6, 5, 7)
    whole = liif(features, size, chunk=None)
    assert whole.shape == (2, 3, *size)
    for chunk in [c for c in (1, 2, 7, 100, 10**6) if 2 * size[0] * size[1] // c <= 200]:  # <= 200 passes
        torch.testing.assert_close(liif(features, size, chunk=chunk), whole, atol=1e-6, rtol=1e-5)
    assert liif(features, size[0]).shape == (2, 3, size[0], size[0])  # an int: square


def test_forward_is_query_at_pixel_centres_and_coords_are_pixel_centres():
    coords = make_coord((2, 4))
    assert torch.allclose(coords[..., 0], torch.tensor([-0.5, 0.5])[:, None].expand(2, 4))
    assert torch.allclose(coords[..., 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]).expand(2, 4))
    torch.manual_seed(0)
    liif = LIIF(4, hidden=(16,))
    features = torch.randn(2, 4, 3, 5)
    direct = liif.query(features, *_pixel_queries(9, 11, 2))  # (B, N, 3)
    torch.testing.assert_close(liif(features, (9, 11), chunk=13), direct.transpose(1, 2).reshape(2, 3, 9, 11))


def test_ensemble_weights_sum_to_one_and_are_bilinear():
    features = torch.randn(2, 3, 6, 9)
    liif = LIIF(3, hidden=(4,))
    liif.imnet = _Take(3)
    # the feature-returning MLP makes LIIF's blend of the four neighbours (each weighted by
    # the area opposite it) exactly bilinear interpolation of the features
    for size in [(17, 23), (6, 9), (18, 27), (3, 4), (1, 1), (100, 7)]:
        expected = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(liif(features, size), expected, atol=1e-5, rtol=1e-5)
    ones = torch.ones(2, 3, 6, 9)
    torch.testing.assert_close(liif(ones, (13, 29)), torch.ones(2, 3, 13, 29))  # weights sum to 1
    nearest = LIIF(3, hidden=(4,), local_ensemble=False)
    nearest.imnet = _Take(3)
    torch.testing.assert_close(nearest(features, (12, 18)), F.interpolate(features, size=(12, 18), mode="nearest"))


@pytest.mark.parametrize("unfold", [False, True])
def test_feat_unfold_sees_the_3x3_neighbourhood(unfold):
    torch.manual_seed(0)
    liif = LIIF(5, hidden=(8,), feat_unfold=unfold, local_ensemble=False, cell_decode=False)
    assert liif.imnet[0].in_features == 5 * (9 if unfold else 1) + 2
    features = torch.randn(1, 5, 4, 4)
    out = liif(features, (4, 4))
    assert out.shape == (1, 3, 4, 4)
    moved = features.clone()
    moved[:, :, 1, 1] += 1.0  # a neighbour of pixel (0, 0), not its own feature
    assert torch.equal(liif(moved, (4, 4))[..., 0, 0], out[..., 0, 0]) != unfold


def test_a_pixel_centre_shared_by_two_grids_gets_the_same_value():
    # the centre of pixel i of an H grid is the centre of pixel 3 i + 1 of the 3H grid
    torch.manual_seed(0)
    features = torch.randn(1, 4, 5, 6)
    plain = LIIF(4, hidden=(16,), cell_decode=False)
    torch.testing.assert_close(plain(features, (21, 30), chunk=50)[..., 1::3, 1::3], plain(features, (7, 10)),
                               atol=1e-5, rtol=1e-5)
    # with cell decoding a value also depends on the pixel's size: same coordinates, same cell
    liif = LIIF(4, hidden=(16,))
    coords, _ = _pixel_queries(7, 10, 1)
    small_cells = torch.tensor([2 / 21, 2 / 30]).expand_as(coords)
    torch.testing.assert_close(liif(features, (21, 30))[..., 1::3, 1::3],
                               liif.query(features, coords, small_cells).transpose(1, 2).reshape(1, 3, 7, 10),
                               atol=1e-5, rtol=1e-5)


def test_sample_queries_pick_distinct_pixels_and_their_values():
    image = torch.randn(2, 3, 9, 7)
    coords, cells, targets = sample_queries(image, 40, torch.Generator().manual_seed(0))
    assert coords.shape == cells.shape == (2, 40, 2) and targets.shape == (2, 40, 3)
    assert torch.allclose(cells, torch.tensor([2 / 9, 2 / 7]))
    picked = F.grid_sample(image, coords.flip(-1)[:, None], mode="nearest", align_corners=False)[:, :, 0]
    torch.testing.assert_close(picked.transpose(1, 2), targets)
    rows, cols = ((coords[..., 0] + 1) * 9 / 2).floor(), ((coords[..., 1] + 1) * 7 / 2).floor()
    assert all(len(set((rows[b] * 7 + cols[b]).tolist())) == 40 for b in range(2))
    with pytest.raises(ValueError, match="64 distinct pixels"):
        sample_queries(image, 64)


def test_bad_liif_input_is_one_clear_error():
    liif = LIIF(4, hidden=(8,))
    with pytest.raises(ValueError, match="expected features"):
        liif(torch.randn(1, 5, 3, 3), (4, 4))
    with pytest.raises(ValueError, match="output size must be"):
        liif(torch.randn(1, 4, 3, 3), (0, 4))
    with pytest.raises(ValueError, match="cell_decode needs cells"):
        liif.query(torch.randn(1, 4, 3, 3), torch.zeros(1, 5, 2))


# ----------------------------------------------------------------------------- decoder flags
def _state_dict_digest(module) -> str:
    return hashlib.sha256(";".join(f"{k}:{tuple(v.shape)}" for k, v in module.state_dict().items()).encode()
                          ).hexdigest()[:16]


def test_decoder_feature_mode_and_unchanged_default():
    kw = dict(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(2,), z_channels=4)
    default = VQGANDecoder(**kw)
    # the keys and shapes of this decoder before the flags existed (commit 17a38bd)
    assert _state_dict_digest(default) == "587ffd153f31dc5d"
    z = torch.randn(2, 4, 5, 6)
    assert default(z).shape == (2, 3, 20, 24) and default.out_features == 3
    same_res = VQGANDecoder(**kw, upsample=False)
    assert same_res.factor == 1 and same_res(z).shape == (2, 3, 5, 6)
    features = VQGANDecoder(**kw, upsample=False, output_features=True)
    assert features.out_features == 8 and features(z).shape == (2, 8, 5, 6)
    assert not hasattr(features, "conv_out") and features.last_layer.shape[0] == 8
    upsampled = VQGANDecoder(**kw, output_features=True)
    assert upsampled(z).shape == (2, 8, 20, 24)


# ----------------------------------------------------------------------------- first stage
@pytest.fixture(scope="module")
def trained(images, tmp_path_factory):
    from train import train_main

    root = tmp_path_factory.mktemp("sr_run")
    cli = train_main(["fit", "--config", TINY, "--data.init_args.root", str(images),
                      "--data.init_args.min_scale", "1.0",  # the whole image, every time
                      "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
                      "--trainer.max_steps", "60", "--trainer.log_every_n_steps", "1",
                      "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(root)])
    return root, Path(cli.trainer.checkpoint_callback.last_model_path)


def test_tiny_first_stage_trains_through_train_py_and_its_loss_falls(trained):
    root, ckpt = trained
    rows = list(csv.DictReader(open(next(root.rglob("metrics.csv")))))
    l1 = [float(r["train/l1"]) for r in rows if r.get("train/l1")]
    sizes = {float(r["train/size"]) for r in rows if r.get("train/size")}
    assert len(l1) == 60 and len(sizes) > 5 and min(sizes) >= 8 and max(sizes) <= 32
    assert sorted(l1[-15:])[7] < 0.8 * sorted(l1[:15])[7], l1[::5]  # medians: the size changes every batch
    for name in ("val/psnr", "val/psnr_down2", "val/psnr_down3"):
        assert any(r.get(name) for r in rows), name


def test_checkpoint_and_export_round_trip(trained, tmp_path):
    model = codecgen.load(trained[1])
    assert isinstance(model, ImplicitAutoencoder) and not model.training
    assert model.nominal_rate() is None and model.downsampling_factor == 4
    x = torch.rand(1, 3, 32, 48)
    z = model.encode_image(x)
    assert z.shape == (1, 3, 8, 12)
    out = model.decode_image(z, (50, 75))
    assert out.shape == (1, 3, 50, 75) and 0 <= out.min() and out.max() <= 1
    again = hub.load(model.export(tmp_path / "export"))
    assert again.weights_hash() == model.weights_hash()
    torch.testing.assert_close(again.decode_image(again.encode_image(x), (50, 75)), out)


def test_one_latent_decoded_at_two_sizes_agrees(trained):
    model = codecgen.load(trained[1])
    z = model.encode_image(torch.rand(2, 3, 32, 32))
    small, large = model.decode_image(z, 24), model.decode_image(z, 48)
    mse = F.mse_loss(resize(large, (24, 24)), small)
    assert -10 * torch.log10(mse) > 25.0


def test_first_stage_bad_input_and_settings_are_clear_errors(trained):
    model = codecgen.load(trained[1])
    with pytest.raises(ValueError, match="multiples of 4"):
        model.encode_image(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="expected latents"):
        model.decode_image(torch.randn(1, 4, 8, 8), 16)
    with pytest.raises(ValueError, match="output size must be"):
        model.decode_image(torch.randn(1, 3, 8, 8), (0, 16))
    with pytest.raises(ValueError, match="exceeds the training crops"):
        model.training_step(torch.rand(2, 3, 16, 16), 0)
    enc = VQGANEncoder(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), z_channels=3)
    dec = VQGANDecoder(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), z_channels=3, upsample=False,
                       output_features=True)
    with pytest.raises(ValueError, match="LIIF takes 16 channels"):
        ImplicitAutoencoder(enc, dec, LIIF(16))
    with pytest.raises(ValueError, match="n_queries"):
        ImplicitAutoencoder(enc, dec, LIIF(8), min_size=8, n_queries=65)


def test_sampled_query_training_step_and_paper_config():
    import yaml

    from codecgen.config import build

    spec = yaml.safe_load(open(ROOT / "configs" / "arbitrary_sr" / "first_stage_paper.yaml"))["model"]
    paper = build(spec)
    assert paper.downsampling_factor == 4 and paper.z_channels == 3 and paper.decoder.out_features == 128
    assert paper.liif.imnet[0].in_features == 128 + 4 and len(paper.liif.imnet) == 9  # 4 hidden layers + output
    assert (paper.min_size, paper.max_size, paper.n_queries) == (48, 192, None)
    spec = yaml.safe_load(open(TINY))["model"]
    spec["init_args"]["n_queries"] = 64
    model = build(spec)
    model.log = model.log_dict = lambda *args, **kwargs: None
    loss = model.training_step(torch.rand(2, 3, 32, 32) * 2 - 1, 0)
    loss.backward()
    assert loss.item() > 0 and all(p.grad is not None for p in model.liif.parameters())

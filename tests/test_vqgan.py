"""VQGAN image codec: networks, the three training stages, entropy coding, lost-index
restoration, files of any size and mode, and bad input."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from codecgen import hub
from codecgen.codecs import bitstream
from codecgen.codecs.base import CodecError
from codecgen.codecs.image.loss_simulation import lost_positions
from codecgen.nn import entropy
from codecgen.nn.index_transformer import MaskedIndexTransformer, group_masks
from codecgen.nn.quantizers import kmeans_shrink
from codecgen.nn.vqgan import VQGANDecoder, VQGANEncoder

TINY = str(ROOT / "configs" / "vqgan" / "tiny.yaml")


def _photo_crops(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    import skimage.data

    rng = np.random.default_rng(seed)
    sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    crops = []
    for i in range(n):
        img = sources[i % len(sources)]
        top, left = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        crops.append(img[top : top + size, left : left + size])
    return crops


@pytest.fixture(scope="session")
def image_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for split, n in (("train", 9), ("val", 2)):
        (root / split).mkdir()
        for i, crop in enumerate(_photo_crops(n, 96, seed=len(split))):
            Image.fromarray(crop).save(root / split / f"{i}.png")
    return root


def _fit(root_dir: Path, corpus: Path, *extra: str) -> Path:
    from train import train_main

    cli = train_main(["fit", "--config", TINY, "--data.init_args.root", str(corpus),
                      "--trainer.default_root_dir", str(root_dir), "--trainer.enable_progress_bar", "false", *extra])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


@pytest.fixture(scope="session")
def tiny_vqgan(tmp_path_factory, image_corpus) -> Path:
    """All three stages through train.py, then exported: the real user path."""
    runs = tmp_path_factory.mktemp("vqgan_runs")
    ae = _fit(runs / "ae", image_corpus)
    shrink = _fit(runs / "shrink", image_corpus, "--trainer.max_steps", "10", "--model.init_args.stage", "shrink",
                  "--model.init_args.discriminator", "null", "--model.init_args.init_from", str(ae))
    restorer = _fit(runs / "restorer", image_corpus, "--trainer.max_steps", "20", "--model.init_args.stage", "restorer",
                    "--model.init_args.discriminator", "null", "--model.init_args.init_from", str(shrink))
    folder = runs / "export"
    hub.export(hub.load(restorer), folder)
    return folder


@pytest.fixture()
def model(tiny_vqgan):
    return hub.load(tiny_vqgan)


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    crop = _photo_crops(1, max(h, w), seed)[0][:h, :w]
    return torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255


# ----------------------------------------------------------------------------- networks
def test_encoder_decoder_shapes_and_errors():
    enc = VQGANEncoder(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(2,), z_channels=4)
    dec = VQGANDecoder(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(2,), z_channels=4)
    assert enc.factor == dec.factor == 4
    z = enc(torch.randn(2, 3, 24, 32))
    assert z.shape == (2, 4, 6, 8)
    assert dec(z).shape == (2, 3, 24, 32)
    with pytest.raises(ValueError, match="multiples of 4"):
        enc(torch.randn(1, 3, 25, 32))
    with pytest.raises(ValueError, match="attn_levels"):
        VQGANEncoder(ch=8, ch_mult=(1, 2), attn_levels=(5,))


@pytest.mark.parametrize("name,factor", [("f16_16384", 16), ("f8_16384", 8), ("small", 16)])
def test_paper_and_small_configs_build(name, factor):
    import yaml

    from codecgen.config import build

    spec = yaml.safe_load(open(ROOT / "configs" / "vqgan" / f"{name}.yaml"))["model"]
    spec["init_args"]["restorer"] = None  # the paper-size transformer alone is 56 M parameters
    codec = build(spec)
    assert codec.factor == factor
    assert codec.codebook_sizes[0] == (16384 if name != "small" else 1024)
    assert codec.codebook_sizes[-1] == 8
    if name == "f16_16384":  # taming's f=16 VQGAN: ~29 M encoder, ~42 M decoder
        assert 25e6 < sum(p.numel() for p in codec.encoder.parameters()) < 35e6
        assert 38e6 < sum(p.numel() for p in codec.decoder.parameters()) < 48e6


def test_autoencoder_loss_falls_on_a_fixed_batch():
    import yaml

    from codecgen.config import build

    torch.manual_seed(0)
    spec = yaml.safe_load(open(TINY))["model"]
    spec["init_args"]["discriminator"] = None
    codec = build(spec).train()
    x = torch.from_numpy(np.stack(_photo_crops(4, 64))).permute(0, 3, 1, 2).float() / 127.5 - 1
    params = [p for m in (codec.encoder, codec.decoder, codec.levels[str(codec.trained_size)]) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3)

    def loss():
        q, x_hat = codec.quantize(x)
        return codec._weighted(codec._reconstruction_losses(x_hat, x)) + q.loss

    first = float(loss().detach())
    for _ in range(40):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert float(loss().detach()) < 0.7 * first


def test_restorer_learns_and_fills_only_lost_positions():
    torch.manual_seed(0)
    net = MaskedIndexTransformer(codebook_sizes=[8], dim=32, depth=2, heads=2, dropout=0.0, max_grid=8)
    # a structured grid: index = (row + col) % 8, learnable from neighbours
    codes = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 8)[None].repeat(8, 1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = net.loss(codes, 0)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    net.eval()
    lost = lost_positions((8, 8), 0.2, "random", seed=1)[None]
    damaged = torch.where(lost, torch.zeros_like(codes[:1]), codes[:1])
    restored = net.restore(damaged, lost, 0, steps=4)
    assert torch.equal(restored[~lost], codes[:1][~lost])  # known indices untouched
    assert (restored[lost] == codes[:1][lost]).float().mean() > 0.8


def test_restore_with_codebook_takes_the_entry_nearest_the_expected_vector(monkeypatch):
    net = MaskedIndexTransformer(codebook_sizes=[3], dim=8, depth=1, heads=1, max_grid=4)
    # unsure between the two outer entries: the argmax picks one of them, the mean is the middle
    logits = torch.log(torch.tensor([0.46, 0.08, 0.46]))
    monkeypatch.setattr(net, "forward", lambda codes, mask, level: logits.expand(*codes.shape, 3))
    codebook = torch.tensor([[-1.0], [0.0], [1.0]])
    codes, lost = torch.zeros(1, 2, 2, dtype=torch.long), torch.ones(1, 2, 2, dtype=torch.bool)
    assert set(net.restore(codes, lost, 0, steps=2).unique().tolist()) <= {0, 2}
    assert (net.restore(codes, lost, 0, steps=2, codebook=codebook) == 1).all()


def test_group_masks_partition_the_grid():
    masks = group_masks(5, 7)
    assert len(masks) == 4
    total = torch.stack(masks).sum(0)
    assert torch.equal(total, torch.ones(5, 7, dtype=total.dtype))


@pytest.mark.parametrize("pattern", ["random", "burst"])
def test_lost_positions_hit_the_fraction(pattern):
    mask = lost_positions((16, 20), 0.2, pattern, seed=3)
    assert mask.shape == (16, 20) and int(mask.sum()) == round(0.2 * 320)
    assert torch.equal(mask, lost_positions((16, 20), 0.2, pattern, seed=3))


# ----------------------------------------------------------------------------- trained model
def test_training_stages_made_every_rate(model):
    assert model.available_sizes() == [64, 16, 8]
    for k in model.codebook_sizes:
        assert model.priors[str(k)].fitted
        assert model.entropy_kinds(k) == ["uniform", "prior", "context"]


def test_shrunk_codebook_starts_from_kmeans_of_the_trained_one():
    import yaml

    from codecgen.config import build

    codec = build(yaml.safe_load(open(TINY))["model"])
    main = codec.levels["64"].quantizer.codebook
    main.data.copy_(torch.randn_like(main))
    codec._shrink_codebooks()
    for k in (16, 8):
        expected, index_map = kmeans_shrink(main, k)
        assert torch.equal(codec.levels[str(k)].quantizer.codebook, expected)
        distances = torch.cdist(main, expected)
        assert torch.equal(index_map, distances.argmin(1))
        assert bool(codec.levels[str(k)].ready)


@pytest.mark.parametrize("kind", ["uniform", "prior", "context"])
def test_indices_round_trip_exactly_and_size_matches_the_coder(model, kind):
    image = _image(150, 200)
    for k in model.available_sizes():
        grid = model.encode_image(image, k)
        data = model.compress(image, k, entropy_kind=kind)
        header, payload = bitstream.unpack(data)
        assert header["entropy"] == kind and header["K"] == k
        back, lost, alpha = model.unpack_grid(header, payload)
        assert torch.equal(back, grid) and lost is None and alpha is None
        header_bytes = len(json.dumps(header, separators=(",", ":")).encode())
        assert len(data) == bitstream.FIXED_BYTES + header_bytes + len(payload)
        if kind != "context":
            model_ = entropy.uniform_model([k]) if kind == "uniform" else model.priors[str(k)].entropy_model(1)
            ideal = entropy.information_bits(grid.reshape(1, 1, -1), model_)
            assert abs(8 * len(payload) - ideal) <= 40  # range coder: within a few bytes of ideal
        decoded = model.decompress(data)
        assert torch.allclose(decoded, model.decode_image(grid, 150, 200, k))


def test_auto_entropy_picks_the_smallest_payload(model):
    image = _image(128, 128, seed=2)
    sizes = {kind: len(model.compress(image, 16, entropy_kind=kind)) for kind in model.entropy_kinds(16)}
    assert len(model.compress(image, 16)) == min(sizes.values())


def test_lost_indices_restore_to_valid_indices(model):
    image = _image(128, 160, seed=1)
    data = model.compress(image, 64)
    grid = model.encode_image(image, 64)
    lost = lost_positions(grid.shape, 0.2, "burst", seed=0)
    damaged = model.damage(data, lost)
    header, payload = bitstream.unpack(damaged)
    assert "lost" in header and header["entropy"] != "context"
    assert len(damaged) < len(data) + 40  # the lost indices are not carried
    back, got_lost, _ = model.unpack_grid(header, payload)
    assert torch.equal(got_lost, lost)
    assert (back[lost] == -1).all() and torch.equal(back[~lost], grid[~lost])
    restored = model.fill_lost(back, got_lost, 64, restore=True)
    assert restored.min() >= 0 and restored.max() < 64
    assert torch.equal(restored[~lost], grid[~lost])
    image_back = model.decompress(damaged, restore=True)
    assert image_back.shape == (3, 128, 160) and torch.isfinite(image_back).all()


def test_blocks_bound_memory_and_match_whole_image_coding(model):
    # tiny config: 8-index blocks (128 px) with 2 indices of margin
    small = _image(100, 120, seed=3)
    padded = torch.nn.functional.pad(small[None], (0, 8, 0, 12), mode="replicate")  # encode takes [0, 1] too
    assert torch.equal(model.encode_image(small)[None, None], model.encode(padded))
    big = _image(300, 410, seed=4)
    assert model.n_blocks(300, 410) == 3 * 4  # a 19 x 26 index grid in 8 x 8 blocks
    data = model.compress(big, 16)
    out = model.decompress(data)
    assert out.shape == (3, 300, 410)


def test_exported_half_weights_load_bit_identically(model, tmp_path):
    hub.export(model, tmp_path / "half", half=True)
    reloaded = hub.load(tmp_path / "half")
    assert reloaded.weights_hash() == model.weights_hash()
    size_half = (tmp_path / "half" / "model.safetensors").stat().st_size
    hub.export(reloaded, tmp_path / "full")
    assert size_half < 0.6 * (tmp_path / "full" / "model.safetensors").stat().st_size


# ----------------------------------------------------------------------------- bad input
def test_corrupt_and_foreign_files_raise_bitstream_error(model):
    image = _image(64, 64)
    data = model.compress(image, 16)
    flipped = bytearray(data)
    flipped[-6] ^= 0xFF
    with pytest.raises(bitstream.BitstreamError):
        model.decompress(bytes(flipped))
    with pytest.raises(bitstream.BitstreamError):
        model.decompress(data[:-3])
    header, payload = bitstream.unpack(data)
    for field, value in (("size", [0, 64]), ("size", [1 << 20, 1 << 20]), ("K", 5), ("entropy", "magic"),
                         ("size", "64x64"), ("lost", "not base64!"), ("codes_bytes", 10**9), ("mode", "CMYK")):
        bad = bitstream.pack({**header, field: value}, payload)
        with pytest.raises(bitstream.BitstreamError):
            model.decompress(bad)
    with pytest.raises(bitstream.BitstreamError):  # the payload of another image size
        model.decompress(bitstream.pack({**header, "size": [640, 640]}, payload))
    with pytest.raises(CodecError, match="use the model that encoded it"):
        model.decompress(bitstream.pack({**header, "weights_hash": "00000000"}, payload))


def test_bad_images_and_rates_raise_codec_error(model):
    with pytest.raises(CodecError, match="NaN"):
        model.compress(torch.full((3, 32, 32), float("nan")))
    with pytest.raises(CodecError, match="shape"):
        model.compress(torch.rand(1, 32, 32))
    with pytest.raises(CodecError, match="no codebook of size"):
        model.compress(torch.rand(3, 32, 32), codebook_size=100)


# ----------------------------------------------------------------------------- CLI
def _infer(*args: str) -> int:
    from infer import main

    return main(list(args))


@pytest.mark.parametrize("mode,size", [("RGB", (37, 53)), ("L", (64, 31)), ("RGBA", (40, 40))])
def test_cli_round_trip_of_odd_sizes_and_modes(tiny_vqgan, tmp_path, mode, size):
    w, h = size
    rgb = _photo_crops(1, 64)[0][:h, :w]
    img = Image.fromarray(rgb).convert(mode)
    if mode == "RGBA":
        alpha = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
        img.putalpha(Image.fromarray(alpha))
    src, cgc, out = tmp_path / "in.png", tmp_path / "x.cgc", tmp_path / "out.png"
    img.save(src)
    assert _infer("compress", "--model", str(tiny_vqgan), str(src), str(cgc), "--codebook-size", "16", "--quiet") == 0
    assert _infer("decompress", "--model", str(tiny_vqgan), str(cgc), str(out), "--quiet") == 0
    back = Image.open(out)
    assert back.size == (w, h) and back.mode == mode
    if mode == "RGBA":  # alpha is carried losslessly
        assert np.array_equal(np.asarray(back)[..., 3], np.asarray(img)[..., 3])


def test_cli_damage_and_restore(tiny_vqgan, tmp_path):
    src, cgc, bad, out = tmp_path / "in.png", tmp_path / "x.cgc", tmp_path / "lost.cgc", tmp_path / "out.png"
    Image.fromarray(_photo_crops(1, 96)[0]).save(src)
    assert _infer("compress", "--model", str(tiny_vqgan), str(src), str(cgc), "--quiet") == 0
    assert _infer("damage", "--model", str(tiny_vqgan), str(cgc), str(bad), "--loss", "0.2", "--pattern", "burst",
                  "--quiet") == 0
    assert "lost" in bitstream.read(bad)[0]
    assert _infer("decompress", "--model", str(tiny_vqgan), str(bad), str(out), "--restore", "--quiet") == 0
    assert Image.open(out).size == (96, 96)


def test_cli_errors_leave_no_output(tiny_vqgan, tmp_path, capsys):
    src, cgc = tmp_path / "in.png", tmp_path / "x.cgc"
    Image.fromarray(_photo_crops(1, 48)[0]).save(src)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(src.read_bytes()[:100])
    assert _infer("compress", "--model", str(tiny_vqgan), str(truncated), str(cgc), "--quiet") == 2
    assert not cgc.exists()
    assert "truncated.png" in capsys.readouterr().err
    assert _infer("compress", "--model", str(tiny_vqgan), str(src), str(cgc), "--codebook-size", "7", "--quiet") == 2
    assert not cgc.exists()
    assert _infer("compress", "--model", str(tiny_vqgan), str(src), str(cgc), "--quiet") == 0
    before = cgc.read_bytes()
    assert _infer("compress", "--model", str(tiny_vqgan), str(src), str(cgc), "--quiet") == 2  # no --overwrite
    assert cgc.read_bytes() == before
    assert _infer("decompress", "--model", str(tiny_vqgan), str(cgc), str(tmp_path / "o.gif"), "--quiet") == 2
    corrupt = tmp_path / "corrupt.cgc"
    corrupt.write_bytes(before[:-1] + bytes([before[-1] ^ 1]))
    assert _infer("decompress", "--model", str(tiny_vqgan), str(corrupt), str(tmp_path / "o.png"), "--quiet") == 2
    assert not (tmp_path / "o.png").exists()


def test_shipped_checkpoint_codes_every_rate():
    shipped = hub.load("vqgan-f16")
    config = json.loads((hub.SHIPPED_DIR / "vqgan-f16" / "config.json").read_text())
    assert shipped.weights_hash() == config["weights_hash"]
    assert shipped.available_sizes() == [1024, 256, 64, 16, 8]
    image = _image(48, 80, seed=5)
    for k in (1024, 8):
        data = shipped.compress(image, k)
        out = shipped.decompress(data)
        assert out.shape == (3, 48, 80)
        header, _ = bitstream.unpack(data)
        assert header["K"] == k
    assert math.isclose(shipped.bits_per_pixel(256), 8 / 256)
    assert (hub.SHIPPED_DIR / "vqgan-f16" / "MODEL_CARD.md").is_file()

"""Tests for the image readers/writers, the tiler, the datamodule and the image corpus builder."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codecgen.datamodules.image import (
    MAX_PIXELS,
    ImageDataModule,
    image_size,
    iter_tiles,
    load_image,
    load_image_with_alpha,
    save_image,
)
from codecgen.datamodules.prepare import main as prepare_main

torch.set_num_threads(1)


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` and whose data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)


# --------------------------------------------------------------------------- load_image


def test_rgb_png_loads_exactly(tmp_path: Path) -> None:
    a = _rgb(13, 17)
    Image.fromarray(a).save(tmp_path / "x.png")
    x, mode = load_image(tmp_path / "x.png")
    assert mode == "RGB" and x.dtype == torch.float32 and x.shape == (3, 13, 17)
    assert torch.equal(x, torch.from_numpy(a).permute(2, 0, 1).float() / 255)
    assert image_size(tmp_path / "x.png") == (13, 17)


@pytest.mark.parametrize("pil_mode", ["L", "1"])
def test_grey_files_give_three_equal_channels_and_mode_l(tmp_path: Path, pil_mode: str) -> None:
    g = np.random.default_rng(1).integers(0, 256, (9, 11), dtype=np.uint8)
    Image.fromarray(g).convert(pil_mode).save(tmp_path / "g.png")
    x, mode = load_image(tmp_path / "g.png")
    assert mode == "L" and x.shape == (3, 9, 11)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    if pil_mode == "L":
        assert torch.equal(x[0], torch.from_numpy(g).float() / 255)
    else:
        assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_16bit_grey_png_keeps_its_precision(tmp_path: Path) -> None:
    g = (np.arange(40 * 30).reshape(30, 40) * 54).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    x, mode = load_image(tmp_path / "g16.png")
    assert mode == "L" and x.shape == (3, 30, 40)
    assert torch.allclose(x[1], torch.from_numpy(g.astype(np.float32) / 65535), atol=0, rtol=1e-6)
    assert x.max() <= 1.0 and x[0, 0, 1] > 0  # steps well below 1/255 survive


def test_rgba_gives_colour_and_alpha(tmp_path: Path) -> None:
    rgba = np.random.default_rng(2).integers(0, 256, (8, 12, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    rgb, alpha, mode = load_image_with_alpha(tmp_path / "a.png")
    assert mode == "RGBA" and rgb.shape == (3, 8, 12) and alpha.shape == (1, 8, 12)
    assert torch.equal(rgb, torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float() / 255)
    assert torch.equal(alpha[0], torch.from_numpy(rgba[..., 3]).float() / 255)
    x, mode2 = load_image(tmp_path / "a.png")
    assert mode2 == "RGBA" and torch.equal(x, rgb)
    # LA: grey colour, still reported RGBA so a codec can keep the alpha
    Image.fromarray(rgba[..., [0, 3]], mode="LA").save(tmp_path / "la.png")
    rgb, alpha, mode = load_image_with_alpha(tmp_path / "la.png")
    assert mode == "RGBA" and torch.equal(rgb[0], rgb[2])
    assert torch.equal(alpha[0], torch.from_numpy(rgba[..., 3]).float() / 255)


def test_palette_images(tmp_path: Path) -> None:
    colour = Image.fromarray(_rgb(10, 10)).quantize(16)
    colour.save(tmp_path / "p.png")
    x, mode = load_image(tmp_path / "p.png")
    assert mode == "RGB" and x.shape == (3, 10, 10)
    grey = Image.fromarray(np.tile(np.arange(0, 250, 25, dtype=np.uint8), (10, 1))).convert("P")
    grey.save(tmp_path / "pg.png")
    x, mode = load_image(tmp_path / "pg.png")
    assert mode == "L" and torch.equal(x[0], x[2])
    colour.info["transparency"] = 0
    colour.save(tmp_path / "pt.png", transparency=0)
    rgb, alpha, mode = load_image_with_alpha(tmp_path / "pt.png")
    assert mode == "RGBA" and alpha is not None and set(alpha.unique().tolist()) <= {0.0, 1.0} and alpha.min() == 0


def test_animated_gif_gives_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((6, 7, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    x, _ = load_image(tmp_path / "anim.gif")
    assert x.shape == (3, 6, 7) and x.max() == 0


def test_bad_files_raise_value_errors_naming_them(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(_rgb(64, 64)).save(good)
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "good.jpg", quality=90)
    cases = {
        "garbage.png": np.random.default_rng(3).bytes(500),
        "truncated.png": good.read_bytes()[: good.stat().st_size // 2],
        "truncated.jpg": (tmp_path / "good.jpg").read_bytes()[:600],
        "notes.png": b"this is a text file, not a picture\n" * 5,
        "empty.png": b"",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=str(path).replace(".", r"\.")):
            load_image(path)
    with pytest.raises(ValueError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")


def test_absurd_and_zero_sizes_are_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = tmp_path / "huge.png"
    _png_header_only(huge, 20000, 20000)  # 4e8 pixels claimed by a tiny file
    with pytest.raises(ValueError, match=r"huge\.png.*(too large|limit)"):
        load_image(huge)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own guard off: ours still holds
    with pytest.raises(ValueError, match=f"more than the limit of {MAX_PIXELS}"):
        image_size(huge)
    zero = tmp_path / "zero.png"
    _png_header_only(zero, 0, 5)
    with pytest.raises(ValueError, match=r"zero\.png"):
        load_image(zero)


# --------------------------------------------------------------------------- save_image


@pytest.mark.parametrize("suffix", [".png", ".webp", ".bmp", ".tif"])
def test_lossless_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    (ref, back), mode = _saved_and_loaded_rgb(tmp_path, suffix)
    assert mode == "RGB" and torch.equal(ref, back)


def _saved_and_loaded_rgb(tmp_path: Path, suffix: str) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    a = _rgb(15, 21, seed=4)
    ref = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    save_image(ref, tmp_path / f"y{suffix}")
    back, mode = load_image(tmp_path / f"y{suffix}")
    return (ref, back), mode


def test_save_rounds_clamps_and_writes_grey_alpha_and_jpeg(tmp_path: Path) -> None:
    x = torch.tensor([[[-0.2, 0.4 / 255, 0.6 / 255, 1.3]]]).expand(3, 1, 4)
    save_image(x, tmp_path / "r.png")
    assert np.asarray(Image.open(tmp_path / "r.png"))[0, :, 0].tolist() == [0, 0, 1, 255]
    g = torch.rand(1, 9, 10)
    save_image(g.expand(3, -1, -1), tmp_path / "g.png", mode="L")
    assert Image.open(tmp_path / "g.png").mode == "L"
    back, mode = load_image(tmp_path / "g.png")
    assert mode == "L" and torch.equal(back[0], (g[0] * 255).round() / 255)
    alpha = torch.rand(1, 9, 10)
    save_image(torch.rand(3, 9, 10), tmp_path / "a.png", alpha=alpha)
    _, a2, mode = load_image_with_alpha(tmp_path / "a.png")
    assert mode == "RGBA" and torch.equal(a2, (alpha * 255).round() / 255)
    (ref, back), mode = _saved_and_loaded_rgb(tmp_path, ".jpg")
    assert mode == "RGB" and (ref - back).abs().mean() < 0.05
    with pytest.raises(ValueError, match="unknown image suffix"):
        save_image(ref, tmp_path / "y.xyz")
    with pytest.raises(ValueError, match="JPEG"):
        save_image(ref, tmp_path / "y.jpg", alpha=torch.ones(1, 15, 21))


# --------------------------------------------------------------------------- iter_tiles


@pytest.mark.parametrize(
    "height,width,tile,overlap",
    [(1, 1, 8, 0), (100, 37, 32, 4), (257, 256, 64, 16), (50, 50, 50, 10), (33, 90, 11, 5), (1000, 3, 128, 0)],
)
def test_iter_tiles_cover_every_pixel(height: int, width: int, tile: int, overlap: int) -> None:
    owned = torch.zeros(height, width, dtype=torch.int64)
    seen = torch.zeros(height, width, dtype=torch.bool)
    for box in iter_tiles(height, width, tile, overlap):
        top, left, bottom, right = box
        ct, cl, cb, cr = box.core
        assert 0 <= top <= ct < cb <= bottom <= height and 0 <= left <= cl < cr <= right <= width
        assert bottom - top <= tile and right - left <= tile
        assert (top, left) == (max(0, ct - overlap), max(0, cl - overlap))
        assert (bottom, right) == (min(height, cb + overlap), min(width, cr + overlap))
        owned[ct:cb, cl:cr] += 1
        seen[top:bottom, left:right] = True
    assert bool((owned == 1).all()) and bool(seen.all())


def test_iter_tiles_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(iter_tiles(10, 10, 8, 4))
    with pytest.raises(ValueError):
        list(iter_tiles(0, 10, 8, 0))


# --------------------------------------------------------------------------- datamodule


SIZES = [(48, 40), (40, 48), (37, 53), (64, 33), (33, 64), (50, 50), (45, 71), (24, 30), (32, 32), (90, 41)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten small images of odd sizes: RGB, grey, RGBA, one smaller than the crop; in subfolders."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    for i, (h, w) in enumerate(SIZES):
        a = _rgb(h, w, seed=10 + i)
        img = Image.fromarray(a)
        if i == 3:
            img = img.convert("L")
        if i == 4:
            img = img.convert("RGBA")
        ext = ("png", "jpg", "webp", "bmp", "tif")[i % 5] if i != 4 else "png"
        img.save(root / ("sub" if i % 2 else "") / f"img{i}.{ext}")
    (root / "readme.txt").write_text("not an image")
    return root


def _dm(root: Path, **kw) -> ImageDataModule:
    args = dict(root=str(root), crop_size=32, batch_size=4, num_workers=0, val_fraction=0.3, samples_per_epoch=12)
    args.update(kw)
    dm = ImageDataModule(**args)
    dm.setup("fit")
    return dm


def test_split_holds_out_whole_images_deterministically(folder: Path) -> None:
    dm = _dm(folder)
    train, val = {f.path for f in dm.train_files}, {f.path for f in dm.val_files}
    assert train and val and not train & val
    assert len(train | val) == len(SIZES)
    again = _dm(folder)
    assert {f.path for f in again.val_files} == val


def test_batches_are_crops_in_minus_one_one(folder: Path) -> None:
    dm = _dm(folder)
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    for b in batches:
        assert b.shape == (4, 3, 32, 32) and b.dtype == torch.float32
        assert b.min() >= -1.0 and b.max() <= 1.0
    assert not torch.equal(batches[0], batches[1])
    val = torch.cat(list(dm.val_dataloader()))
    assert val.shape == (len(dm.val_files) * 4, 3, 32, 32) and val.min() >= -1 and val.max() <= 1
    again = torch.cat(list(_dm(folder).val_dataloader()))
    assert torch.equal(val, again)


def test_decoded_image_cache_is_sized_by_cache_mb(folder: Path) -> None:
    """``cache_mb`` bounds each process's cache of decoded images: 0 keeps only the last
    one, a large cache keeps every image it decoded; crops are the same either way."""
    tiny, large = _dm(folder, cache_mb=0), _dm(folder, cache_mb=64)
    for dm in (tiny, large):
        for i in range(len(dm.val_set)):
            dm.val_set[i]
    assert len(tiny.val_set._cache) == 1 and len(large.val_set._cache) == len(large.val_files) > 1
    assert torch.equal(torch.stack([tiny.val_set[i] for i in range(len(tiny.val_set))]),
                       torch.stack([large.val_set[i] for i in range(len(large.val_set))]))
    with pytest.raises(ValueError, match="cache_mb"):
        ImageDataModule(root=str(folder), cache_mb=-1)


def test_small_images_are_upscaled_and_weights_follow_area(folder: Path) -> None:
    small = next(f for f in _dm(folder, val_fraction=0.0).train_files if f.path.stem == "img7")
    from codecgen.datamodules.image import ImageCrops

    crops = ImageCrops([small], 32, train=False, val_crops=2)
    assert crops[0].shape == (3, 32, 32) and crops[1].shape == (3, 32, 32)
    train = ImageCrops([small], 32, train=True, length=3, min_scale=0.5)
    assert train[0].shape == (3, 32, 32)
    dm = _dm(folder)
    areas = torch.tensor([float(f.height * f.width) for f in dm.train_files], dtype=torch.float64)
    assert torch.equal(dm.train_set.weights, areas)


def test_train_val_folders_and_clear_errors(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            Image.fromarray(_rgb(40, 36, seed=i)).save(tmp_path / split / f"{split}{i}.png")
    dm = _dm(tmp_path, num_workers=1)
    assert len(dm.train_files) == 3 and len(dm.val_files) == 2
    assert dm.train_dataloader().persistent_workers
    with pytest.raises(FileNotFoundError, match="prepare image"):
        _dm(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no png/.* files under .*prepare image"):
        _dm(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        _dm(tmp_path / "bad")


# --------------------------------------------------------------------------- corpus builder


@pytest.fixture
def no_apt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests fetch no Debian wallpaper package (no network): the builder warns and goes on."""
    from codecgen.datamodules.corpora import image as image_corpus

    def refuse(name: str, cache: Path):
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(image_corpus, "fetch_deb", refuse)


def test_image_corpus_builder_end_to_end(tmp_path: Path, no_apt: None) -> None:
    out = tmp_path / "images"
    prepare_main(["image", "--out", str(out), "--max-images", "12"])
    train, val = sorted((out / "train").glob("*.png")), sorted((out / "val").glob("*.png"))
    assert train and val and len(train) + len(val) <= 12
    assert not {p.name for p in train} & {p.name for p in val}
    for p in val:  # val holds colour photos the 256-px benchmark can crop
        with Image.open(p) as img:
            assert img.mode == "RGB" and min(img.size) >= 256
    readme = (out / "README.md").read_text()
    assert "scikit-image" in readme and "Validation images" in readme
    summary = json.loads((out / ".complete").read_text())
    assert sorted(summary["val"]) == [p.name for p in val]
    stamp = (out / "README.md").stat().st_mtime_ns
    prepare_main(["image", "--out", str(out), "--max-images", "12"])  # already built: returns at once
    assert (out / "README.md").stat().st_mtime_ns == stamp
    dm = ImageDataModule(root=str(out), crop_size=64, batch_size=2, num_workers=0, samples_per_epoch=2)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).shape == (2, 3, 64, 64)
    assert len(dm.val_files) == len(val)


def test_image_corpus_builder_warns_without_opencv_doc(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_apt: None
) -> None:
    out = tmp_path / "images"
    prepare_main(["image", "--out", str(out), "--max-images", "8", "--opencv-dir", str(tmp_path / "none"), "--force"])
    assert "apt-get install opencv-doc" in capsys.readouterr().err
    assert "apt-get install opencv-doc" in (out / "README.md").read_text()
    assert (out / ".complete").exists() and not any("opencv" in p.name for p in out.rglob("*.png"))


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colour picture (compresses well, clearly not grey)."""
    return np.asarray(Image.fromarray(_rgb(6, 8, seed)).resize((w, h), Image.BICUBIC))


def _fake_wallpapers(root: Path) -> dict:
    """Extracted wallpaper packages laid out like gnome-backgrounds and plasma-workspace-wallpapers."""
    from codecgen.datamodules.corpora.common import Package

    plasma = root / "plasma"
    for first_seed, design, variants in ((0, "Kite", ("images", "images_dark")), (2, "Opal", ("images",))):
        folder = plasma / "usr/share/wallpapers" / design
        for seed, variant in enumerate(variants, start=first_seed):
            d = folder / "contents" / variant
            d.mkdir(parents=True)
            Image.fromarray(_smooth(600, 960, seed)).save(d / "960x600.jpg", quality=95)
            Image.fromarray(_smooth(300, 480, seed)).save(d / "480x300.jpg")
            (d / "1920x1200.jpg").symlink_to("480x300.jpg")  # links are skipped, whatever they claim
        Image.fromarray(_smooth(100, 160, 9)).save(folder / "contents" / "screenshot.jpg")
        (folder / "metadata.json").write_text(json.dumps({"KPlugin": {"Authors": [{"Name": f"{design} Artist"}],
                                                                      "License": "CC-BY-SA-4.0"}}))
    gnome = root / "gnome"
    folder = gnome / "usr/share/backgrounds/gnome"
    folder.mkdir(parents=True)
    for seed, variant in enumerate("ld"):
        Image.fromarray(_smooth(700, 1200, seed + 3)).save(folder / f"adwaita-{variant}.webp", method=0)
    Image.fromarray(_smooth(256, 256, 5)).save(folder / "vnc-l.webp")  # a placeholder: skipped
    (folder / "blobs-l.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    for pkg, name in ((plasma, "plasma-workspace-wallpapers"), (gnome, "gnome-backgrounds")):
        (pkg / "usr/share/doc" / name).mkdir(parents=True)
        (pkg / "usr/share/doc" / name / "copyright").write_text(f"copyright of {name}\n")
    return {"plasma-workspace-wallpapers": Package("plasma-workspace-wallpapers", "5.27", plasma),
            "gnome-backgrounds": Package("gnome-backgrounds", "43", gnome)}


def test_wallpapers_keep_the_largest_size_of_each_design_and_group_its_variants(tmp_path: Path) -> None:
    from codecgen.datamodules.corpora.wallpapers import wallpapers

    packages = _fake_wallpapers(tmp_path)
    kept, skipped = wallpapers("plasma", packages["plasma-workspace-wallpapers"])
    assert [(w.name, w.group, w.photo, w.path.name) for w in kept] == [
        ("plasma_Kite", "plasma_Kite", True, "960x600.jpg"),
        ("plasma_Kite-dark", "plasma_Kite", True, "960x600.jpg"),
        ("plasma_Opal", "plasma_Opal", False, "960x600.jpg"),
    ]
    assert kept[0].path.parent.name == "images" and kept[1].path.parent.name == "images_dark"
    assert kept[2].credit == "Opal Artist: CC-BY-SA-4.0" and not skipped
    kept, skipped = wallpapers("gnome", packages["gnome-backgrounds"])
    assert [(w.name, w.group, w.photo) for w in kept] == [
        ("gnome_adwaita-d", "gnome_adwaita", False), ("gnome_adwaita-l", "gnome_adwaita", False)
    ]
    assert "CC-BY-SA-3.0" in kept[0].credit
    assert {name for name, _ in skipped} == {"gnome: 1 SVG files", "gnome_vnc-l"}


def test_image_corpus_builder_adds_wallpapers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from codecgen.datamodules.corpora import image as image_corpus

    packages = _fake_wallpapers(tmp_path / "debs")

    def fetch(name: str, cache: Path):
        if name not in packages:
            raise RuntimeError("no network in tests")
        return packages[name]

    monkeypatch.setattr(image_corpus, "fetch_deb", fetch)
    monkeypatch.setattr(image_corpus, "MAX_SIDE", 1000)
    out = image_corpus.build_images(tmp_path / "images", val_fraction=0.9, max_images=14,
                                    opencv_dir=tmp_path / "none", workers=2)
    train = {p.stem for p in (out / "train").glob("*.png")}
    val = {p.stem for p in (out / "val").glob("*.png")}
    # photos (and their variants) may be held out; artwork never is
    assert {"plasma_Kite", "plasma_Kite-dark"} <= val
    assert {"plasma_Opal", "gnome_adwaita-l", "gnome_adwaita-d"} <= train
    with Image.open(out / "train" / "gnome_adwaita-l.png") as img:  # 1200 x 700, shrunk to 1000 px
        assert img.size == (1000, 583) and img.mode == "RGB"
    with Image.open(out / "val" / "plasma_Kite.png") as img:
        assert img.size == (960, 600)
    readme = (out / "README.md").read_text()
    assert "Debian `plasma-workspace-wallpapers` 5.27" in readme and "Kite Artist: CC-BY-SA-4.0" in readme
    assert "could not get Debian package ukui-wallpapers" in readme and "gnome_vnc-l" in readme
    assert (out / "licenses" / "gnome-backgrounds.copyright").is_file()
    assert not (out / ".staging").exists() and (out / ".complete").exists()

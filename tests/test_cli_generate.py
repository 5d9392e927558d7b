"""infer.py's ``upscale`` and ``generate`` on small fake generators with the arbitrary-scale
models' API (injected in place of ``codecgen.hub.load``): output sizes, grey / RGBA / 16-bit
files, samples, folders of generated images, progress, the scale warning, and every bad
input as one line with exit code 2, no output and nothing overwritten."""

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_cli import ENV, ROOT, one_error_line

import infer


# ----------------------------------------------------------------------------- fakes
class FakeSR(torch.nn.Module):
    """Bicubic upsampling plus seed-dependent noise, reporting steps x tiles."""

    task = "upscale"
    modality = "image"
    max_trained_scale = 4.0

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[dict] = []
        self.fail_at: int | None = None  # raise on this call (0-based)

    def pipeline(self, scheduler=None):
        assert scheduler in (None, "ddim", "dpm", "ddpm")

        def pipe(image, scale=None, size=None, num_steps=50, seed=None, guidance=1.0, diffusion=True, tile=None,
                 progress=None):
            assert image.ndim == 3 and image.shape[0] == 3 and (scale is None) != (size is None)
            self.calls.append(dict(image=image.clone(), scale=scale, size=size, num_steps=num_steps, seed=seed,
                                   guidance=guidance, diffusion=diffusion, tile=tile, progress=progress,
                                   scheduler=scheduler))
            if self.fail_at == len(self.calls) - 1:
                raise ValueError("the fake model failed")
            h, w = image.shape[-2:]
            height, width = size if size is not None else (round(h * scale), round(w * scale))
            out = F.interpolate(image[None], size=(height, width), mode="bicubic", align_corners=False)
            if diffusion:
                noise = torch.rand(out.shape, generator=torch.Generator().manual_seed(seed))
                out = out + 0.1 * (noise - 0.5)
            total = num_steps * (2 if tile else 1)
            for done in range(1, total + 1):
                if progress is not None:
                    progress(done, total)
            return SimpleNamespace(images=out.clamp(0, 1))

        return pipe


class FakeGenerator(torch.nn.Module):
    task = "generate"
    modality = "image"

    def __init__(self):
        super().__init__()
        self.calls: list[dict] = []

    def pipeline(self, scheduler=None):
        def pipe(num_images, sizes, num_steps=50, seed=None, progress=None):
            self.calls.append(dict(num_images=num_images, sizes=sizes, num_steps=num_steps, seed=seed,
                                   progress=progress, scheduler=scheduler))
            generator = torch.Generator().manual_seed(seed)
            for done in range(1, num_steps + 1):
                if progress is not None:
                    progress(done, num_steps)
            return SimpleNamespace(images=[torch.rand(num_images, 3, h, w, generator=generator) for h, w in sizes])

        return pipe


class FakeCodec(torch.nn.Module):
    modality = "audio"


@pytest.fixture
def models(monkeypatch):
    """Model names -> fakes, through the loader every infer.py command uses; ``loaded`` lists the calls."""
    table = {"sr": FakeSR(), "gen": FakeGenerator(), "codec": FakeCodec()}
    loaded: list[str] = []

    def load(name, map_location="cpu"):
        loaded.append(name)
        return table[name]

    monkeypatch.setattr("codecgen.hub.load", load)
    return SimpleNamespace(loaded=loaded, **table)


def run(*args: str) -> int:
    return infer.main(list(args))


def photo(path: Path, width: int = 20, height: int = 14, mode: str = "RGB") -> Path:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 12, y * 17, (x + y) * 6], axis=-1).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(rgb).convert("L" if mode == "L" else "RGB")
    if mode == "RGBA":
        img.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, width), (height, 1)).astype(np.uint8)))
    img.save(path)
    return path


# ----------------------------------------------------------------------------- help
def test_help_is_fast_and_imports_no_torch():
    for command in ("upscale", "generate"):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, str(ROOT / "infer.py"), command, "--help"], capture_output=True,
                             text=True, env=ENV, cwd=ROOT, timeout=60, check=False)
        assert out.returncode == 0 and time.perf_counter() - start < 2.0, out.stderr
        assert f"python infer.py {command} --model" in out.stdout and "--max-pixels" in out.stdout
    probe = "import sys, codecgen.cli.generate; print([m for m in ('torch', 'PIL') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=60, check=False)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ----------------------------------------------------------------------------- upscale
def test_scale_and_size_give_the_exact_output_size(models, tmp_path):
    src = photo(tmp_path / "in.png")
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "a.png"), "--scale", "3.5", "--quiet") == 0
    assert Image.open(tmp_path / "a.png").size == (round(20 * 3.5), round(14 * 3.5))
    assert Image.open(tmp_path / "a.png").mode == "RGB"
    call = models.sr.calls[-1]
    assert call["scale"] == 3.5 and call["size"] is None and call["seed"] == 0 and call["num_steps"] == 50
    assert call["diffusion"] and call["tile"] is None and call["guidance"] == 1.0 and call["scheduler"] is None
    assert call["progress"] is None  # --quiet
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "b.webp"), "--size", "64x48", "--steps", "7",
               "--scheduler", "ddim", "--seed", "3", "--tile", "16", "--guidance", "2.5", "--quiet") == 0
    assert Image.open(tmp_path / "b.webp").size == (64, 48)  # WIDTHxHEIGHT
    call = models.sr.calls[-1]
    assert call["size"] == (48, 64) and call["scale"] is None
    assert [call[k] for k in ("num_steps", "scheduler", "seed", "tile", "guidance")] == [7, "ddim", 3, 16, 2.5]
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "c.png"), "--scale", "2", "--no-diffusion",
               "--quiet") == 0
    assert models.sr.calls[-1]["diffusion"] is False


def test_grey_stays_grey_and_rgba_keeps_its_alpha(models, tmp_path):
    grey = photo(tmp_path / "grey.png", mode="L")
    assert run("upscale", "--model", "sr", str(grey), str(tmp_path / "g.png"), "--scale", "2", "--quiet") == 0
    fed = models.sr.calls[-1]["image"]
    assert torch.equal(fed[0], fed[1]) and torch.equal(fed[1], fed[2])  # three identical channels in
    assert Image.open(tmp_path / "g.png").mode == "L"

    rgba = photo(tmp_path / "rgba.png", mode="RGBA")
    assert run("upscale", "--model", "sr", str(rgba), str(tmp_path / "r.png"), "--size", "50x30", "--quiet") == 0
    out = Image.open(tmp_path / "r.png")
    assert out.mode == "RGBA" and out.size == (50, 30)
    alpha = torch.from_numpy(np.asarray(Image.open(rgba))[..., 3].astype(np.float32) / 255)[None, None]
    expected = F.interpolate(alpha, size=(30, 50), mode="bicubic", align_corners=False, antialias=True)
    expected = (expected[0, 0].clamp(0, 1) * 255).round().numpy()
    assert np.abs(np.asarray(out)[..., 3].astype(np.float32) - expected).max() <= 1
    assert models.sr.calls[-1]["image"].shape == (3, 14, 20)  # the model sees colour only


def test_16_bit_input_is_read_at_16_and_written_at_8_with_a_note(models, tmp_path, capsys):
    deep = np.tile(np.linspace(0, 65535, 20), (14, 1)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert run("upscale", "--model", "sr", str(tmp_path / "deep.png"), str(tmp_path / "o.png"), "--scale", "2",
               "--quiet") == 0
    fed = models.sr.calls[-1]["image"][0]
    assert not torch.allclose(fed * 255, (fed * 255).round())  # the 16 bits reached the model
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "L" and out.size == (40, 28)
    err = capsys.readouterr().err
    assert "note:" in err and "8 bits" in err
    photo(tmp_path / "flat.png")
    assert run("upscale", "--model", "sr", str(tmp_path / "flat.png"), str(tmp_path / "f.png"), "--scale", "2",
               "--quiet") == 0
    assert capsys.readouterr().err == ""  # 8-bit in: no note


def test_samples_write_one_file_per_seed(models, tmp_path):
    src = photo(tmp_path / "in.png")
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "out.png"), "--scale", "2", "--samples", "2",
               "--seed", "5", "--quiet") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out_0.png", "out_1.png"]
    assert [c["seed"] for c in models.sr.calls] == [5, 6]
    a, b = (np.asarray(Image.open(tmp_path / f"out_{k}.png")) for k in (0, 1))
    assert a.shape == b.shape == (28, 40, 3) and not np.array_equal(a, b)


def test_a_failure_midway_leaves_no_output(models, tmp_path, capsys):
    src = photo(tmp_path / "in.png")
    models.sr.fail_at = 1
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "out.png"), "--scale", "2", "--samples", "3",
               "--quiet") == 2
    one_error_line(capsys, "the fake model failed")
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]  # not out_0.png, no temp file


def test_scale_above_the_trained_range_warns(models, tmp_path, capsys):
    src = photo(tmp_path / "in.png")
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "a.png"), "--scale", "4", "--quiet") == 0
    assert capsys.readouterr().err == ""
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "b.png"), "--scale", "4.5", "--quiet") == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: scale 4.5") and "trained" in err and "(4)" in err
    # --size: the larger of the two scales (100 / 20 = 5 across, 28 / 14 = 2 down)
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "c.png"), "--size", "100x28", "--quiet") == 0
    assert "warning: scale 5 " in capsys.readouterr().err
    assert Path(tmp_path / "b.png").is_file() and Path(tmp_path / "c.png").is_file()


def test_progress_bar_over_steps_and_tiles(models, tmp_path, capsys):
    src = photo(tmp_path / "in.png")
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "a.png"), "--scale", "2", "--steps", "4",
               "--tile", "8", "--samples", "2") == 0
    assert all(callable(c["progress"]) for c in models.sr.calls)
    captured = capsys.readouterr()
    assert "upscale" in captured.err and "16/16" in captured.err  # 2 samples x 4 steps x 2 tiles
    assert "a_0.png" in captured.out and "40x28" in captured.out
    assert run("generate", "--model", "gen", "--size", "8x8", "--steps", "3", str(tmp_path / "gen")) == 0
    assert callable(models.gen.calls[-1]["progress"])
    captured = capsys.readouterr()
    assert "generate" in captured.err and "3/3" in captured.err and "1 images" in captured.out


# (arguments, words the one error line holds, whether the model was loaded before the refusal)
BAD_UPSCALE = [
    (["--scale", "0"], ["--scale", "above 0"], False),
    (["--scale", "-1"], ["--scale"], False),
    (["--scale", "abc"], ["--scale", "'abc'"], False),
    (["--scale", "nan"], ["--scale"], False),
    (["--scale", "inf"], ["--scale"], False),
    (["--scale", "2", "--size", "40x28"], ["exactly one of"], False),
    ([], ["exactly one of"], False),
    (["--size", "0x5"], ["--size", "WIDTHxHEIGHT"], False),
    (["--size", "abc"], ["--size"], False),
    (["--size", "5"], ["--size"], False),
    (["--size", "5x5x5"], ["--size"], False),
    (["--scale", "1000"], ["over the budget of 64000000", "--max-pixels"], False),  # 20000 x 14000
    (["--scale", "2", "--max-pixels", "1119"], ["40x28 = 1120 pixels", "--max-pixels"], False),
    (["--scale", "0.01"], ["0x0"], False),
    (["--scale", "2", "--steps", "0"], ["--steps", "1..1000"], False),
    (["--scale", "2", "--steps", "1001"], ["--steps"], False),
    (["--scale", "2", "--samples", "0"], ["--samples"], False),
    (["--scale", "2", "--seed", "-1"], ["--seed"], False),
    (["--scale", "2", "--tile", "0"], ["--tile"], False),
    (["--scale", "2", "--guidance", "nan"], ["--guidance"], False),
    (["--scale", "2", "--samples", "2", "--no-diffusion"], ["--no-diffusion"], False),
    (["--scale", "2", "--model", "gen"], ["gen is not an upscaling", "infer.py generate --model gen"], True),
    (["--scale", "2", "--model", "codec"], ["codec is not an upscaling"], True),
]


@pytest.mark.parametrize("extra,words,loads", BAD_UPSCALE, ids=[" ".join(b[0]) or "none" for b in BAD_UPSCALE])
def test_bad_upscale_arguments_are_one_line(models, tmp_path, capsys, extra, words, loads):
    src = photo(tmp_path / "in.png")
    model = [] if "--model" in extra else ["--model", "sr"]
    assert run("upscale", *model, str(src), str(tmp_path / "out.png"), *extra, "--quiet") == 2
    one_error_line(capsys, *words)
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]
    assert bool(models.loaded) == loads and not models.sr.calls


def test_bad_upscale_files_are_one_line_and_touch_nothing(models, tmp_path, capsys):
    src = photo(tmp_path / "in.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(src.read_bytes()[:60])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    rgba = photo(tmp_path / "rgba.png", mode="RGBA")
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"keep me")
    before = sorted(tmp_path.iterdir())
    cases = [
        (text, tmp_path / "o.png", ["notes.png", "cannot read"]),
        (truncated, tmp_path / "o.png", ["truncated.png"]),
        (empty, tmp_path / "o.png", ["empty.png", "empty"]),
        (tmp_path / "missing.png", tmp_path / "o.png", ["missing.png", "not found"]),
        (tmp_path, tmp_path / "o.png", ["is a folder"]),
        (src, tmp_path / "o.gif", ["unsupported", ".gif"]),
        (rgba, tmp_path / "o.jpg", ["alpha", "JPEG"]),
        (src, existing, ["existing.png exists", "--overwrite"]),
        (src, src, ["same file as an input"]),
        (src, tmp_path / "nowhere" / "o.png", ["does not exist"]),
    ]
    for input_, output, words in cases:
        assert run("upscale", "--model", "sr", str(input_), str(output), "--scale", "2", "--quiet") == 2
        one_error_line(capsys, *words)
    assert run("upscale", "--model", "sr", str(src), str(src), "--scale", "2", "--overwrite", "--quiet") == 2
    one_error_line(capsys, "same file")
    (tmp_path / "o_1.png").write_bytes(b"keep me too")  # one of several samples exists: none is written
    assert run("upscale", "--model", "sr", str(src), str(tmp_path / "o.png"), "--scale", "2", "--samples", "2",
               "--quiet") == 2
    one_error_line(capsys, "o_1.png exists")
    assert sorted(tmp_path.iterdir()) == sorted([*before, tmp_path / "o_1.png"])
    assert existing.read_bytes() == b"keep me" and src.read_bytes() == photo(tmp_path / "again.png").read_bytes()
    assert not models.loaded and not models.sr.calls
    assert run("upscale", "--model", "sr", str(src), str(existing), "--scale", "2", "--overwrite", "--quiet") == 0
    assert Image.open(existing).size == (40, 28)


def test_a_generator_given_to_a_codec_verb_names_its_command(models, tmp_path, capsys):
    src = photo(tmp_path / "in.png")
    assert run("encode", "--model", "sr", str(src), str(tmp_path / "x.cgc"), "--quiet") == 2
    one_error_line(capsys, "sr is an upscaling", "infer.py upscale --model sr")
    assert not (tmp_path / "x.cgc").exists()


# ----------------------------------------------------------------------------- generate
def test_generate_writes_every_image_at_every_size(models, tmp_path):
    out = tmp_path / "gen"
    assert run("generate", "--model", "gen", "--size", "32x24", "--size", "16x16", "--num", "3", "--seed", "7",
               "--steps", "5", "--scheduler", "dpm", str(out), "--quiet") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{i:03d}_{s}.png" for s in ("32x24", "16x16") for i in range(3))
    assert Image.open(out / "002_32x24.png").size == (32, 24) and Image.open(out / "000_16x16.png").mode == "RGB"
    call = models.gen.calls[-1]
    assert (call["num_images"], call["sizes"], call["seed"], call["num_steps"], call["scheduler"]) == (
        3, [(24, 32), (16, 16)], 7, 5, "dpm")
    # an existing folder: other files stay; an existing output refuses the whole run
    (out / "mine.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run("generate", "--model", "gen", "--size", "32x24", "--size", "8x8", "--num", "3", "--seed", "1",
               str(out), "--quiet") == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not even the 8x8 ones
    assert run("generate", "--model", "gen", "--size", "32x24", "--num", "3", "--seed", "1", str(out),
               "--overwrite", "--quiet") == 0
    assert (out / "000_32x24.png").read_bytes() != before["000_32x24.png"]
    assert (out / "mine.txt").read_text() == "mine"


BAD_GENERATE = [
    (["--size", "8x8", "--num", "0"], ["--num"], False),
    (["--size", "abc"], ["--size", "WIDTHxHEIGHT"], False),
    (["--size", "0x5"], ["--size"], False),
    ([], ["at least one --size"], False),
    (["--size", "8x8", "--size", "8x8"], ["8x8 is given twice"], False),
    (["--size", "8x8", "--steps", "0"], ["--steps"], False),
    (["--size", "8x8", "--size", "9000x9000"], ["9000x9000", "over the budget"], False),
    (["--size", "8x8", "--max-pixels", "63"], ["8x8 = 64 pixels"], False),
    (["--size", "8x8", "--model", "sr"], ["sr is not an image generation", "infer.py upscale --model sr"], True),
]


@pytest.mark.parametrize("extra,words,loads", BAD_GENERATE, ids=[" ".join(b[0]) or "none" for b in BAD_GENERATE])
def test_bad_generate_arguments_are_one_line(models, tmp_path, capsys, extra, words, loads):
    model = [] if "--model" in extra else ["--model", "gen"]
    assert run("generate", *model, *extra, str(tmp_path / "gen"), "--quiet") == 2
    one_error_line(capsys, *words)
    assert not list(tmp_path.iterdir())  # the folder is not even created
    assert bool(models.loaded) == loads and not models.gen.calls


def test_generate_refuses_a_file_or_a_missing_parent(models, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert run("generate", "--model", "gen", "--size", "8x8", str(tmp_path / "file"), "--quiet") == 2
    one_error_line(capsys, "is a file")
    assert run("generate", "--model", "gen", "--size", "8x8", str(tmp_path / "a" / "b"), "--quiet") == 2
    one_error_line(capsys, "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and not models.loaded

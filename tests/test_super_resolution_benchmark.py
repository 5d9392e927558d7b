"""benchmarks/super_resolution.py end to end on two small photos: the anchors, and the LIIF and
LDM paths of a tiny untrained SR model (--quick, one DPM step, no memory runs); its tables,
JSON and plot, and bicubic's shaved PSNR against a direct computation."""

import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from tests.conftest import ROOT

pytest.importorskip("diffusers")
pytest.importorskip("piq")
sys.path.insert(0, str(ROOT / "benchmarks"))

import super_resolution  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:first_stage_ckpt is not set"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import skimage.data

    from codecgen.config import build

    tmp = tmp_path_factory.mktemp("srbench")
    (tmp / "data" / "val").mkdir(parents=True)
    for name, image in (("a", skimage.data.astronaut()), ("b", skimage.data.coffee())):
        Image.fromarray(image).resize((160, 136), Image.LANCZOS).save(tmp / "data" / "val" / f"{name}.png")
    Image.fromarray(skimage.data.chelsea()).resize((100, 100)).save(tmp / "data" / "val" / "c_small.png")
    torch.manual_seed(0)
    spec = yaml.safe_load(open(ROOT / "configs" / "arbitrary_sr" / "tiny.yaml"))["model"]
    model = build(spec).export(tmp / "sr")
    super_resolution.main(["--sr-model", str(model), "--data", str(tmp / "data"), "--lr-size", "16",
                           "--scales", "8", "2", "4", "--steps", "1", "--seeds", "0", "1", "--memory-sizes",
                           "--out", str(tmp / "out"), "--quick"])
    return tmp, json.loads((tmp / "out" / "super_resolution.json").read_text())


def test_tables_and_json_hold_every_method_at_every_scale(run):
    tmp, result = run
    names = ["bicubic", "Lanczos", "LIIF", "LDM"]
    assert result["methods"] == names and result["scales"] == [2, 4, 8]
    assert any("LDM + alignment" in note for note in result["skipped"])
    assert result["dropped"] == ["c_small.png (shorter side under 128 px)"]  # 16 px x 8 does not fit in it
    assert [(r["scale"], r["method"]) for r in result["rows"]] == [(s, n) for s in (2, 4, 8) for n in names]
    for row in result["rows"]:
        outputs = 2 * (2 if row["method"] == "LDM" else 1)  # two photos, two seeds for the diffusion model
        assert row["n"] == outputs and all(row[k] is not None for k in ("psnr", "ssim", "ms_ssim", "gmsd", "haarpsi"))
        if row["method"] == "LDM":
            assert math.isfinite(row["seed_psnr"]) and row["seed_mad"] > 0  # the two seeds differ
        else:
            assert row["seed_psnr"] is None
        assert (row["cross_psnr"] is not None) == (row["scale"] == 4)
    text = (tmp / "out" / "super_resolution.md").read_text()
    for heading in ("## x2 (in distribution", "## x4 (in distribution", "## x8 (out of distribution", "## Goals"):
        assert heading in text
    assert "| LIIF |" in text and "Skipped: LDM + alignment" in text and "memory" in result["goal_flags"]
    assert (tmp / "out" / "super_resolution.png").stat().st_size > 0


def test_bicubic_shaved_psnr_matches_a_direct_computation(run):
    tmp, result = run
    crop = next(c for c in result["crops"] if c["scale"] == 4 and c["file"] == "a.png")
    record = next(r for r in result["per_output"] if r["method"] == "bicubic" and r["scale"] == 4
                  and r["crop"] == crop["name"])
    image = np.asarray(Image.open(tmp / "data" / "val" / "a.png"), dtype=np.float64) / 255
    top, left, size = crop["top"], crop["left"], crop["size"]
    assert (top, left, size) == (round(0.5 * (136 - 64)), round(0.5 * (160 - 64)), 64)  # the centre, 16 px x 4
    hr = image[top : top + size, left : left + size]
    lr = F.interpolate(torch.from_numpy(hr).permute(2, 0, 1)[None].float(), size=(16, 16), mode="bicubic",
                       antialias=True)[0].clamp(0, 1)
    lr8 = (lr * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    up = np.asarray(Image.fromarray(lr8).resize((size, size), Image.BICUBIC), dtype=np.float64) / 255
    mse = np.mean((hr[4:-4, 4:-4] - up[4:-4, 4:-4]) ** 2)
    assert record["psnr"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-6)


def test_memory_only_runs_children_and_leaves_the_quality_report_alone(run):
    tmp, _ = run
    before = (tmp / "out" / "super_resolution.md").read_text()
    super_resolution.main(["--memory-only", "--sr-model", str(tmp / "sr"), "--memory-sizes", "64", "32",
                           "--out", str(tmp / "out")])
    assert (tmp / "out" / "super_resolution.md").read_text() == before
    result = json.loads((tmp / "out" / "super_resolution_memory.json").read_text())
    assert [m["size"] for m in result["memory"]] == [32, 64]
    for row in result["memory"]:
        assert row["status"] == "ok" and row["shape"] == [1, 3, row["size"], row["size"]]
        assert row["peak_mib"] >= row["loaded_mib"] > 0
    text = (tmp / "out" / "super_resolution_memory.md").read_text()
    assert "| 64x64 | 16x16 |" in text and "not measured in this run" in text  # the goal needs 1024 and 4096


def test_bad_arguments_are_one_error(capsys):
    for argv in (["--scales", "1", "4"], ["--lr-size", "8"], ["--seeds", "0", "0"], ["--memory-sizes", "100", "30"],
                 ["--memory-only", "--sr-model", "x", "--memory-sizes"], ["--memory-only"]):
        with pytest.raises(SystemExit) as error:
            super_resolution.main(argv)
        assert error.value.code == 2
    assert "--scales" in capsys.readouterr().err

"""benchmarks/portrait_animation.py end to end with tiny models on the tiny portrait corpus: every
section runs (drift for two training modes, lip sync with its bounds, expression control, the
memory runs through infer.py), the report and JSON are written, and the slopes are real fits."""

import json
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import portrait_animation  # noqa: E402


def test_the_dark_mouth_reading_sees_an_open_mouth():
    import torch

    frames = torch.full((2, 3, 48, 48), 0.4)
    frames[1, :, 32:38, 20:28] = -0.8  # a dark open mouth in the lower face
    boxes = torch.tensor([[12.0, 10, 36, 40]]).expand(2, 4)
    reading = portrait_animation.dark_mouth(frames, boxes)
    assert reading[0] == 0 and reading[1] > 0.2


def test_the_benchmark_runs_every_section(tiny_portraits, tmp_path):
    from codecgen.config import build

    specs = {name: yaml.safe_load(open(ROOT / "configs" / "hallo2" / f"{name}.yaml"))["model"]
             for name in ("stage2_tiny", "probe_tiny")}
    build(specs["stage2_tiny"]).export(tmp_path / "patch")
    none = specs["stage2_tiny"]
    none["init_args"]["motion_augment"] = "none"
    build(none).export(tmp_path / "none")
    build(specs["probe_tiny"]).export(tmp_path / "probe")
    run = portrait_animation.main(["--models", f"patch={tmp_path / 'patch'}", f"none={tmp_path / 'none'}",
                                   "--probe", str(tmp_path / "probe"), "--data", str(tiny_portraits), "--quick",
                                   "--memory-minutes", "0.02", "0.04", "--out", str(tmp_path / "out")])
    assert set(run["drift"]) == {"patch", "none"}
    d = run["drift"]["patch"]
    assert d["frames"] == 3 * 8 and len(d["per_clip"]["psnr"]) == 3
    assert d["psnr_slope"] == pytest.approx(np.polyfit(np.arange(3), d["per_clip"]["psnr"], 1)[0])
    assert -1 <= d["identity_first"] <= 1 and 0 < d["ssim_first"] <= 1
    sync = run["lip_sync"]
    assert len(sync["clips"]) == 2 and sync["seconds_per_frame"] > 0
    assert all(-1 <= c[k] <= 1 for c in sync["clips"] for k in ("generated", "shuffled_audio", "ground_truth",
                                                                "dark_generated", "dark_ground_truth"))
    assert np.mean([c["dark_ground_truth"] for c in sync["clips"]]) > 0.2  # the classical reading follows real jaws
    assert len(run["expression"]["clips"]) == 2
    assert all(c["asked"] != c["own"] for c in run["expression"]["clips"])
    assert [m["ok"] for m in run["memory"]] == [True, True] and all(m["peak_mib"] > 100 for m in run["memory"])
    text = (tmp_path / "out" / "portrait_animation.md").read_text()
    for heading in ("Drift", "Lip sync", "Expression control", "Speed and memory", "Goals"):
        assert heading in text
    assert json.loads((tmp_path / "out" / "portrait_animation.json").read_text())["models"]["none"]

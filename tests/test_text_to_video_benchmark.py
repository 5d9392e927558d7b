"""benchmarks/text_to_video.py end to end with the tiny VideoGen on the tiny captioned corpus: every section runs
(consistency with its three references and the real-clip bound, upsampling against its two baselines, flicker of
both decoders, speed, the memory run through infer.py), and the report and JSON are written."""

import json
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import text_to_video  # noqa: E402


def test_the_benchmark_runs_every_section(videogen_model, videogen_stages, tiny_captioned, tmp_path):
    run = text_to_video.main(["--model", str(videogen_model), "--classifier", str(videogen_stages["classifier"]),
                              "--data", str(tiny_captioned), "--video-data", "", "--frames", "3", "--quick",
                              "--out", str(tmp_path)])
    consistency = run["consistency"]
    assert consistency["prompts"] >= 1
    for name in ("real clips", *text_to_video.REFERENCES):
        assert 0 <= consistency[name]["all"] <= 1
    up = run["upsampling"]["drawn"]
    assert set(up) == {"flow", "linear blend", "nearest key frame"} and up["flow"]["psnr"] > 5
    fl = run["flicker"]["drawn"]
    assert fl["video decoder"]["temporal"] > 0 and fl["image decoder"]["psnr"] > 5
    assert run["speed"]["frames"] == 12 and run["memory"]["ok"], run["memory"]
    saved = json.loads((tmp_path / "text_to_video.json").read_text())
    assert saved["consistency"]["prompts"] == consistency["prompts"]
    text = (tmp_path / "text_to_video.md").read_text()
    assert "## Goals" in text and "flow upsampling beats linear" in text

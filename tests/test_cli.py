"""infer.py's verbs: fast help, dispatch by modality (audio, image), the old names as
aliases, folder batches with a bad file among good ones, info on lying headers, and
the decode limits handed to the codecs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import infer
from codecgen.cli.parser import EXAMPLES, GROUPS
from codecgen.codecs import bitstream

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
AUDIO, IMAGE = "hificodec-16k", "vqgan-f16"


def run(*args: str) -> int:
    return infer.main([*args, "--quiet"] if args[0] not in ("info", "export") else list(args))


def one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    for word in words:
        assert word in err[0], err[0]
    return err[0]


# ----------------------------------------------------------------------------- help
def test_help_answers_fast_and_imports_no_torch():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "infer.py"), "--help"], capture_output=True, text=True,
                         env=ENV, cwd=ROOT, timeout=60, check=False)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0 and elapsed < 2.0, (out.returncode, elapsed, out.stderr)
    text = out.stdout
    for title, commands in GROUPS:  # every command, under its group, in order
        assert f"  {title}:" in text
        for name, _ in commands:
            assert f"    {name} " in text
    assert text.index("codecs:") < text.index("images:") < text.index("video:") < text.index("files & models:")
    assert text.index("files & models:") < text.index("aliases")
    heavy = "('torch', 'lightning', 'diffusers')"
    probe = f"import sys, codecgen.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=60, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_argument_errors_answer_fast_with_exit_2():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "infer.py"), "decode", "--max-frames", "many", "a", "b"],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60, check=False)
    assert out.returncode == 2 and time.perf_counter() - start < 2.0
    assert "--max-frames" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("command", [name for _, commands in GROUPS for name, _ in commands])
def test_every_command_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        infer.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"python infer.py {command}" in out and EXAMPLES[command].strip() in out


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A short tone, a small photo-like image, and their .cgc files from the shipped models."""
    root = tmp_path_factory.mktemp("cli")
    t = np.arange(8000) / 16000
    sf.write(root / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    y, x = np.mgrid[0:40, 0:56]
    rgb = np.stack([x * 4, y * 6, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(root / "photo.png")
    assert infer.main(["encode", "--model", AUDIO, str(root / "tone.wav"), str(root / "tone.cgc"), "--quiet"]) == 0
    assert infer.main(["encode", "--model", IMAGE, str(root / "photo.png"), str(root / "photo.cgc"), "--quiet"]) == 0
    return root


# ----------------------------------------------------------------------------- dispatch
def test_encode_and_decode_dispatch_on_the_model_and_the_file(files, tmp_path):
    assert bitstream.read(files / "tone.cgc")[0]["modality"] == "audio"
    assert bitstream.read(files / "photo.cgc")[0]["modality"] == "image"
    assert run("decode", "--model", AUDIO, str(files / "tone.cgc"), str(tmp_path / "tone.flac")) == 0
    info = sf.info(str(tmp_path / "tone.flac"))
    assert (info.samplerate, info.frames) == (16000, 8000)
    # the case that ended in AttributeError: an image file through `decode`
    assert run("decode", "--model", IMAGE, str(files / "photo.cgc"), str(tmp_path / "photo.png")) == 0
    assert Image.open(tmp_path / "photo.png").size == (56, 40)


def test_aliases_code_like_the_verbs(files, tmp_path):
    assert run("compress", "--model", IMAGE, str(files / "photo.png"), str(tmp_path / "p.cgc")) == 0
    assert (tmp_path / "p.cgc").read_bytes() == (files / "photo.cgc").read_bytes()
    assert run("decompress", "--model", IMAGE, str(tmp_path / "p.cgc"), str(tmp_path / "alias.png")) == 0
    assert run("decode", "--model", IMAGE, str(files / "photo.cgc"), str(tmp_path / "verb.png")) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "alias.png")), np.asarray(Image.open(tmp_path / "verb.png")))
    # the other case that ended in AttributeError: an audio file through the image alias decodes
    assert run("decompress", "--model", AUDIO, str(files / "tone.cgc"), str(tmp_path / "tone.wav")) == 0
    assert sf.info(str(tmp_path / "tone.wav")).frames == 8000


def test_wrong_command_or_model_is_one_line_naming_the_fix(files, tmp_path, capsys):
    out = tmp_path / "out.wav"
    # no --model for an audio file: say so, with the shipped model that wrote it
    assert run("decode", str(files / "tone.cgc"), str(out)) == 2
    one_error_line(capsys, "needs the model", f"infer.py decode --model {AUDIO}")
    assert run("decode-video", str(files / "photo.cgc"), str(tmp_path / "x.png")) == 2
    one_error_line(capsys, "image file", f"infer.py decode --model {IMAGE}")
    assert run("decode", "--model", IMAGE, str(files / "tone.cgc"), str(out)) == 2
    one_error_line(capsys, "audio file", "image model")
    assert run("encode", "--model", IMAGE, "--n-q", "2", str(files / "photo.png"), str(tmp_path / "x.cgc")) == 2
    one_error_line(capsys, "--n-q", "audio")
    assert run("decode", "--model", AUDIO, "--restore", str(files / "tone.cgc"), str(out)) == 2
    one_error_line(capsys, "--restore", "image")
    assert run("decode", "--model", AUDIO, str(files / "tone.cgc"), str(tmp_path / "tone.png")) == 2
    one_error_line(capsys, "unsupported", ".wav")
    assert run("decode", "--model", AUDIO, "--format", "flac", str(files / "tone.cgc"), str(out)) == 2
    one_error_line(capsys, "--format")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- folders
def test_folder_mode_skips_a_bad_file_and_reports_it(files, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.wav", "b.WAV"):
        (src / name).write_bytes((files / "tone.wav").read_bytes())
    (src / "broken.wav").write_bytes(b"RIFF" + bytes(100))
    (src / "notes.txt").write_text("not audio: ignored")
    coded = tmp_path / "coded"
    assert run("encode", "--model", AUDIO, str(src), str(coded)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "broken.wav" in err[0] and err[1].startswith("error: 1 of 3 files failed"), err
    assert sorted(p.name for p in coded.iterdir()) == ["a.cgc", "b.cgc"]  # no partial file, no temp
    assert bitstream.read(coded / "a.cgc")[0]["modality"] == "audio"

    (coded / "c.cgc").write_bytes((coded / "a.cgc").read_bytes()[:-3])  # truncated
    decoded = tmp_path / "decoded"
    assert run("decode", "--model", AUDIO, str(coded), str(decoded), "--format", "flac") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "c.cgc" in err[0] and "truncated" in err[0] and "1 of 3" in err[1], err
    assert sorted(p.name for p in decoded.iterdir()) == ["a.flac", "b.flac"]
    assert sf.info(str(decoded / "a.flac")).frames == 8000

    (coded / "c.cgc").unlink()
    again = tmp_path / "again"
    assert run("decode", "--model", AUDIO, str(coded), str(again)) == 0  # default format: wav
    assert sorted(p.name for p in again.iterdir()) == ["a.wav", "b.wav"]
    assert run("decode", "--model", AUDIO, str(coded), str(again)) == 2  # nothing replaced without --overwrite
    assert "2 of 2 files failed" in capsys.readouterr().err
    assert run("decode", "--model", AUDIO, str(coded), str(again), "--overwrite") == 0


def test_folder_mode_with_images_and_an_alias(files, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "one.png").write_bytes((files / "photo.png").read_bytes())
    (src / "bad.jpg").write_bytes(b"\xff\xd8not a jpeg")
    assert run("compress", "--model", IMAGE, str(src), str(tmp_path / "coded")) == 2
    assert "bad.jpg" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "coded").iterdir()] == ["one.cgc"]
    assert run("decode", "--model", IMAGE, str(tmp_path / "coded"), str(tmp_path / "back"), "--format", "webp") == 0
    assert Image.open(tmp_path / "back" / "one.webp").size == (56, 40)
    assert run("encode", "--model", IMAGE, str(tmp_path / "empty"), str(tmp_path / "x")) == 2  # missing folder
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    assert run("encode", "--model", IMAGE, str(tmp_path / "empty"), str(tmp_path / "x")) == 2
    one_error_line(capsys, "no image files")


# ----------------------------------------------------------------------------- info
LIES = [
    ("audio", {"source_length": None}, "source_length is missing"),
    ("audio", {"source_length": 0}, "source_length is 0"),
    ("audio", {"source_length": "long"}, "source_length is a str"),
    ("audio", {"source_sample_rate": 0}, "source_sample_rate is 0"),
    ("audio", {"source_sample_rate": True}, "source_sample_rate is a bool"),
    ("audio", {"source_length": 1.5}, "not an integer"),
    ("audio", {"modality": None}, "modality is missing"),
    ("audio", {"modality": 7}, "modality is 7"),
    ("image", {"size": "big"}, "size is \"big\""),
    ("image", {"size": [0, 10]}, "size is [0, 10]"),
    ("image", {"size": None}, "size is missing"),
    ("video", {"frames": "six"}, "frames is a str"),
    ("video", {"fps": -1}, "fps is -1"),
]


@pytest.mark.parametrize("modality,change,problem", LIES)
def test_info_on_a_lying_header_prints_what_it_can(files, tmp_path, capsys, modality, change, problem):
    if modality == "video":
        header, payload = {"modality": "video", "frames": 6, "size": [32, 32], "fps": 10.0}, b"\x00" * 10
    else:
        header, payload = bitstream.read(files / ("tone.cgc" if modality == "audio" else "photo.cgc"))
    for key, value in change.items():
        header.pop(key) if value is None else header.__setitem__(key, value)
    path = tmp_path / "lying.cgc"
    path.write_bytes(bitstream.pack(header, payload))
    assert infer.main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    summary = json.loads(captured.out)
    assert summary["file_bytes"] == path.stat().st_size and summary["payload_bytes"] == len(payload)
    assert any(problem in p for p in summary["problems"]), summary["problems"]
    if modality == "video":  # what the sound fields give is still there
        assert ("seconds" in summary) == (not {"fps", "frames"} & change.keys())
        assert ("bpp" in summary) == ("frames" not in change)


def test_info_summarises_and_refuses_non_cgc(files, tmp_path, capsys):
    assert infer.main(["info", str(files / "tone.cgc")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["seconds"] == 0.5 and summary["kbps"] > 0 and "problems" not in summary
    assert infer.main(["info", str(files / "photo.png")]) == 2
    one_error_line(capsys, "not a codecgen file")


# ----------------------------------------------------------------------------- limits
def test_limits_flags_bound_what_a_file_may_ask_for(files, tmp_path, capsys):
    # the tone is 0.5 s: a limit under it refuses the file, naming the flag; none is written
    assert run("decode", "--model", AUDIO, str(files / "tone.cgc"), str(tmp_path / "a.wav"), "--max-seconds", "0.4") == 2
    one_error_line(capsys, "--max-seconds")
    assert not (tmp_path / "a.wav").exists()
    assert run("decode", "--model", AUDIO, str(files / "tone.cgc"), str(tmp_path / "a.wav"), "--max-seconds", "1") == 0
    # the photo is 56 x 40 = 2240 pixels
    assert run("decode", "--model", IMAGE, str(files / "photo.cgc"), str(tmp_path / "p.png"), "--max-pixels", "2239") == 2
    one_error_line(capsys, "--max-pixels")
    assert not (tmp_path / "p.png").exists()
    assert run("decode", "--model", IMAGE, str(files / "photo.cgc"), str(tmp_path / "p.png"), "--max-pixels", "2240") == 0
    assert run("decode", "--model", AUDIO, str(files / "tone.cgc"), str(tmp_path / "b.wav"), "--max-seconds", "0") == 2
    one_error_line(capsys, "max_seconds")
    assert not (tmp_path / "b.wav").exists()

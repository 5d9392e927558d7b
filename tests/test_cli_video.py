"""Video through infer.py's verbs (fit -> .cgc -> frames, no checkpoint), the aliases, and
the streaming writer the decoder feeds frame by frame."""

from pathlib import Path

import pytest
import torch

import infer
from codecgen.codecs import bitstream
from codecgen.codecs.video.nerv import DecodedVideo
from codecgen.datamodules import video as video_io
from codecgen.datamodules.video import load_video, write_video

T, H, W = 6, 32, 32
FIT = ["--model-size", "0.03", "--strides", "4,2,2", "--epochs", "2", "--quant-epochs", "1", "--quiet"]


def _frames(n: int = T) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.rand(3, H, W) for _ in range(n)]


def _exact(frames) -> torch.Tensor:
    return (torch.stack(list(frames)) * 255).round() / 255


# ----------------------------------------------------------------------------- the writer
def test_a_generator_of_frames_is_written_and_read_back_identically(tmp_path):
    frames = _frames()
    path = write_video((f for f in frames), tmp_path / "g.mkv", fps=10.0)
    assert torch.equal(load_video(path), _exact(frames))  # FFV1: lossless
    folder = write_video(iter(frames), tmp_path / "pngs", fps=10.0)
    assert torch.equal(load_video(folder), _exact(frames))
    assert torch.equal(load_video(write_video(torch.stack(frames), tmp_path / "t.mkv")), _exact(frames))


@pytest.mark.parametrize("name", ["out.mkv", "out.mp4", "frames"])
def test_a_generator_failing_midway_leaves_nothing_and_touches_nothing(tmp_path, name):
    def failing():
        yield from _frames(3)
        raise RuntimeError("renderer crashed")

    target = tmp_path / name
    with pytest.raises(RuntimeError, match="crashed"):
        write_video(failing(), target)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary left behind
    if target.suffix:
        target.write_bytes(b"precious")
    else:
        target.mkdir()
        (target / "frame_00000.png").write_bytes(b"precious")
    with pytest.raises(RuntimeError):
        write_video(failing(), target)
    kept = target if target.suffix else target / "frame_00000.png"
    assert kept.read_bytes() == b"precious" and len(list(tmp_path.iterdir())) == 1


def test_bad_frames_in_a_stream_are_refused(tmp_path):
    with pytest.raises(ValueError, match="frame 2"):
        write_video(iter(_frames(2) + [torch.rand(3, H, W + 2)]), tmp_path / "x.mkv")
    with pytest.raises(ValueError, match="no frames"):
        write_video(iter([]), tmp_path / "x.mkv")
    with pytest.raises(ValueError, match="frame 0"):
        write_video(iter([torch.rand(H, W)]), tmp_path / "x.mkv")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> Path:
    """A tiny clip fitted by `encode --model hnerv` (no checkpoint)."""
    root = tmp_path_factory.mktemp("video_cli")
    write_video(_frames(), root / "clip.mkv", fps=10.0)
    assert infer.main(["encode", "--model", "hnerv", str(root / "clip.mkv"), str(root / "clip.cgc"), *FIT]) == 0
    return root


def test_encode_with_an_architecture_fits_and_decode_needs_no_model(coded, tmp_path, monkeypatch):
    header, _ = bitstream.read(coded / "clip.cgc")
    assert header["modality"] == "video" and header["frames"] == T and header["decoder"]["class_path"].endswith(
        "HNeRVDecoder")
    handed = []
    real = video_io.write_video

    def spy(frames, path, fps=25.0):  # the decoder hands the writer a stream, never a stacked clip
        handed.append(type(frames))
        return real(frames, path, fps)

    monkeypatch.setattr(video_io, "write_video", spy)
    assert infer.main(["decode", str(coded / "clip.cgc"), str(tmp_path / "back.mkv"), "--quiet"]) == 0
    assert handed and not issubclass(handed[0], torch.Tensor)
    expected = _exact(DecodedVideo((coded / "clip.cgc").read_bytes()).frames())
    assert torch.equal(load_video(tmp_path / "back.mkv"), expected)
    assert infer.main(["decode-video", str(coded / "clip.cgc"), str(tmp_path / "part"), "--frames", "2:4",
                       "--quiet"]) == 0
    assert torch.equal(load_video(tmp_path / "part"), expected[2:4])


def test_video_aliases_and_options_of_the_wrong_modality(coded, tmp_path, capsys):
    out = tmp_path / "n.cgc"
    assert infer.main(["encode-video", "--arch", "nerv", str(coded / "clip.mkv"), str(out), *FIT]) == 0
    assert bitstream.read(out)[0]["decoder"]["class_path"].endswith(".NeRVDecoder")
    assert infer.main(["decode", "--model", "vqgan-f16", str(out), str(tmp_path / "n.mp4"), "--quiet"]) == 0
    assert load_video(tmp_path / "n.mp4").shape == (T, 3, H, W)  # video files ignore --model
    assert infer.main(["encode", "--model", "hnerv", "--n-q", "2", str(coded / "clip.mkv"), str(tmp_path / "x.cgc"),
                       "--quiet"]) == 2
    assert "--n-q applies to audio models" in capsys.readouterr().err
    assert infer.main(["decode", str(out), str(tmp_path / "x.avi"), "--quiet"]) == 2
    assert infer.main(["decode", str(out), str(tmp_path / "y.mkv"), "--frames", "5:99", "--quiet"]) == 2
    assert not (tmp_path / "x.avi").exists() and not (tmp_path / "y.mkv").exists()


def test_video_folder_decode_with_a_corrupt_file(coded, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    data = (coded / "clip.cgc").read_bytes()
    (src / "good.cgc").write_bytes(data)
    (src / "flipped.cgc").write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    assert infer.main(["decode", str(src), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "flipped.cgc" in err and "CRC" in err and "1 of 2 files failed" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.mkv"]
    assert infer.main(["decode-video", str(src), str(tmp_path / "pngs"), "--format", "png", "--quiet"]) == 2
    assert load_video(tmp_path / "pngs" / "good").shape == (T, 3, H, W)  # one folder of frames per file


def test_video_size_is_width_by_height(coded, tmp_path, capsys):
    out = tmp_path / "s.cgc"
    assert infer.main(["encode", "--model", "hnerv", "--size", "5", str(coded / "clip.mkv"), str(out), "--quiet"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err and not out.exists()

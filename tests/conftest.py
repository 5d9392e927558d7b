"""Shared fixtures: a tiny corpus made on the fly and one tiny HiFi-Codec trained through the CLI."""

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # train.py / infer.py live at the repo root
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_CONFIG = str(ROOT / "configs" / "hificodec" / "tiny.yaml")


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def sine_sweep(batch: int, length: int, sample_rate: int = 16000):
    """Deterministic (B, 1, T) test signal: linear chirps from ~100 Hz to a few kHz."""
    import math

    t = torch.arange(length) / sample_rate
    rows = []
    for b in range(batch):
        f0, f1 = 100.0 + 50 * b, 3000.0 + 500 * b
        rows.append(0.5 * torch.sin(2 * math.pi * (f0 * t + 0.5 * (f1 - f0) / t[-1] * t**2)))
    return torch.stack(rows).unsqueeze(1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from codecgen.datamodules.signals import write_test_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_test_corpus(root, n_files=8, seconds=1.5)
    return root


def train_tiny(root_dir: Path, corpus: Path, *extra: str):
    """Run ``train.py fit`` in this process and return the LightningCLI object."""
    from train import train_main

    args = [
        "fit", "--config", TINY_CONFIG,
        "--data.root", str(corpus),
        "--trainer.default_root_dir", str(root_dir),
        "--trainer.enable_progress_bar", "false",
        *extra,
    ]
    return train_main(args)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_corpus) -> Path:
    """A tiny HiFi-Codec trained for a few steps through the real CLI."""
    root = tmp_path_factory.mktemp("tiny_run")
    cli = train_tiny(root, tiny_corpus, "--trainer.max_steps", "12")
    ckpt = Path(cli.trainer.checkpoint_callback.best_model_path or cli.trainer.checkpoint_callback.last_model_path)
    assert ckpt.is_file()
    return ckpt


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    """32-px photo crops (5 to train on, 1 to validate): each training crop is a whole image,
    so a few steps fit them (the arbitrary-scale first stage and diffusion models)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    root = tmp_path_factory.mktemp("sr_images")
    rng = np.random.default_rng(0)
    sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    for i in range(6):
        img = sources[i % 3]
        top, left = rng.integers(0, img.shape[0] - 128), rng.integers(0, img.shape[1] - 128)
        split = root / ("val" if i == 5 else "train")
        split.mkdir(exist_ok=True)
        crop = Image.fromarray(img[top : top + 128, left : left + 128])
        crop.resize((32, 32), Image.BICUBIC).save(split / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_portraits(tmp_path_factory) -> Path:
    """A tiny talking-portrait corpus (Hallo2): 4 clips of 48 px, espeak-ng speech, drawn and
    photo faces over scikit-image photos."""
    from codecgen.datamodules.corpora.phonemes import espeak_available
    from codecgen.datamodules.corpora.portraits import build_portraits

    if not espeak_available():
        pytest.skip("libespeak-ng is not installed")
    root = tmp_path_factory.mktemp("portraits")
    return build_portraits(root / "p", size=48, clips=4, identities=4, real_prompts=False, images=root / "no_images")


def fit_run(config: Path | str, root: Path, *extra: str) -> tuple[list[dict], Path]:
    """``train.py fit --config CONFIG`` in this process, logging every step to CSV under ``root``:
    (the logged rows, the last checkpoint)."""
    import csv

    from train import train_main

    cli = train_main(["fit", "--config", str(config), "--trainer.default_root_dir", str(root),
                      "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1",
                      "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(root), *extra])
    rows = list(csv.DictReader(open(next(Path(root).rglob("metrics.csv")))))
    return rows, Path(cli.trainer.checkpoint_callback.last_model_path)


def column(rows: list[dict], name: str) -> list[float]:
    """A logged metric's values, in order, from a run's CSV rows."""
    return [float(r[name]) for r in rows if r.get(name)]


@pytest.fixture(scope="session")
def tiny_captioned(tmp_path_factory) -> Path:
    """A tiny captioned-video corpus (VideoGen): 16 clips of 32 px x 12 frames over scikit-image photos."""
    from codecgen.datamodules.corpora.captioned_video import build_captioned_video

    root = tmp_path_factory.mktemp("captioned")
    return build_captioned_video(root / "c", size=32, frames=12, clips=16, images=root / "no_images", workers=2)


def _fit_videogen(name: str, root: Path, corpus: Path, *extra: str) -> tuple[list[dict], Path]:
    return fit_run(ROOT / "configs" / "videogen" / f"{name}_tiny.yaml", root / name, "--data.init_args.root",
                   str(corpus), *extra)


@pytest.fixture(scope="session")
def videogen_stages(tiny_captioned, tmp_path_factory) -> dict[str, Path]:
    """The five tiny stages and the benchmark's attribute classifier trained through train.py on the tiny
    corpus (each checked to learn); their last checkpoints."""
    root = tmp_path_factory.mktemp("videogen")
    out = {}
    rows, out["autoencoder"] = _fit_videogen("autoencoder", root, tiny_captioned, "--trainer.max_steps", "12",
                                             "--model.init_args.disc_start_step", "6")
    l1 = column(rows, "train/l1")
    assert l1[-1] < 0.8 * l1[0]
    vae = ("--model.init_args.vae_ckpt", str(out["autoencoder"]))
    for name, steps, extra in (("text_to_image", 12, vae), ("keyframes", 24, vae), ("flow", 12, ()),
                               ("video_decoder", 12, vae), ("classifier", 12, ())):
        rows, out[name] = _fit_videogen(name, root, tiny_captioned, "--trainer.max_steps", str(steps), *extra)
        if name in ("video_decoder", "classifier"):
            loss = column(rows, "train/loss")
            assert sum(loss[-3:]) < 0.95 * sum(loss[:3]), (name, loss)
            if name == "video_decoder":  # it starts as the image decoder and stays as sharp
                assert column(rows, "val/psnr")[-1] > column(rows, "val/image_decoder_psnr")[-1] - 0.5
            continue  # (the classifier's two held-out clips are too few for a held-out loss)
        val = column(rows, "val/epe" if name == "flow" else "val/loss")
        assert len(val) >= 2 and val[-1] < 0.95 * val[0], (name, val)
    return out


@pytest.fixture(scope="session")
def videogen_model(videogen_stages, tmp_path_factory) -> Path:
    from codecgen.generators.videogen.assemble import main

    folder = tmp_path_factory.mktemp("assembled") / "videogen"
    assert main([str(folder), "--text-to-image", str(videogen_stages["text_to_image"]), "--keyframes",
                 str(videogen_stages["keyframes"]), "--flow", str(videogen_stages["flow"]), "--video-decoder",
                 str(videogen_stages["video_decoder"])]) == 0
    return folder

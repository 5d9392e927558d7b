"""Resuming a stopped run through ``train.py fit --ckpt_path``, for every model family.

The property tested is the strongest one: run A trains T steps without a stop; run B
resumes from A's own step-N checkpoint (what a crashed or killed run leaves) and trains to
T; B must end bit-identical to A: every weight and buffer (EMA codebooks, k-means flags,
code priors), every optimiser's state (generator and discriminator), every LR scheduler,
the global step. B must also really resume: its training batches start at step N. One
more case is the user's: a run stopped by ``--trainer.max_steps N``, resumed with
``--ckpt_path <its checkpoint> --trainer.max_steps 2N`` (an end-of-epoch checkpoint,
written after validation).

The windows are chosen to cross what a resume could lose: discriminators switched on
(``disc_start_step``) and LR decays (``lr_decay_every``) before and after step N, the
image loader stopped mid-epoch, the video loader (shuffled) mid-epoch, the quantizer's
random draws (bandwidth dropout, dead-code replacement, rate noise) on every step.
Exactness rests on ``codecgen.seeding``: the model's RNG is seeded per training batch
and the training loader's order and random crops per epoch and position
(``codecgen.datamodules.base``).
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT

CONFIGS = ROOT / "configs"
N = 3  # steps before the stop; the runs go to 2N


def _train(config: str, root: Path, *args: str, every: int | None = None):
    """``train.py fit`` in this process; ``every``: also checkpoint every that many steps
    (files ``step=K.ckpt``)."""
    from train import train_main

    extra = []
    if every:
        extra = ["--trainer.callbacks+=ModelCheckpoint", f"--trainer.callbacks.every_n_train_steps={every}",
                 "--trainer.callbacks.save_top_k=-1", "--trainer.callbacks.filename={step}",
                 f"--trainer.callbacks.dirpath={root / 'steps'}"]
    return train_main(["fit", "--config", str(CONFIGS / config), "--trainer.default_root_dir", str(root),
                       "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", *extra, *args])


@pytest.fixture()
def steps_seen(monkeypatch) -> list[int]:
    """The global step at the start of every training batch, in every run."""
    from codecgen.module import Module

    seen, original = [], Module.on_train_batch_start

    def record(self, batch, batch_idx):
        seen.append(self.global_step)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(Module, "on_train_batch_start", record)
    return seen


def _assert_same(a, b, where: str = "") -> None:
    """Exact equality of nested dicts / lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), f"{where}: {a} != {b}"


def _assert_same_run(a, b) -> None:
    """Two finished LightningCLI runs ended in the same state."""
    assert a.trainer.global_step == b.trainer.global_step
    assert a.trainer.current_epoch == b.trainer.current_epoch
    _assert_same(a.model.state_dict(), b.model.state_dict(), "state_dict")
    _assert_same([o.state_dict() for o in a.trainer.optimizers], [o.state_dict() for o in b.trainer.optimizers],
                 "optimizers")
    _assert_same([c.scheduler.state_dict() for c in a.trainer.lr_scheduler_configs],
                 [c.scheduler.state_dict() for c in b.trainer.lr_scheduler_configs], "schedulers")


def _resume_matches(config: str, tmp_path: Path, steps_seen: list[int], *args: str, n: int = N, total: int = 2 * N,
                    limit: tuple[str, ...] = ()):
    """A: ``total`` steps straight; B: from A's step-n checkpoint to the end. Returns A's
    CLI. ``limit``: the trainer arguments that end both runs after ``total`` steps
    (default ``--trainer.max_steps total``)."""
    limit = limit or ("--trainer.max_steps", str(total))
    steps_seen.clear()
    a = _train(config, tmp_path / "a", *args, *limit, every=n)
    assert steps_seen == list(range(total))
    steps_seen.clear()
    b = _train(config, tmp_path / "b", *args, *limit, "--ckpt_path", str(tmp_path / "a" / "steps" / f"step={n}.ckpt"))
    assert steps_seen == list(range(n, total)), "B must train on from step n, not from 0"
    _assert_same_run(a, b)
    return a


# ----------------------------------------------------------------------------- the loader
def test_training_loader_order_draws_and_position_come_from_seed_and_counters(tiny_corpus):
    """Epoch e's batches depend only on (seed, e): not on torch's global RNG, not on what
    was drawn before; a pass started after k batches of epoch e serves the rest of epoch e's."""
    from types import SimpleNamespace

    import lightning as L

    from codecgen.datamodules.audio import AudioDataModule

    def epoch(e: int, done: int = 0, seed: int = 0) -> list[torch.Tensor]:
        """The batches of epoch e, ``done`` batches of it already trained on."""
        L.seed_everything(seed, verbose=False)
        data = AudioDataModule(str(tiny_corpus), segment_seconds=0.1, batch_size=2, samples_per_epoch=8, hop=320)
        progress = SimpleNamespace(current=SimpleNamespace(ready=done))
        data.trainer = SimpleNamespace(training=True, current_epoch=e,
                                       fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))
        loader = data.train_dataloader()
        calls.append(e)
        torch.manual_seed(len(calls))  # the global RNG must not matter
        return list(loader)

    calls: list[int] = []
    first, second = epoch(3), epoch(4)
    assert len(first) == 4 and not all(torch.equal(x, y) for x, y in zip(first, second))
    assert all(torch.equal(x, y) for x, y in zip(epoch(3), first))
    rest = epoch(3, done=2)
    assert len(rest) == 2 and all(torch.equal(x, y) for x, y in zip(rest, first[2:]))
    assert not all(torch.equal(x, y) for x, y in zip(epoch(3, seed=1), first))


# ----------------------------------------------------------------------------- audio
AUDIO_GAN = ("--model.init_args.disc_start_step", "2", "--model.init_args.lr_decay_every", "2")


def test_hificodec_resumes_exactly(tiny_corpus, tmp_path, steps_seen):
    _resume_matches("hificodec/tiny.yaml", tmp_path, steps_seen, "--data.root", str(tiny_corpus), *AUDIO_GAN)


def test_hificodec_run_stopped_by_max_steps_resumes_exactly(tiny_corpus, tmp_path, steps_seen):
    """The user's case: a run ended by ``--trainer.max_steps N`` (its checkpoint written at
    the end of an epoch, after validation), resumed with a larger ``max_steps``."""
    common = ("hificodec/tiny.yaml", "--data.root", str(tiny_corpus), *AUDIO_GAN)
    whole = _train(common[0], tmp_path / "a", *common[1:], "--trainer.max_steps", str(2 * N))
    stopped = _train(common[0], tmp_path / "b", *common[1:], "--trainer.max_steps", str(N))
    ckpt = stopped.trainer.checkpoint_callback.last_model_path or stopped.trainer.checkpoint_callback.best_model_path
    assert Path(ckpt).is_file() and torch.load(ckpt, weights_only=False)["global_step"] == N
    steps_seen.clear()
    resumed = _train(common[0], tmp_path / "c", *common[1:], "--trainer.max_steps", str(2 * N), "--ckpt_path", ckpt)
    assert steps_seen == list(range(N, 2 * N))
    _assert_same_run(whole, resumed)


def test_languagecodec_resumes_exactly(tiny_corpus, tmp_path, steps_seen):
    # bandwidth dropout draws 3..8 codebooks on every step: the draws must continue too
    _resume_matches("languagecodec/tiny.yaml", tmp_path, steps_seen, "--data.root", str(tiny_corpus), *AUDIO_GAN)


# ----------------------------------------------------------------------------- image
@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    import skimage.data

    root = tmp_path_factory.mktemp("resume_images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1)):
        (root / split).mkdir()
        for i in range(n):
            img = [skimage.data.astronaut(), skimage.data.coffee()][i % 2]
            top, left = rng.integers(0, 300, 2)
            Image.fromarray(img[top : top + 96, left : left + 96]).save(root / split / f"{i}.png")
    return root


def test_vqgan_stages_resume_exactly(images, tmp_path, steps_seen):
    """Each of the three stages, each from the previous stage's final checkpoint; the
    image loader is stopped mid-epoch (20 batches an epoch)."""
    data = ("--data.init_args.root", str(images))
    ae = _resume_matches("vqgan/tiny.yaml", tmp_path / "ae", steps_seen, *data,
                         "--model.init_args.disc_start_step", "2")
    previous = ae.trainer.checkpoint_callback.last_model_path
    for stage in ("shrink", "restorer"):
        run = _resume_matches("vqgan/tiny.yaml", tmp_path / stage, steps_seen, *data, "--model.init_args.stage", stage,
                              "--model.init_args.discriminator", "null", "--model.init_args.init_from", previous)
        previous = run.trainer.checkpoint_callback.last_model_path


# ----------------------------------------------------------------------------- video
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from codecgen.datamodules.video import write_video

    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    frames = torch.stack([torch.stack([(x + 0.1 * t) % 1.0, y, 0.5 + 0.5 * torch.sin(6 * x + t)]) for t in range(6)])
    path = tmp_path_factory.mktemp("resume_clip") / "clip.mkv"
    write_video((frames * 255).round() / 255, path, fps=10.0)
    return path


def test_hnerv_stages_resume_exactly(clip, tmp_path, steps_seen):
    """Both stages, ended by ``max_epochs`` (the LR schedule spans the whole run), stopped
    mid-epoch (3 shuffled batches an epoch); the quantize stage with pruning and the
    rate term (random noise on every step)."""
    common = ("--data.init_args.video", str(clip))
    epochs = ("--trainer.max_epochs", "2")
    fit = _resume_matches("hnerv/tiny.yaml", tmp_path / "fit", steps_seen, *common, n=4, total=6, limit=epochs)
    _resume_matches("hnerv/tiny.yaml", tmp_path / "quantize", steps_seen, *common, "--model.init_args.stage", "quantize",
                    "--model.init_args.init_from", fit.trainer.checkpoint_callback.last_model_path,
                    "--model.init_args.rate_lambda", "0.05", "--model.init_args.target_bits_per_param", "0",
                    "--model.init_args.prune_ratio", "0.2", n=4, total=6,
                    limit=epochs)

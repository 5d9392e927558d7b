"""HiFi-Codec: training through the CLI, learning on a fixed batch, loading, export, DDP."""

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import codecgen
from codecgen.codecs.audio.hificodec import HiFiCodec
from codecgen.datamodules.signals import espeak
from codecgen.config import build
from tests.conftest import ROOT, TINY_CONFIG

torch.set_num_threads(1)


def tiny_model(**overrides) -> HiFiCodec:
    spec = yaml.safe_load(open(TINY_CONFIG))["model"]
    spec["init_args"].update(overrides)
    return build(spec)


def test_paper_defaults_are_hificodec_16k_2kbps():
    model = HiFiCodec()
    assert model.hop_length == 320 and model.sample_rate == 16000
    assert model.quantizer.codebook_sizes == [1024] * 4
    assert model.bitrate() == pytest.approx(2000.0)
    assert model.bitrate(n_q=2) == pytest.approx(1000.0)


def test_paper_variants_have_the_paper_bitrates():
    for name, kbps in [("16k_320x", 2.0), ("24k_320x", 3.0), ("24k_240x", 4.0)]:
        spec = yaml.safe_load(open(ROOT / "configs" / "hificodec" / f"{name}.yaml"))["model"]
        model = build(spec)
        assert model.bitrate() / 1000 == pytest.approx(kbps), name


def test_encode_decode_shapes_and_bad_input():
    model = tiny_model().eval()
    x = torch.randn(2, 1, 3000) * 0.1  # not a multiple of the hop: padded, then cropped
    codes = model.encode(x)
    assert codes.shape == (2, 4, 10) and codes.dtype == torch.long
    assert model.decode(codes, 3000).shape == (2, 1, 3000)
    with pytest.raises(ValueError, match="NaN"):
        model.encode(torch.full((1, 1, 640), float("nan")))
    with pytest.raises(ValueError, match="empty"):
        model.encode(torch.zeros(1, 1, 0))
    with pytest.raises(ValueError, match="mono"):
        model.encode(torch.zeros(1, 2, 640))


class FixedBatch(L.LightningDataModule):
    def __init__(self, batch: torch.Tensor, steps: int):
        super().__init__()
        self.batch, self.steps = batch, steps

    def train_dataloader(self):
        return torch.utils.data.DataLoader([self.batch] * self.steps, batch_size=None)


def test_mel_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    speech = torch.from_numpy(espeak("a fixed batch of speech for the test", sr=16000))
    batch = torch.stack([speech[i * 3200 : (i + 1) * 3200] for i in range(4)])[:, None]
    model = tiny_model(disc_start_step=15)
    model.eval()
    with torch.no_grad():
        before = model.mel_loss(model(batch)[0], batch).item()
    model.train()
    trainer = L.Trainer(max_steps=40, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=FixedBatch(batch, 40))
    assert trainer.global_step == 40  # generator steps; the discriminator's are not counted
    model.eval()
    with torch.no_grad():
        after = model.mel_loss(model(batch)[0], batch).item()
    assert after < 0.75 * before, (before, after)


def test_train_cli_writes_a_checkpoint_that_loads(tiny_checkpoint):
    model = codecgen.load(tiny_checkpoint)
    assert isinstance(model, HiFiCodec) and not model.training
    assert model.discriminator is not None  # a .ckpt keeps the discriminators for fine-tuning
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    assert checkpoint["global_step"] == 12
    x = torch.randn(1, 1, 1600) * 0.1
    assert model.decode(model.encode(x), 1600).shape == (1, 1, 1600)


def test_export_then_load_gives_the_same_model(tiny_checkpoint, tmp_path):
    from codecgen import hub

    model = codecgen.load(tiny_checkpoint)
    folder = hub.export(model, tmp_path / "exported")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors"}
    loaded = codecgen.load(folder)
    assert loaded.discriminator is None
    assert loaded.weights_hash() == model.weights_hash()
    x = torch.randn(1, 1, 3200) * 0.1
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert torch.allclose(loaded.decode(model.encode(x)), model.decode(model.encode(x)))
    with pytest.raises(FileExistsError):
        hub.export(model, folder)


def test_load_refuses_what_is_not_a_model(tmp_path):
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        codecgen.load(bogus)
    with pytest.raises(FileNotFoundError):
        codecgen.load("no-such-model-name")


def test_ddp_on_two_cpu_processes(tmp_path, tiny_corpus):
    """``--trainer.strategy ddp --trainer.devices 2`` on CPU (gloo) trains and checkpoints."""
    cmd = [
        sys.executable, "train.py", "fit", "--config", TINY_CONFIG,
        "--data.root", str(tiny_corpus), "--trainer.default_root_dir", str(tmp_path),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false",
        "--model.init_args.disc_start_step", "2",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = list(Path(tmp_path).rglob("*.ckpt"))
    assert checkpoints
    assert torch.load(checkpoints[0], weights_only=True)["global_step"] == 4

"""Specs (codecgen.config): only registered classes and diffusers models/schedulers are built.

A spec read from a file is untrusted. These tests put hostile specs where users' files
carry them (a video ``.cgc`` decoder spec, an exported ``config.json``, a ``.ckpt``) and
check that nothing named is called: the marker file a hostile call would write never
appears, and the reader raises one clear error.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

import codecgen
from codecgen.codecs import bitstream
from codecgen.config import MOVED, REGISTRY, SpecError, build, configurable, init_spec, to_spec
from codecgen.module import Module

ROOT = Path(__file__).resolve().parent.parent


def _hostile_specs(marker: Path) -> list[dict]:
    """Specs that would run a command or write a file if built."""
    return [
        {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}},
        {"class_path": "subprocess.run", "init_args": {"args": ["touch", str(marker)]}},
        {"class_path": "codecgen.hub.save_file", "init_args": {"tensors": {}, "filename": str(marker)}},
        {"class_path": "codecgen.datamodules.prepare.main", "init_args": {"argv": ["speech", "--out", str(marker)]}},
        {"class_path": "builtins.exec", "init_args": {"source": f"open({str(marker)!r}, 'w')"}},
        {"class_path": "pathlib.Path.touch", "init_args": {"self": str(marker)}},
        {"class_path": "torch.save", "init_args": {"obj": 1, "f": str(marker)}},
        {"class_path": "diffusers.utils.export_to_video", "init_args": {"video_frames": [], "output_video_path": str(marker)}},
        {"class_path": "diffusers.DiffusionPipeline", "init_args": {}},
        {"class_path": "codecgen.config.build", "init_args": {"spec": {}}},
        {"class_path": "", "init_args": {}},
        {"class_path": 7, "init_args": {}},
    ]


def test_build_refuses_functions_and_foreign_classes(tmp_path):
    marker = tmp_path / "pwned"
    for spec in _hostile_specs(marker):
        with pytest.raises(SpecError):
            build(spec)
        # nested inside an otherwise valid spec
        with pytest.raises(SpecError):
            build({"class_path": "codecgen.nn.losses.MSSSIMLoss", "init_args": {"weights": spec}})
    assert not marker.exists()


def test_registered_classes_and_moved_paths_build():
    spec = {"class_path": "codecgen.nn.vocos.VocosBlock", "init_args": {"dim": 8, "intermediate_dim": 16}}
    block = build(spec)
    assert type(block).__name__ == "VocosBlock" and init_spec(block)["class_path"] == spec["class_path"]
    # an old checkpoint's path still names the same class
    old = build({"class_path": "codecgen.nn.audio.ConvNeXtBlock", "init_args": {"dim": 8, "intermediate_dim": 16}})
    assert type(old) is type(block)
    for old_path, new_path in MOVED.items():
        cls = build.__globals__["resolve_class"](old_path)
        assert f"{cls.__module__}.{cls.__qualname__}" == new_path and new_path in REGISTRY


def test_malformed_init_args_are_spec_errors():
    for init_args in ([1, 2], "x", {"1bad": 1}, {"no_such_argument": 1}):
        with pytest.raises(SpecError):
            build({"class_path": "codecgen.nn.vocos.VocosBlock", "init_args": init_args})


def test_allowed_restricts_every_level():
    from codecgen.nn.nerv import HNeRVDecoder

    decoder = HNeRVDecoder(embed_channels=4, strides=(2, 2), stem_channels=8)
    spec = init_spec(decoder)
    assert isinstance(build(spec, allowed=(HNeRVDecoder,), everywhere=True), HNeRVDecoder)
    with pytest.raises(SpecError):
        build({"class_path": "codecgen.nn.vocos.VocosBlock", "init_args": {"dim": 8, "intermediate_dim": 16}},
              allowed=(HNeRVDecoder,))
    nested = json.loads(json.dumps(spec))
    nested["init_args"]["strides"] = {"class_path": "codecgen.nn.vocos.VocosBlock",
                                      "init_args": {"dim": 8, "intermediate_dim": 16}}
    with pytest.raises(SpecError):
        build(nested, allowed=(HNeRVDecoder,), everywhere=True)


def test_hostile_decoder_spec_in_a_video_file_runs_nothing(tmp_path):
    from codecgen.codecs.video.nerv import DecodedVideo
    from codecgen.nn.nerv import HNeRVDecoder

    marker = tmp_path / "pwned"
    good = init_spec(HNeRVDecoder(embed_channels=4, strides=(2, 2), stem_channels=8))
    for hostile in _hostile_specs(marker):
        for decoder_spec in (hostile, {"class_path": good["class_path"],
                                       "init_args": {**good["init_args"], "strides": hostile}}):
            header = {"modality": "video", "decoder": decoder_spec, "frames": 2, "size": [8, 8], "fps": 10.0,
                      "tensors": []}
            with pytest.raises(bitstream.BitstreamError):
                DecodedVideo(bitstream.pack(header, b""))
    assert not marker.exists()


def test_hostile_spec_in_an_exported_folder_and_a_ckpt(tmp_path):
    marker = tmp_path / "pwned"
    shipped = ROOT / "checkpoints" / "hificodec-16k"
    for i, hostile in enumerate(_hostile_specs(marker)):
        folder = tmp_path / f"model{i}"
        shutil.copytree(shipped, folder)
        config = json.loads((folder / "config.json").read_text())
        config["spec"]["init_args"]["decoder"] = hostile  # nested
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError):
            codecgen.load(folder)
        config["spec"] = hostile  # top level
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError):
            codecgen.load(folder)
        ckpt = tmp_path / f"model{i}.ckpt"
        torch.save({"codecgen_spec": hostile, "state_dict": {}}, ckpt)
        with pytest.raises(ValueError):
            codecgen.load(ckpt)
    # a registered class that is not a model is refused at the top level too
    torch.save({"codecgen_spec": {"class_path": "codecgen.nn.vocos.VocosBlock",
                                  "init_args": {"dim": 8, "intermediate_dim": 16}}, "state_dict": {}},
               tmp_path / "block.ckpt")
    with pytest.raises(ValueError, match="only Module"):
        codecgen.load(tmp_path / "block.ckpt")
    assert not marker.exists()


def test_unregistered_argument_types_are_refused_when_recorded():
    with pytest.raises(TypeError, match="configurable"):
        to_spec(torch.nn.Linear(2, 2))


# -- diffusers objects inside a module ----------------------------------------------------
diffusers = pytest.importorskip("diffusers")


@configurable
class TinyDenoiser(Module):
    """A diffusers UNet + scheduler injected into a Module, trained with the epsilon loss."""

    modality = "image"
    inference_modules = ("unet",)

    def __init__(self, unet: torch.nn.Module, scheduler=None, lr: float = 1e-3):
        super().__init__()
        self.unet, self.scheduler, self.lr = unet, scheduler, lr

    def training_step(self, batch, batch_idx):
        x = batch[0]
        noise = torch.randn_like(x)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x.shape[0],))
        return (self.unet(self.scheduler.add_noise(x, noise, t), t).sample - noise).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def _tiny_unet():
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))


def test_diffusers_unet_and_scheduler_round_trip_through_ckpt_export_and_load(tmp_path):
    torch.manual_seed(0)
    model = TinyDenoiser(_tiny_unet(), diffusers.DDIMScheduler(num_train_timesteps=50))
    spec = model.spec()
    assert spec["init_args"]["unet"]["class_path"] == "diffusers.UNet2DModel"
    assert spec["init_args"]["scheduler"]["class_path"] == "diffusers.DDIMScheduler"
    json.dumps(spec)  # plain data

    data = torch.utils.data.TensorDataset(torch.randn(8, 1, 8, 8))
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, enable_checkpointing=False)
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    ckpt = tmp_path / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)
    assert "hyper_parameters" not in torch.load(ckpt, weights_only=True)

    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    with torch.no_grad():
        expected = model.eval().unet(x, t).sample
        for loaded in (codecgen.load(ckpt), codecgen.load(model.export(tmp_path / "exported"))):
            assert isinstance(loaded.scheduler, diffusers.DDIMScheduler)
            assert loaded.scheduler.config.num_train_timesteps == 50
            assert torch.equal(loaded.unet(x, t).sample, expected)
            assert loaded.weights_hash() == model.weights_hash()
    exported = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert exported["rate"] is None
    assert os.path.getsize(tmp_path / "exported" / "model.safetensors") > 0


def test_frozen_stages_stay_in_inference_mode_when_the_model_trains():
    @configurable
    class TwoStages(Module):
        frozen_modules = ("stage",)

        def __init__(self):
            super().__init__()
            self.stage, self.head = torch.nn.Dropout(0.5), torch.nn.Dropout(0.5)

    model = TwoStages().train()
    assert model.training and model.head.training and not model.stage.training
    model.eval().train(True)
    assert not model.stage.training

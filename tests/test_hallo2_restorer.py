"""Hallo2's high-resolution stage: a face VQGAN, CodeFormer-style code prediction from degraded
faces, and the temporal layers that only the last stage trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import column, fit_run

import codecgen
from codecgen.config import build
from codecgen.generators.hallo2.face_restorer import FaceRestorer, degrade, paste_mask, union_box
from codecgen.nn.index_transformer import TemporalIndexTransformer

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "hallo2"


def test_temporal_layers_start_as_the_identity_and_mix_only_across_frames():
    torch.manual_seed(0)
    model = TemporalIndexTransformer(64, 16, 32, 2, 2, max_grid=8, max_frames=8).eval()
    clip = torch.randn(2, 4, 16, 4, 4)
    per_frame = torch.cat([model.predict(clip[:, i:i + 1]) for i in range(4)], dim=1)
    torch.testing.assert_close(model.predict(clip), per_frame)  # zero-initialised: frames independent
    for p in model.temporal_parameters():
        torch.nn.init.normal_(p, std=0.2)
    mixed = model.predict(clip)
    assert (mixed - per_frame).abs().max() > 1e-3
    other = clip.clone()
    other[1] = torch.randn(4, 16, 4, 4)
    torch.testing.assert_close(model.predict(other)[0], mixed[0])  # clips never see each other
    with pytest.raises(ValueError, match="max_frames"):
        model.predict(torch.randn(1, 9, 16, 4, 4))


def test_degradation_boxes_and_paste_weights():
    crops = torch.rand(3, 3, 32, 32) * 2 - 1
    low = degrade(crops, 4)
    assert low.shape == crops.shape and (low - crops).abs().mean() > 0.05
    smooth = torch.zeros(1, 3, 32, 32)
    torch.testing.assert_close(degrade(smooth, 2), smooth)
    boxes = torch.tensor([[[4.0, 5, 20, 21], [2, 8, 18, 30]]])
    assert union_box(boxes).tolist() == [[2.0, 5.0, 20.0, 30.0]]
    mask = paste_mask(20, 0.25)
    assert mask[10, 10] == 1 and mask[0, 0] < 0.05 and torch.equal(mask, mask.T)


def test_the_three_restorer_runs_through_train_py_and_upscale_frames(tiny_portraits, tmp_path):
    root = str(tiny_portraits)
    rows, vq = fit_run(CONFIGS / "face_vq_tiny.yaml", tmp_path / "vq", "--data.init_args.root", root)
    loss = column(rows, "train/l1")
    assert np.mean(loss[-5:]) < 0.9 * np.mean(loss[:5])  # the face VQGAN learns the crops
    rows, spatial = fit_run(CONFIGS / "restorer_tiny.yaml", tmp_path / "spatial", "--data.init_args.root", root,
                            "--model.init_args.vqgan_ckpt", str(vq))
    loss = column(rows, "train/loss")
    assert np.mean(loss[-5:]) < 0.8 * np.mean(loss[:5])
    rows, temporal = fit_run(CONFIGS / "restorer_temporal_tiny.yaml", tmp_path / "temporal",
                             "--data.init_args.root", root, "--model.init_args.init_from", str(spatial),
                             "--trainer.max_steps", "16")
    assert len(column(rows, "train/ce")) == 16 and column(rows, "val/flicker")
    face_vq, one, two = (codecgen.load(str(p)) for p in (vq, spatial, temporal))
    assert isinstance(two, FaceRestorer) and two.stage == "temporal"
    s1, s2, sv = one.inference_state_dict(), two.inference_state_dict(), face_vq.inference_state_dict()
    for key in ("vqgan.encoder.conv_in.weight", "lq_encoder.conv_in.weight", "predictor.heads.0.weight"):
        assert torch.equal(s1[key], s2[key])  # frozen in the temporal stage
    assert torch.equal(s1["vqgan.encoder.conv_in.weight"], sv["encoder.conv_in.weight"])  # the trained face VQGAN
    assert not torch.equal(s1["lq_encoder.conv_in.weight"], sv["encoder.conv_in.weight"])  # fine-tuned from it
    temporal_key = "predictor.temporal.0.out.weight"
    assert s1[temporal_key].abs().sum() == 0 and s2[temporal_key].abs().sum() > 0

    frames = torch.randint(0, 256, (5, 48, 48, 3), dtype=torch.uint8)
    out = two.enhance(frames, [12, 10, 36, 38])
    assert out.shape == (5, 96, 96, 3) and out.dtype == torch.uint8
    # away from the face the output is the bicubic enlargement
    big = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float() / 127.5 - 1, scale_factor=2,
                                          mode="bicubic", align_corners=False)
    expected = ((big.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(out[:, :4], expected[:, :4]) and not torch.equal(out[:, 40:56, 40:56],
                                                                         expected[:, 40:56, 40:56])


def test_the_restorer_checks_its_parts():
    spec = yaml.safe_load(open(CONFIGS / "restorer_tiny.yaml"))["model"]
    spec["init_args"]["crop_size"] = 36
    with pytest.raises(ValueError, match="multiple of the VQGAN's factor"):
        build(spec)
    spec["init_args"].update(crop_size=32, predictor={
        "class_path": "codecgen.nn.index_transformer.TemporalIndexTransformer",
        "init_args": {"codebook_size": 32, "feature_dim": 16, "dim": 32, "depth": 1, "heads": 2, "max_grid": 8}})
    with pytest.raises(ValueError, match="64 codes"):
        build(spec)

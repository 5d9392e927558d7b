"""The captioned-video corpus (VideoGen): captions match what is drawn, flows are exact, the split holds out
attribute combinations, and the data modules serve clips and flow pairs; the shared text encoder."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codecgen.datamodules.corpora.captioned_video import (
    COLOURS,
    HELD_OUT,
    MOTIONS,
    SHAPES,
    ClipAttributes,
    caption_vocabulary,
    held_out,
    parse_caption,
    plan_captioned_clips,
    render_camera,
    render_objects,
)


def _warp_back(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Frame t rebuilt from frame t+1 sampled at p + flow(p): (T-1, 3, H, W)."""
    _, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    grid = torch.stack([(xs + flow[..., 0]) / w * 2 - 1, (ys + flow[..., 1]) / h * 2 - 1], -1)
    return F.grid_sample(frames[1:], grid, align_corners=False)


def _background(size=48, seed=0):
    return np.random.default_rng(seed).uniform(0, 160, (size, size, 3)).astype(np.float32)


def _smooth_photo(height, width, top=255.0):
    """A smooth picture (bilinear warping of it is nearly exact): a sum of slow waves per channel."""
    y, x = np.mgrid[:height, :width].astype(np.float32)
    waves = [np.sin(x / (6 + 2 * c) + c) * np.cos(y / (7 + c) + 2 * c) for c in range(3)]
    return (top / 2 * (1 + np.stack(waves, -1) * 0.9)).astype(np.float32)


@pytest.mark.parametrize("motion", MOTIONS)
def test_object_clips_show_their_caption(motion):
    # the builder's own ground truth: the shape's pixels (its colour) move, grow or turn as the caption says
    shape = "square" if motion == "rotates" else "circle"
    attrs = ClipAttributes("objects", motion, 1, shape, "red")
    video, flow, valid = render_objects(attrs, _background(), 16, random.Random(1))
    assert video.shape == (16, 48, 48, 3) and flow.shape == (15, 48, 48, 2) and valid.shape == (15, 48, 48)
    red = (video[..., 0] > 170) & (video[..., 1] < 100) & (video[..., 2] < 100)
    ys, xs = np.mgrid[:48, :48]
    area = red.sum((1, 2))
    cx = (red * xs).sum((1, 2)) / area
    cy = (red * ys).sum((1, 2)) / area
    moved = {"moves left": -(cx[-1] - cx[0]), "moves right": cx[-1] - cx[0], "moves up": -(cy[-1] - cy[0]),
             "moves down": cy[-1] - cy[0]}
    if motion in moved:
        assert moved[motion] > 8 and area.std() / area.mean() < 0.1
    elif motion == "grows":
        assert area[-1] > 2 * area[0]
    elif motion == "shrinks":
        assert area[0] > 2 * area[-1]
    else:  # rotates: same place and size, other pixels
        assert abs(cx[-1] - cx[0]) < 1 and abs(area[-1] - area[0]) < 0.15 * area[0]
        assert (red[0] != red[-1]).sum() > 0.2 * area[0]


@pytest.mark.parametrize("attrs", [ClipAttributes("objects", "moves right", 2, "triangle", "red"),
                                   ClipAttributes("camera", "pans left"), ClipAttributes("camera", "zooms in")])
def test_flows_warp_each_frame_onto_the_next(attrs):
    rng = random.Random(3)
    if attrs.kind == "camera":
        video, flow, valid = render_camera(attrs, _smooth_photo(192, 256).astype(np.uint8), 48, 12, rng)
    else:
        video, flow, valid = render_objects(attrs, _smooth_photo(48, 48, 160), 12, rng)
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    flow_t, valid_t = torch.from_numpy(flow), torch.from_numpy(valid)
    moving = valid_t & (flow_t.norm(dim=-1) > 0.25)  # where the pixels move and stay in sight
    assert moving.sum() > 100 and valid.mean() > 0.85
    warped_err = (_warp_back(frames, flow_t) - frames[:-1]).abs().mean(1)[moving]
    still_err = (frames[1:] - frames[:-1]).abs().mean(1)[moving]
    assert warped_err.mean() < 0.35 * still_err.mean() and warped_err.mean() < 6  # of 255
    if attrs.motion == "pans left":  # the camera goes left: the picture moves right
        assert flow[..., 0].mean() > 0.5 and abs(flow[..., 1].mean()) < 0.05
    if attrs.motion == "zooms in":  # the picture spreads out from the middle
        assert flow[:, :, :10, 0].mean() < -0.3 and flow[:, :, -10:, 0].mean() > 0.3


@pytest.mark.parametrize("motion", MOTIONS)
def test_object_flow_takes_each_shape_pixel_into_the_shape_of_the_next_frame(motion):
    # shapes are flat colour, so warping cannot show growth or turns: follow the shape's pixels instead
    shape = "circle" if motion != "rotates" else "triangle"
    background = _background(96) * np.array([0.3, 1.0, 1.0], np.float32)  # red channel < 50
    video, flow, valid = render_objects(ClipAttributes("objects", motion, 2, shape, "red"), background, 12,
                                        random.Random(5))
    red = video[..., 0].astype(np.float32)  # the background's red is below 50, the shape's above 190
    t, y, x = np.nonzero(red[:-1] > 150)  # the shape's pixels, but for its softest edges
    dest = np.array([x + 0.5, y + 0.5]).T + flow[t, y, x]
    keep = valid[t, y, x]
    dx, dy = np.floor(dest[keep]).astype(int).T
    assert keep.mean() > 0.9 and (red[t[keep] + 1, dy, dx] > 80).mean() > 0.99
    assert np.abs(flow[red[:-1] < 60]).max() == 0  # the background stands still


def test_captions_read_as_english_and_use_the_vocabulary():
    assert ClipAttributes("objects", "moves left", 1, "circle", "red").caption == "a red circle moves left"
    assert ClipAttributes("objects", "grows", 2, "square", "blue").caption == "two blue squares grow"
    assert ClipAttributes("camera", "pans up").caption == "the camera pans up over a photo"
    assert ClipAttributes("camera", "zooms out").caption == "the camera zooms out on a photo"
    vocabulary = set(caption_vocabulary())
    plan = plan_captioned_clips(400, {"train": ["skimage:coffee"], "val": ["skimage:rocket"]})
    assert all(set(c.attrs.caption.split()) <= vocabulary for c in plan)
    # captions read back into the attributes they were made from; other text is not a caption
    assert all(parse_caption(c.attrs.caption) == c.attrs for c in plan)
    for other in ("a dog runs", "two red squares grows", "a red circle", "the camera flies", ""):
        assert parse_caption(other) is None


def test_the_split_holds_out_attribute_combinations_and_is_reproducible():
    photos = {"train": ["a", "b"], "val": ["c"]}
    plan = plan_captioned_clips(3000, photos, seed=0)
    assert plan == plan_captioned_clips(3000, photos, seed=0) and plan != plan_captioned_clips(3000, photos, seed=1)
    train = [c for c in plan if c.split == "train"]
    val = [c for c in plan if c.split == "val"]
    assert not any(held_out(c.attrs) for c in train)
    seen = {(c.attrs.colour, c.attrs.shape, c.attrs.motion) for c in val if held_out(c.attrs)}
    assert seen == set(HELD_OUT)
    assert {c.photo for c in train} <= {"a", "b"} and {c.photo for c in val} == {"c"}
    # every colour, shape and seen motion is trained on, and camera clips are there
    objects = [c.attrs for c in train if c.attrs.kind == "objects"]
    assert {a.colour for a in objects} == set(COLOURS) and {a.shape for a in objects} == set(SHAPES)
    assert {a.motion for a in objects} == set(MOTIONS) and {a.count for a in objects} == {1, 2}
    assert 0.05 < sum(c.attrs.kind == "camera" for c in plan) / len(plan) < 0.25


def test_build_writes_each_clip_with_caption_attributes_and_flow(tiny_captioned):
    from codecgen.datamodules.video import probe_video

    done = json.loads((tiny_captioned / ".complete").read_text())
    assert done["train"] + done["val"] == 16 and done["val"] >= 1
    for clip in sorted((tiny_captioned / "train").glob("*.mkv"))[:4]:
        info = probe_video(clip)
        assert (info.frames, info.height, info.width) == (12, 32, 32)
        attrs = json.loads(clip.with_suffix(".json").read_text())
        caption = clip.with_suffix(".txt").read_text().strip()
        assert caption == ClipAttributes(**{k: v for k, v in attrs.items() if k != "photo"}).caption
        with np.load(clip.with_suffix(".flow.npz")) as data:
            assert data["flow"].shape == (11, 32, 32, 2) and data["valid"].dtype == bool
    assert "held-out" in (tiny_captioned / "README.md").read_text()


def test_captioned_data_module_serves_clips_and_flow_pairs(tiny_captioned):
    from codecgen.datamodules.captioned_video import CaptionedVideoDataModule, FlowPairsDataModule

    dm = CaptionedVideoDataModule(str(tiny_captioned), frames=3, stride=4, batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 3, 3, 32, 32) and -1 <= batch["frames"].min() < batch["frames"].max() <= 1
    assert all(isinstance(c, str) and c for c in batch["caption"])
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val["frames"], next(iter(dm.val_dataloader()))["frames"])  # fixed: from the first frame
    flows = FlowPairsDataModule(str(tiny_captioned), batch_size=2)
    pair = next(iter(flows.train_dataloader()))
    assert pair["frames"].shape == (2, 2, 3, 32, 32) and pair["flow"].shape == (2, 2, 32, 32)
    assert pair["valid"].dtype == torch.bool
    with pytest.raises(ValueError, match="fewer than"):
        CaptionedVideoDataModule(str(tiny_captioned), frames=8, stride=4).setup()


def test_captioned_data_module_reads_a_users_folder_and_names_what_is_wrong(tmp_path):
    from codecgen.datamodules.captioned_video import CaptionedVideoDataModule
    from codecgen.datamodules.video import write_video

    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        write_video(torch.rand(6, 3, 40, 40), tmp_path / split / "dog.mp4", fps=8)
        (tmp_path / split / "dog.txt").write_text("  A dog\n runs.  \n")
    dm = CaptionedVideoDataModule(str(tmp_path), frames=2, stride=2, size=16, batch_size=1)
    item = dm.train_dataloader().dataset[0]
    assert item["caption"] == "A dog runs." and item["frames"].shape == (2, 3, 16, 16)
    both = CaptionedVideoDataModule([str(tmp_path), str(tmp_path)], frames=2, stride=2, size=16, captions=False)
    both.setup()
    assert len(both.train_set) == 2 and both.train_set[0]["caption"] == ""  # folders pooled, captions not read
    (tmp_path / "train" / "dog.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no caption"):
        CaptionedVideoDataModule(str(tmp_path), frames=2, stride=2).setup()
    (tmp_path / "train" / "dog.txt").write_text(" \n")
    with pytest.raises(ValueError, match="empty"):
        CaptionedVideoDataModule(str(tmp_path), frames=2, stride=2).setup()
    with pytest.raises(FileNotFoundError, match="captioned-video"):
        CaptionedVideoDataModule(str(tmp_path / "nothing")).setup()


# -- the shared text encoder -----------------------------------------------------------------
def test_text_encoder_knows_its_words_names_unknown_ones_and_learns():
    from codecgen.nn.text_encoder import TextEncoder

    torch.manual_seed(0)
    enc = TextEncoder(caption_vocabulary(), dim=16, layers=1, heads=2, max_words=8)
    ids = enc.tokenize(["a red circle moves left", "A RED circle, moves left!"])
    assert torch.equal(ids[0], ids[1]) and (ids[0, 5:] == 0).all()
    tokens = enc(ids)
    assert tokens.shape == (2, 8, 16) and tokens[:, 5:].abs().max() == 0
    null = enc.encode([""], allow_empty=True)
    assert torch.isfinite(null).all() and null.abs().max() == 0  # the null text: zeros, no NaN
    with pytest.raises(ValueError, match="outside the text encoder's vocabulary: purple, hexagon"):
        enc.tokenize(["a purple hexagon moves left"])
    with pytest.raises(ValueError, match="empty"):
        enc.tokenize(["  "])
    with pytest.raises(ValueError, match="at most 8"):
        enc.tokenize(["a red circle moves left a red circle moves"])
    # it learns to tell captions apart: a linear read-out of the mean token separates the colours
    texts = [f"a {c} {s} moves left" for c in COLOURS for s in SHAPES]
    labels = torch.tensor([i for i, _ in enumerate(COLOURS) for _ in SHAPES])
    head = torch.nn.Linear(16, len(COLOURS))
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=1e-2)
    ids = enc.tokenize(texts)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(head(enc(ids).sum(1)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]

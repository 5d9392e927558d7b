"""Real photos as backgrounds for the drawn corpora (portraits, captioned video).

A photo is named by a spec: a path to a PNG of the image corpus, or ``skimage:NAME`` for one of
scikit-image's sample photos, the fallback when the image corpus is not built. The image corpus's
own train / val split is kept, so no photo crosses a drawn corpus's split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codecgen.datamodules.corpora.common import CorpusBuild

FALLBACK_PHOTOS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def load_photo(spec: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a photo spec (large files are decoded at about 1024 px)."""
    from PIL import Image

    if spec.startswith("skimage:"):
        from skimage import data

        photo = getattr(data, spec.split(":", 1)[1])()
    else:
        with Image.open(spec) as im:
            im.draft("RGB", (1024, 1024))
            photo = np.asarray(im.convert("RGB"))
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    return np.ascontiguousarray(photo[..., :3])


def photos_by_split(images: Path, build: CorpusBuild, use: str) -> dict[str, list[str]]:
    """Photo specs per split: the image corpus's own split, or (with a warning in the build)
    scikit-image's photos. ``use`` says what they are for, in that warning."""
    out = {split: sorted(str(p) for p in (images / split).glob("*.png")) for split in ("train", "val")}
    if out["train"] and out["val"]:
        return out
    build.warn(f"no image corpus in {images}: the {use} are scikit-image's {len(FALLBACK_PHOTOS)} photos "
               "(build it with `python -m codecgen.datamodules.prepare image` for variety)")
    return {"train": [f"skimage:{n}" for n in FALLBACK_PHOTOS[:-2]],
            "val": [f"skimage:{n}" for n in FALLBACK_PHOTOS[-2:]]}

"""The default image corpus: packages' sample photographs and desktop wallpapers.

``python -m codecgen.datamodules.prepare image --out data/images [--val-fraction 0.1] [--force]``

The corpus (see ../shared/DATA.md) gathers ``skimage.data`` (8 colour, 9 grey;
any that would need a download are skipped with a warning),
``sklearn.datasets.load_sample_images`` (china, flower), ``pywt.data`` (aero,
ascent; camera duplicates skimage's and is dropped as such), the ~90 test
images of the Debian package ``opencv-doc``
(``/usr/share/doc/opencv-doc/examples/data``; a loud warning names
``apt-get install opencv-doc`` when it is missing, and the rest is built), and
~64 large colour wallpapers (photos and artwork, 3-16 MP as stored) from the Debian
packages ``gnome-backgrounds``, ``plasma-workspace-wallpapers``,
``ukui-wallpapers``, ``lomiri-wallpapers-20.04`` and ``sway-backgrounds``,
fetched with ``apt-get download`` (not installed; a package that cannot be
fetched is a loud warning, and the rest is built). :mod:`.wallpapers` says which
of their files are used (the largest size of each design, raster only), how
their light/dark variants are grouped, which are photos, and whom to credit.
Each image becomes a lossless PNG (grey stays grey, transparency is composited
over white; a longer side above :data:`MAX_SIDE` is first shrunk to it with a
Lanczos filter) in ``OUT/train/`` or ``OUT/val/``. Whole images, and whole
scenes (stereo pairs, edited copies, a wallpaper's variants), are held out: only
colour photographs with a shorter side of at least 256 px go to val, picked by a
hash of their group name until val holds ``--val-fraction`` of the corpus
(~10 %, at least 8 images). ``OUT/README.md`` credits every image source and
licence, ``OUT/licenses/`` holds their licence files, and ``OUT/.complete``
marks a finished build.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codecgen.datamodules.corpora.common import (
    OPENCV_COPYRIGHT,
    OPENCV_DATA,
    CorpusBuild,
    Package,
    already_built,
    dist_licence,
    fetch_deb,
    hash01,
    log,
    opencv_doc,
    package_version,
    parallel_map,
    round_robin,
    worker_count,
)
from codecgen.datamodules.corpora.wallpapers import WALLPAPER_PACKAGES, wallpapers

IMAGE_VAL_FRACTION = 0.1
MIN_IMAGE_VAL = 8
MIN_VAL_SIDE = 256  # the image benchmark cuts 256-px crops of the val photos
MIN_IMAGE_SIDE = 64  # smaller files are icons and logos
# Longer side of the stored PNGs: bigger images (wallpapers of up to 24 MP) are shrunk to it
# (Lanczos). Training cuts random crops anyway; this keeps each PNG under ~40 MB.
MAX_SIDE = 4096
COLOUR_LEVELS = 3.0  # mean |channel - grey| (8-bit levels) under which a photo counts as grey
OPENCV_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

SKIMAGE_COLOUR = (
    "astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field",
    "immunohistochemistry", "retina",
)
SKIMAGE_GREY = ("camera", "moon", "brick", "grass", "gravel", "coins", "clock", "page", "text")
# From the skimage.data docstrings (each function's Notes).
SKIMAGE_CREDITS = {
    "astronaut": "NASA (Eileen Collins): public domain",
    "coffee": "Rachel Michetti: CC0",
    "chelsea": "Stefan van der Walt: CC0",
    "rocket": "SpaceX: public domain",
    "stereo_motorcycle": "Middlebury stereo 2014 (Scharstein et al., GCPR 2014), left view: "
    "see vision.middlebury.edu/stereo",
    "hubble_deep_field": "NASA / HubbleSite: public domain",
    "immunohistochemistry": "Center for Microscopy And Molecular Imaging (CMMI): no known copyright restrictions",
    "retina": "Mikael Häggström (Wikimedia Commons): CC0",
    "camera": "Lav Varshney: CC0",
    "moon": "scikit-image sample data: no licence stated",
    "brick": "CC0Textures (Bricks25), transformed by scikit-image: CC0",
    "grass": "linolafett (DeviantArt), cropped by scikit-image: CC0",
    "gravel": "CC0Textures (Gravel04), cropped by scikit-image: CC0",
    "coins": "Brooklyn Museum collection: no known copyright restrictions",
    "clock": "Stefan van der Walt: public domain",
    "page": "scikit-image sample data: no licence stated",
    "text": "Wikipedia (Corner.png): public domain",
}
# opencv-doc files that are drawings, renders, logos, plots, paintings or printed text:
# fine for training, never used for validation.
OPENCV_NOT_PHOTOS = frozenset(
    "Blender_Suzanne1 Blender_Suzanne2 HappyFish LinuxLogo WindowsLogo aloeGT blox cards chessboard "
    "detect_blob digits ellipses gradient imageTextN imageTextR mask ml notes opencv-logo "
    "opencv-logo-white pca_test1 pic1 pic2 pic3 pic4 pic5 pic6 starry_night templ tmpl".split()
)
# opencv-doc files showing one scene (stereo pairs, edits, sequences) share a split.
OPENCV_GROUPS = {
    "aloeL": "aloe", "aloeR": "aloe", "aloeGT": "aloe", "leuvenA": "leuven", "leuvenB": "leuven",
    "left": "stereo", "right": "stereo", "imageTextN": "imageText", "imageTextR": "imageText",
    "ela_modified": "ela", "ela_original": "ela", "text_defocus": "text_blur", "text_motion": "text_blur",
    "box_in_scene": "box", "templ": "mask", "tmpl": "mask",
}


@dataclass
class ImageSource:
    """One contribution to the image corpus, for the README table."""

    name: str
    credit: str
    licence: str
    files: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})


@dataclass
class ImageItem:
    """One picture to convert: ``load()`` gives an (H, W[, C]) array (uint8, uint16 or float)."""

    name: str  # output file stem
    source: str  # ImageSource.name
    group: str  # pictures of one scene share a group, hence a split
    load: Callable[[], np.ndarray]
    photo: bool = True  # a natural photograph (may be held out for validation)
    credit: str = ""  # "author: licence", for images whose source credits each one
    pixels: np.ndarray | None = None  # filled in by _load_item: uint8 (H, W) grey or (H, W, 3)
    shape: tuple[int, ...] = ()  # the pixels' shape, kept once they are written and dropped
    colour: float = 0.0  # mean |channel - grey| in 8-bit levels

    @property
    def eligible_for_val(self) -> bool:
        if not self.photo or len(self.shape) != 3:
            return False
        return self.colour >= COLOUR_LEVELS and min(self.shape[:2]) >= MIN_VAL_SIDE


# --------------------------------------------------------------------------- pixels


def _pil_pixels(path: Path) -> np.ndarray:
    """Decode an image file with Pillow (first frame) to an array _to_uint8_image understands,
    shrunk (Lanczos) so that its longer side is at most MAX_SIDE."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        mode = img.mode
        if mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif mode == "1":
            img = img.convert("L")
        elif mode.startswith("I;16"):
            return np.asarray(img).astype(np.uint16)
        elif mode in ("RGB", "L") and "transparency" in img.info:
            img = img.convert("RGBA" if mode == "RGB" else "LA")
        elif mode in ("RGBa", "La", "PA"):
            img = img.convert("RGBA")
        elif mode not in ("RGB", "L", "LA", "RGBA"):
            img = img.convert("RGB")
        if max(img.size) > MAX_SIDE:  # Pillow filters RGBA/LA premultiplied: no dark fringes
            scale = MAX_SIDE / max(img.size)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS)
        return np.asarray(img)


def _to_uint8_image(x: np.ndarray) -> np.ndarray:
    """Any (H, W), (H, W, 1..4) array -> uint8 (H, W) grey or (H, W, 3) colour.

    Alpha is composited over white; colour images whose channels are all equal become grey.
    """
    x = np.asarray(x)
    if x.dtype == np.uint16:
        x = ((x.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.floating):
        x = (np.clip(np.nan_to_num(x), 0.0, 1.0) * 255).round().astype(np.uint8)
    elif x.dtype != np.uint8:
        raise ValueError(f"unexpected pixel type {x.dtype}")
    if x.ndim == 3 and x.shape[2] in (2, 4):  # LA / RGBA: over white
        colour, alpha = x[..., :-1].astype(np.uint32), x[..., -1:].astype(np.uint32)
        if (alpha < 255).any():
            colour = (colour * alpha + 255 * (255 - alpha) + 127) // 255
        x = colour.astype(np.uint8)
    if x.ndim == 3 and x.shape[2] == 3 and (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all():
        x = x[..., 0]
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] != 3):
        raise ValueError(f"unexpected image shape {x.shape}")
    return np.ascontiguousarray(x)


def _colourfulness(x: np.ndarray) -> float:
    if x.ndim == 2:
        return 0.0
    f = x.astype(np.float32)
    return float(np.abs(f - f.mean(axis=2, keepdims=True)).mean())


def _load_item(item: ImageItem) -> str | None:
    """Decode ``item`` into ``item.pixels``; return why it is skipped, or None."""
    try:
        pixels = _to_uint8_image(item.load())
    except Exception as err:  # noqa: BLE001 - a missing sample (e.g. needs pooch) or a bad file is skipped
        return f"unavailable or unreadable ({type(err).__name__}: {str(err).strip()[:200]})"
    if min(pixels.shape[:2]) < MIN_IMAGE_SIDE:
        return f"too small ({pixels.shape[1]}x{pixels.shape[0]} < {MIN_IMAGE_SIDE} px)"
    item.pixels, item.shape, item.colour = pixels, pixels.shape, _colourfulness(pixels)
    return None


def _write_png(pixels: np.ndarray, dst: Path) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(dst, format="PNG")


# --------------------------------------------------------------------------- sources


def _skimage_items() -> list[ImageItem]:
    def load(name: str) -> np.ndarray:
        import skimage.data

        x = getattr(skimage.data, name)()
        return x[0] if name == "stereo_motorcycle" else x  # (left, right, disparity): the left view

    return [
        ImageItem(f"skimage_{n}", "skimage", f"skimage_{n}", lambda n=n: load(n))
        for n in SKIMAGE_COLOUR + SKIMAGE_GREY
    ]


def _sklearn_items() -> list[ImageItem]:
    def load(name: str) -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return [ImageItem(f"sklearn_{n}", "sklearn", f"sklearn_{n}", lambda n=n: load(n)) for n in ("china", "flower")]


def _pywt_items() -> list[ImageItem]:
    def load(name: str) -> np.ndarray:
        import pywt.data

        return getattr(pywt.data, name)()

    return [ImageItem(f"pywt_{n}", "pywt", f"pywt_{n}", lambda n=n: load(n)) for n in ("aero", "ascent", "camera")]


def write_package_image(name: str, dst: Path) -> None:
    """Write the corpus's picture ``name`` (e.g. ``skimage_astronaut``, from a Python package:
    scikit-image, scikit-learn or PyWavelets) to ``dst`` as a build does, without the build."""
    items = {i.name: i for i in _skimage_items() + _sklearn_items() + _pywt_items()}
    if name not in items:
        raise ValueError(f"no package image {name!r}; known: {', '.join(sorted(items))}")
    why = _load_item(items[name])
    if why is not None:
        raise RuntimeError(f"{name}: {why}")
    _write_png(items[name].pixels, dst)


def _opencv_items(folder: Path) -> list[ImageItem]:
    items = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in OPENCV_SUFFIXES):
        stem = path.stem
        group = OPENCV_GROUPS.get(stem) or re.sub(r"^(left|right)\d+$", "calib", stem)
        group = re.sub(r"\d+$", "", group) or group
        name = "opencv_" + re.sub(r"[^A-Za-z0-9_-]", "-", stem)
        load = lambda p=path: _pil_pixels(p)  # noqa: E731
        items.append(ImageItem(name, "opencv", f"opencv_{group}", load, photo=stem not in OPENCV_NOT_PHOTOS))
    return items


def _fetch_wallpapers(cache: Path, build: CorpusBuild) -> dict[str, Package]:
    """The wallpaper packages that can be fetched, by corpus prefix; a loud warning for each other."""
    packages = {}
    for prefix, name in WALLPAPER_PACKAGES:
        try:
            packages[prefix] = fetch_deb(name, cache)
        except RuntimeError as err:
            build.warn(f"could not get Debian package {name}: the corpus lacks its wallpapers ({err})")
    return packages


def _wallpaper_items(prefix: str, pkg: Package, skipped: list[tuple[str, str]]) -> list[ImageItem]:
    """The package's wallpapers as corpus items; the files it leaves out go to ``skipped``."""
    found, left_out = wallpapers(prefix, pkg)
    skipped += left_out
    return [
        ImageItem(w.name, prefix, w.group, lambda p=w.path: _pil_pixels(p), photo=w.photo, credit=w.credit)
        for w in found
    ]


def _wallpaper_source(pkg: Package, items: list[ImageItem]) -> ImageSource:
    licences = sorted({i.credit.rsplit(": ", 1)[-1] for i in items})
    return ImageSource(
        f"Debian `{pkg.name}` {pkg.version}",
        "the artists named per image, below",
        f"{', '.join(licences) or 'see copyright file'} (per image below; licenses/{pkg.name}.copyright)",
    )


def _image_sources(opencv_dir: Path) -> dict[str, ImageSource]:
    opencv_version, opencv_licence = opencv_doc("baboon.jpg")
    return {
        "skimage": ImageSource(
            f"`scikit-image` {package_version('scikit-image')} (`skimage.data`)",
            "per image, below (from the `skimage.data` docstrings)",
            "mostly public domain / CC0, per image below; package BSD-3-Clause",
        ),
        "sklearn": ImageSource(
            f"`scikit-learn` {package_version('scikit-learn')} (`load_sample_images`)",
            "china.jpg: danielbuechele (Flickr); flower.jpg: vultilion (Flickr); retrieved by Robert Layton",
            "CC-BY-2.0 (licenses/scikit-learn-sample-images.txt)",
        ),
        "pywt": ImageSource(
            f"`PyWavelets` {package_version('PyWavelets')} (`pywt.data`)",
            "PyWavelets developers; ascent derived from public-domain-image.com",
            "ascent: public domain; aero: provenance not stated; package MIT (licenses/PyWavelets.LICENSE)",
        ),
        "opencv": ImageSource(
            f"Debian `opencv-doc` {opencv_version} (`{opencv_dir}`)",
            "OpenCV project and contributors (Intel, Willow Garage, OpenCV Foundation, ...)",
            opencv_licence,
        ),
    }


def _licence_files(opencv_dir: Path) -> dict[str, Path | None]:
    licences = {
        "opencv-doc.copyright": OPENCV_COPYRIGHT if opencv_dir.is_dir() else None,
        "scikit-image.LICENSE.txt": dist_licence("scikit-image"),
        "scikit-learn-sample-images.txt": None,
        "PyWavelets.LICENSE": dist_licence("PyWavelets"),
    }
    try:
        import sklearn.datasets

        licences["scikit-learn-sample-images.txt"] = Path(sklearn.datasets.__file__).parent / "images" / "README.txt"
    except ImportError:
        pass
    return licences


# --------------------------------------------------------------------------- split


def _image_val_groups(items: list[ImageItem], val_fraction: float, min_val: int) -> set[str]:
    """Groups held out: eligible photo groups by SHA-1 of their name until ``val_fraction`` of the corpus."""
    eligible: dict[str, int] = {}
    for item in items:
        if item.eligible_for_val:
            eligible[item.group] = eligible.get(item.group, 0) + 1
    target = max(min_val, round(val_fraction * len(items)))
    chosen, n = set(), 0
    for group in sorted(eligible, key=hash01):
        if n >= target:
            break
        chosen.add(group)
        n += eligible[group]
    return chosen


# --------------------------------------------------------------------------- the corpus


def _readme_body(
    sources: dict[str, ImageSource], items: list[ImageItem], val_names: set[str], skipped: list[tuple[str, str]]
) -> list[str]:
    lines = [
        "## Sources and licences",
        "",
        "| source | credit | licence | train | val |",
        "|---|---|---|---|---|",
    ]
    for s in sources.values():
        if s.files["train"] + s.files["val"]:
            lines.append(f"| {s.name} | {s.credit} | {s.licence} | {s.files['train']} | {s.files['val']} |")
    n_train = sum(s.files["train"] for s in sources.values())
    lines += [f"| **total** | | | {n_train} | {len(val_names)} |", ""]
    ski = [i for i in items if i.source == "skimage"]
    if ski:
        lines += ["### scikit-image images", "", "| file | credit: licence |", "|---|---|"]
        lines += [f"| {i.name}.png | {SKIMAGE_CREDITS[i.name.removeprefix('skimage_')]} |" for i in ski]
        lines.append("")
    credited = sorted((i for i in items if i.credit), key=lambda i: i.name)
    if credited:
        lines += ["### Wallpapers", "", "| file | photo | credit: licence |", "|---|---|---|"]
        lines += [f"| {i.name}.png | {'yes' if i.photo else 'artwork'} | {i.credit} |" for i in credited]
        lines.append("")
    lines += ["## Validation images", "", "| file | width x height |", "|---|---|"]
    for i in sorted((i for i in items if i.name in val_names), key=lambda i: i.name):
        lines.append(f"| {i.name}.png | {i.shape[1]} x {i.shape[0]} |")
    lines.append("")
    if skipped:
        lines += ["## Skipped", ""] + [f"- {name}: {why}" for name, why in skipped] + [""]
    return lines + [
        "Licence and copyright files of the sources are in `licenses/`. CC-BY images require",
        "attribution (above) when redistributed.",
    ]


def build_images(
    out: str | Path = "data/images",
    force: bool = False,
    val_fraction: float = IMAGE_VAL_FRACTION,
    max_images: int | None = None,
    opencv_dir: str | Path = OPENCV_DATA,
    workers: int | None = None,
    cache: str | Path | None = None,
) -> Path:
    """Build the default image corpus into ``out`` (see the module docstring); return ``out``.

    ``max_images`` keeps only that many source images, taken round-robin over the
    sources (for quick tests); ``opencv_dir`` is where opencv-doc's sample data is;
    ``cache`` is where the wallpaper packages' .deb files go (default ``OUT/../.cache/debs``,
    shared with the speech corpus).
    """
    out, opencv_dir = Path(out), Path(opencv_dir)
    cache = Path(cache) if cache is not None else out.parent / ".cache" / "debs"
    if already_built(out, force):
        return out
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if max_images is not None and max_images < 2:
        raise ValueError(f"max_images must be at least 2, got {max_images}")
    workers = worker_count(workers)
    build = CorpusBuild(out, "image")

    skipped: list[tuple[str, str]] = []
    lists = [_skimage_items(), _sklearn_items(), _pywt_items()]
    if opencv_dir.is_dir():
        lists.append(_opencv_items(opencv_dir))
    else:
        build.warn(
            f"opencv-doc sample images not found at {opencv_dir}: the corpus lacks its ~90 test images. "
            "Install them with `apt-get install opencv-doc` (or `make system-deps`) and rebuild with --force"
        )
    packages = _fetch_wallpapers(cache, build)
    lists += [_wallpaper_items(prefix, pkg, skipped) for prefix, pkg in packages.items()]
    # All of them source by source; a quick build takes its few round-robin, to keep every source.
    candidates = [i for items in lists for i in items] if max_images is None else round_robin(lists)[:max_images]

    # Each image is written as soon as it is decoded and its pixels dropped: a corpus of
    # 4096-px wallpapers would otherwise sit in memory whole (~2 GB).
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()

    def stage(item: ImageItem) -> tuple[str | None, str]:
        why = _load_item(item)
        if why is not None:
            return why, ""
        p = item.pixels
        _write_png(p, staging / f"{item.name}.png")
        item.pixels = None
        return None, hashlib.sha1(p.tobytes() + str(p.shape).encode()).hexdigest()

    results = parallel_map(stage, candidates, workers, "images")
    items: list[ImageItem] = []
    seen: dict[str, str] = {}
    for item, (why, digest) in zip(candidates, results):
        if why is None:
            if digest in seen:
                why = f"same pixels as {seen[digest]}"
                (staging / f"{item.name}.png").unlink()
            else:
                seen[digest] = item.name
                items.append(item)
        if why is not None:
            skipped.append((item.name, why))
            log(f"warning: skipping {item.name}: {why}")
    if not items:
        raise RuntimeError("no source images loaded (are scikit-image, scikit-learn and PyWavelets installed?)")

    n_eligible = sum(i.eligible_for_val for i in items)
    min_val = MIN_IMAGE_VAL if n_eligible >= 2 * MIN_IMAGE_VAL else max(1, n_eligible // 2)
    if min_val < MIN_IMAGE_VAL:
        msg = f"only {n_eligible} colour photos of >= {MIN_VAL_SIDE} px: val holds {min_val}, not {MIN_IMAGE_VAL}"
        if max_images is None:
            build.warn(msg)
        else:
            log(f"warning: {msg} (--max-images {max_images})")
    val_groups = _image_val_groups(items, val_fraction, min_val)
    val_names = {i.name for i in items if i.group in val_groups and i.eligible_for_val}

    sources = _image_sources(opencv_dir)
    for prefix, pkg in packages.items():
        sources[prefix] = _wallpaper_source(pkg, [i for i in items if i.source == prefix])
        build.copy_licences({f"{pkg.name}.copyright": pkg.copyright_file})
        build.copy_licences({f"{pkg.name}.AUTHORS": next(iter(pkg.root.glob("usr/share/doc/*/AUTHORS")), None)})
    for item in items:
        split = "val" if item.name in val_names else "train"
        sources[item.source].files[split] += 1
        (staging / f"{item.name}.png").rename(out / split / f"{item.name}.png")
    shutil.rmtree(staging)
    build.copy_licences(_licence_files(opencv_dir))

    build.write_readme(" from Python packages' sample", [
        "images, the Debian package `opencv-doc` and Debian's desktop wallpaper packages. Lossless",
        "PNG: 8-bit RGB, or 8-bit grey where the source is grey (the loader returns three identical",
        "channels). Transparent images were composited over white. Images with a longer side above",
        f"{MAX_SIDE} px (some wallpapers, up to 24 MP) were shrunk to {MAX_SIDE} px with a Lanczos filter",
        "(Pillow); nothing else was resampled. Files are named `<source>_<original name>.png`; of each",
        "wallpaper design only its largest size is used (Plasma and sway ship several), and vector",
        "(SVG) wallpapers are left out.",
        "",
        "The split is fixed and holds out whole images (and whole scenes: stereo pairs, edited copies,",
        "a wallpaper's light and dark variants share a split). `val/` holds only colour photographs",
        f"whose shorter side is at least {MIN_VAL_SIDE} px (the benchmark cuts {MIN_VAL_SIDE}-px crops of them;",
        "wallpapers that are renders or drawings are marked `artwork` below and never held out): scene",
        f"groups are taken in order of a SHA-1 hash of their name until val holds {val_fraction:.0%} of the",
        f"corpus (at least {MIN_IMAGE_VAL} images). Everything else is in `train/`.",
    ], _readme_body(sources, items, val_names, skipped))
    val_sizes = {f"{i.name}.png": list(i.shape[1::-1]) for i in items if i.name in val_names}
    log(f"image corpus in {out}: {len(items) - len(val_names)} train, {len(val_names)} val images "
        f"in {build.seconds:.0f} s")
    for s in sources.values():
        log(f"  {s.name}: train {s.files['train']}, val {s.files['val']}")
    build.finish({
        "images": {s.name: s.files for s in sources.values() if s.files["train"] + s.files["val"]},
        "val": dict(sorted(val_sizes.items())),
        "skipped": dict(skipped),
    })
    return out

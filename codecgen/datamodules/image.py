"""Image data: file readers and writers, a tiler, and a LightningDataModule of random crops.

Every image codec trains on square crops cut at random from a folder of
png/jpg/webp/bmp/tiff files (the default corpus is built offline by
``python -m codecgen.datamodules.prepare image``; users point ``--data.root``
at their own folder). Batches follow the VQGAN convention: float32
(B, 3, crop, crop) in [-1, 1].

The readers return float32 (3, H, W) tensors in [0, 1] together with the
file's *mode*, so a codec can write back what it read: ``"RGB"``, ``"L"``
(grey files of any depth, returned as three identical channels) or
``"RGBA"`` (colour with transparency; :func:`load_image_with_alpha` also
returns the alpha plane). Every way a file can be bad (missing is
``FileNotFoundError``; empty, corrupt, truncated, unsupported, zero-size or
absurdly large) raises one ``ValueError`` naming the file, before anything
large is allocated. :func:`iter_tiles` lays out overlapping tiles so huge
images can be coded with bounded memory.
"""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from codecgen.datamodules.base import SplitDataModule, split_draw
from codecgen.datamodules.split import split_by_hash

__all__ = [
    "ImageDataModule",
    "ImageCrops",
    "Tile",
    "image_size",
    "iter_tiles",
    "load_image",
    "load_image_with_alpha",
    "resize_image",
    "save_image",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
]

BUILD_HINT = "build the default corpus with `python -m codecgen.datamodules.prepare image --out data/images`"
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")
# Header-checked before decoding. Pillow's own decompression-bomb guard
# (2 * Image.MAX_IMAGE_PIXELS, ~179 MP by default) may refuse a file first; both
# end in the same ValueError.
MAX_PIXELS = 2**28
# Writers by suffix: (Pillow format, save options). All but JPEG are lossless.
_WRITERS: dict[str, tuple[str, dict]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"lossless": True, "quality": 100}),
    ".bmp": ("BMP", {}),
    ".tif": ("TIFF", {"compression": "tiff_deflate"}),
    ".tiff": ("TIFF", {"compression": "tiff_deflate"}),
}
# Everything Pillow raises on bad input (it uses SyntaxError for some broken headers).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError, KeyError, struct.error, zlib.error)
_GREY_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


# --------------------------------------------------------------------------- file reading


def _open(path: Path) -> Image.Image:
    """Open ``path`` lazily (header only) and check its size; ValueError names the file."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"image file {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ValueError(f"image file {path} is too large to decode safely ({err})") from err
    except _PIL_ERRORS as err:
        raise ValueError(f"cannot read image file {path}: unsupported format or corrupt ({err})") from err
    w, h = img.size
    if w <= 0 or h <= 0:
        img.close()
        raise ValueError(f"image file {path} has zero size ({w}x{h})")
    if w * h > MAX_PIXELS:
        img.close()
        raise ValueError(f"image file {path} is {w}x{h} = {w * h} pixels, more than the limit of {MAX_PIXELS}")
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` from the file's header, without decoding the pixels."""
    with _open(Path(path)) as img:
        return img.size[1], img.size[0]


def _is_grey(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _decode(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Decode a file into ``(rgb, alpha, mode)`` numpy arrays, keeping the file's bit depth.

    ``rgb`` is (H, W, 3) uint8, uint16 (16-bit grey) or float32 (float files, in
    [0, 1]); ``alpha`` is (H, W) of the same dtype or None. Animated files give
    their first frame; EXIF orientation is applied.
    """
    path = Path(path)
    img = _open(path)
    try:
        with img, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.seek(0)  # animated files: the first frame
            img.load()  # force the full decode here, so truncation surfaces now
            if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation: show it upright
                img = ImageOps.exif_transpose(img)
            return _to_arrays(img)
    except Image.DecompressionBombError as err:
        raise ValueError(f"image file {path} is too large to decode safely ({err})") from err
    except _PIL_ERRORS as err:
        raise ValueError(f"cannot decode image file {path}: corrupt or truncated ({err})") from err


def _to_arrays(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None, str]:
    mode = img.mode
    has_alpha = mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in img.info)
    if has_alpha:
        if mode in ("LA", "La", "L"):
            la = np.asarray(img.convert("LA"))
            grey, alpha = la[..., 0], la[..., 1]
            return np.repeat(grey[..., None], 3, axis=2), alpha, "RGBA"
        rgba = np.asarray(img.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), "RGBA"
    if mode in _GREY_MODES:
        if mode == "1":
            grey = np.asarray(img.convert("L"))
        elif mode.startswith("I;16"):
            grey = np.asarray(img).astype(np.uint16)  # native byte order, values kept
        elif mode == "I":  # 32-bit int: how Pillow opens 16-bit grey PNGs in some versions
            grey = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        elif mode == "F":
            grey = np.clip(np.nan_to_num(np.asarray(img, dtype=np.float32)), 0.0, 1.0)
        else:
            grey = np.asarray(img)
        return np.repeat(grey[..., None], 3, axis=2), None, "L"
    if mode == "P":
        rgb = np.asarray(img.convert("RGB"))
        return rgb, None, "L" if _is_grey(rgb) else "RGB"
    # RGB as it is; CMYK, YCbCr, LAB, HSV, 16-bit colour (Pillow keeps 8 bits of it) via Pillow.
    return np.asarray(img if mode == "RGB" else img.convert("RGB")), None, "RGB"


def _to_unit(x: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) uint8/uint16/float32 -> float32 tensor (C, H, W) in [0, 1]."""
    if x.ndim == 2:
        x = x[..., None]
    if x.dtype == np.uint8:
        scale = 255.0
    elif x.dtype == np.uint16:
        scale = 65535.0
    else:
        scale = 1.0
    t = torch.from_numpy(np.ascontiguousarray(x).astype(np.float32, copy=False))
    return (t / scale).permute(2, 0, 1).contiguous()


def load_image_with_alpha(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Load an image as ``(rgb (3, H, W), alpha (1, H, W) or None, mode)``, float32 in [0, 1].

    ``mode`` is ``"RGB"``, ``"L"`` (grey of any depth; rgb holds three identical
    channels) or ``"RGBA"`` (alpha is not None; RGBA, LA and palette or
    RGB/L files with a transparent colour). Colour is not premultiplied.
    16-bit grey files keep their 16 bits; 16-bit colour files are read at 8 bits
    (Pillow's limit). ``ValueError`` names the file when it is empty, corrupt,
    truncated, of an unsupported format, zero-size, or over :data:`MAX_PIXELS`.
    """
    rgb, alpha, mode = _decode(path)
    return _to_unit(rgb), (None if alpha is None else _to_unit(alpha)), mode


def load_image(path: str | Path) -> tuple[torch.Tensor, str]:
    """Load an image as ``(rgb (3, H, W) float32 in [0, 1], mode)``; see :func:`load_image_with_alpha`.

    For ``"RGBA"`` files only the colour channels are returned (alpha is dropped).
    """
    rgb, _, mode = _decode(path)
    return _to_unit(rgb), mode


# --------------------------------------------------------------------------- file writing


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    x = torch.nan_to_num(x.detach().float().cpu(), nan=0.0)
    return (x * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def save_image(
    image: torch.Tensor,
    path: str | Path,
    mode: str = "RGB",
    alpha: torch.Tensor | None = None,
) -> None:
    """Write a (3, H, W) or (1, H, W) tensor in [0, 1] to ``path``, format by suffix.

    ``.png`` (lossless, the one to use for decoded output), ``.webp`` (lossless),
    ``.bmp``, ``.tif``/``.tiff`` (deflate) and ``.jpg``/``.jpeg`` (quality 95,
    4:4:4). Values become 8-bit by ``(x * 255).round().clamp(0, 255)``.
    ``mode="L"`` or a one-channel tensor writes grey (the mean of the channels,
    which undoes :func:`load_image`'s replication exactly); ``alpha`` (1, H, W)
    or (H, W) in [0, 1] adds transparency (not for JPEG). ``mode="RGBA"``
    without ``alpha`` writes RGB.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITERS:
        raise ValueError(f"cannot write {path}: unknown image suffix {suffix!r} (use one of {', '.join(_WRITERS)})")
    if mode not in ("RGB", "L", "RGBA"):
        raise ValueError(f"mode must be 'RGB', 'L' or 'RGBA', got {mode!r}")
    if image.ndim != 3 or image.shape[0] not in (1, 3) or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"expected a (3, H, W) or (1, H, W) image tensor, got shape {tuple(image.shape)}")
    fmt, options = _WRITERS[suffix]
    grey = mode == "L" or image.shape[0] == 1
    if grey:
        planes = [_to_uint8(image.float().mean(dim=0))]
    else:
        planes = list(_to_uint8(image))
    pil_mode = "L" if grey else "RGB"
    if alpha is not None:
        if fmt == "JPEG":
            raise ValueError(f"cannot write {path}: JPEG has no alpha channel (use .png or .webp)")
        a = alpha[0] if alpha.ndim == 3 else alpha
        if tuple(a.shape) != tuple(image.shape[1:]):
            raise ValueError(f"alpha shape {tuple(alpha.shape)} does not match image shape {tuple(image.shape)}")
        planes.append(_to_uint8(a))
        pil_mode += "A"
        if fmt == "BMP" and pil_mode == "LA":  # BMP has no grey+alpha
            planes, pil_mode = [planes[0]] * 3 + [planes[1]], "RGBA"
    array = planes[0] if len(planes) == 1 else np.stack(planes, axis=-1)
    Image.fromarray(np.ascontiguousarray(array), mode=pil_mode).save(path, format=fmt, **options)


# --------------------------------------------------------------------------- tiling


class Tile(tuple):
    """A tile's box ``(top, left, bottom, right)``, context included; ``.core`` is the part it owns.

    Unpacks and compares as the plain 4-tuple. ``core`` is a box of the same
    form; the cores of one :func:`iter_tiles` call partition the image.
    """

    core: tuple[int, int, int, int]

    def __new__(cls, box: tuple[int, int, int, int], core: tuple[int, int, int, int]) -> Tile:
        tile = super().__new__(cls, box)
        tile.core = core
        return tile

    top = property(lambda self: self[0])
    left = property(lambda self: self[1])
    bottom = property(lambda self: self[2])
    right = property(lambda self: self[3])


def _spans(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: (outer_start, outer_end, core_start, core_end) per tile."""
    if n <= tile:
        return [(0, n, 0, n)]
    count = math.ceil(n / (tile - 2 * overlap))
    cuts = [round(i * n / count) for i in range(count + 1)]  # balanced cores, none a sliver
    return [(max(0, a - overlap), min(n, b + overlap), a, b) for a, b in zip(cuts, cuts[1:])]


def iter_tiles(height: int, width: int, tile: int, overlap: int = 0) -> Iterator[Tile]:
    """Yield boxes ``(top, left, bottom, right)`` (row-major) that tile a ``height`` x ``width`` image.

    For coding huge images with bounded memory: each box is at most ``tile``
    pixels on a side and includes up to ``overlap`` pixels of context on every
    side that is not an image edge (context is never padding). Underneath, the
    image is cut into non-overlapping *cores* on a balanced grid of pitch at
    most ``tile - 2 * overlap``; each box is its core grown by ``overlap`` and
    clipped to the image, so neighbouring boxes share ``2 * overlap`` pixels.
    A consumer processes ``x[..., top:bottom, left:right]`` and either keeps
    the box's ``.core`` (exact stitching) or blends the shared strips. An image
    no larger than ``tile`` is one box. Boxes are ``Tile`` objects: plain
    4-tuples with ``.core`` attached.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must be larger than 2 * overlap ({2 * overlap})")
    for top, bottom, core_top, core_bottom in _spans(height, tile, overlap):
        for left, right, core_left, core_right in _spans(width, tile, overlap):
            yield Tile((top, left, bottom, right), (core_top, core_left, core_bottom, core_right))


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class _ImageInfo:
    path: Path
    height: int
    width: int


# Training draws images with probability proportional to their area, capped at this
# many crops' worth, so one huge image (e.g. a 13-MP calibration chessboard) cannot
# dominate a small corpus.
_WEIGHT_CAP_CROPS = 16
_CACHE_BYTES = 512 * 2**20  # per process (each DataLoader worker has its own cache)


def _halton(i: int, base: int) -> float:
    f, r = 1.0, 0.0
    while i > 0:
        f /= base
        r += f * (i % base)
        i //= base
    return r


def _val_position(k: int) -> tuple[float, float]:
    """Fractional (y, x) of the k-th validation crop in the free range: centre, then Halton(3, 2)."""
    return (0.5, 0.5) if k == 0 else (_halton(k, 3), _halton(k, 2))


def resize_image(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize of (C, h, w) in [0, 1] (antialiased when shrinking), clamped to [0, 1]."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    y = F.interpolate(x[None], size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return y[0].clamp_(0.0, 1.0)


class ImageCrops(Dataset):
    """Square crops from a list of images, as float32 (3, crop, crop) in [-1, 1].

    ``train=True``: item ``i`` ignores ``i``; it picks an image at random
    (weighted by area, capped at 16 crops' worth), a scale ``s`` log-uniform in
    [``min_scale``, 1], cuts a square of ``crop / s`` pixels (at most the
    image's shorter side) at a random position, resizes it to ``crop``
    (bicubic) and flips it horizontally with probability 1/2. Randomness comes
    from the draw's own seed when the index comes from ``ResumableSampler`` as
    ``(index, seed)`` (so a resumed run cuts the same crops), else from torch's global RNG.
    ``train=False``: ``val_crops`` crops per image at fixed positions, at the
    image's own scale; item ``i`` is crop ``i % val_crops`` of image
    ``i // val_crops``. Images whose shorter side is under ``crop`` are first
    upscaled (bicubic) to reach it. Decoded images are kept in a per-process
    LRU cache of about 512 MiB.
    """

    def __init__(
        self,
        files: Sequence[_ImageInfo],
        crop_size: int,
        train: bool,
        length: int | None = None,
        min_scale: float = 1.0,
        val_crops: int = 1,
        cache_bytes: int = _CACHE_BYTES,
    ) -> None:
        if not files:
            raise ValueError("ImageCrops needs at least one image")
        self.files = list(files)
        self.crop = crop_size
        self.train = train
        self.min_scale = min_scale
        self.val_crops = val_crops
        if train:
            self.length = len(self.files) if length is None else length
        else:
            self.length = len(self.files) * val_crops
        self.random_draws = train  # ResumableSampler: pass each draw's seed
        cap = _WEIGHT_CAP_CROPS * crop_size**2
        self.weights = torch.tensor([float(min(f.height * f.width, cap)) for f in self.files], dtype=torch.float64)
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.length

    def _pixels(self, info: _ImageInfo) -> np.ndarray:
        """(H, W, 3) decoded array of one image, through the LRU cache."""
        x = self._cache.get(info.path)
        if x is not None:
            self._cache.move_to_end(info.path)
            return x
        x, _, _ = _decode(info.path)
        self._cache[info.path] = x
        while len(self._cache) > 1 and sum(a.nbytes for a in self._cache.values()) > self.cache_bytes:
            self._cache.popitem(last=False)
        return x

    def __getitem__(self, index: int | tuple[int, int]) -> torch.Tensor:
        index, generator = split_draw(index)
        if self.train:
            x = self._train_crop(generator)
        else:
            x = self._val_crop(index)
        return x * 2.0 - 1.0

    def _train_crop(self, generator: torch.Generator | None = None) -> torch.Tensor:
        i = int(torch.multinomial(self.weights, 1, generator=generator).item())
        pixels = self._pixels(self.files[i])
        h, w = pixels.shape[:2]
        scale = self.min_scale ** float(torch.rand((), generator=generator))  # log-uniform in [min_scale, 1]
        side = max(1, min(round(self.crop / scale), h, w))
        top = int(torch.randint(0, h - side + 1, (), generator=generator))
        left = int(torch.randint(0, w - side + 1, (), generator=generator))
        x = resize_image(_to_unit(pixels[top : top + side, left : left + side]), self.crop, self.crop)
        if bool(torch.rand((), generator=generator) < 0.5):
            x = x.flip(-1)
        return x

    def _val_crop(self, index: int) -> torch.Tensor:
        image, k = divmod(index, self.val_crops)
        pixels = self._pixels(self.files[image])
        h, w = pixels.shape[:2]
        c = self.crop
        fy, fx = _val_position(k)
        if min(h, w) >= c:
            top, left = round((h - c) * fy), round((w - c) * fx)
            return _to_unit(pixels[top : top + c, left : left + c])
        scale = c / min(h, w)  # upscale so that the shorter side is exactly one crop
        h, w = max(c, round(h * scale)), max(c, round(w * scale))
        x = resize_image(_to_unit(pixels), h, w)
        top, left = round((h - c) * fy), round((w - c) * fx)
        return x[:, top : top + c, left : left + c].contiguous()


# --------------------------------------------------------------------------- datamodule


def _scan(directory: Path, extensions: Sequence[str]) -> list[_ImageInfo]:
    """All non-empty images under ``directory`` (recursively), sorted by path; headers only."""
    suffixes = {"." + e.lower().lstrip(".") for e in extensions}
    infos = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
        if path.stat().st_size == 0:
            rank_zero_warn(f"skipping empty image file {path}")
            continue
        height, width = image_size(path)
        infos.append(_ImageInfo(path, height, width))
    return infos


class ImageDataModule(SplitDataModule):
    """Random square crops from a folder of images, for training image codecs.

    If ``root/train`` and ``root/val`` both exist they are the split (the layout
    the corpus builder writes); otherwise whole images (never crops) are split
    by a stable hash of their path relative to ``root`` (``val_fraction`` of
    them, at least one). Files: png/jpg/jpeg/webp/bmp/tif/tiff, searched
    recursively; grey images become three identical channels and alpha is
    dropped. An epoch is ``samples_per_epoch`` random crops (see
    :class:`ImageCrops`: area-weighted images, random down-scaling to
    ``min_scale``, horizontal flips); validation is ``val_crops`` fixed crops
    per val image at native scale. Images smaller than ``crop_size`` are
    upscaled (bicubic). Batches are float32 (B, 3, crop_size, crop_size) in [-1, 1].
    ``cache_mb``: each process's (each worker's) cache of decoded images. The default
    corpus decodes to ~1.8 GiB, most of it large wallpapers: with the default 512 MiB
    most crops decode a PNG again, which costs CPU-only runs about as much as a small
    model's step; 2048 keeps it all (memory: that much per worker).
    """

    shuffle_train = False  # training items are random draws already; val order stays fixed
    item_name = "crops"

    def __init__(
        self,
        root: str = "data/images",
        crop_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        seed: int = 0,
        val_crops: int = 4,
        min_scale: float = 0.5,
        samples_per_epoch: int = 2000,
        cache_mb: int = _CACHE_BYTES // 2**20,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        if crop_size <= 0 or batch_size <= 0 or val_crops <= 0 or samples_per_epoch <= 0:
            raise ValueError("crop_size, batch_size, val_crops and samples_per_epoch must be positive")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        self.root = Path(root)
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_files: list[_ImageInfo] = []
        self.val_files: list[_ImageInfo] = []
        self.train_set: ImageCrops | None = None
        self.val_set: ImageCrops | None = None

    def _find_files(self) -> tuple[list[_ImageInfo], list[_ImageInfo]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"image root {self.root} does not exist; {BUILD_HINT}")
        no_images = f"no {'/'.join(IMAGE_EXTENSIONS)} files under {self.root}; {BUILD_HINT}"
        train_dir, val_dir = self.root / "train", self.root / "val"
        seed = self.hparams.seed
        if train_dir.is_dir() and val_dir.is_dir():
            train, val = _scan(train_dir, IMAGE_EXTENSIONS), _scan(val_dir, IMAGE_EXTENSIONS)
            if not train:
                raise ValueError(no_images.replace(str(self.root), str(train_dir), 1))
            if not val:
                rank_zero_warn(f"{val_dir} holds no images; validating on a hash split of {train_dir}")
                train, val = split_by_hash(train, train_dir, max(self.hparams.val_fraction, 1e-9), seed)
            return train, val
        files = _scan(self.root, IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(no_images)
        if len(files) == 1:
            rank_zero_warn(f"only one image under {self.root}: it is used for training and validation")
            return files, files
        return split_by_hash(files, self.root, self.hparams.val_fraction, seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_files, self.val_files = self._find_files()
        hp = self.hparams
        self.train_set = ImageCrops(
            self.train_files, self.crop_size, train=True, length=hp.samples_per_epoch, min_scale=hp.min_scale,
            cache_bytes=hp.cache_mb * 2**20,
        )
        self.val_set = ImageCrops(self.val_files, self.crop_size, train=False, val_crops=hp.val_crops,
                                  cache_bytes=hp.cache_mb * 2**20)

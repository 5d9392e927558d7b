"""Desktop wallpapers from Debian packages, for the image corpus: which files, named and credited how.

Five packages ship large colour wallpapers: ``gnome-backgrounds``, ``plasma-workspace-wallpapers``,
``ukui-wallpapers``, ``lomiri-wallpapers-20.04`` and ``sway-backgrounds`` (fetched with
``apt-get download`` and extracted, never installed). :func:`wallpapers` picks the files
worth keeping from an extracted package and says, for each, its corpus name, its group
(the files of one design share a split), whether it is a photograph, and its credit:

* raster files only (``.jpg``, ``.png``, ``.webp``): SVG and the XML/JSON/desktop
  descriptions are not images; symbolic links are skipped (Plasma links its small
  sizes to the large one, and a link could lead out of the extracted tree);
* one size per design: a Plasma wallpaper ships ``contents/images/<W>x<H>.*`` (and
  ``contents/images_dark/``, a dark variant) in several sizes, sway its logo in
  several ``_<W>x<H>[_Portrait]`` sizes; the largest (by pixels) is kept;
* light/dark (``-l``/``-d``, ``-day``/``-night``, ``images_dark``) variants of one
  design form one group, so they are held out together;
* designs whose shorter side is under :data:`MIN_WALLPAPER_SIDE` are placeholders
  (e.g. GNOME's 256-px flat ``vnc``) and are skipped;
* only the files named in :data:`WALLPAPER_PHOTOS` (by eye: most wallpapers are
  renders and drawings) are photographs, the rest artwork, never held out.

Credits come from each Plasma wallpaper's ``metadata.json`` / ``metadata.desktop``
(author, licence), the DEP-5 copyright files of the other packages, and GNOME's
``AUTHORS`` (its copyright file is not machine-readable).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from codecgen.datamodules.corpora.common import Package, copyright_for

RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
VECTOR_SUFFIXES = (".svg", ".svgz")
MIN_WALLPAPER_SIDE = 512
# (corpus prefix, Debian package)
WALLPAPER_PACKAGES = (
    ("gnome", "gnome-backgrounds"),
    ("plasma", "plasma-workspace-wallpapers"),
    ("ukui", "ukui-wallpapers"),
    ("lomiri", "lomiri-wallpapers-20.04"),
    ("sway", "sway-backgrounds"),
)
# A wallpaper's path in its upstream source tree, which the DEP-5 ``Files:`` globs name
# (Plasma wallpapers credit themselves; GNOME's file is not DEP-5).
COPYRIGHT_SUBJECT = {"plasma": "{name}", "ukui": "{name}", "lomiri": "20.04/{name}", "sway": "assets/{name}"}
# Groups that are photographs (Plasma 5.27's photos by Risto Saukonpää, Maciej Wiklo, Dmitri
# Popov, Ian Hex, Martin Klapetek, Sigi Sagi; Lomiri's nuthatch); every other wallpaper is a
# render, drawing or pattern.
WALLPAPER_PHOTOS = frozenset(
    "plasma_BytheWater plasma_ColdRipple plasma_ColorfulCups plasma_DarkestHour plasma_EveningGlow "
    "plasma_FallenLeaf plasma_Grey plasma_Kite plasma_OneStandsOut plasma_Path plasma_summer_1am "
    "lomiri_Kleiber_by_Lukas_Baubkus".split()
)
# gnome-backgrounds' AUTHORS credits its wallpapers (all by name but licorice and truchet,
# which GNOME 43 ships from the same artist) to Jakub Steiner, CC-BY-SA-3.0.
GNOME_CREDIT = "Jakub Steiner (GNOME; licenses/gnome-backgrounds.AUTHORS)"
GNOME_LICENCE = "CC-BY-SA-3.0"

_SIZE_SUFFIX = re.compile(r"_\d+x\d+(_portrait)?$", re.IGNORECASE)
_VARIANT_SUFFIX = re.compile(r"[-_](l|d|light|dark|day|night)$", re.IGNORECASE)


@dataclass
class Wallpaper:
    """One wallpaper file to convert."""

    path: Path
    name: str  # corpus file stem, e.g. plasma_Flow-dark
    group: str  # e.g. plasma_Flow: the variants of one design
    photo: bool
    credit: str  # "author: licence"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def _pixels(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header; (0, 0) when Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return 0, 0


def _plasma_credit(folder: Path) -> str:
    """"author: licence" from a Plasma wallpaper's metadata.json or metadata.desktop, or ""."""
    if (folder / "metadata.json").is_file():
        try:
            meta = json.loads((folder / "metadata.json").read_text()).get("KPlugin", {})
        except (json.JSONDecodeError, AttributeError):
            return ""
        authors = ", ".join(a.get("Name", "") for a in meta.get("Authors", []) if isinstance(a, dict))
        return f"{authors or 'unknown'}: {meta.get('License', 'see copyright file')}"
    if (folder / "metadata.desktop").is_file():
        fields = dict(
            line.split("=", 1) for line in (folder / "metadata.desktop").read_text().splitlines() if "=" in line
        )
        author, licence = fields.get("X-KDE-PluginInfo-Author"), fields.get("X-KDE-PluginInfo-License")
        return f"{author or 'unknown'}: {licence or 'see copyright file'}"
    return ""


def _designs(prefix: str, root: Path) -> dict[tuple[str, str], list[tuple[Path, str]]]:
    """{(group, name): [(file, credit)]}: every raster file under the package's wallpaper
    folders, keyed by the design (and variant) it shows."""
    designs: dict[tuple[str, str], list[tuple[Path, str]]] = {}
    for base in (root / "usr/share/backgrounds", root / "usr/share/wallpapers"):
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.suffix.lower() not in RASTER_SUFFIXES:
                continue
            parts = path.relative_to(base).parts
            if "contents" in parts:  # Plasma: <Name>/contents/images[_dark]/<W>x<H>.<ext>
                at = parts.index("contents")
                if at + 2 >= len(parts) or not parts[at + 1].startswith("images"):
                    continue  # the screenshot.* previews
                design = parts[at - 1] if at else base.name
                variant = parts[at + 1].removeprefix("images").strip("_-")
                credit = _plasma_credit(base.joinpath(*parts[:at]))
                group = f"{prefix}_{_safe(design)}"
                name = group + (f"-{_safe(variant)}" if variant else "")
            else:
                stem = _SIZE_SUFFIX.sub("", path.stem)
                group = f"{prefix}_{_safe(_VARIANT_SUFFIX.sub('', stem))}"
                name, credit = f"{prefix}_{_safe(stem)}", ""
            designs.setdefault((group, name), []).append((path, credit))
    return designs


def _package_credit(prefix: str, pkg: Package, path: Path) -> str:
    """"holder: licence" of ``path`` from the package's copyright file."""
    if prefix == "gnome":
        return f"{GNOME_CREDIT}: {GNOME_LICENCE}"
    if pkg.copyright_file is None:
        return "unknown: see the package"
    holder, licence = copyright_for(pkg.copyright_file, COPYRIGHT_SUBJECT.get(prefix, "{name}").format(name=path.name))
    return f"{' '.join(holder.split())}: {licence}"


def wallpapers(prefix: str, pkg: Package) -> tuple[list[Wallpaper], list[tuple[str, str]]]:
    """The wallpapers worth keeping from the extracted package ``pkg`` (see the module
    docstring), and (name, why) for the designs skipped."""
    kept: list[Wallpaper] = []
    skipped: list[tuple[str, str]] = []
    vectors = [p for p in pkg.root.rglob("*") if p.suffix.lower() in VECTOR_SUFFIXES and not p.is_symlink()]
    if vectors:
        skipped.append((f"{prefix}: {len(vectors)} SVG files", "vector images, not used"))
    for (group, name), files in sorted(_designs(prefix, pkg.root).items()):
        sized = [(w * h, w, h, path, credit) for path, credit in files for w, h in [_pixels(path)]]
        _, w, h, path, credit = max(sized, key=lambda s: (s[0], s[1], s[3].name))  # ties: landscape
        if min(w, h) < MIN_WALLPAPER_SIDE:
            skipped.append((name, f"too small for a wallpaper ({w}x{h})" if w else "unreadable"))
            continue
        credit = credit or _package_credit(prefix, pkg, path)
        kept.append(Wallpaper(path, name, group, group in WALLPAPER_PHOTOS, credit))
    return kept, skipped

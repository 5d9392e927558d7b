"""Demo-sized slices of the default corpora: the few held-out files ``scripts/demo.py`` uses.

Building the full corpora takes tens of minutes on a small machine; the demo needs three
files of their held-out (``val/``) splits. Each builder here writes those files, with the
same names and the same samples or pixels as the full build, into a folder laid out like
the corpus (``OUT/val/``), using the corpus builders' own functions:

* speech: the first :data:`DEMO_PROMPTS` held-out English asterisk prompts (by name, as the
  demo picks them), decoded from the one Debian package they come from (~11 MB);
* image: ``skimage_astronaut.png``, a held-out photo of the image corpus;
* video: ``zoom_skimage_astronaut.mkv``, the held-out camera zoom over that photo.

Each folder ends with the ``.complete`` marker, so a second run returns at once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import soundfile as sf

from codecgen.datamodules.corpora.common import MARKER, fetch_deb, log, loud
from codecgen.datamodules.corpora.image import write_package_image
from codecgen.datamodules.corpora.speech import (
    ESPEAK_VOICES,
    SR,
    asterisk_package,
    asterisk_prompts,
    decode_prompt,
    espeak_item,
    real_val_per_package,
)
from codecgen.datamodules.corpora.video import DEMO_PHOTO, write_photo_clip

DEMO_PROMPTS = 12  # scripts/demo.py takes the longest of the first 12 held-out real prompts
DEMO_LANG = "en"  # sorted by name, the held-out real prompts begin with the English ones
DEMO_CLIP_KIND = "zoom"


def _done(out: Path) -> bool:
    """True when ``out`` holds a finished build; else False, with ``out/val`` emptied for one."""
    if (out / MARKER).exists():
        return True
    shutil.rmtree(out / "val", ignore_errors=True)
    (out / "val").mkdir(parents=True)
    return False


def build_demo_speech(out: str | Path, cache: str | Path) -> Path:
    """The held-out prompts the demo picks from, into ``out/val/``; ``cache`` holds the .deb
    (pass the full corpus's, ``data/.cache/debs``, so ``make corpus`` downloads it once).

    When the package cannot be fetched, one espeak-ng utterance stands in, with a loud warning.
    """
    out = Path(out)
    if _done(out):
        return out
    try:
        pkg = fetch_deb(asterisk_package(DEMO_LANG), Path(cache))
    except RuntimeError as err:
        loud(f"could not get {asterisk_package(DEMO_LANG)} ({err}): the audio demo uses an espeak-ng "
             "utterance instead of a real recording")
        voice, x = espeak_item(0, ESPEAK_VOICES)
        sf.write(out / "val" / f"{voice}_espeak_0000.wav", x, SR, subtype="PCM_16")
    else:
        # the full build's split: min_val as when every prompt package is there
        _, prompts = asterisk_prompts(DEMO_LANG, pkg, real_val_per_package())
        held_out = sorted((name, src) for src, split, name in prompts if split == "val")[:DEMO_PROMPTS]
        for name, src in held_out:
            if decode_prompt(src, out / "val" / name) <= 0:
                (out / "val" / name).unlink()
        if pkg.copyright_file is not None:
            (out / "licenses").mkdir(exist_ok=True)
            shutil.copy(pkg.copyright_file, out / "licenses" / f"{pkg.name}.copyright")
    (out / MARKER).write_text("demo\n")
    log(f"demo speech: {len(list((out / 'val').glob('*.wav')))} held-out utterances in {out / 'val'}")
    return out


def build_demo_image(out: str | Path) -> Path:
    """The image corpus's held-out ``skimage_astronaut.png``, into ``out/val/``."""
    out = Path(out)
    if _done(out):
        return out
    write_package_image(DEMO_PHOTO, out / "val" / f"{DEMO_PHOTO}.png")
    (out / MARKER).write_text("demo\n")
    return out


def build_demo_video(out: str | Path, images: str | Path) -> Path:
    """The video corpus's held-out zoom over ``images/val/skimage_astronaut.png``, into ``out/val/``."""
    out, photo = Path(out), Path(images) / "val" / f"{DEMO_PHOTO}.png"
    if _done(out):
        return out
    if not photo.is_file():
        raise FileNotFoundError(f"{photo} is missing: build the demo image first (build_demo_image)")
    write_photo_clip(photo, DEMO_CLIP_KIND, out / "val" / f"{DEMO_CLIP_KIND}_{DEMO_PHOTO}.mkv")
    (out / MARKER).write_text("demo\n")
    return out

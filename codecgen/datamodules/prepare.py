"""Offline builders of the default corpora (nothing is downloaded at training time).

``python -m codecgen.datamodules.prepare speech --out data/speech [--minutes 40] [--force]``
``python -m codecgen.datamodules.prepare image --out data/images [--val-fraction 0.1] [--force]``
``python -m codecgen.datamodules.prepare video --out data/video [--size 256] [--frames 100] [--force]``

The command line only: each corpus and its builder live in ``codecgen.datamodules.corpora``
(``speech``, ``image``, ``video``; see ../shared/DATA.md). A build ends with
``OUT/.complete``, so a second run returns at once unless ``--force`` is given.
"""

from __future__ import annotations

import argparse

from codecgen.datamodules.corpora.common import OPENCV_DATA
from codecgen.datamodules.corpora.image import IMAGE_VAL_FRACTION, build_images
from codecgen.datamodules.corpora.speech import build_speech
from codecgen.datamodules.corpora.video import VIDEO_FRAMES, VIDEO_SIZE, build_video


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m codecgen.datamodules.prepare", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="corpus", required=True)
    sp = sub.add_parser("speech", help="default speech corpus (asterisk prompts of six speakers + espeak-ng)")
    sp.add_argument("--out", default="data/speech", help="output folder (default data/speech)")
    sp.add_argument("--minutes", type=float, default=40.0, help="minimum total minutes; espeak tops up (default 40)")
    sp.add_argument("--espeak-minutes", type=float, default=10.0, help="minimum synthetic minutes (default 10)")
    sp.add_argument("--cache", default=None, help="where .deb files go (default OUT/../.cache/debs)")
    sp.add_argument("--workers", type=int, default=None, help="parallel ffmpeg/espeak processes")
    sp.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    ip = sub.add_parser("image", help="default image corpus (scikit-image, scikit-learn, PyWavelets, opencv-doc, "
                                      "wallpaper packages)")
    ip.add_argument("--out", default="data/images", help="output folder (default data/images)")
    ip.add_argument("--val-fraction", type=float, default=IMAGE_VAL_FRACTION, help="share held out (default 0.1)")
    ip.add_argument("--max-images", type=int, default=None, help="use only this many source images (quick tests)")
    ip.add_argument("--opencv-dir", default=str(OPENCV_DATA), help=f"opencv-doc sample data (default {OPENCV_DATA})")
    ip.add_argument("--cache", default=None, help="where wallpaper .deb files go (default OUT/../.cache/debs)")
    ip.add_argument("--workers", type=int, default=None, help="parallel decoders/encoders")
    ip.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    vp = sub.add_parser("video", help="default video corpus (camera moves over photos, ffmpeg sources, real clips)")
    vp.add_argument("--out", default="data/video", help="output folder (default data/video)")
    vp.add_argument("--size", type=int, default=VIDEO_SIZE, help=f"square frame side (default {VIDEO_SIZE})")
    vp.add_argument("--frames", type=int, default=VIDEO_FRAMES, help=f"frames per clip (default {VIDEO_FRAMES})")
    vp.add_argument("--max-clips", type=int, default=None, help="build only this many clips (quick tests)")
    vp.add_argument("--images", default="data/images", help="image corpus to move over (built if missing)")
    vp.add_argument("--opencv-dir", default=str(OPENCV_DATA), help=f"opencv-doc sample data (default {OPENCV_DATA})")
    vp.add_argument("--workers", type=int, default=None, help="clips built in parallel")
    vp.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.corpus == "speech":
        build_speech(args.out, minutes=args.minutes, force=args.force, espeak_minutes=args.espeak_minutes,
                     cache=args.cache, workers=args.workers)
    elif args.corpus == "image":
        build_images(args.out, force=args.force, val_fraction=args.val_fraction, max_images=args.max_images,
                     opencv_dir=args.opencv_dir, workers=args.workers, cache=args.cache)
    else:
        build_video(args.out, force=args.force, size=args.size, frames=args.frames, max_clips=args.max_clips,
                    images=args.images, opencv_dir=args.opencv_dir, workers=args.workers)


if __name__ == "__main__":
    main()

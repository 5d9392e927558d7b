"""Offline builders of the default corpora (nothing is downloaded at training time).

``python -m codecgen.datamodules.prepare speech --out data/speech [--minutes 40] [--force]``
``python -m codecgen.datamodules.prepare image --out data/images [--val-fraction 0.1] [--force]``
``python -m codecgen.datamodules.prepare video --out data/video [--size 256] [--frames 100] [--force]``
``python -m codecgen.datamodules.prepare portraits --out data/portraits [--size 128] [--clips 240] [--force]``
``python -m codecgen.datamodules.prepare talking-heads SRC --out data/my_heads [--face-box x0,y0,x1,y1]``
``python -m codecgen.datamodules.prepare captioned-video --out data/captioned_video [--size 64] [--frames 32] [--clips 1600]``

The command line only: each corpus and its builder live in ``codecgen.datamodules.corpora``
(``speech``, ``image``, ``video``, ``portraits``, ``talking_heads``, ``captioned_video``; docs/data.md). A build ends with
``OUT/.complete``, so a second run returns at once unless ``--force`` is given.
"""

from __future__ import annotations

import argparse

from codecgen.datamodules.corpora.captioned_video import (
    CAPTION_CLIPS,
    CAPTION_FRAMES,
    CAPTION_SIZE,
    build_captioned_video,
)
from codecgen.datamodules.corpora.common import OPENCV_DATA
from codecgen.datamodules.corpora.image import IMAGE_VAL_FRACTION, build_images
from codecgen.datamodules.corpora.portraits import PORTRAIT_CLIPS, PORTRAIT_IDENTITIES, PORTRAIT_SIZE, build_portraits
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
    pp = sub.add_parser("portraits", help="talking-portrait clips for Hallo2 (drawn and photo faces, espeak-ng and "
                                          "recorded speech, exact landmarks, masks, visemes, expression labels)")
    pp.add_argument("--out", default="data/portraits", help="output folder (default data/portraits)")
    pp.add_argument("--size", type=int, default=PORTRAIT_SIZE, help=f"square frame side (default {PORTRAIT_SIZE})")
    pp.add_argument("--clips", type=int, default=PORTRAIT_CLIPS, help=f"clips to draw (default {PORTRAIT_CLIPS})")
    pp.add_argument("--identities", type=int, default=PORTRAIT_IDENTITIES,
                    help=f"drawn faces (default {PORTRAIT_IDENTITIES}; photo faces come on top)")
    pp.add_argument("--no-photo-faces", action="store_true", help="drawn faces only")
    pp.add_argument("--no-real-prompts", action="store_true", help="espeak-ng speech only (no package download)")
    pp.add_argument("--images", default="data/images", help="image corpus for backgrounds (default data/images; "
                                                           "scikit-image photos when missing)")
    pp.add_argument("--cache", default=None, help="where .deb files go (default OUT/../.cache/debs)")
    pp.add_argument("--workers", type=int, default=1, help="clips drawn in parallel processes (default 1)")
    pp.add_argument("--seed", type=int, default=0, help="changes every random choice (default 0)")
    pp.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    tp = sub.add_parser("talking-heads", help="your own talking-head videos -> 25 fps face-cropped clips with 16 kHz "
                                              "audio, in the portrait clip layout")
    tp.add_argument("src", help="a video file or a folder of them (mp4, mkv, mov, avi, webm)")
    tp.add_argument("--out", default="data/talking_heads", help="output folder (default data/talking_heads)")
    tp.add_argument("--size", type=int, default=PORTRAIT_SIZE, help=f"square frame side (default {PORTRAIT_SIZE})")
    tp.add_argument("--clip-seconds", type=float, default=10.0, help="clip length (default 10)")
    tp.add_argument("--face-box", default=None, help="x0,y0,x1,y1 of the face in the source frames "
                                                     "(default: found by the LBP face detector)")
    tp.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    cp = sub.add_parser("captioned-video", help="captioned clips for VideoGen (shapes moving over photos and camera "
                                                "moves, with exact captions, optical flow and occlusion)")
    cp.add_argument("--out", default="data/captioned_video", help="output folder (default data/captioned_video)")
    cp.add_argument("--size", type=int, default=CAPTION_SIZE, help=f"square frame side (default {CAPTION_SIZE})")
    cp.add_argument("--frames", type=int, default=CAPTION_FRAMES, help=f"frames per clip (default {CAPTION_FRAMES})")
    cp.add_argument("--clips", type=int, default=CAPTION_CLIPS, help=f"clips to draw (default {CAPTION_CLIPS})")
    cp.add_argument("--images", default="data/images", help="image corpus for the photos (default data/images; "
                                                           "scikit-image photos when missing)")
    cp.add_argument("--workers", type=int, default=None, help="clips drawn in parallel threads")
    cp.add_argument("--seed", type=int, default=0, help="changes every random choice (default 0)")
    cp.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.corpus == "speech":
        build_speech(args.out, minutes=args.minutes, force=args.force, espeak_minutes=args.espeak_minutes,
                     cache=args.cache, workers=args.workers)
    elif args.corpus == "image":
        build_images(args.out, force=args.force, val_fraction=args.val_fraction, max_images=args.max_images,
                     opencv_dir=args.opencv_dir, workers=args.workers, cache=args.cache)
    elif args.corpus == "portraits":
        build_portraits(args.out, size=args.size, clips=args.clips, identities=args.identities,
                        photo_faces=not args.no_photo_faces, real_prompts=not args.no_real_prompts,
                        images=args.images, cache=args.cache, workers=args.workers, seed=args.seed, force=args.force)
    elif args.corpus == "captioned-video":
        build_captioned_video(args.out, size=args.size, frames=args.frames, clips=args.clips, images=args.images,
                              workers=args.workers, seed=args.seed, force=args.force)
    elif args.corpus == "talking-heads":
        from codecgen.datamodules.corpora.talking_heads import import_talking_heads
        from codecgen.datamodules.face_detect import parse_face_box

        box = parse_face_box(args.face_box) if args.face_box else None
        import_talking_heads(args.src, args.out, size=args.size, clip_seconds=args.clip_seconds, face_box=box,
                             force=args.force)
    else:
        build_video(args.out, force=args.force, size=args.size, frames=args.frames, max_clips=args.max_clips,
                    images=args.images, opencv_dir=args.opencv_dir, workers=args.workers)


if __name__ == "__main__":
    main()

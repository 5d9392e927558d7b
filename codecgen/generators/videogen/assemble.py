"""``python -m codecgen.generators.videogen.assemble OUT --text-to-image R1 --keyframes R2 --flow R3
--video-decoder R4 [--stride 4] [--fps 16] [--half] [--overwrite]``: the four trained VideoGen stages (their
checkpoints or exports) -> one exported ``VideoGen`` model for ``infer.py text-to-video``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codecgen.generators.videogen.assemble", description=__doc__)
    parser.add_argument("output", help="folder to write")
    for stage in ("text-to-image", "keyframes", "flow", "video-decoder"):
        parser.add_argument(f"--{stage}", required=True, help=f"the {stage} stage's .ckpt or export")
    parser.add_argument("--stride", type=int, default=4, help="training-clip frames between key frames (default 4)")
    parser.add_argument("--fps", type=float, default=16.0, help="the training clips' frame rate (default 16)")
    parser.add_argument("--half", action="store_true", help="store float32 weights as float16")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    from codecgen.generators.videogen.pipeline import VideoGen

    try:
        model = VideoGen.from_stages(args.text_to_image, args.keyframes, args.flow, args.video_decoder, args.stride,
                                     args.fps)
        model.export(args.output, overwrite=args.overwrite, half=args.half)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.output}: VideoGen, {model.frame_size}-px frames, key frames every {args.stride} frames at "
          f"{args.fps:g} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())

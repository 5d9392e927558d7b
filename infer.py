"""Run trained codecgen models on files (`python infer.py --help` lists the commands).

    python infer.py encode --model hificodec-16k in.wav out.cgc [--n-q 2]
    python infer.py decode --model hificodec-16k out.cgc back.wav
    python infer.py encode --model vqgan-f16 photo.png photo.cgc
    python infer.py encode --model hnerv clip.mp4 clip.cgc --model-size 0.5
    python infer.py decode clip.cgc clip.mkv
    python infer.py info out.cgc
"""

import sys

from codecgen.cli import infer_main

main = infer_main  # tests call infer.main(argv)

if __name__ == "__main__":
    sys.exit(main())

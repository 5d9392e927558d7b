"""Run trained codecgen models on files.

    python infer.py encode --model hificodec-16k in.wav out.cgc [--n-q 2]
    python infer.py decode --model hificodec-16k out.cgc back.wav
    python infer.py info out.cgc
    python infer.py export model.ckpt exported_dir/
"""

import sys

from codecgen.cli import infer_main

main = infer_main  # tests call infer.main(argv)

if __name__ == "__main__":
    sys.exit(main())

"""Entry points: ``train.py`` (Lightning CLI) and ``infer.py`` (files in, files out).

Only this package wires file readers (``codecgen.datamodules``) to codecs, keeping the
library's arrows one-way (DESIGN.md). Layout: ``parser`` (the command line, no heavy
imports), ``files`` (output checks, temp file + rename, progress, folder batches),
``verbs`` (``encode`` / ``decode`` dispatch by modality), one module per modality
(``audio``, ``image``, ``video``), ``generate`` (``upscale`` and ``generate`` with the
diffusion generators), ``models`` (``info``, ``export``, ``fit-prior``) and ``train``.
Every user error is one line on stderr with exit code 2; outputs are written to a
temporary file and renamed into place, so a failure never leaves a partial file and never
touches an existing one unless ``--overwrite`` is given.
"""

from codecgen.cli.files import UserError
from codecgen.cli.parser import build_parser, infer_main

__all__ = ["UserError", "build_parser", "infer_main", "train_main"]


def __getattr__(name: str):
    if name == "train_main":  # imported on use: it pulls in torch and Lightning
        from codecgen.cli.train import train_main

        return train_main
    raise AttributeError(f"module 'codecgen.cli' has no attribute {name!r}")

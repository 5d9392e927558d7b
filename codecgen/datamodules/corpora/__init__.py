"""Offline builders of the default corpora (nothing is downloaded at training time).

One module per corpus, each with its builder (see its docstring for what the corpus is
and where its data comes from): :mod:`.speech` (asterisk prompts + espeak-ng),
:mod:`.image` (packages' sample photographs and desktop wallpapers, the latter chosen and
credited by :mod:`.wallpapers`), :mod:`.video` (camera moves over the image corpus, FFmpeg
test sources, real footage); :mod:`.common` holds what they share. The
command line is ``python -m codecgen.datamodules.prepare <speech|image|video> --out DIR``.
"""

from codecgen.datamodules.corpora.image import build_images
from codecgen.datamodules.corpora.speech import build_speech
from codecgen.datamodules.corpora.video import build_video

__all__ = ["build_images", "build_speech", "build_video"]

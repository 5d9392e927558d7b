"""Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait Image
Animation", 2024; code: fudan-generative-vision/hallo2): one portrait + speech -> a talking-head
video. The stages trained here, each through ``train.py`` (``configs/hallo2/*``):

- ``audio_encoder.PhonemePretraining``: wav2vec 2.0 at the video's frame rate, taught the
  phoneme under each frame (in place of the authors' pre-trained wav2vec2-base);
- ``identity.IdentityPretraining``: a face embedder with ArcFace's loss (in place of ArcFace);
- ``codecgen.frame_vae.FrameVAE``: the latent space (in place of Stable Diffusion's VAE);
- ``face_probe.FaceProbe``: the benchmark's referee (mouth opening and expression of a face).
"""

from codecgen.generators.hallo2.audio_encoder import PhonemePretraining
from codecgen.generators.hallo2.face_probe import FaceProbe
from codecgen.frame_vae import FrameVAE
from codecgen.generators.hallo2.identity import IdentityPretraining

__all__ = ["FaceProbe", "FrameVAE", "IdentityPretraining", "PhonemePretraining"]

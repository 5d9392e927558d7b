"""Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait Image
Animation", 2024; code: fudan-generative-vision/hallo2): one portrait + speech -> a talking-head
video. Stages trained here: the audio encoder (``audio_encoder``), ..."""

from codecgen.generators.hallo2.audio_encoder import PhonemePretraining

__all__ = ["PhonemePretraining"]

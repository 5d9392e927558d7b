"""Arbitrary-scale image generation and upsampling with a latent diffusion model and an
implicit neural decoder (Kim & Kim, CVPR 2024; code: zhenshij/arbitrary-scale-diffusion)."""

"""Latent generators: models that sample images (or upsample them) in a learned latent space."""

"""codecgen: neural codecs and latent generators sharing one set of parts."""

__version__ = "0.1.0"


def load(path, map_location="cpu"):
    """Load a trained model (eval mode) from a ``.ckpt``, an exported folder, or a shipped name."""
    from codecgen.hub import load as _load

    return _load(path, map_location=map_location)

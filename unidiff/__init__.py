"""unidiff: one masked discrete-diffusion transformer for text, images and robot actions."""
from __future__ import annotations

__version__ = "0.1.0"
BUNDLE_FORMAT_VERSION = 1


def load(path, *, device: str = "cpu"):
    """Load a checkpoint bundle directory (model, config, tokenizers, metrics). Never unpickles."""
    from unidiff.bundle import load_bundle

    return load_bundle(path, device=device)


def shipped_bundle_path():
    """Directory of the tabletop bundle installed with the package (``unidiff.load`` it)."""
    from unidiff.bundle import shipped_bundle_path

    return shipped_bundle_path()

"""unidiff: one masked discrete-diffusion transformer for text, images and robot actions."""
from __future__ import annotations

__version__ = "0.1.0"
BUNDLE_FORMAT_VERSION = 1


def load(path, *, device: str = "cpu"):
    """Load a checkpoint bundle directory (model, config, tokenizers, metrics). Never unpickles."""
    from unidiff.bundle import load_bundle

    return load_bundle(path, device=device)

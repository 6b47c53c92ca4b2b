"""Tasks: thin layers that build a canvas, call the one decoder and detokenize."""
from unidiff.tasks.caption import caption
from unidiff.tasks.codec import Codec
from unidiff.tasks.imagegen import generate
from unidiff.tasks.policy import DiffusionPolicy

__all__ = ["Codec", "DiffusionPolicy", "caption", "generate"]

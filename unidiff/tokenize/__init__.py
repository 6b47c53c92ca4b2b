"""Tokenizers for text (byte-level BPE), images (VQ-VAE) and actions/state (bins), one interface.

Heavy modules (diffusers) load lazily: importing this package only pulls the interface.
"""
from unidiff.tokenize.base import Tokenizer, joint_vocab, load_tokenizers, save_tokenizers

__all__ = ["Tokenizer", "joint_vocab", "load_tokenizers", "save_tokenizers"]

"""Text tokenizer: a byte-level BPE (``tokenizers`` library) whose special tokens are the joint
vocabulary's, at the joint ids — so a text id *is* a joint id.  Byte-level pre-tokenisation
means any string encodes (no unknown tokens) and ASCII text round-trips exactly."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from unidiff.tokenize.base import Tokenizer
from unidiff.vocab import EOS_ID, NUM_SPECIALS, PAD_ID, SPECIALS


class TextTokenizer(Tokenizer):
    """``encode(str) -> list[int]`` (no specials added); ``decode`` stops at ``[EOS]``, skips
    ``[PAD]``.  ``vocab_size`` counts content tokens only (``Vocab.text``)."""

    modality = "text"

    def __init__(self, hf: HFTokenizer) -> None:
        for i, tok in enumerate(SPECIALS):
            if hf.token_to_id(tok) != i:
                raise ValueError(f"text tokenizer must hold special {tok} at id {i}, has {hf.token_to_id(tok)}")
        hf.encode_special_tokens = True  # "[EOS]" typed by a user is text, not the special
        self.hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 512) -> "TextTokenizer":
        """Train on ``texts``; ``vocab_size`` is the full BPE size including the specials and the
        256 byte symbols (so at least ``NUM_SPECIALS + 256``)."""
        if vocab_size < NUM_SPECIALS + 256:
            raise ValueError(f"vocab_size must be >= {NUM_SPECIALS + 256} (specials + 256 bytes), got {vocab_size}")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIALS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(list(texts), trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size() - NUM_SPECIALS

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if any(i < 0 or i >= self.hf.get_vocab_size() for i in ids):
            raise ValueError(f"text ids must lie in [0, {self.hf.get_vocab_size()}); got {min(ids)}..{max(ids)}")
        if EOS_ID in ids:
            ids = ids[: ids.index(EOS_ID)]
        return self.hf.decode([i for i in ids if i != PAD_ID], skip_special_tokens=True)

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(directory / "tokenizer.json"))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TextTokenizer":
        return cls(HFTokenizer.from_file(str(Path(directory) / "tokenizer.json")))

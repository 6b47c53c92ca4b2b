"""The one tokenizer interface, and how a bundle stores several of them.

Every modality's tokenizer has ``modality``, ``vocab_size``, ``encode``, ``decode``,
``save(directory)`` and ``load(directory)``.  A bundle keeps them side by side::

    tokenizers/
      tokenizers.json      {"format": 1, "tokenizers": {modality: {"class": name, "path": modality}}}
      text/tokenizer.json  byte-level BPE (ids are joint ids)
      image/vq.json, image/vq.safetensors
      action/bins.json, action/bins.safetensors   (and state/ likewise)

Classes are looked up in a fixed registry by name, never imported from a path found in a file,
and nothing is pickled: JSON plus safetensors only.
"""
from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unidiff.files import atomic_dir

if TYPE_CHECKING:
    from unidiff.vocab import Vocab

INDEX = "tokenizers.json"
FORMAT = 1

# class name written in the index -> "module:attribute".  Only these can be loaded.
REGISTRY: dict[str, str] = {
    "TextTokenizer": "unidiff.tokenize.text:TextTokenizer",
    "ImageTokenizer": "unidiff.tokenize.image:ImageTokenizer",
    "BinTokenizer": "unidiff.tokenize.bins:BinTokenizer",
    "DCTTokenizer": "unidiff.tokenize.dct:DCTTokenizer",
}


class Tokenizer(ABC):
    """Maps one modality's values to integer ids ``0..vocab_size-1`` and back.

    Text ids are joint ids (the BPE holds the joint specials at ids ``0..NUM_SPECIALS-1``);
    the other modalities return local ids that :meth:`unidiff.vocab.Vocab.to_joint` offsets.
    """

    modality: str

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of content ids this tokenizer contributes to the joint vocabulary."""

    @abstractmethod
    def encode(self, value: Any) -> Any: ...

    @abstractmethod
    def decode(self, ids: Any) -> Any: ...

    @abstractmethod
    def save(self, directory: str | os.PathLike) -> None:
        """Write this tokenizer's files into ``directory`` (created if needed)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer": ...


def joint_vocab(tokenizers: dict[str, Tokenizer]) -> Vocab:
    """The joint vocabulary these tokenizers span: each registers its ``vocab_size`` as its
    modality's range (text ids already sit after the specials, see :mod:`unidiff.vocab`)."""
    from unidiff.vocab import MODALITIES, Vocab

    missing = [m for m in MODALITIES if m not in tokenizers]
    if missing:
        raise ValueError(f"a joint vocabulary needs a tokenizer for every modality {MODALITIES}; missing {missing}")
    return Vocab(**{m: tokenizers[m].vocab_size for m in MODALITIES})


def _resolve(name: str) -> type[Tokenizer]:
    if name not in REGISTRY:
        raise ValueError(f"unknown tokenizer class {name!r}; expected one of {sorted(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attr)


def save_tokenizers(directory: str | os.PathLike, tokenizers: dict[str, Tokenizer]) -> Path:
    """Write every tokenizer (one sub-directory per modality) plus the JSON index, atomically:
    into a temporary sibling first, then renamed into place."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        index = {}
        for modality, tok in tokenizers.items():
            name = type(tok).__name__
            if name not in REGISTRY:
                raise ValueError(f"{name} is not a registered tokenizer class ({sorted(REGISTRY)})")
            if tok.modality != modality:
                raise ValueError(f"tokenizer for {modality!r} reports modality {tok.modality!r}")
            tok.save(tmp / modality)
            index[modality] = {"class": name, "path": modality, "vocab_size": tok.vocab_size}
        (tmp / INDEX).write_text(json.dumps({"format": FORMAT, "tokenizers": index}, indent=2) + "\n")
    return directory


def load_tokenizers(directory: str | os.PathLike) -> dict[str, Tokenizer]:
    """Read back what :func:`save_tokenizers` wrote: ``{modality: tokenizer}``."""
    directory = Path(directory)
    path = directory / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"no {INDEX} in {directory}: expected a directory written by save_tokenizers")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: tokenizer index format {index.get('format')!r}, expected {FORMAT}")
    out = {}
    for modality, entry in index["tokenizers"].items():
        sub = (directory / entry["path"]).resolve()
        if directory.resolve() not in sub.parents:
            raise ValueError(f"{path}: tokenizer path {entry['path']!r} escapes the bundle")
        out[modality] = _resolve(entry["class"]).load(sub)
    return out

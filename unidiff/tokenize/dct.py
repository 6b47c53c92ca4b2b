"""FAST-style action-chunk tokenizer: an orthonormal DCT along time compresses a chunk of ``H``
steps into its ``n_keep`` lowest-frequency coefficients per dimension, which are then binned
per (coefficient, dimension) with a :class:`BinTokenizer`.  Smooth chunks need few coefficients,
so a chunk costs ``n_keep x D`` tokens instead of ``H x D``.  (FAST additionally BPE-compresses
the coefficient stream; a fixed token count suits the canvas better.)"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from unidiff.tokenize.base import Tokenizer
from unidiff.tokenize.bins import BinTokenizer, as_finite_array


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (n, n): ``coeffs = M @ x``, ``x = M.T @ coeffs``."""
    k, t = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(np.pi * (t + 0.5) * k / n) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


class DCTTokenizer(Tokenizer):
    """``encode(float (..., H, D)) -> int64 (..., n_keep, D)``; ``decode`` back to (..., H, D)."""

    def __init__(self, horizon: int, n_keep: int, modality: str = "action", n_bins: int = 256,
                 low_q: float = 0.01, high_q: float = 0.99) -> None:
        if not 1 <= n_keep <= horizon:
            raise ValueError(f"n_keep must lie in [1, horizon={horizon}], got {n_keep}")
        self.horizon, self.n_keep, self.modality = horizon, n_keep, modality
        self.bins = BinTokenizer(modality, n_bins, low_q, high_q)
        self._m = dct_matrix(horizon)

    @property
    def vocab_size(self) -> int:
        return self.bins.n_bins

    def _coeffs(self, chunks) -> np.ndarray:
        x = as_finite_array(chunks, None, f"{self.modality} chunks")
        if x.ndim < 2 or x.shape[-2] != self.horizon:
            raise ValueError(f"expected {self.modality} chunks of shape (..., {self.horizon}, D), got {x.shape}")
        c = np.einsum("kt,...td->...kd", self._m[: self.n_keep], x)
        return c.reshape(*c.shape[:-2], self.n_keep * c.shape[-1])  # one bin range per (k, d)

    def fit(self, chunks) -> "DCTTokenizer":
        c = self._coeffs(chunks)
        self.bins.fit(c.reshape(-1, c.shape[-1]))
        return self

    def encode(self, chunks) -> torch.Tensor:
        ids = self.bins.encode(self._coeffs(chunks))
        return ids.reshape(*ids.shape[:-1], self.n_keep, -1)

    def decode(self, ids) -> torch.Tensor:
        ids = torch.as_tensor(ids)
        if ids.ndim < 2 or ids.shape[-2] != self.n_keep:
            raise ValueError(f"expected {self.modality} ids of shape (..., {self.n_keep}, D), got {tuple(ids.shape)}")
        c = self.bins.decode(ids.reshape(*ids.shape[:-2], -1)).numpy().astype(np.float64)
        c = c.reshape(*ids.shape)
        x = np.einsum("kt,...kd->...td", self._m[: self.n_keep], c)
        return torch.from_numpy(x.astype(np.float32))

    def metrics(self, chunks) -> dict:
        x = as_finite_array(chunks, None, f"{self.modality} chunks")
        err = np.abs(self.decode(self.encode(x)).numpy() - x)
        p = f"tokenizer.{self.modality}.dct"
        return {f"{p}.max_abs_error": float(err.max()), f"{p}.mean_abs_error": float(err.mean()),
                f"{p}.tokens_per_chunk_step": self.n_keep / self.horizon}

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        self.bins.save(directory)
        (directory / "dct.json").write_text(json.dumps({"horizon": self.horizon, "n_keep": self.n_keep}) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "DCTTokenizer":
        directory = Path(directory)
        bins = BinTokenizer.load(directory)
        tok = cls(**json.loads((directory / "dct.json").read_text()), modality=bins.modality, n_bins=bins.n_bins,
                  low_q=bins.low_q, high_q=bins.high_q)
        tok.bins = bins
        return tok

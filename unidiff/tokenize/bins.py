"""Action and state tokenizer: each dimension is cut into ``n_bins`` equal-width bins between
low/high quantiles of the data (1st-99th percentile by default; values outside are clipped), so
outliers do not waste bins.  Decoding returns bin centres.  Edges live in safetensors + JSON."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from unidiff.tokenize.base import Tokenizer


def as_finite_array(values, width: int | None, what: str) -> np.ndarray:
    """float64 array (..., D); a clear error for NaN/inf or a wrong last dimension."""
    x = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"expected numeric {what} of shape (..., {width or 'D'}), got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim < 1 or (width is not None and x.shape[-1] != width):
        raise ValueError(f"expected {what} of shape (..., {width or 'D'}), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite values ({int((~np.isfinite(x)).sum())} entries); expected finite floats")
    return x


class BinTokenizer(Tokenizer):
    """Per-dimension uniform bins between data quantiles.

    ``encode(float (..., D)) -> int64 (..., D)`` local ids ``0..n_bins-1``;
    ``encode_chunks(float (T, D), horizon) -> int64 (T-H+1, H, D)`` windows of H steps;
    ``decode(ids) -> float32 (..., D)`` bin centres.
    """

    def __init__(self, modality: str = "action", n_bins: int = 256, low_q: float = 0.01, high_q: float = 0.99) -> None:
        if modality not in ("action", "state"):
            raise ValueError(f"modality must be 'action' or 'state', got {modality!r}")
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        if not 0.0 <= low_q < high_q <= 1.0:
            raise ValueError(f"quantiles must satisfy 0 <= low_q < high_q <= 1, got {low_q}, {high_q}")
        self.modality, self.n_bins, self.low_q, self.high_q = modality, n_bins, low_q, high_q
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None

    @property
    def vocab_size(self) -> int:
        return self.n_bins

    @property
    def dim(self) -> int:
        self._require_fit()
        return len(self.low)

    def _require_fit(self) -> None:
        if self.low is None:
            raise RuntimeError(f"{self.modality} tokenizer is not fitted: call fit(data) or load(directory) first")

    def fit(self, data) -> "BinTokenizer":
        """Edges from the ``low_q``/``high_q`` quantiles of ``data`` (N, D), per dimension."""
        x = as_finite_array(data, None, f"{self.modality} data")
        x = x.reshape(-1, x.shape[-1])
        low, high = np.quantile(x, self.low_q, axis=0), np.quantile(x, self.high_q, axis=0)
        flat = high - low < 1e-8  # a constant dimension still gets a valid (tiny) range
        self.low, self.high = np.where(flat, low - 1e-4, low), np.where(flat, high + 1e-4, high)
        return self

    @property
    def width(self) -> np.ndarray:
        return (self.high - self.low) / self.n_bins

    def encode(self, values) -> torch.Tensor:
        self._require_fit()
        x = as_finite_array(values, self.dim, f"{self.modality} values")
        ids = np.floor((x - self.low) / self.width)
        return torch.from_numpy(np.clip(ids, 0, self.n_bins - 1).astype(np.int64))

    def encode_chunks(self, values, horizon: int) -> torch.Tensor:
        """All windows of ``horizon`` consecutive steps of a trajectory (T, D) -> (T-H+1, H, D)."""
        ids = self.encode(values)
        if ids.ndim != 2 or ids.shape[0] < horizon:
            raise ValueError(f"expected a trajectory of shape (T >= {horizon}, {self.dim}), got {tuple(ids.shape)}")
        return ids.unfold(0, horizon, 1).permute(0, 2, 1).contiguous()

    def decode(self, ids) -> torch.Tensor:
        self._require_fit()
        ids = torch.as_tensor(ids)
        if ids.dtype.is_floating_point or ids.ndim < 1 or ids.shape[-1] != self.dim:
            raise ValueError(f"expected integer {self.modality} ids of shape (..., {self.dim}), got {ids.dtype} {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_bins):
            raise ValueError(f"{self.modality} ids must lie in [0, {self.n_bins}); got [{int(ids.min())}, {int(ids.max())}]")
        centres = self.low + (ids.cpu().numpy().astype(np.float64) + 0.5) * self.width
        return torch.from_numpy(centres.astype(np.float32))

    def metrics(self, data) -> dict:
        """Round-trip error in data units over in-range values (clipped ones excluded)."""
        x = as_finite_array(data, self.dim, f"{self.modality} data")
        err = np.abs(self.decode(self.encode(x)).numpy() - x)
        inside = (x >= self.low) & (x <= self.high)
        err = err[inside]
        return {
            f"tokenizer.{self.modality}.max_abs_error": float(err.max()) if err.size else 0.0,
            f"tokenizer.{self.modality}.mean_abs_error": float(err.mean()) if err.size else 0.0,
            f"tokenizer.{self.modality}.in_range_fraction": float(inside.mean()),
        }

    def save(self, directory: str | os.PathLike) -> None:
        self._require_fit()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"modality": self.modality, "n_bins": self.n_bins, "low_q": self.low_q, "high_q": self.high_q}
        (directory / "bins.json").write_text(json.dumps(meta, indent=2) + "\n")
        save_file({"low": torch.from_numpy(self.low), "high": torch.from_numpy(self.high)}, directory / "bins.safetensors")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "BinTokenizer":
        directory = Path(directory)
        tok = cls(**json.loads((directory / "bins.json").read_text()))
        edges = load_file(directory / "bins.safetensors")
        tok.low, tok.high = edges["low"].numpy(), edges["high"].numpy()
        return tok

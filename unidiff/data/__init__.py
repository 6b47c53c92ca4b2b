"""unidiff.data: episode datasets on disk (format, verify), collection, and torch datasets.

Exports are resolved lazily so that collection worker processes do not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "EpisodeWindowDataset": "unidiff.data.datasets",
    "EpisodeSceneDataset": "unidiff.data.datasets",
    "SceneDataset": "unidiff.data.datasets",
    "episode_window": "unidiff.data.datasets",
    "read_manifest": "unidiff.data.episodes",
    "read_episode": "unidiff.data.episodes",
    "verify": "unidiff.data.episodes",
    "CorruptDatasetError": "unidiff.data.episodes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'unidiff.data' has no attribute {name!r}")

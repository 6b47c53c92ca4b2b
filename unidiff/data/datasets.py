"""PyTorch datasets: training windows from collected episodes, and scene samples.

Both return plain dicts of numpy arrays and strings; tokenisation happens downstream.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from unidiff.data.episodes import read_episode, read_manifest


class EpisodeWindowDataset(Dataset):
    """(observation at step k, the next `horizon` expert actions) for every step k of every episode.

    Item: {"image": uint8 (H,W,3), "state": float32 (D_s,), "instruction": str,
    "actions": float32 (horizon, D_a), "caption": str (the scene at step k)}.  Past the end of
    an episode the action chunk is padded by repeating the episode's last action.  Files are
    checked against the manifest checksum when first loaded; a damaged file raises an error
    naming it.
    """

    def __init__(self, root, horizon: int, cache_episodes: int = 8):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.root, self.horizon = Path(root), int(horizon)
        self.manifest = read_manifest(self.root)
        self.records = self.manifest["episodes"]
        self.index = [(e, k) for e, rec in enumerate(self.records) for k in range(rec["length"])]
        self._load = functools.lru_cache(maxsize=cache_episodes)(self._load_uncached)

    def __getstate__(self) -> dict:  # picklable for spawn DataLoader workers (cache not carried)
        state = dict(self.__dict__)
        state["_load"] = state["_load"].cache_info().maxsize
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._load = functools.lru_cache(maxsize=state["_load"])(self._load_uncached)

    def _load_uncached(self, e: int) -> dict:
        rec = self.records[e]
        return read_episode(self.root / rec["file"], rec["sha256"])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, k = self.index[i]
        return episode_window(self._load(e), k, self.horizon)


def episode_window(ep: dict, k: int, horizon: int) -> dict:
    """The training window at step ``k`` of one episode, as :class:`EpisodeWindowDataset` yields it.

    ``ep`` is an episode dict as ``read_episode`` (from disk) or ``unidiff_envs.rollout.run_episode``
    (in memory) returns it; the action chunk past the episode's end repeats its last action."""
    acts = ep["actions"]
    idx = np.minimum(np.arange(k, k + horizon), len(acts) - 1)
    return {"image": ep["frames"][k], "state": ep["state"][k], "instruction": ep["meta"]["instruction"],
            "actions": acts[idx].astype(np.float32), "caption": ep["captions"][k]}


def _sample_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class SceneDataset(Dataset):
    """`n` tabletop scenes rendered on the fly, deterministic per (seed, index).

    Item: {"image": uint8 (size,size,3), "caption": str, "description": dict}.  Rendering
    costs about a millisecond, so no storage is needed.  EGL does not survive `fork`: with
    DataLoader workers either use multiprocessing_context="spawn", or pass `cache=True`, which
    renders every item once here (about 12 KB each at 64x64) so forked workers only read memory.
    """

    def __init__(self, n: int, seed: int, size: int = 64, cache: bool = False):
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        self.n, self.seed, self.size = int(n), int(seed), int(size)
        self._items = [self._make(i) for i in range(self.n)] if cache else None

    def _make(self, i: int) -> dict:
        from unidiff_envs.tabletop import scene_sample

        return scene_sample(_sample_seed(self.seed, i), self.size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self._items[i] if self._items is not None else self._make(i)


class EpisodeSceneDataset(Dataset):
    """Scene samples (frame, caption of that frame's scene) read from a collected dataset."""

    def __init__(self, root, every: int = 1):
        self.windows = EpisodeWindowDataset(root, horizon=1)
        self.every = max(1, int(every))

    def __len__(self) -> int:
        return (len(self.windows) + self.every - 1) // self.every

    def __getitem__(self, i: int) -> dict:
        w = self.windows[i * self.every]
        return {"image": w["image"], "caption": w["caption"]}

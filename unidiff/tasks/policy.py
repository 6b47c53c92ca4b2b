"""Policy: instruction, image and state given, an action chunk target.

LeRobot-style interface: ``select_action`` pops from an action-chunk queue and re-plans (one
decode of the chunk) when it is empty.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

from unidiff.tasks.codec import complete


def action_steps(model, n_action_steps: int | None, name: str = "n_action_steps") -> int:
    """Actions executed from each chunk before re-planning: ``None`` means the whole chunk (H);
    anything outside [1, H] is refused (``name``: how the caller spells the option)."""
    horizon = model.spec.segment("action").rows
    if n_action_steps is None:
        return horizon
    if not 1 <= n_action_steps <= horizon:
        raise ValueError(f"{name} must be in [1, {horizon}] (this bundle's action chunk), got {n_action_steps}")
    return n_action_steps


class DiffusionPolicy:
    """Args:
        model: a loaded bundle (``unidiff.load``).
        n_action_steps: actions executed from each chunk before re-planning (default: all H).
        steps, seed, decode_kw: decoder settings (``steps`` None: the bundle's for actions); chunk
            ``i`` of an episode uses ``seed + i``.  With ``compile=True`` the policy decodes a
            chunk for a blank observation when it is built: compiled decoding compiles on its
            first call (seconds, once per process), which belongs before a controller starts,
            not in its first step's latency.
    """

    def __init__(self, model, *, n_action_steps: int | None = None, steps: int | None = None, seed: int = 0, **decode_kw) -> None:
        self.n_action_steps = action_steps(model, n_action_steps)
        self.model = model
        self.steps, self.seed, self.decode_kw = steps, seed, decode_kw
        self.action_dim = model.spec.segment("action").cols
        self.reset()
        if decode_kw.get("compile", False):
            self._plan(self._blank_observation())
            self.reset()

    def _blank_observation(self) -> dict:
        """An observation of the shapes the bundle reads (a black image, zero state): every
        prompt of this policy decodes at the same canvas shapes, so it compiles what they need."""
        from unidiff.evaluate import bundle_image_size

        size, spec = bundle_image_size(self.model), self.model.spec
        obs = {"instruction": "warm up", "image": np.zeros((size, size, 3), np.uint8)}
        if "state" in spec.modalities:
            obs["state"] = np.zeros(spec.segment("state").cols, np.float32)
        return obs

    def reset(self) -> None:
        self._queue: deque[np.ndarray] = deque()
        self._chunks, self._nfe, self._seconds = 0, 0, 0.0

    def _plan(self, obs: dict) -> np.ndarray:
        given = {"text": [obs["instruction"]], "image": [obs["image"]]}
        if "state" in self.model.spec.modalities:
            given["state"] = [obs["state"]]
        t0 = time.perf_counter()
        chunk, nfe = complete(self.model, given, "action", steps=self.steps, seed=self.seed + self._chunks, **self.decode_kw)
        self._seconds += time.perf_counter() - t0
        self._chunks += 1
        self._nfe += nfe
        return chunk[0]

    def select_action(self, obs: dict) -> np.ndarray:
        if not self._queue:
            self._queue.extend(self._plan(obs)[: self.n_action_steps])
        return np.asarray(self._queue.popleft(), dtype=np.float32)

    def stats(self) -> dict:
        """Per chunk: NFE and wall ms of tokenize + decode + detokenize (what a controller waits)."""
        n = max(1, self._chunks)
        return {"chunks": self._chunks, "nfe": self._nfe / n, "ms_per_chunk": 1000 * self._seconds / n}

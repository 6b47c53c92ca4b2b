"""Policy: instruction, image and state given, an action chunk target.

LeRobot-style interface: ``select_action`` pops from an action-chunk queue and re-plans (one
decode of the chunk) when it is empty.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

from unidiff.canvas import prompt_canvas
from unidiff.decode import decode
from unidiff.tasks.codec import Codec


class DiffusionPolicy:
    """Args:
        model: a loaded bundle (``unidiff.load``).
        n_action_steps: actions executed from each chunk before re-planning (default: all H).
        steps, seed, decode_kw: decoder settings; chunk ``i`` of an episode uses ``seed + i``.
    """

    def __init__(self, model, *, n_action_steps: int | None = None, steps: int = 4, seed: int = 0, **decode_kw) -> None:
        horizon = model.spec.segment("action").rows
        self.n_action_steps = n_action_steps or horizon
        if not 1 <= self.n_action_steps <= horizon:
            raise ValueError(f"n_action_steps must be in [1, {horizon}] (the action chunk), got {n_action_steps}")
        self.model, self.codec = model, Codec(model.spec, model.tokenizers)
        self.steps, self.seed, self.decode_kw = steps, seed, decode_kw
        self.action_dim = model.spec.segment("action").cols
        self.reset()

    def reset(self) -> None:
        self._queue: deque[np.ndarray] = deque()
        self._chunks, self._nfe, self._seconds = 0, 0, 0.0

    def _plan(self, obs: dict) -> np.ndarray:
        c = self.codec
        given = {
            "text": c.encode("text", [obs["instruction"]])[0],
            "image": c.encode("image", [obs["image"]])[0],
        }
        if "state" in self.model.spec.modalities:
            given["state"] = c.encode("state", [obs["state"]])[0]
        tokens, roles = prompt_canvas(self.model.spec, [given], ("action",))
        dev = next(self.model.net.parameters()).device
        t0 = time.perf_counter()
        out = decode(self.model.net, tokens.to(dev), roles.to(dev), steps=self.steps, seeds=self.seed + self._chunks, **self.decode_kw)
        self._seconds += time.perf_counter() - t0
        self._chunks += 1
        self._nfe += out.nfe
        return c.decode("action", out.tokens[:, self.model.spec.slices["action"]])[0]

    def select_action(self, obs: dict) -> np.ndarray:
        if not self._queue:
            self._queue.extend(self._plan(obs)[: self.n_action_steps])
        return np.asarray(self._queue.popleft(), dtype=np.float32)

    def stats(self) -> dict:
        n = max(1, self._chunks)
        return {"chunks": self._chunks, "nfe": self._nfe / n, "ms_per_chunk": 1000 * self._seconds / n}

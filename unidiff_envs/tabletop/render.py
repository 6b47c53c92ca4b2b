"""Scene rendering without a robot task: the data source for captioning and text-to-image."""
from __future__ import annotations

import functools

import mujoco
import numpy as np

from unidiff_envs.tabletop.language import caption, describe
from unidiff_envs.tabletop.model import Camera, build_model, place_scene
from unidiff_envs.tabletop.scene import Scene, sample_scene


@functools.lru_cache(maxsize=4)
def _stage(size: int) -> tuple[mujoco.MjModel, mujoco.MjData, Camera]:
    """One model + renderer per size and process, with the pusher made invisible."""
    model = build_model()
    model.mat_rgba[model.material("pusher").id, 3] = 0.0
    data = mujoco.MjData(model)
    return model, data, Camera(model, size)


def render_scene(scene: Scene, size: int = 64) -> np.ndarray:
    """RGB uint8 (size, size, 3) top-down render of `scene` (no pusher, shadows off)."""
    model, data, camera = _stage(int(size))
    place_scene(model, data, scene)
    return camera.render(data)


def scene_sample(seed: int, size: int = 64, n_objects: int | None = None) -> dict:
    """A sampled scene with its render, a caption (phrasing drawn from the seed) and description."""
    scene = sample_scene(seed, n_objects)
    return {
        "image": render_scene(scene, size),
        "caption": caption(scene, rng=np.random.default_rng([seed, 1])),
        "description": describe(scene),
    }

"""Gymnasium ids of every unidiff world, and `make` with a helpful error for unknown ids."""
from __future__ import annotations

import gymnasium as gym

TABLETOP_IDS = ("unidiff/TabletopReach-v0", "unidiff/TabletopPush-v0")
MT10_TASKS = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
              "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3",
              "window-open-v3", "window-close-v3")
METAWORLD_IDS = tuple(f"unidiff/MetaWorld-{t}" for t in MT10_TASKS)
ENV_IDS: tuple[str, ...] = TABLETOP_IDS + METAWORLD_IDS


def register_all() -> None:
    """Register every id once (idempotent, so re-imports and spawned workers are fine)."""
    for env_id, task in zip(TABLETOP_IDS, ("reach", "push")):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="unidiff_envs.tabletop.env:TabletopEnv",
                         kwargs={"task": task}, max_episode_steps=None)
    for env_id, task in zip(METAWORLD_IDS, MT10_TASKS):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="unidiff_envs.metaworld_adapter:MetaWorldImageEnv",
                         kwargs={"task": task})


def check_env_id(env_id: str) -> str:
    if env_id not in ENV_IDS:
        known = "\n  ".join(ENV_IDS)
        raise ValueError(f"unknown env id {env_id!r}. Known ids:\n  {known}")
    return env_id


def make(env_id: str, **kwargs) -> gym.Env:
    """`gym.make` restricted to unidiff ids, without gymnasium's checker wrappers."""
    return gym.make(check_env_id(env_id), disable_env_checker=True, **kwargs)

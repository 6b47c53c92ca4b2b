"""Run one expert episode and return it as arrays: the unit that collection writes to disk.

DART-style noise: with `noise_std > 0` the *executed* action is the expert's action plus
Gaussian noise, while the recorded label stays the clean expert action, so the data covers
states slightly off the expert's path together with the correction the expert would make.

Recovery demonstrations (DAgger-style): with a ``lead`` policy, that policy drives first for a
seeded number of steps and the recording starts where it left the robot, so the expert's episode
begins in a state a learned policy actually reaches (e.g. low, far from its object), which the
expert's own episodes never visit.  With ``lead_decoy`` the lead is told to act on another object
(``decoy_instruction``), so the expert's episode begins at the wrong object -- data that ties the
named object to where to go next, which plain recovery rounds do not teach.
"""
from __future__ import annotations

import numpy as np


def run_episode(env, expert, seed: int, noise_std: float = 0.0, lead=None, lead_steps: int = 0,
                lead_decoy: bool = False) -> dict:
    """Roll out `expert` in `env` from `reset(seed=seed)` until success or truncation.

    ``lead``: an object with ``reset()`` and ``select_action(obs)`` (obs with its "instruction")
    that drives first for a number of steps drawn from the seed in [0, ``lead_steps``]; those steps
    are not recorded.  ``meta["lead_steps"]`` says how many it took; an episode the lead ended
    (success or time limit) is returned empty and unsuccessful.  ``lead_decoy``: the lead gets
    ``env.unwrapped.decoy_instruction()`` instead of the episode's instruction (the recording keeps
    the true one)."""
    base = env.unwrapped
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng([seed, 7])
    n_lead = 0
    if lead is not None:
        n_lead = int(np.random.default_rng([seed, 11]).integers(0, lead_steps + 1))
        lead.reset()
    told = base.decoy_instruction() if lead_decoy else info["instruction"]
    for _ in range(n_lead):
        obs, _, terminated, truncated, info = env.step(lead.select_action({**obs, "instruction": told}))
        if terminated or truncated:
            return {"meta": {"seed": int(seed), "success": False, "length": 0, "lead_steps": n_lead}}
    frames, states, captions = [obs["image"]], [obs["state"]], [base.caption()]
    description = base.describe()
    actions, executed, rewards = [], [], []
    done, success = False, bool(info.get("success", False))
    while not done:
        label = np.asarray(expert(obs), dtype=np.float32)
        act = label
        if noise_std > 0:
            act = np.clip(label + rng.normal(0.0, noise_std, size=label.shape), -1, 1).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(act)
        frames.append(obs["image"])
        states.append(obs["state"])
        captions.append(base.caption())
        actions.append(label)
        executed.append(act)
        rewards.append(reward)
        success = success or bool(info.get("success", False))
        done = terminated or truncated
    return {
        "frames": np.stack(frames).astype(np.uint8),
        "state": np.stack(states).astype(np.float32),
        "actions": np.stack(actions).astype(np.float32),
        "executed_actions": np.stack(executed).astype(np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "captions": captions,
        "meta": {"seed": int(seed), "instruction": base.instruction, "description": description,
                 "caption": captions[0], "success": success, "length": len(actions),
                 "noise_std": float(noise_std), "lead_steps": n_lead},
    }


def replay(env_id: str, seed: int, actions, size: int = 64) -> np.ndarray:
    """Frames from a fresh env (alone in this process) that replays `actions` after reset(seed)."""
    from unidiff_envs.registry import make

    env = make(env_id, size=size)
    try:
        obs, _ = env.reset(seed=seed)
        frames = [obs["image"]]
        for a in actions:
            obs, *_ = env.step(a)
            frames.append(obs["image"])
        return np.stack(frames)
    finally:
        env.close()

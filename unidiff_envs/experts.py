"""Scripted experts: privileged controllers that read simulator state and return actions.

`make_expert(env)` picks the expert for an env (tabletop or Meta-World).  Experts are
stateless functions of the current simulator state, so DART-style noise injected into the
executed actions (see `rollout.py`) is corrected on the next step.
"""
from __future__ import annotations

import numpy as np

from unidiff_envs.tabletop.env import ACTION_GAIN, LOW_Z, TRAVEL_Z, TabletopEnv
from unidiff_envs.tabletop.scene import HALF_EXTENTS
from unidiff_envs.tabletop.tasks import GOAL_SLACK, PUSH_MARGIN, PUSHER_RADIUS, RELATION_AXIS

TOL = 0.01


def _toward(pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Proportional command that reaches `goal` in about one step when close."""
    return np.clip((goal - pos) / (ACTION_GAIN * 0.5), -1.0, 1.0)


class TabletopExpert:
    """Lift, travel above, descend; then (push) push straight along one axis to the goal."""

    def __init__(self, env: TabletopEnv):
        self.env = env

    def _goto(self, pos: np.ndarray, xy: np.ndarray, low_z: float) -> np.ndarray:
        """Travel high to above `xy`, then descend to `low_z`."""
        far = np.linalg.norm(pos[:2] - xy) > TOL
        if far and pos[2] < TRAVEL_Z - 0.02:
            return np.array([0.0, 0.0, 1.0])
        if far:
            return _toward(pos, np.array([*xy, TRAVEL_Z]))
        return _toward(pos, np.array([*xy, low_z]))

    def __call__(self, obs=None) -> np.ndarray:
        env = self.env
        spec, pos = env.spec_task, env.pusher_pos()
        target = np.array(env.object_xy(spec.target))
        if spec.task == "reach":
            return self._goto(pos, target, 0.0).astype(np.float32)
        axis, sign = RELATION_AXIS[spec.relation]
        perp = 1 - axis
        shape = env.scene.find(spec.target).shape
        behind = target.copy()
        behind[axis] -= sign * (HALF_EXTENTS[shape][axis] + PUSHER_RADIUS + 0.012)
        rel = pos[:2] - behind
        aligned = abs(rel[perp]) < TOL and -0.03 < sign * rel[axis] < 0.03
        if pos[2] < LOW_Z + 0.01 and aligned:
            goal = env.object_xy(spec.reference)[axis] + sign * (PUSH_MARGIN + GOAL_SLACK)
            remaining = sign * (goal - target[axis])
            cmd = np.zeros(3)
            cmd[axis] = sign * np.clip(remaining / 0.05, 0.3, 1.0)
            cmd[perp] = np.clip(-rel[perp] / ACTION_GAIN, -1, 1)
            return cmd.astype(np.float32)
        return self._goto(pos, behind, LOW_Z).astype(np.float32)


class MetaWorldExpert:
    """Meta-World's own scripted policy for the task, fed the privileged 39-D observation."""

    def __init__(self, env):
        from metaworld.policies import ENV_POLICY_MAP

        self.env = env
        self.policy = ENV_POLICY_MAP[env.task]()

    def __call__(self, obs=None) -> np.ndarray:
        return np.asarray(self.policy.get_action(self.env.raw_obs), dtype=np.float32)


def make_expert(env):
    """The scripted expert for a (possibly wrapped) unidiff env."""
    base = env.unwrapped
    if isinstance(base, TabletopEnv):
        return TabletopExpert(base)
    from unidiff_envs.metaworld_adapter import MetaWorldImageEnv

    if isinstance(base, MetaWorldImageEnv):
        return MetaWorldExpert(base)
    raise TypeError(f"no scripted expert for {type(base).__name__}")

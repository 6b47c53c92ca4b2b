"""The tabletop gymnasium env: a 3-DoF gantry pusher over a table of coloured objects.

Observation: {"image": uint8 (S, S, 3) top-down RGB, "state": float32 (6,) pusher xyz + velocity}.
Action: float32 (3,) in [-1, 1], a velocity command for the pusher (x, y, z).  The instruction,
caption and structured description are in `info` (and on the env), since gym spaces do not
carry free text well.  Episodes end on success (`info["success"]`) or after `max_steps`.
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np

from unidiff_envs.tabletop.language import caption, describe
from unidiff_envs.tabletop.model import Camera, body_xy, build_model, place_scene
from unidiff_envs.tabletop.tasks import TaskSpec, relation_holds, sample_task

FRAME_SKIP = 10          # 10 x 5 ms physics = 20 Hz control
ACTION_GAIN = 0.04       # actuator set-point offset per unit action (about 0.4 m/s at full speed)
TRAVEL_Z, LOW_Z = 0.15, 0.035
MAX_STEPS = {"reach": 100, "push": 150}


class TabletopEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: str = "reach", size: int = 64, render_mode: str | None = "rgb_array",
                 max_steps: int | None = None):
        if task not in MAX_STEPS:
            raise ValueError(f"unknown tabletop task {task!r}; expected one of {sorted(MAX_STEPS)}")
        self.task, self.size, self.render_mode = task, int(size), render_mode
        self.max_steps = int(max_steps or MAX_STEPS[task])
        self.model = build_model()
        self.data = mujoco.MjData(self.model)
        self.camera = Camera(self.model, self.size)
        self._pusher_q = [self.model.joint(f"pusher_{a}").qposadr[0] for a in "xyz"]
        self._pusher_v = [self.model.joint(f"pusher_{a}").dofadr[0] for a in "xyz"]
        self._pusher_geom = self.model.geom("pusher").id
        self._lo = self.model.actuator_ctrlrange[:, 0].copy()
        self._hi = self.model.actuator_ctrlrange[:, 1].copy()
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8),
            "state": gym.spaces.Box(np.array([-0.3, -0.3, 0.0, -5, -5, -5], np.float32),
                                    np.array([0.3, 0.3, 0.2, 5, 5, 5], np.float32)),
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.scene = None
        self.spec_task: TaskSpec | None = None
        self.instruction = ""
        self._bodies: list[str] = []
        self._phrasing = 0
        self._steps = 0

    # --- state readers -------------------------------------------------------------------
    def pusher_pos(self) -> np.ndarray:
        return self.data.qpos[self._pusher_q].copy()

    def object_xy(self, name: str) -> tuple[float, float]:
        """Current table position of the scene object called `name` (e.g. "red cube")."""
        names = [o.name for o in self.scene.objects]
        return body_xy(self.model, self.data, self._bodies[names.index(name)])

    def current_scene(self):
        """The scene as it is now (objects may have been pushed)."""
        return self.scene.moved({o.name: self.object_xy(o.name) for o in self.scene.objects})

    def caption(self) -> str:
        return caption(self.current_scene(), phrasing=self._phrasing)

    def describe(self) -> dict:
        return describe(self.current_scene())

    def _touching(self, name: str) -> bool:
        names = [o.name for o in self.scene.objects]
        geom = self.model.geom(self._bodies[names.index(name)]).id
        for c in self.data.contact[: self.data.ncon]:
            if {int(c.geom1), int(c.geom2)} == {geom, self._pusher_geom}:
                return True
        return False

    def is_success(self) -> bool:
        spec = self.spec_task
        if spec.task == "reach":
            return self._touching(spec.target)
        return relation_holds(self.object_xy(spec.target), self.object_xy(spec.reference), spec.relation)

    # --- gym API -------------------------------------------------------------------------
    def _obs(self) -> dict:
        state = np.concatenate([self.data.qpos[self._pusher_q], self.data.qvel[self._pusher_v]])
        return {"image": self.camera.render(self.data), "state": state.astype(np.float32)}

    def _info(self) -> dict:
        return {"success": bool(self.is_success()), "instruction": self.instruction,
                "task": self.spec_task.to_dict()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.scene, self.spec_task, self.instruction = sample_task(self.task, self.np_random)
        self._phrasing = int(self.np_random.integers(4))
        mujoco.mj_resetData(self.model, self.data)
        self._bodies = place_scene(self.model, self.data, self.scene)
        start = np.array([*self.np_random.uniform(-0.2, 0.2, size=2), TRAVEL_Z])
        self.data.qpos[self._pusher_q] = start
        self.data.ctrl[:] = start
        mujoco.mj_forward(self.model, self.data)
        self._steps = 0
        return self._obs(), self._info()

    def step(self, action):
        if self.scene is None:
            raise RuntimeError("call reset() before step()")
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(3), -1.0, 1.0)
        self.data.ctrl[:] = np.clip(self.pusher_pos() + ACTION_GAIN * a, self._lo, self._hi)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        self._steps += 1
        info = self._info()
        terminated = info["success"]
        truncated = (not terminated) and self._steps >= self.max_steps
        return self._obs(), float(terminated), terminated, truncated, info

    def render(self):
        return self.camera.render(self.data)

    def close(self):
        self.camera.close()

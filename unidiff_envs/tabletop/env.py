"""The tabletop gymnasium env: a 3-DoF gantry pusher over a table of coloured objects.

Observation: {"image": uint8 (S, S, 3) top-down RGB, "state": float32 (6,) pusher xyz + velocity}.
Action: float32 (3,) in [-1, 1], a velocity command for the pusher (x, y, z).  The instruction,
caption and structured description are in `info` (and on the env), since gym spaces do not
carry free text well.  Episodes end on success (`info["success"]`) or after `max_steps`.
`info["diagnostics"]` says how far an episode got (see `TabletopEnv.diagnostics`), so a failed
rollout can be told apart: never reached the named object, touched another one, pushed too little.
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np

from unidiff_envs.tabletop.language import caption, describe
from unidiff_envs.tabletop.model import Camera, body_xy, build_model, place_scene
from unidiff_envs.tabletop.tasks import TaskSpec, relation_gap, relation_holds, sample_task

FRAME_SKIP = 10          # 10 x 5 ms physics = 20 Hz control
ACTION_GAIN = 0.04       # actuator set-point offset per unit action (about 0.4 m/s at full speed)
TRAVEL_Z, LOW_Z = 0.15, 0.035
MAX_STEPS = {"reach": 100, "push": 150}
SWEEP_Z = (TRAVEL_Z + LOW_Z) / 2  # below this the pusher is at object height, not travelling
SWEEP_DIST = 0.08                 # m from the named object's centre: further is not at that object


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

    def decoy_instruction(self) -> str:
        """An instruction that names a *different* object as the one to act on: for push the target
        and reference swapped, for reach the next object in the scene.  A policy given it drives
        toward the wrong object -- the states recovery demonstrations should start from when a
        policy confuses which object was named (``unidiff collect --lead-decoy``).  A reach scene
        with one object has no other to name: its own instruction is returned."""
        return self.spec_task.decoy([o.name for o in self.scene.objects]).instruction()

    def describe(self) -> dict:
        return describe(self.current_scene())

    def _touching_now(self) -> set[str]:
        """Names of the objects the pusher is in contact with now."""
        touched = set()
        for c in self.data.contact[: self.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            if self._pusher_geom in (g1, g2):
                name = self._geom_names.get(g2 if g1 == self._pusher_geom else g1)
                if name is not None:
                    touched.add(name)
        return touched

    def _push_remaining(self) -> float:
        """How much further (m) the target must move along the push axis for the relation to hold."""
        spec = self.spec_task
        return relation_gap(self.object_xy(spec.target), self.object_xy(spec.reference), spec.relation)

    def is_success(self) -> bool:
        spec = self.spec_task
        if spec.task == "reach":
            return spec.target in self._touching_now()
        return relation_holds(self.object_xy(spec.target), self.object_xy(spec.reference), spec.relation)

    def diagnostics(self) -> dict[str, float]:
        """How far the episode has got, to tell failures apart: ``touched_target`` / ``touched_other``
        (1.0 if the pusher has touched the named object / any other object at a control step since
        reset) and, for push, ``push_progress``: the fraction of the needed distance the target has
        moved toward success (0 at reset, 1 once the relation holds, negative the wrong way;
        clipped to [-1, 1]).  ``low_far``: the share of control steps the pusher spent at object
        height more than ``SWEEP_DIST`` from the named object -- sweeping the table instead of
        travelling above it (the expert: 0)."""
        target = self.spec_task.target
        out = {"touched_target": float(target in self._touched), "touched_other": float(bool(self._touched - {target})),
               "low_far": self._low_far_steps / max(1, self._steps)}
        if self.spec_task.task == "push":
            progress = 1.0 - self._push_remaining() / self._push_needed
            out["push_progress"] = float(np.clip(progress, -1.0, 1.0))
        return out

    # --- gym API -------------------------------------------------------------------------
    def _obs(self) -> dict:
        state = np.concatenate([self.data.qpos[self._pusher_q], self.data.qvel[self._pusher_v]])
        return {"image": self.camera.render(self.data), "state": state.astype(np.float32)}

    def _info(self) -> dict:
        return {"success": bool(self.is_success()), "instruction": self.instruction,
                "task": self.spec_task.to_dict(), "diagnostics": self.diagnostics()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.scene, self.spec_task, self.instruction = sample_task(self.task, self.np_random)
        self._phrasing = int(self.np_random.integers(4))
        mujoco.mj_resetData(self.model, self.data)
        self._bodies = place_scene(self.model, self.data, self.scene)
        self._geom_names = {self.model.geom(b).id: o.name for b, o in zip(self._bodies, self.scene.objects)}
        start = np.array([*self.np_random.uniform(-0.2, 0.2, size=2), TRAVEL_Z])
        self.data.qpos[self._pusher_q] = start
        self.data.ctrl[:] = start
        mujoco.mj_forward(self.model, self.data)
        self._steps, self._touched, self._low_far_steps = 0, set(), 0
        # sampled push goals never hold at reset, so the distance still to go is positive
        self._push_needed = max(self._push_remaining(), 1e-6) if self.spec_task.task == "push" else None
        return self._obs(), self._info()

    def step(self, action):
        if self.scene is None:
            raise RuntimeError("call reset() before step()")
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(3), -1.0, 1.0)
        self.data.ctrl[:] = np.clip(self.pusher_pos() + ACTION_GAIN * a, self._lo, self._hi)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        self._steps += 1
        self._touched |= self._touching_now()
        pos = self.pusher_pos()
        far = np.linalg.norm(pos[:2] - np.array(self.object_xy(self.spec_task.target))) > SWEEP_DIST
        self._low_far_steps += int(pos[2] < SWEEP_Z and far)
        info = self._info()
        terminated = info["success"]
        truncated = (not terminated) and self._steps >= self.max_steps
        return self._obs(), float(terminated), terminated, truncated, info

    def render(self):
        return self.camera.render(self.data)

    def close(self):
        self.camera.close()

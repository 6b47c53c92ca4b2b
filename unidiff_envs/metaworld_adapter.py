"""Meta-World MT10 tasks as unidiff envs: corner2 images (upright, shadows off), 4-D proprio,
one instruction per task, success from Meta-World's own `info["success"]`.

Images are drawn with our own `mujoco.Renderer`, which makes its GL context current before
every render, so several envs in one process stay correct; collection still uses one env
per worker process.  The privileged 39-D observation is kept on the env (`raw_obs`) for the
scripted expert only.
"""
from __future__ import annotations

import atexit

import gymnasium as gym
import mujoco
import numpy as np

from unidiff_envs.gl import open_renderer
from unidiff_envs.registry import MT10_TASKS

INSTRUCTIONS = {
    "reach-v3": "reach the red goal point with the gripper.",
    "push-v3": "push the puck to the goal.",
    "pick-place-v3": "pick up the puck and place it at the goal.",
    "door-open-v3": "open the door.",
    "drawer-open-v3": "open the drawer.",
    "drawer-close-v3": "close the drawer.",
    "button-press-topdown-v3": "press the button from the top.",
    "peg-insert-side-v3": "insert the peg into the hole from the side.",
    "window-open-v3": "slide the window open.",
    "window-close-v3": "slide the window closed.",
}
CAPTIONS = {
    "reach-v3": "a robot arm above a table.",
    "push-v3": "a robot arm and a puck on a table.",
    "pick-place-v3": "a robot arm and a puck on a table.",
    "door-open-v3": "a robot arm in front of a closed door.",
    "drawer-open-v3": "a robot arm in front of a closed drawer.",
    "drawer-close-v3": "a robot arm in front of an open drawer.",
    "button-press-topdown-v3": "a robot arm above a button box.",
    "peg-insert-side-v3": "a robot arm, a peg and a box with a hole.",
    "window-open-v3": "a robot arm in front of a closed window.",
    "window-close-v3": "a robot arm in front of an open window.",
}
CAMERA = "corner2"
MAX_STEPS = 500  # Meta-World's max_path_length


class MetaWorldImageEnv(gym.Env):
    """One MT10 task.  Each `reset(seed=...)` samples the task's object/goal positions from seed."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str = "reach-v3", size: int = 64, render_mode: str | None = "rgb_array",
                 max_steps: int = MAX_STEPS):
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        if task not in MT10_TASKS:
            raise ValueError(f"unknown MT10 task {task!r}; known: {', '.join(MT10_TASKS)}")
        self.task, self.size, self.render_mode = task, int(size), render_mode
        self.max_steps = min(int(max_steps), MAX_STEPS)
        self.mw = ALL_V3_ENVIRONMENTS[task]()
        self.mw._partially_observable = False  # the expert needs the goal in the observation
        self.mw._set_task_called = True
        del self.mw.sawyer_observation_space  # recomputed for the new observability
        self.model, self.data = self.mw.model, self.mw.data
        self.model.light_castshadow[:] = 0
        self.model.mat_reflectance[:] = 0
        self.model.vis.quality.shadowsize = 0
        self._renderer = open_renderer(self.model, self.size, self.size)
        self._cam = self.model.camera(CAMERA).id
        atexit.register(self._renderer.close)  # free GL before EGL is torn down at exit
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8),
            "state": gym.spaces.Box(-2.0, 2.0, (4,), np.float32),  # hand xyz (m) + gripper in [0, 1]
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.instruction = INSTRUCTIONS[task]
        self.raw_obs = np.zeros(39)
        self._steps = 0

    def render(self) -> np.ndarray:
        """Upright corner2 image: the camera's raw frame is upside down, so flip both axes."""
        self._renderer.update_scene(self.data, camera=self._cam)
        return np.ascontiguousarray(np.flip(self._renderer.render(), (0, 1)))

    def _obs(self) -> dict:
        # proprio = hand xyz + normalised gripper opening (the first 4 entries of Meta-World's obs)
        return {"image": self.render(), "state": self.raw_obs[:4].astype(np.float32)}

    def caption(self) -> str:
        return CAPTIONS[self.task]

    def describe(self) -> dict:
        return {"task": self.task, "hand": [round(float(v), 3) for v in self.raw_obs[:3]]}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.mw._freeze_rand_vec = False
        self.mw.seeded_rand_vec = True
        self.mw.seed(int(self.np_random.integers(2**31 - 1)))
        self.raw_obs, _ = self.mw.reset()
        self._steps = 0
        return self._obs(), {"success": False, "instruction": self.instruction}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        self.raw_obs, reward, _, _, mw_info = self.mw.step(a)
        self._steps += 1
        success = bool(mw_info.get("success", 0.0) >= 1.0)
        truncated = (not success) and self._steps >= self.max_steps
        info = {"success": success, "instruction": self.instruction}
        return self._obs(), float(reward), success, truncated, info

    def close(self):
        self._renderer.close()

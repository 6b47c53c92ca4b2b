"""The tabletop MuJoCo model: the MJCF asset plus a pool of object bodies, and scene placement.

One compiled model holds every (slot, shape) body; a scene moves the bodies it needs onto the
table, colours them, and parks the rest far outside the camera view.  So one model (and one
GL context) serves every scene, which keeps rendering cheap and deterministic.
"""
from __future__ import annotations

import atexit
import functools
import os
from pathlib import Path

import mujoco
import numpy as np

from unidiff_envs.gl import open_renderer
from unidiff_envs.tabletop.scene import HALF_EXTENTS, MAX_OBJECTS, RGB, SHAPES, Scene

ASSET = Path(__file__).with_name("assets") / "tabletop.xml"
MAX_SIZE = 512  # largest render side the offscreen buffer allows
_GL_PID: int | None = None  # the process that created this module's first GL context

_GEOM = {
    "cube": 'type="box" size="{0} {1} {2}"',
    "ball": 'type="sphere" size="{0}"',
    "cylinder": 'type="cylinder" size="{0} {1}" euler="1.5708 0 0"',
}


def _body_name(slot: int, shape: str) -> str:
    return f"obj{slot}_{shape}"


def parked_xy(slot: int, shape: str) -> tuple[float, float]:
    """Where an unused body waits: far outside the camera view and apart from the others."""
    return 1.0 + 0.3 * slot, 1.0 + 0.3 * SHAPES.index(shape)


def _objects_xml() -> tuple[str, str]:
    bodies, materials = [], []
    for slot in range(MAX_OBJECTS):
        for shape in SHAPES:
            name = _body_name(slot, shape)
            hx, hy, hz = HALF_EXTENTS[shape]
            geom = _GEOM[shape].format(hx, hy, hz) if shape != "cylinder" else _GEOM[shape].format(hx, hy)
            materials.append(f'<material name="{name}" rgba="1 1 1 1" specular="0" shininess="0" reflectance="0"/>')
            bodies.append(
                f'<body name="{name}" pos="0 0 {hz}">'
                f'<joint name="{name}_x" type="slide" axis="1 0 0"/>'
                f'<joint name="{name}_y" type="slide" axis="0 1 0"/>'
                f'<geom name="{name}" {geom} material="{name}" density="500"/></body>')
    return "\n".join(bodies), "\n".join(materials)


@functools.lru_cache(maxsize=1)
def model_xml() -> str:
    """The full MJCF text (asset file with the object pool filled in)."""
    bodies, materials = _objects_xml()
    xml = ASSET.read_text()
    xml = xml.replace("<!-- OBJECTS -->", bodies)
    xml = xml.replace("</asset>", materials + "\n  </asset>")
    return xml.replace('offwidth="256" offheight="256"', f'offwidth="{MAX_SIZE}" offheight="{MAX_SIZE}"')


def build_model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(model_xml())


def slot_bodies(scene: Scene) -> list[str]:
    """Body name used by each scene object, in scene order."""
    return [_body_name(i, obj.shape) for i, obj in enumerate(scene.objects)]


def place_scene(model: mujoco.MjModel, data: mujoco.MjData, scene: Scene) -> list[str]:
    """Put `scene` on the table (colours + positions), park the rest; returns used body names."""
    used = slot_bodies(scene)
    for slot in range(MAX_OBJECTS):
        for shape in SHAPES:
            name = _body_name(slot, shape)
            xy = parked_xy(slot, shape)
            if name in used:
                obj = scene.objects[used.index(name)]
                xy = (obj.x, obj.y)
                model.mat_rgba[model.material(name).id, :3] = RGB[obj.color]
            for axis, value in zip("xy", xy):
                jnt = model.joint(f"{name}_{axis}")
                data.qpos[jnt.qposadr[0]] = value
                data.qvel[jnt.dofadr[0]] = 0.0
    mujoco.mj_forward(model, data)
    return used


def body_xy(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> tuple[float, float]:
    x = data.qpos[model.joint(f"{name}_x").qposadr[0]]
    y = data.qpos[model.joint(f"{name}_y").qposadr[0]]
    return float(x), float(y)


class Camera:
    """Fixed render settings (top camera, shadows off) for one model at one resolution."""

    def __init__(self, model: mujoco.MjModel, size: int = 64):
        if not 8 <= size <= MAX_SIZE:
            raise ValueError(f"render size must be in 8..{MAX_SIZE}, got {size}")
        global _GL_PID
        if _GL_PID is not None and _GL_PID != os.getpid():
            raise RuntimeError(
                "tabletop rendering cannot start in a process forked after its parent rendered (EGL "
                "state does not survive fork and would hang). Use DataLoader(..., "
                "multiprocessing_context='spawn'), num_workers=0, or SceneDataset(..., cache=True).")
        _GL_PID = os.getpid()
        self.size = size
        self._renderer = open_renderer(model, size, size)
        self._cam = model.camera("top").id
        atexit.register(self.close)  # free the GL context before EGL itself is torn down

    def render(self, data: mujoco.MjData) -> np.ndarray:
        # mujoco.Renderer makes its own GL context current before drawing, so several
        # cameras in one process do not corrupt each other.
        self._renderer.update_scene(data, camera=self._cam)
        return self._renderer.render().copy()

    def close(self) -> None:
        self._renderer.close()

"""unidiff_envs: simulated worlds for unidiff (never imports unidiff's model code).

Importing this package registers the gymnasium ids (see `ENV_IDS`).  MUJOCO_GL defaults to
EGL (headless) and must be set before mujoco is imported, hence at the very top.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

from unidiff_envs.registry import ENV_IDS, make, register_all  # noqa: E402

register_all()

__all__ = ["ENV_IDS", "make", "register_all"]

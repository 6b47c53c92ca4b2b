"""MuJoCo renderers, opened in one place so that Triton's LLVM is loaded before the GL driver's.

Headless rendering runs on Mesa (EGL or OSMesa, llvmpipe), which loads its own LLVM when the first
context opens.  Loading Triton's afterwards crashes the process with a segfault inside ``import
triton`` -- which ``torch.compile``, ``torchvision.ops`` and Lightning pull in, so "make an env,
then load a model" died in a notebook.  The other order is fine, so the first renderer imports
Triton first when it is installed (about 0.3 s, once per process).
"""
from __future__ import annotations

import functools
import importlib.util

import mujoco


@functools.cache
def _load_triton_first() -> None:
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def open_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """``mujoco.Renderer(model, height, width)``, after Triton (if installed) is loaded."""
    _load_triton_first()
    return mujoco.Renderer(model, height, width)

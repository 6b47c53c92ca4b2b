"""Text-to-image: text given, image target."""
from __future__ import annotations

import numpy as np

from unidiff.tasks.codec import complete


def generate(model, prompts, *, steps: int | None = None, seed: int = 0, **decode_kw) -> list[np.ndarray]:
    """Prompts -> uint8 (H, W, 3) images, one per prompt, seeds ``seed, seed+1, ...``;
    ``steps`` None: the bundle's for images."""
    if isinstance(prompts, str):
        prompts = [prompts]
    return complete(model, {"text": list(prompts)}, "image", steps=steps, seed=seed, **decode_kw)[0]

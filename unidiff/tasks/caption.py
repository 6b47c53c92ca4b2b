"""Captioning: image given, text target."""
from __future__ import annotations

from unidiff.tasks.codec import complete


def caption(model, images, *, steps: int | None = None, seed: int = 0, **decode_kw) -> list[str]:
    """uint8 (H, W, 3) images -> captions, all in one batch (results do not depend on it);
    ``steps`` None: the bundle's for text."""
    return complete(model, {"image": list(images)}, "text", steps=steps, seed=seed, **decode_kw)[0]

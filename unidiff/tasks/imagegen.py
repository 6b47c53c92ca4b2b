"""Text-to-image: text given, image target."""
from __future__ import annotations

import numpy as np

from unidiff.canvas import prompt_canvas
from unidiff.decode import decode
from unidiff.tasks.codec import Codec


def generate(model, prompts, *, steps: int = 8, seed: int = 0, **decode_kw) -> list[np.ndarray]:
    """Prompts -> uint8 (H, W, 3) images, one per prompt, seeds ``seed, seed+1, ...``."""
    if isinstance(prompts, str):
        prompts = [prompts]
    codec = Codec(model.spec, model.tokenizers)
    given = [{"text": seg} for seg in codec.encode("text", list(prompts))]
    tokens, roles = prompt_canvas(model.spec, given, ("image",))
    dev = next(model.net.parameters()).device
    out = decode(model.net, tokens.to(dev), roles.to(dev), steps=steps, seeds=seed, **decode_kw)
    return codec.decode("image", out.tokens[:, model.spec.slices["image"]])

"""Captioning: image given, text target."""
from __future__ import annotations

from unidiff.canvas import prompt_canvas
from unidiff.decode import decode
from unidiff.tasks.codec import Codec


def caption(model, images, *, steps: int = 8, seed: int = 0, **decode_kw) -> list[str]:
    """uint8 (H, W, 3) images -> captions, all in one batch (results do not depend on it)."""
    codec = Codec(model.spec, model.tokenizers)
    given = [{"image": seg} for seg in codec.encode("image", list(images))]
    tokens, roles = prompt_canvas(model.spec, given, ("text",))
    dev = next(model.net.parameters()).device
    out = decode(model.net, tokens.to(dev), roles.to(dev), steps=steps, seeds=seed, **decode_kw)
    return codec.decode("text", out.tokens[:, model.spec.slices["text"]])

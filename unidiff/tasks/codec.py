"""Between the world and the canvas: tokenize given values into joint-id segments, and turn
decoded segments back into values, with the bundle's tokenizers.  Tasks are thin on top of it."""
from __future__ import annotations

import functools

import numpy as np
import torch

from unidiff.canvas import CanvasSpec, text_ids, text_segment


class Codec:
    def __init__(self, spec: CanvasSpec, tokenizers: dict) -> None:
        self.spec, self.tokenizers = spec, tokenizers

    def tokenizer(self, modality: str):
        if modality not in self.tokenizers:
            raise ValueError(f"this bundle has no {modality} tokenizer (it has {sorted(self.tokenizers)})")
        return self.tokenizers[modality]

    def encode(self, modality: str, values: list) -> list[torch.Tensor]:
        """One joint-id segment per value: str for text, uint8 HxWx3 image, float state vector."""
        if modality == "text":
            out = []
            for s in values:
                if not isinstance(s, str) or not s.strip():
                    raise ValueError(f"text must be a non-empty string, got {s!r}")
                out.append(text_segment(self.tokenizer("text").encode(s), self.spec.text_len))
            return out
        tok = self.tokenizer(modality)
        if modality == "image":
            codes = tok.encode(np.stack([np.asarray(v) for v in values]))
            if tuple(codes.shape[1:]) != tuple(self.spec.image_hw):
                raise ValueError(f"images tokenize to a {tuple(codes.shape[1:])} grid, the model expects {tuple(self.spec.image_hw)}")
        else:
            codes = tok.encode(np.stack([np.asarray(v, dtype=np.float32) for v in values]))
        return [self.spec.vocab.to_joint(modality, c.flatten().long()) for c in codes]

    def decode(self, modality: str, segments: torch.Tensor):
        """(B, n) decoded joint ids of one segment -> list of str / uint8 images / float arrays."""
        if modality == "text":
            return [self.tokenizer("text").decode(text_ids(s)) for s in segments.cpu()]
        local = self.spec.vocab.to_local(modality, segments.cpu())
        seg = self.spec.segment(modality)
        values = self.tokenizer(modality).decode(local.reshape(-1, seg.rows, seg.cols))
        return [np.asarray(v) for v in values]


# Decoder settings a task gets unless its caller says otherwise.  Images are sampled as MaskGIT
# does (temperature 1, Gumbel noise on the commit order annealed from 4.5, plus CFG): with argmax
# and a pure confidence order the flat table -- the most confident code everywhere -- is committed
# first and the shipped bundle drew empty tables (object recall 0.050 -> 0.286 on the 200 held-out
# prompts of `unidiff eval`; README, "Text-to-image decoding").  Text and actions decode by argmax.
DECODE_DEFAULTS: dict[str, dict] = {"image": {"temperature": 1.0, "noise_scale": 4.5, "cfg_scale": 3.0}}
# decoder steps of a bundle whose data module names none (``decode_steps``)
DEFAULT_STEPS = 8
# decode() arguments that are per call, not settings
_PER_CALL = ("model", "tokens", "roles", "seeds")


@functools.cache
def _decode_settings_names() -> tuple[str, ...]:
    import inspect

    from unidiff.decode import decode

    return tuple(p for p in inspect.signature(decode).parameters if p not in _PER_CALL)


def check_decode_settings(settings: dict | None) -> dict[str, dict]:
    """A data module's ``decode`` argument (target modality -> decode() keyword arguments), checked
    by name so that a typo fails at fit time, not as a silently ignored setting."""
    from unidiff.vocab import MODALITIES

    known = list(_decode_settings_names())
    for m, kw in (settings or {}).items():
        if m not in MODALITIES:
            raise ValueError(f"decode settings for unknown modality {m!r}; known: {list(MODALITIES)}")
        if not isinstance(kw, dict):
            raise ValueError(f"decode settings for {m!r} must be a mapping of decode() arguments, got {kw!r}")
        bad = sorted(set(kw) - set(known))
        if bad:
            raise ValueError(f"unknown decode setting(s) {bad} for {m!r}; decode() takes {known}")
        if "steps" in kw and (not isinstance(kw["steps"], int) or kw["steps"] < 1):
            raise ValueError(f"decode setting steps for {m!r} must be a positive int, got {kw['steps']!r}")
    return {m: dict(kw) for m, kw in (settings or {}).items()}


def decode_settings(model, target: str) -> dict:
    """The settings ``target`` decodes with: the bundle's ``decode_steps`` (else
    :data:`DEFAULT_STEPS`) and :data:`DECODE_DEFAULTS`, then the bundle's own for that target (its
    data module's ``decode`` argument, e.g. semi-autoregressive captions for a model trained with
    suffix masking, or more steps for them: ``{text: {text_block: 1, steps: 24}}``)."""
    own = check_decode_settings(model.data_config.get("decode"))
    return {"steps": bundle_steps(model), **DECODE_DEFAULTS.get(target, {}), **own.get(target, {})}


def bundle_steps(model) -> int:
    """The bundle's decoder steps for every target without its own (``data.decode_steps``)."""
    return int(model.data_config.get("decode_steps") or DEFAULT_STEPS)


def target_steps(model, target: str, steps: int | None = None) -> int | None:
    """Decoder steps of ``target``: ``steps`` if given, else the bundle's setting; None for an
    autoregressive-twin bundle, which takes one pass per token (its NFE)."""
    if model.net.cfg.causal:
        return None
    return int(steps) if steps is not None else decode_settings(model, target)["steps"]


# what an autoregressive-twin bundle's decoder takes: it writes one token per pass, left to right
AR_SETTINGS = ("temperature", "compile")


def check_ar_settings(model, steps: int | None, decode_kw: dict) -> None:
    """Refuse, for an autoregressive-twin bundle, decoder settings it cannot use (anything but
    :data:`AR_SETTINGS`), rather than ignore them; nothing for a diffusion bundle."""
    refused = sorted(set(decode_kw) - set(AR_SETTINGS)) + (["steps"] if steps is not None else [])
    if model.net.cfg.causal and refused:
        raise ValueError(f"{refused}: an autoregressive-twin bundle (backbone.causal) decodes one token per pass, left to right, "
                         f"and takes only {list(AR_SETTINGS)}")


def complete(model, given: dict[str, list], target: str, *, steps: int | None = None, seed: int = 0,
             **decode_kw) -> tuple[list, int]:
    """The one shape of every task: tokenize the given values (one list per modality, one entry
    per sample), decode the ``target`` segment, detokenize it.  Returns (values, NFE).
    ``steps`` (None: the bundle's for ``target``) and ``decode_kw`` override the target's
    :func:`decode_settings`.  An autoregressive-twin bundle (``backbone.causal``) decodes with
    :func:`~unidiff.ar_decode.ar_decode` (greedy unless given a ``temperature``); of the settings it
    takes only :data:`AR_SETTINGS`, and refuses the others rather than ignore them."""
    from unidiff.ar_decode import ar_decode
    from unidiff.canvas import prompt_canvas
    from unidiff.decode import decode

    check_ar_settings(model, steps, decode_kw)
    codec = Codec(model.spec, model.tokenizers)
    encoded = {m: codec.encode(m, list(values)) for m, values in given.items()}
    n = len(next(iter(encoded.values())))
    tokens, roles = prompt_canvas(model.spec, [{m: segs[i] for m, segs in encoded.items()} for i in range(n)], (target,))
    dev = next(model.net.parameters()).device
    if model.net.cfg.causal:
        out = ar_decode(model.net, tokens.to(dev), roles.to(dev), seeds=seed, **decode_kw)
    else:
        settings = {**decode_settings(model, target), **decode_kw}
        if steps is not None:
            settings["steps"] = steps
        out = decode(model.net, tokens.to(dev), roles.to(dev), seeds=seed, **settings)
    return codec.decode(target, out.tokens[:, model.spec.slices[target]]), out.nfe

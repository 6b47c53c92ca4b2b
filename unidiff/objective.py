"""Training objectives: masked diffusion (ELBO-weighted cross-entropy on masked positions, per
modality) and its autoregressive twin (next-token cross-entropy, teacher forcing).

Each modality's loss is normalised by its number of TARGET positions in the batch (MDLM's
per-token ELBO), so modalities of different lengths are comparable; the total is a weighted sum
with per-modality weights from the config.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from unidiff.canvas import Role
from unidiff.model import Backbone
from unidiff.noise import NoisedBatch
from unidiff.vocab import MODALITIES


def _columns(model: Backbone, modality: str, joint: torch.Tensor) -> torch.Tensor:
    """Joint ids -> columns of ``model.logits(..., modality)``; ids outside the range are a data bug."""
    out_ids = model.output_ids(modality)
    lookup = torch.full((model.spec.vocab.size,), -1, dtype=torch.long, device=out_ids.device)
    lookup[out_ids] = torch.arange(out_ids.numel(), device=out_ids.device)
    target = lookup[joint]
    if bool((target < 0).any()):
        raise ValueError(f"{modality} segment holds ids outside its vocabulary range; check the tokenizer/vocab")
    return target


def diffusion_loss(model: Backbone, nb: NoisedBatch, weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Returns ``{"loss": total, "loss/<modality>": ...}`` for every modality with target positions."""
    spec = model.spec
    hidden = model(nb.tokens, nb.pos_roles)
    mod_ids = spec.modality_ids.to(nb.tokens.device)
    out: dict[str, torch.Tensor] = {}
    total = hidden.new_zeros(())
    for m in spec.modalities:
        is_m = mod_ids == MODALITIES.index(m)
        n_target = ((nb.pos_roles == Role.TARGET) & is_m).sum()
        sel = nb.masked & is_m
        if int(n_target) == 0:
            continue
        target = _columns(model, m, nb.clean[sel])
        logits = model.logits(hidden[sel], m).float()
        loss_m = (F.cross_entropy(logits, target, reduction="none") * nb.weight[sel]).sum() / n_target
        out[f"loss/{m}"] = loss_m.detach()
        if target.numel():
            out[f"acc/{m}"] = (logits.argmax(-1) == target).float().mean().detach()
        total = total + (1.0 if weights is None else weights.get(m, 1.0)) * loss_m
    out["loss"] = total
    return out


def autoregressive_loss(
    model: Backbone, tokens: torch.Tensor, pos_roles: torch.Tensor, weights: dict[str, float] | None = None
) -> dict[str, torch.Tensor]:
    """The autoregressive twin's objective: teacher forcing on clean tokens, no masking.

    Positions are ordered by the causal backbone's rank (GIVEN first, then TARGET, each in canvas
    order; ABSENT dropped); the hidden state at rank r predicts the token at rank r + 1 whenever
    that one is a TARGET, with logits restricted to its modality.  Each modality's loss is the mean
    over its predicted positions; same dict as :func:`diffusion_loss`.  The first token of a canvas
    with no GIVEN segment has no predecessor and is not trained (so :func:`unidiff.ar_decode.ar_decode`
    needs a GIVEN segment).
    """
    spec = model.spec
    if not model.cfg.causal:
        raise ValueError("autoregressive_loss needs a causal backbone (backbone.causal: true)")
    hidden = model(tokens, pos_roles)
    B, L = tokens.shape
    pos = torch.arange(L, device=tokens.device)
    key = torch.where(pos_roles == Role.ABSENT, 2 * L, (pos_roles == Role.TARGET).long() * L) + pos
    order = torch.argsort(key, dim=1)  # (B, L) canvas index of each rank, ABSENT last
    src, dst = order[:, :-1], order[:, 1:]
    predicted = torch.gather(pos_roles, 1, dst) == Role.TARGET  # ABSENT sorts last: never after a TARGET
    rows = torch.arange(B, device=tokens.device).unsqueeze(1).expand_as(dst)
    dst_mod = spec.modality_ids.to(tokens.device)[dst]
    out: dict[str, torch.Tensor] = {}
    total = hidden.new_zeros(())
    for m in spec.modalities:
        sel = predicted & (dst_mod == MODALITIES.index(m))
        if not bool(sel.any()):
            continue
        target = _columns(model, m, tokens[rows[sel], dst[sel]])
        logits = model.logits(hidden[rows[sel], src[sel]], m).float()
        loss_m = F.cross_entropy(logits, target)
        out[f"loss/{m}"] = loss_m.detach()
        out[f"acc/{m}"] = (logits.argmax(-1) == target).float().mean().detach()
        total = total + (1.0 if weights is None else weights.get(m, 1.0)) * loss_m
    out["loss"] = total
    return out

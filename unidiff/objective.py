"""Masked-diffusion objective: ELBO-weighted cross-entropy on masked positions, per modality.

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
        out_ids = model.output_ids(m)
        # joint id -> column of this modality's logits
        lookup = torch.full((spec.vocab.size,), -1, dtype=torch.long, device=out_ids.device)
        lookup[out_ids] = torch.arange(out_ids.numel(), device=out_ids.device)
        target = lookup[nb.clean[sel]]
        if bool((target < 0).any()):
            raise ValueError(f"{m} segment holds ids outside its vocabulary range; check the tokenizer/vocab")
        logits = model.logits(hidden[sel], m).float()
        loss_m = (F.cross_entropy(logits, target, reduction="none") * nb.weight[sel]).sum() / n_target
        out[f"loss/{m}"] = loss_m.detach()
        if target.numel():
            out[f"acc/{m}"] = (logits.argmax(-1) == target).float().mean().detach()
        total = total + (1.0 if weights is None else weights.get(m, 1.0)) * loss_m
    out["loss"] = total
    return out

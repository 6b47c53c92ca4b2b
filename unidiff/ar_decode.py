"""Decoding for the autoregressive twin: one token per forward pass, with a KV cache.

The twin is the same backbone with ``causal=True``: positions are ranked GIVEN first, then TARGET,
each in canvas order, and a position sees only lower ranks.  Decoding runs the GIVEN part once,
then generates the TARGET positions one at a time in rank order; each new token goes through the
network alone, attending to the growing per-layer key/value prefix.  NFE is the number of forward
passes, i.e. of tokens generated.  Text is elastic as in :func:`unidiff.decode.decode`: after
[EOS] the text segment is [PAD], and decoding stops once every row has ended and only text is left.

This is the baseline every diffusion speed claim is measured against (``unidiff bench --ar``).
"""
from __future__ import annotations

import torch

from unidiff.canvas import Role, position_roles
from unidiff.decode import DecodeOutput, _gumbel, _visible, inference
from unidiff.model import Backbone, KVCache
from unidiff.vocab import EOS_ID, MODALITIES, PAD_ID


@inference
def ar_decode(
    model: Backbone,
    tokens: torch.Tensor,
    roles: torch.Tensor,
    *,
    temperature: float = 0.0,
    compile: bool = False,
    seeds: int | list[int] = 0,
) -> DecodeOutput:
    """Fill every [MASK_*] position of the TARGET segments, left to right in rank order.

    Args:
        model: a causal backbone (``backbone.causal: true``, trained with the AR objective).
        tokens: (B, L) canvas as for :func:`~unidiff.decode.decode`; TARGET positions that do not
            hold their mask id are kept (teacher-forced).
        roles: (B, S) per-segment roles; every row needs a GIVEN segment (it predicts the first
            target token).  Rows with different roles are decoded as separate groups.
        temperature: sampling temperature (0 = greedy).
        compile: run the backbone through ``torch.compile``, as :func:`~unidiff.decode.decode` does.
        seeds: one seed per sample, or an int ``s`` meaning ``s, s+1, ...``.
    """
    if not model.cfg.causal:
        raise ValueError("ar_decode needs a causal backbone (an AR-twin bundle, backbone.causal: true); use decode() for diffusion")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    B = tokens.shape[0]
    seeds = [seeds + i for i in range(B)] if isinstance(seeds, int) else list(seeds)
    if len(seeds) != B:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {B}; pass one seed per sample or one int")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x = tokens.clone()
    pos_roles = position_roles(model.spec, roles.to(tokens.device))
    _, group = torch.unique(roles.cpu(), dim=0, return_inverse=True)
    nfe = 0
    for g in group.unique().tolist():
        rows = (group == g).nonzero().squeeze(1)
        x_g, n = _decode_group(model, x[rows.to(x.device)], pos_roles[rows.to(x.device)], [gens[i] for i in rows.tolist()], temperature, compile)
        x[rows.to(x.device)] = x_g
        nfe += n
    return DecodeOutput(x, nfe, nfe)


def _decode_group(model: Backbone, x: torch.Tensor, pr: torch.Tensor, gens: list, temperature: float, compiled: bool) -> tuple[torch.Tensor, int]:
    """Decode rows that share one role pattern; returns the filled rows and the forward passes.
    Attention masks are computed here, outside the (maybe compiled) run."""
    spec, dev, run = model.spec, x.device, model.runner(compiled)
    gidx = (pr[0] == Role.GIVEN).nonzero().squeeze(1)
    tidx = (pr[0] == Role.TARGET).nonzero().squeeze(1)
    if tidx.numel() == 0:
        return x, 0
    if gidx.numel() == 0:
        raise ValueError("the AR twin needs at least one GIVEN segment to predict the first target token")
    mask_ids = spec.mask_ids.to(dev)
    mods = [MODALITIES[i] for i in spec.modality_ids[tidx.cpu()].tolist()]
    # from this rank on only text is left: once every row has ended, the rest is [PAD]
    text_tail = len(mods) - next((i for i, m in enumerate(reversed(mods)) if m != "text"), len(mods))
    rows = torch.arange(x.shape[0])
    heads = {m: model.output_head(m) for m in set(mods)}  # once per call, as the diffusion decoder does
    g_roles = pr[:, gidx]
    h, kvs = run(x[:, gidx], gidx, g_roles, mask=_visible(model.attention(gidx, g_roles)), outputs=1)  # only the last position predicts
    prefix = KVCache(kvs, room=len(tidx))
    seen, seen_roles, prev = gidx, g_roles, h[:, -1]
    ended = torch.zeros(x.shape[0], dtype=torch.bool, device=dev)
    nfe = 1
    for r, (p, m) in enumerate(zip(tidx.tolist(), mods)):
        todo = x[:, p] == mask_ids[p]
        logits = model.logits(prev, m, heads[m]).float()
        if temperature > 0:
            pick = (logits / temperature + _gumbel(logits.shape, gens, rows).to(dev)).argmax(-1)
        else:
            pick = logits.argmax(-1)
        new = model.output_ids(m)[pick]
        if m == "text":
            new = torch.where(ended, torch.full_like(new, PAD_ID), new)
        x[:, p] = torch.where(todo, new, x[:, p])
        if m == "text":
            ended |= x[:, p] == EOS_ID
        if r == len(mods) - 1:
            break
        if r + 1 >= text_tail and bool(ended.all()):
            rest = tidx[r + 1 :]
            x[:, rest] = torch.where(x[:, rest] == mask_ids[rest], PAD_ID, x[:, rest])
            break
        pcol = tidx[r : r + 1]
        seen_roles = torch.cat([seen_roles, pr[:, pcol]], dim=1)
        mask = _visible(model.attention(pcol, seen_roles, seen))
        h, _ = run(x[:, pcol], pcol, seen_roles, prefix=prefix, prefix_positions=seen, mask=mask)
        prefix.keep()
        seen, prev = torch.cat([seen, pcol]), h[:, -1]
        nfe += 1
    return x, nfe

"""The iterative masked decoder, separate from the model (a diffusers-style scheduler).

Start with the positions to generate masked; at each step predict every masked position and
commit some of them -- by the schedule (the masked fraction of each target segment follows
gamma from t=1 to t=0) or by confidence threshold (every token above tau, so easy samples take
few steps) -- and keep the rest masked.  Optional remasking sends tokens that were committed with
low confidence back to [MASK], to be predicted again in more context (self-correction, within a
budget); elastic length fills a text segment with [PAD] after a committed [EOS].

Exact condition cache: under the attention rule the GIVEN positions never see the targets, so
their keys/values are computed once and each step runs only over the target positions.

Every random draw comes from a per-sample generator and each sample's segments are handled
independently, so a sample decodes to the same tokens whatever batch it is in.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

from unidiff.canvas import Role, position_roles
from unidiff.model import Backbone, KVCache
from unidiff.noise import mask_fraction
from unidiff.vocab import EOS_ID, MODALITIES, PAD_ID


@dataclass
class DecodeOutput:
    tokens: torch.Tensor  # (B, L) canvas with every masked target position filled
    nfe: int  # network function evaluations (forward passes; CFG costs two per step)
    steps: int  # decoding steps taken
    remasked: int = 0  # tokens sent back to [MASK] by remasking, over the batch


def inference(decoder):
    """Run ``decoder`` under ``torch.inference_mode`` -- less per-operator bookkeeping than
    ``no_grad``, which counts at batch 1 where each step is many small operators -- and return its
    tokens as an ordinary tensor (an inference tensor could not be written to afterwards)."""

    @functools.wraps(decoder)
    def run(*args, **kwargs) -> DecodeOutput:
        with torch.inference_mode():
            out = decoder(*args, **kwargs)
        return replace(out, tokens=out.tokens.clone())

    return run


class ConditionCache:
    """Runs the backbone for one canvas whose roles stay fixed while decoding.

    With ``enabled`` and a batch in which no column is GIVEN in one row and TARGET in another,
    the GIVEN columns run once (keys/values kept per layer) and every call runs only the TARGET
    columns against them -- the same numbers as a full pass up to float rounding, at a fraction
    of the cost.  Otherwise every call is a full pass over the columns present in some row.  The
    columns, their position embeddings and the attention mask are fixed once here, for both.
    Calls return the hidden states of ``columns``; :meth:`segment` finds a canvas segment among
    them.  ``compiled``: run through :meth:`Backbone.runner`'s compiled run.
    """

    def __init__(self, model: Backbone, tokens: torch.Tensor, pos_roles: torch.Tensor, enabled: bool = True, compiled: bool = False) -> None:
        self.run = model.runner(compiled)
        given, target = (pos_roles == Role.GIVEN).any(0), (pos_roles == Role.TARGET).any(0)
        self.cached = enabled and not bool((given & target).any())
        if self.cached:
            gidx, self.columns = given.nonzero().squeeze(1), target.nonzero().squeeze(1)
        else:  # columns ABSENT in every row cost nothing
            gidx, self.columns = None, (pos_roles != Role.ABSENT).any(0).nonzero().squeeze(1)
        self.prefix, self.roles = None, pos_roles[:, self.columns]
        if gidx is not None and gidx.numel():
            g_roles = pos_roles[:, gidx]
            _, kvs = self.run(tokens[:, gidx], gidx, g_roles, mask=_visible(model.attention(gidx, g_roles)), outputs=0)
            self.prefix = KVCache(kvs, room=len(self.columns))
            self.roles = torch.cat([g_roles, self.roles], dim=1)
        # the same at every step
        self.mask, self.pos = _visible(model.attention(self.columns, self.roles)), model.position_embedding(self.columns)

    def segment(self, sl: slice) -> slice:
        """A canvas slice -> the same positions in a call's output."""
        lo, hi = torch.searchsorted(self.columns, torch.tensor([sl.start, sl.stop], device=self.columns.device)).tolist()
        return slice(lo, hi)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) canvas -> (B, len(columns), width) hidden states of ``columns``."""
        return self.run(x[:, self.columns], self.columns, self.roles, prefix=self.prefix, mask=self.mask, pos=self.pos)[0]


def _visible(mask: torch.Tensor) -> torch.Tensor | None:
    """None for a mask that hides nothing (decided once per decode, not in the backbone's forward,
    where the check would cost a device sync every training step)."""
    return None if bool(mask.all()) else mask


def _gumbel(shape, gens: list[torch.Generator], rows: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise of ``shape[1:]`` for each sample in ``rows``, each from its own generator."""
    out = torch.zeros(shape)
    for i, b in enumerate(rows.tolist()):
        u = torch.rand(shape[1:], generator=gens[b], dtype=torch.float64)
        out[i] = -torch.log(-torch.log(u.clamp_min(1e-20)))
    return out


def _doubted(p: torch.Tensor, candidates: torch.Tensor, remask: float, budget: torch.Tensor) -> torch.Tensor:
    """Self-correction by ReMDM's confidence rule: of the ``candidates`` (committed tokens), those
    committed with a probability ``p`` below ``remask``, least confident first, at most ``budget``
    per row.  The commit-time probability, not the model's output at the now visible token: the
    model is trained on masked positions only, so that output is no evidence."""
    doubt = candidates & (p < remask)
    rank = torch.argsort(torch.argsort(p.masked_fill(~doubt, 2.0), dim=1, stable=True), dim=1, stable=True)
    return doubt & (rank < budget.unsqueeze(1))


def commit_rule(logits, seg_x, masked, ids, ranks, n_keep, temperature=0.0, pick_noise=None, conf_noise=None,
                block_rank=None, threshold=None, want_p=False):
    """One decoding step's rule for one target segment of some samples (a scheduler step, apart
    from the model): from the model's ``logits`` of its positions, pick a token for each masked
    one, choose which to commit, commit them.

    ``n_keep``: how many stay masked (the fixed schedule); ``threshold``: commit every token above it
    instead (None: the schedule); ``ids``: the joint id of each logit column; ``ranks``: ``arange``
    of the segment length; ``block_rank``: a left-to-right block order that outranks confidence;
    ``pick_noise`` / ``conf_noise``: Gumbel noise of sampling and of the commit order (None:
    argmax, pure confidence).
    -> (segment with the commits, still masked, committed, each pick's probability if ``want_p``).
    """
    pick = logits.argmax(-1) if pick_noise is None else (logits / temperature + pick_noise).argmax(-1)
    # log-probability of each pick; float64 only where something is added to it or compared with a
    # probability (at batch 1 a step is bound by its number of operators)
    conf = torch.log_softmax(logits, -1).gather(-1, pick.unsqueeze(-1)).squeeze(-1)
    p_pick = conf.double().exp() if want_p or threshold is not None else None
    if conf_noise is not None:
        conf = conf.double() + conf_noise
    conf = conf.masked_fill(~masked, float("-inf"))
    if block_rank is not None:
        conf = conf.double() - block_rank
    # commit order: the most confident masked tokens first (ties: lower position first)
    order = torch.argsort(conf, dim=1, descending=True, stable=True)
    n_masked = masked.sum(1)
    if threshold is None:
        n_commit = n_masked - n_keep
    else:
        sure = (p_pick > threshold) & masked
        # left to right: the leading run of sure tokens (a sure token behind an unsure one waits)
        n_commit = sure.gather(1, order).long().cumprod(1).sum(1) if block_rank is not None else sure.sum(1)
    n_commit = torch.minimum(torch.clamp(n_commit, min=1), n_masked)
    commit = masked & torch.zeros_like(masked).scatter_(1, order, ranks < n_commit.unsqueeze(1))
    # masked positions hold their mask id already
    return torch.where(commit, ids[pick], seg_x), masked & ~commit, commit, p_pick


def _validate(steps, schedule, temperature, noise_scale, cfg_scale, threshold, remask, seeds, batch) -> list[int]:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    mask_fraction(schedule, torch.zeros(1))  # raises on an unknown schedule
    for name, v in (("temperature", temperature), ("noise_scale", noise_scale), ("cfg_scale", cfg_scale)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    for name, v in (("threshold", threshold), ("remask", remask)):
        if v is not None and not 0.0 < v < 1.0:
            raise ValueError(f"{name} must be a probability in (0, 1) or None, got {v}")
    seeds = [seeds + i for i in range(batch)] if isinstance(seeds, int) else list(seeds)
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}; pass one seed per sample or one int")
    return seeds


@inference
def decode(
    model: Backbone,
    tokens: torch.Tensor,
    roles: torch.Tensor,
    *,
    steps: int = 8,
    schedule: str = "cosine",
    temperature: float = 0.0,
    noise_scale: float = 0.0,
    cfg_scale: float = 0.0,
    cfg_drop: tuple[str, ...] | None = None,
    threshold: float | None = None,
    remask: float | None = None,
    remask_budget: int = 0,
    text_block: int | None = None,
    elastic: bool = True,
    cache: bool = True,
    compile: bool = False,
    seeds: int | list[int] = 0,
) -> DecodeOutput:
    """Fill every [MASK_*] position of the TARGET segments.

    Args:
        tokens: (B, L) canvas; GIVEN segments hold clean tokens, TARGET positions to generate
            hold their modality's mask id (other target positions are kept: infilling).
        roles: (B, S) per-segment roles.
        steps: decoding steps (with ``threshold``: the most steps); the last commits everything.
        schedule: ``cosine`` or ``linear``: the masked fraction after each step.
        temperature: token sampling temperature (0 = argmax).
        noise_scale: Gumbel noise on the confidence used to choose which tokens to commit,
            annealed to 0 over the steps (MaskGIT's choice temperature; 0 = pure confidence).
        cfg_scale: classifier-free guidance w: logits = cond + w * (cond - uncond), where the
            unconditional pass makes every GIVEN segment ABSENT.  0 disables it.
        cfg_drop: the GIVEN modalities the unconditional pass drops (None: all of them) -- e.g.
            ``("text",)`` guides a policy toward its instruction while it still sees the image
            and state (training drops each GIVEN segment independently, so that pass is in-distribution).
        threshold: commit every masked token whose probability exceeds it (at least one per
            segment per step) instead of following the schedule; NFE adapts to difficulty.
        remask: send a token committed with a probability below this back to [MASK], to be
            predicted again at the next step in more context; at most ``remask_budget`` per sample.
            The fixed schedule then commits everything one step early, so the last step is left
            for what was remasked (same step budget; a step fewer when nothing was).
        text_block: semi-autoregressive text (LLaDA): a text segment's masked positions are
            committed left to right in blocks of this many (by confidence within a block); the
            number committed per step still follows the schedule, or with ``threshold`` is the
            leading run of tokens above it in that order.  Lets a caption
            word see the words before it, as the tokens an autoregressive model reads.  None:
            the whole segment by confidence.
        elastic: once a text segment commits [EOS], fill the rest of it with [PAD].
        cache: compute the GIVEN part once (exact under the attention rule).
        compile: run the backbone through ``torch.compile`` (:meth:`Backbone.runner`): each new
            shape compiles once (seconds), later calls are faster; outputs equal up to float rounding.
        seeds: one seed per sample, or an int ``s`` meaning ``s, s+1, ...``.
    """
    spec = model.spec
    B, L = tokens.shape
    if L != spec.length or tuple(roles.shape) != (B, len(spec.segments)):
        raise ValueError(f"expected a (B, {spec.length}) canvas and (B, {len(spec.segments)}) roles (prompt_canvas makes both), "
                         f"got {tuple(tokens.shape)} and {tuple(roles.shape)}")
    seeds = _validate(steps, schedule, temperature, noise_scale, cfg_scale, threshold, remask, seeds, B)
    if text_block is not None and (not isinstance(text_block, int) or text_block < 1):
        raise ValueError(f"text_block must be a positive int or None, got {text_block!r}")
    if cfg_drop is not None and (isinstance(cfg_drop, str) or not set(cfg_drop) <= set(spec.modalities)):
        raise ValueError(f"cfg_drop must be a tuple of this canvas's modalities {list(spec.modalities)} or None, got {cfg_drop!r}")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    dev = tokens.device
    x = tokens.clone()
    pos_roles = position_roles(spec, roles.to(dev))
    mask_ids = spec.mask_ids.to(dev)
    todo = (pos_roles == Role.TARGET) & (x == mask_ids)
    generated = todo.clone()  # positions this call fills (candidates for remasking)
    # with remasking: the probability each token was committed with
    commit_p = torch.ones(B, L, dtype=torch.float64, device=dev) if remask is not None else None
    forward = ConditionCache(model, x, pos_roles, enabled=cache, compiled=compile)
    uncond = None
    if cfg_scale > 0:
        drop = pos_roles == Role.GIVEN
        if cfg_drop is not None:
            drop &= torch.isin(spec.modality_ids.to(dev), torch.tensor([MODALITIES.index(m) for m in cfg_drop], dtype=torch.long, device=dev))
        uncond_roles = torch.where(drop, torch.full_like(pos_roles, Role.ABSENT), pos_roles)
        uncond = ConditionCache(model, x, uncond_roles, enabled=cache, compiled=compile)
    # per target segment: its modality, canvas slice, the rows where it is a target (a plain slice
    # when that is every row: views instead of gathers on the hot path) and their indices
    targets = []
    for s, seg in enumerate(spec.segments):
        idx = (roles[:, s] == Role.TARGET).nonzero().squeeze(1).cpu()
        if idx.numel():
            targets.append((seg.modality, spec.slices[seg.modality], slice(None) if idx.numel() == B else idx, idx))
    # per segment, once: its output head and, for the fixed schedule, how many of its tokens stay
    # masked after each step (gamma of the step's t times the segment's initial count)
    heads = {m: model.output_head(m) for m, _, _, _ in targets}
    ids = {m: model.output_ids(m) for m, _, _, _ in targets}  # joint id of each logit column
    ranks = {m: torch.arange(sl.stop - sl.start, device=dev) for m, sl, _, _ in targets}  # commit-order ranks
    # semi-autoregressive text: a block's index outranks any confidence in the commit order
    block_rank = {m: (ranks[m] // text_block).double() * 1e9 for m, _, _, _ in targets if m == "text" and text_block is not None}
    # with remasking the schedule is done one step early: the last step re-predicts what was remasked
    sched = steps - 1 if remask is not None and steps > 1 else steps
    keep_frac = mask_fraction(schedule, (1.0 - torch.arange(1, steps + 1, dtype=torch.float64) / sched).clamp_min(0.0))
    keep = {m: torch.floor(todo[rows, sl].sum(1).double().unsqueeze(0) * keep_frac.to(dev).unsqueeze(1)).long() for m, sl, rows, _ in targets}
    out_sl = {m: (forward.segment(sl), uncond.segment(sl) if uncond is not None else None) for m, sl, _, _ in targets}
    budget = torch.full((B,), remask_budget if remask is not None else 0, device=dev)
    nfe = taken = n_remasked = 0
    for k in range(steps):
        if not bool(todo.any()):
            break
        taken += 1
        last = k == steps - 1
        hidden = forward(x)
        hidden_u = uncond(x) if uncond is not None else None
        nfe += 1 if uncond is None else 2
        for m, sl, rows, idx in targets:
            logits = model.logits(hidden[rows, out_sl[m][0]], m, heads[m]).float()
            if hidden_u is not None:
                logits = logits + cfg_scale * (logits - model.logits(hidden_u[rows, out_sl[m][1]], m, heads[m]).float())
            seg_x, masked = x[rows, sl], todo[rows, sl]
            pick_noise = _gumbel(logits.shape, gens, idx).to(dev) if temperature > 0 else None
            conf_noise = noise_scale * (1.0 - (k + 1) / steps) * _gumbel(masked.shape, gens, idx).to(dev) if noise_scale > 0 else None
            seg_x, masked, commit, p_pick = commit_rule(
                logits, seg_x, masked, ids[m], ranks[m], keep[m][k], temperature, pick_noise, conf_noise,  # keep: 0 at the last step
                block_rank.get(m), None if last else threshold, remask is not None)
            if remask is not None:
                commit_p[rows, sl] = torch.where(commit, p_pick, commit_p[rows, sl])
                if not last:
                    # doubted tokens go back to [MASK] for the next step to predict again in more
                    # context -- only while the segment was decoding at this step's start: a finished
                    # one stays finished, so a sample's result does not depend on its batch
                    active = todo[rows, sl].any(1, keepdim=True)
                    doubt = _doubted(commit_p[rows, sl], generated[rows, sl] & ~masked & active, remask, budget[rows])
                    budget[rows] -= doubt.sum(1)
                    n_remasked += int(doubt.sum())
                    seg_x, masked = torch.where(doubt, mask_ids[sl], seg_x), masked | doubt
            if m == "text" and elastic:
                # elastic length: every generated position after the first [EOS] is [PAD]
                after = (seg_x == EOS_ID).long().cumsum(1) - (seg_x == EOS_ID).long() > 0
                fill = after & generated[rows, sl]
                seg_x, masked = torch.where(fill, torch.full_like(seg_x, PAD_ID), seg_x), masked & ~fill
                if remask is not None:  # a [PAD] fill is structure, not a guess to doubt
                    commit_p[rows, sl] = commit_p[rows, sl].masked_fill(fill, 1.0)
            x[rows, sl] = seg_x
            todo[rows, sl] = masked
    return DecodeOutput(x, nfe, taken, n_remasked)

"""The noise continuum: mask schedules, per-segment noise levels and the training task mixture.

Each TARGET segment gets its own level ``t in (0, 1]``; a fraction ``gamma(t)`` of its tokens is
replaced by that modality's [MASK] id.  GIVEN segments have ``t = 0``.  Which segments are given,
target or absent is drawn per sample from a task mixture, so one model learns every conditional
(captioning, text-to-image, policy) and the joint.  Condition dropout turns given segments absent
so that the same model also learns the unconditional needed by classifier-free guidance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from unidiff.canvas import Batch, CanvasSpec, Role, position_roles
from unidiff.vocab import MODALITIES

G, T = Role.GIVEN, Role.TARGET
# Task name -> role of each modality; modalities not named are ABSENT.  "unconditional" makes
# every segment a sample has a target.
TASKS: dict[str, dict[str, Role]] = {
    "caption": {"image": G, "text": T},
    "t2i": {"text": G, "image": T},
    "policy": {"text": G, "image": G, "state": G, "action": T},
    "joint": {"text": T, "image": T},
    "unconditional": {},
}


# ---- schedules -------------------------------------------------------------------------------
def mask_fraction(schedule: str, t: torch.Tensor) -> torch.Tensor:
    """gamma(t): the expected fraction of a segment's tokens that are masked at noise level t.

    linear: gamma = t.  cosine: gamma = sin(pi t / 2) -- keeps most tokens masked for most of the
    range, so decoding from t=1 to t=0 in even steps commits few tokens first (MaskGIT).
    """
    if schedule == "linear":
        return t
    if schedule == "cosine":
        return torch.sin(0.5 * math.pi * t)
    raise ValueError(f"unknown mask schedule {schedule!r}; expected 'linear' or 'cosine'")


def elbo_weight(schedule: str, t: torch.Tensor) -> torch.Tensor:
    """MDLM's continuous-time ELBO weight gamma'(t) / gamma(t) for masked-token cross-entropy."""
    if schedule == "linear":
        return 1.0 / t
    if schedule == "cosine":
        return 0.5 * math.pi / torch.tan(0.5 * math.pi * t)
    raise ValueError(f"unknown mask schedule {schedule!r}; expected 'linear' or 'cosine'")


@dataclass
class NoiseConfig:
    """How training corrupts a batch.

    Args:
        schedule: mask schedule, ``linear`` or ``cosine``.  Note that the cosine ELBO weight
            vanishes at t = 1, i.e. it barely trains generation from a fully masked segment; pair
            it with ``loss_weighting: uniform`` (MaskGIT) or use ``linear`` (MDLM).
        tasks: task mixture, task name -> relative weight (names from ``unidiff.noise.TASKS``).
            A sample only draws among the tasks its data supports.
        condition_dropout: probability that each GIVEN segment is made ABSENT (trains CFG).
        t_min: smallest noise level drawn (keeps the ELBO weight finite).
        loss_weighting: ``elbo`` (MDLM weight) or ``uniform`` (plain masked cross-entropy).
        suffix_masking: modality -> probability that a TARGET segment of it is masked as a suffix
            (its last ``round(gamma(t) n)`` positions, at least one) instead of at random.  Trains
            the reading that semi-autoregressive decoding (``decode(text_block=...)``) relies on:
            a word predicted from the words before it, e.g. which object a caption's k-th name is
            about.  Empty: random masking only.
    """

    schedule: Literal["linear", "cosine"] = "linear"
    tasks: dict[str, float] = field(default_factory=lambda: {"caption": 1.0, "t2i": 1.0, "policy": 1.0, "joint": 0.5})
    condition_dropout: float = 0.1
    t_min: float = 0.02
    loss_weighting: Literal["elbo", "uniform"] = "elbo"
    suffix_masking: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown task(s) {sorted(unknown)} in noise.tasks; known tasks: {sorted(TASKS)}")
        if any(w < 0 for w in self.tasks.values()) or not any(w > 0 for w in self.tasks.values()):
            raise ValueError(f"noise.tasks weights must be >= 0 with at least one > 0, got {self.tasks}")
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"noise.condition_dropout must be in [0, 1), got {self.condition_dropout}")
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"noise.t_min must be in (0, 1), got {self.t_min}")
        for m, p in self.suffix_masking.items():
            if m not in MODALITIES:
                raise ValueError(f"unknown modality {m!r} in noise.suffix_masking; known: {list(MODALITIES)}")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"noise.suffix_masking[{m!r}] must be a probability in [0, 1], got {p}")


@dataclass
class NoisedBatch:
    """A batch after roles and masking: what the backbone sees and what the loss needs."""

    tokens: torch.Tensor  # (B, L) with [MASK_*] at masked positions
    clean: torch.Tensor  # (B, L)
    roles: torch.Tensor  # (B, S)
    pos_roles: torch.Tensor  # (B, L)
    masked: torch.Tensor  # (B, L) bool
    weight: torch.Tensor  # (B, L) loss weight of each position (ELBO weight of its segment's t)


def roles_for_tasks(spec: CanvasSpec, tasks: list[str], present: torch.Tensor) -> torch.Tensor:
    """Task names (one per sample) -> (B, S) roles; segments a sample lacks are ABSENT."""
    roles = torch.zeros(len(tasks), len(spec.segments), dtype=torch.long)
    for b, task in enumerate(tasks):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
        for s, seg in enumerate(spec.segments):
            role = TASKS[task].get(seg.modality, T if task == "unconditional" else Role.ABSENT)
            roles[b, s] = role if bool(present[b, s]) else Role.ABSENT
    return roles.to(present.device)


def sample_tasks(batch: Batch, cfg: NoiseConfig, generator: torch.Generator | None = None) -> list[str]:
    """Draw one task per sample from the mixture, restricted to the tasks its data supports."""
    out = []
    for b, supported in enumerate(batch.tasks):
        names = [n for n in supported if cfg.tasks.get(n, 0.0) > 0]
        if not names:
            raise ValueError(
                f"sample {b} supports tasks {list(supported)} but the mixture noise.tasks={cfg.tasks} "
                "gives none of them a positive weight"
            )
        w = torch.tensor([cfg.tasks[n] for n in names], dtype=torch.float)
        out.append(names[int(torch.multinomial(w, 1, generator=generator))])
    return out


def apply_noise(spec: CanvasSpec, batch: Batch, cfg: NoiseConfig, generator: torch.Generator | None = None) -> NoisedBatch:
    """Assign roles (task mixture + condition dropout) and mask each target segment at its own t."""
    B, S = batch.tokens.shape[0], len(spec.segments)
    dev = batch.tokens.device
    roles = roles_for_tasks(spec, sample_tasks(batch, cfg, generator), batch.present.cpu())
    drop = torch.rand(B, S, generator=generator) < cfg.condition_dropout
    roles = torch.where((roles == G) & drop, torch.full_like(roles, Role.ABSENT), roles).to(dev)

    # stratified noise levels: one t per (sample, segment), spread evenly over the batch
    u = (torch.rand(1, S, generator=generator) + torch.arange(B).unsqueeze(1)) / B
    u = torch.gather(u, 0, torch.argsort(torch.rand(B, S, generator=generator), dim=0))
    t_seg = (cfg.t_min + (1.0 - cfg.t_min) * u).to(dev)

    seg_ids = spec.segment_ids.to(dev)
    pos_roles = position_roles(spec, roles)
    t_pos = t_seg[:, seg_ids]
    is_target = pos_roles == T
    gamma = mask_fraction(cfg.schedule, t_pos)
    masked = is_target & (torch.rand(B, spec.length, generator=generator).to(dev) < gamma)
    for m, p in cfg.suffix_masking.items():
        if m in spec.slices and p > 0:
            sl = spec.slices[m]
            n = sl.stop - sl.start
            n_mask = torch.round(gamma[:, sl.start] * n).clamp_min(1)
            suffix = torch.arange(n, device=dev) >= (n - n_mask).unsqueeze(1)
            ordered = (torch.rand(B, generator=generator) < p).to(dev).unsqueeze(1)
            masked[:, sl] = torch.where(ordered, suffix & is_target[:, sl], masked[:, sl])
    tokens = torch.where(masked, spec.mask_ids.to(dev).expand(B, -1), batch.tokens)
    if cfg.loss_weighting == "elbo":
        weight = elbo_weight(cfg.schedule, t_pos)
    else:
        weight = torch.ones_like(t_pos)
    return NoisedBatch(tokens, batch.tokens, roles, pos_roles, masked, weight * is_target)

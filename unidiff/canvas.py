"""The canvas: every sample is a fixed sequence of segments (text, image, state, action).

A task is only a choice of roles: which segments are GIVEN (clean), which are TARGET (masked, to
be generated) and which are ABSENT.  This module knows the static layout of the canvas
(:class:`CanvasSpec`), turns per-sample token dicts into batches (:func:`collate`), and states
the attention rule (:func:`attention_mask`) that makes the condition cacheable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

import torch

from unidiff.vocab import EOS_ID, MASK_IDS, MODALITIES, PAD_ID, Vocab


class Role(IntEnum):
    ABSENT = 0
    GIVEN = 1
    TARGET = 2


@dataclass(frozen=True)
class Segment:
    """One modality's block of the canvas, laid out as a (rows, cols) grid for 2-D positions."""

    modality: str
    rows: int
    cols: int

    @property
    def length(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class CanvasSpec:
    """Static layout: segment shapes and the joint vocabulary. A length of 0 leaves a segment out."""

    vocab: Vocab
    text_len: int = 0
    image_hw: tuple[int, int] = (0, 0)
    state_dim: int = 0
    action_shape: tuple[int, int] = (0, 0)  # (horizon H, action dims D)
    segments: tuple[Segment, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shapes = {
            "text": (1, self.text_len),
            "image": tuple(self.image_hw),
            "state": (1, self.state_dim),
            "action": tuple(self.action_shape),
        }
        segs = []
        for m in MODALITIES:
            rows, cols = shapes[m]
            if rows < 0 or cols < 0:
                raise ValueError(f"{m} segment shape must be non-negative, got {(rows, cols)}")
            if rows * cols > 0:
                if getattr(self.vocab, m) < 1:
                    raise ValueError(f"the canvas has a {m} segment but the vocabulary has no {m} ids")
                segs.append(Segment(m, rows, cols))
        if not segs:
            raise ValueError("a canvas needs at least one non-empty segment")
        object.__setattr__(self, "segments", tuple(segs))

    # ---- derived layout -------------------------------------------------------------------
    @property
    def length(self) -> int:
        return sum(s.length for s in self.segments)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(s.modality for s in self.segments)

    @cached_property
    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for s in self.segments:
            out[s.modality] = slice(start, start + s.length)
            start += s.length
        return out

    def segment(self, modality: str) -> Segment:
        for s in self.segments:
            if s.modality == modality:
                return s
        raise KeyError(f"this canvas has no {modality!r} segment (it has {self.modalities})")

    @cached_property
    def segment_ids(self) -> torch.Tensor:
        """(L,) index of each position's segment in ``self.segments``."""
        return torch.cat([torch.full((s.length,), i) for i, s in enumerate(self.segments)])

    @cached_property
    def modality_ids(self) -> torch.Tensor:
        """(L,) index of each position's modality in ``MODALITIES`` (stable across specs)."""
        return torch.cat([torch.full((s.length,), MODALITIES.index(s.modality)) for s in self.segments])

    @cached_property
    def mask_ids(self) -> torch.Tensor:
        """(L,) the [MASK_*] id of each position's modality."""
        return torch.cat([torch.full((s.length,), MASK_IDS[s.modality]) for s in self.segments])

    @cached_property
    def grid_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(L,) row and column index of each position inside its segment (2-D for images/actions)."""
        rows, cols = [], []
        for s in self.segments:
            r, c = torch.meshgrid(torch.arange(s.rows), torch.arange(s.cols), indexing="ij")
            rows.append(r.flatten())
            cols.append(c.flatten())
        return torch.cat(rows), torch.cat(cols)

    def to_dict(self) -> dict:
        return {
            "vocab": self.vocab.to_dict(),
            "text_len": self.text_len,
            "image_hw": list(self.image_hw),
            "state_dim": self.state_dim,
            "action_shape": list(self.action_shape),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CanvasSpec":
        return cls(
            vocab=Vocab(**d["vocab"]),
            text_len=int(d["text_len"]),
            image_hw=tuple(d["image_hw"]),
            state_dim=int(d["state_dim"]),
            action_shape=tuple(d["action_shape"]),
        )


@dataclass
class Batch:
    """Clean tokens of a batch of samples, before any role is assigned.

    ``present[b, s]`` says whether sample ``b`` has segment ``s`` at all; ``tasks`` lists, per sample,
    the task names its data supports (a scene sample cannot train the policy task).
    """

    tokens: torch.Tensor  # (B, L) joint ids, PAD where a segment is missing
    present: torch.Tensor  # (B, S) bool
    tasks: list[tuple[str, ...]]

    def to(self, device) -> "Batch":
        return Batch(self.tokens.to(device), self.present.to(device), self.tasks)

    def __len__(self) -> int:
        return self.tokens.shape[0]


def collate(spec: CanvasSpec, items: list[dict]) -> Batch:
    """Items are dicts ``{"tokens": {modality: LongTensor of joint ids}, "tasks": tuple[str, ...]}``.

    Every present segment must already have exactly its segment's length (text padded with [PAD]
    after [EOS]); a wrong length is a data bug, reported with the modality and both lengths.
    """
    B, L = len(items), spec.length
    tokens = torch.full((B, L), PAD_ID, dtype=torch.long)
    present = torch.zeros(B, len(spec.segments), dtype=torch.bool)
    for b, item in enumerate(items):
        for s_idx, seg in enumerate(spec.segments):
            t = item["tokens"].get(seg.modality)
            if t is None:
                continue
            t = torch.as_tensor(t, dtype=torch.long).flatten()
            if t.numel() != seg.length:
                raise ValueError(f"{seg.modality} segment needs {seg.length} tokens, item {b} has {t.numel()}")
            tokens[b, spec.slices[seg.modality]] = t
            present[b, s_idx] = True
        unknown = set(item["tokens"]) - set(spec.modalities)
        if unknown:
            raise ValueError(f"item {b} has modalities {sorted(unknown)} that the canvas lacks ({spec.modalities})")
    return Batch(tokens, present, [tuple(item["tasks"]) for item in items])


def position_roles(spec: CanvasSpec, roles: torch.Tensor) -> torch.Tensor:
    """(B, S) per-segment roles -> (B, L) per-position roles."""
    return roles[:, spec.segment_ids.to(roles.device)]


def attention_mask(pos_roles: torch.Tensor, causal: bool = False, positions: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L) roles -> (B, L, L) bool, True where query i may attend to key j.

    The rule: GIVEN queries see only GIVEN keys; TARGET queries see GIVEN and TARGET keys; nobody
    sees ABSENT keys.  Hence the given part never depends on the targets, and its keys/values can
    be computed once per sample and reused at every decoding step.  Every position also sees
    itself, so no softmax row is empty.

    ``causal`` is the autoregressive twin's rule (same backbone, one switch): positions are ranked
    by (is TARGET, canvas position) -- GIVEN segments first, then TARGET segments, each in canvas
    order -- and query i sees non-ABSENT key j iff rank(j) <= rank(i).  ``positions`` (L,) are the
    canvas indices of the columns (default ``0..L-1``); the ranking needs them when columns are a
    subset of the canvas.  The causal rule still never lets GIVEN see TARGET, so it caches too.
    """
    q = pos_roles[:, :, None]
    k = pos_roles[:, None, :]
    L = pos_roles.shape[1]
    eye = torch.eye(L, dtype=torch.bool, device=pos_roles.device)
    if causal:
        if positions is None:
            positions = torch.arange(L, device=pos_roles.device)
        if positions.shape != (L,):
            raise ValueError(f"positions must have shape ({L},) to match pos_roles, got {tuple(positions.shape)}")
        rank = (pos_roles == Role.TARGET).long() * (int(positions.max()) + 1) + positions.to(pos_roles.device)
        return ((k != Role.ABSENT) & (rank[:, None, :] <= rank[:, :, None])) | eye
    visible = (k != Role.ABSENT) & ((q == Role.TARGET) | (k == Role.GIVEN))
    return visible | eye


def text_segment(ids: list[int], length: int) -> torch.Tensor:
    """Text token ids -> a text segment: ``ids + [EOS]``, padded with [PAD] to ``length``."""
    if len(ids) + 1 > length:
        raise ValueError(f"text of {len(ids)} tokens does not fit a text segment of {length} (needs room for [EOS])")
    return torch.tensor(list(ids) + [EOS_ID] + [PAD_ID] * (length - len(ids) - 1), dtype=torch.long)


def text_ids(segment: torch.Tensor) -> list[int]:
    """A (decoded) text segment -> the ids before the first [EOS] or [PAD]."""
    out = []
    for i in segment.tolist():
        if i in (EOS_ID, PAD_ID):
            break
        out.append(i)
    return out


def prompt_canvas(spec: CanvasSpec, given: list[dict[str, torch.Tensor]], targets: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A canvas ready for decoding: each sample's GIVEN segments (joint ids), the ``targets``
    segments fully masked, every other segment ABSENT.  Returns ``(tokens (B, L), roles (B, S))``."""
    for m in targets:
        spec.segment(m)  # raises for a modality the canvas lacks
    batch = collate(spec, [{"tokens": g, "tasks": ()} for g in given])
    roles = torch.where(batch.present, int(Role.GIVEN), int(Role.ABSENT))
    for s, seg in enumerate(spec.segments):
        if seg.modality in targets:
            roles[:, s] = Role.TARGET
            batch.tokens[:, spec.slices[seg.modality]] = MASK_IDS[seg.modality]
    return batch.tokens, roles

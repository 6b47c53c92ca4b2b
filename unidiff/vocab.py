"""One joint vocabulary for every modality.

Layout of the id space (fixed order, so ids are stable across runs)::

    [specials] [text content] [image codes] [state bins] [action bins]

The specials are shared (`[PAD]`, `[EOS]`, `[SEP]`) plus one mask token per modality, the first
step toward structured masking.  The text tokenizer is trained with exactly these specials at
exactly these ids, so a text tokenizer id *is* a joint id; the other modalities use local ids
``0..size-1`` that :meth:`Vocab.to_joint` offsets into their range.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

MODALITIES: tuple[str, ...] = ("text", "image", "state", "action")
SPECIALS: tuple[str, ...] = (
    "[PAD]",
    "[EOS]",
    "[SEP]",
    "[MASK_TEXT]",
    "[MASK_IMAGE]",
    "[MASK_STATE]",
    "[MASK_ACTION]",
)
PAD_ID, EOS_ID, SEP_ID = 0, 1, 2
MASK_IDS: dict[str, int] = {m: SPECIALS.index(f"[MASK_{m.upper()}]") for m in MODALITIES}
NUM_SPECIALS = len(SPECIALS)


@dataclass(frozen=True)
class Vocab:
    """Sizes of each modality's content range; everything else is derived."""

    text: int
    image: int
    state: int
    action: int

    def __post_init__(self) -> None:
        for m in MODALITIES:
            if getattr(self, m) < 0:
                raise ValueError(f"vocabulary size for {m!r} must be >= 0, got {getattr(self, m)}")

    @property
    def size(self) -> int:
        return NUM_SPECIALS + sum(getattr(self, m) for m in MODALITIES)

    def range(self, modality: str) -> tuple[int, int]:
        """Half-open ``[start, stop)`` of a modality's content ids in the joint space."""
        start = NUM_SPECIALS
        for m in MODALITIES:
            if m == modality:
                return start, start + getattr(self, m)
            start += getattr(self, m)
        raise KeyError(f"unknown modality {modality!r}; expected one of {MODALITIES}")

    def mask_id(self, modality: str) -> int:
        return MASK_IDS[modality]

    def output_ids(self, modality: str) -> torch.Tensor:
        """Joint ids a position of this modality may emit: its range, plus [EOS]/[PAD] for text
        (the model predicts where text ends: elastic length)."""
        start, stop = self.range(modality)
        ids = torch.arange(start, stop)
        if modality == "text":
            ids = torch.cat([torch.tensor([PAD_ID, EOS_ID]), ids])
        return ids

    def to_joint(self, modality: str, local: torch.Tensor) -> torch.Tensor:
        """Local ids (0..size-1) of a non-text modality -> joint ids, with a range check."""
        size = getattr(self, modality)
        if local.numel() and (int(local.min()) < 0 or int(local.max()) >= size):
            raise ValueError(
                f"{modality} ids must lie in [0, {size}); got [{int(local.min())}, {int(local.max())}]"
            )
        return local + self.range(modality)[0]

    def to_local(self, modality: str, joint: torch.Tensor) -> torch.Tensor:
        start, stop = self.range(modality)
        if joint.numel() and (int(joint.min()) < start or int(joint.max()) >= stop):
            raise ValueError(f"{modality} joint ids must lie in [{start}, {stop})")
        return joint - start

    def to_dict(self) -> dict:
        return asdict(self)

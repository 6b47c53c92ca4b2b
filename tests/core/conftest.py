"""Tiny canvases and models for the core tests (no trained weights; everything made here)."""
from __future__ import annotations

import pytest
import torch

from unidiff.canvas import CanvasSpec
from unidiff.model import Backbone, BackboneConfig
from unidiff.vocab import Vocab


@pytest.fixture
def spec() -> CanvasSpec:
    return CanvasSpec(Vocab(text=20, image=9, state=5, action=7), text_len=6, image_hw=(3, 3), state_dim=2, action_shape=(3, 2))


@pytest.fixture(params=[False, True], ids=["learned-pos", "rope"])
def net(spec, request) -> Backbone:
    torch.manual_seed(0)
    return Backbone(spec, BackboneConfig(width=32, depth=2, heads=2, rope=request.param)).eval()


def _random_sample(spec: CanvasSpec, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random clean joint ids for every segment of ``spec``."""
    out = {}
    for seg in spec.segments:
        lo, hi = spec.vocab.range(seg.modality)
        out[seg.modality] = torch.randint(lo, hi, (seg.length,), generator=g)
    return out


@pytest.fixture
def random_sample():
    return _random_sample

import pytest
import torch

from unidiff.model import Backbone, BackboneConfig


@pytest.mark.parametrize("embed_std", [0.1, 0.3])
def test_embeddings_start_at_embed_std_and_linear_layers_at_002(spec, embed_std):
    """The embedding scale is its own knob (the synthetic policy's instruction binding depends on it)."""
    torch.manual_seed(0)
    net = Backbone(spec, BackboneConfig(width=64, depth=1, heads=2, embed_std=embed_std))
    for emb in (net.tok_emb, net.row_emb, net.col_emb):
        assert float(emb.weight.std()) == pytest.approx(embed_std, rel=0.15)
    assert float(net.blocks[0].attn.qkv.weight.std()) == pytest.approx(0.02, rel=0.1)
    assert float(net.head.weight.std()) == pytest.approx(0.02, rel=0.1)


def test_embed_std_must_be_positive():
    with pytest.raises(ValueError, match="embed_std"):
        BackboneConfig(embed_std=0.0)

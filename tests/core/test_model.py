import pytest
import torch

from unidiff.model import Backbone, BackboneConfig


@pytest.mark.parametrize("embed_std", [0.1, 0.3])
def test_embeddings_start_at_embed_std_and_linear_layers_at_002(spec, embed_std):
    """The embedding scale is its own knob (the synthetic policy's instruction binding depends on it)."""
    torch.manual_seed(0)
    net = Backbone(spec, BackboneConfig(width=64, depth=1, heads=2, embed_std=embed_std))
    for emb in (net.tok_emb, net.row_emb, net.col_emb):
        assert float(emb.weight.detach().std()) == pytest.approx(embed_std, rel=0.15)
    assert float(net.blocks[0].attn.qkv.weight.detach().std()) == pytest.approx(0.02, rel=0.1)
    assert float(net.head.weight.detach().std()) == pytest.approx(0.02, rel=0.1)


def test_embed_std_must_be_positive():
    with pytest.raises(ValueError, match="embed_std"):
        BackboneConfig(embed_std=0.0)


def test_rope_scores_depend_only_on_the_offset():
    from unidiff.model import apply_rope, rope_angles

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)
    cos, sin = rope_angles(torch.arange(40), 16, 10_000.0)

    def score(i, j):
        return float(apply_rope(q, cos[i], sin[i]) @ apply_rope(k, cos[j], sin[j]))

    assert score(3, 7) == pytest.approx(score(20, 24), abs=1e-5)
    assert score(3, 7) != pytest.approx(score(3, 8), abs=1e-3)


def test_rope_backbone_uses_positions_in_attention_and_loads_like_the_plain_one(spec, random_sample):
    from unidiff.canvas import position_roles, prompt_canvas

    torch.manual_seed(0)
    rope = Backbone(spec, BackboneConfig(width=32, depth=2, heads=2, rope=True)).eval()
    plain = Backbone(spec, BackboneConfig(width=32, depth=2, heads=2)).eval()
    plain.load_state_dict(rope.state_dict())  # same parameters: rotary angles are not weights
    tokens, roles = prompt_canvas(spec, [{"text": random_sample(spec, torch.Generator().manual_seed(1))["text"]}], ("image",))
    pos_roles = position_roles(spec, roles)
    assert not torch.allclose(rope(tokens, pos_roles), plain(tokens, pos_roles), atol=1e-4)
    with pytest.raises(ValueError, match="even head width"):
        BackboneConfig(width=30, heads=2, rope=True)


def test_linear_weights_are_stored_transposed_and_survive_loading_copies_and_training(spec, random_sample):
    """The blocks' linear weights live column-major (faster products at decoding sizes), and the
    layout survives optimiser steps, load_state_dict and deep copies, which give the same outputs."""
    import copy

    from unidiff.canvas import position_roles, prompt_canvas

    def layouts(net):
        return {n: p.t().is_contiguous() for n, p in net.named_parameters() if n.startswith("blocks") and p.ndim == 2}

    torch.manual_seed(0)
    net = Backbone(spec, BackboneConfig(width=32, depth=2, heads=2))
    assert len(layouts(net)) == 4 * 2 and all(layouts(net).values())
    twin = Backbone(spec, BackboneConfig(width=32, depth=2, heads=2))
    tokens, roles = prompt_canvas(spec, [{"text": random_sample(spec, torch.Generator().manual_seed(1))["text"]}], ("image",))
    pos_roles = position_roles(spec, roles)
    loss = net(tokens, pos_roles).square().mean()
    loss.backward()
    torch.optim.AdamW(net.parameters(), lr=1e-2).step()
    twin.load_state_dict(net.state_dict())
    assert all(layouts(net).values())  # the optimiser step kept the layout
    for other in (twin, copy.deepcopy(net)):
        assert all(layouts(other).values())
        assert torch.equal(other.eval()(tokens, pos_roles), net.eval()(tokens, pos_roles))


def test_block_mlp_skips_identity_layers_but_keeps_dropout_in_training():
    """A block calls timm's Mlp through its linears alone when nothing would drop (the same
    numbers), and through the whole Mlp, dropout included, when training with dropout."""
    from unidiff.model import Block

    torch.manual_seed(0)
    x = torch.randn(2, 5, 32)
    plain = Block(BackboneConfig(width=32, depth=1, heads=2))
    assert torch.equal(plain._mlp(x), plain.mlp(x))
    dropping = Block(BackboneConfig(width=32, depth=1, heads=2, dropout=0.5))
    assert torch.equal(dropping.eval()._mlp(x), dropping.mlp(x))
    dropping.train()
    assert not torch.equal(dropping._mlp(x), dropping._mlp(x))  # a new dropout draw each call

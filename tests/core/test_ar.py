"""The autoregressive twin: causal rank mask, next-token loss, KV-cached decoding."""
import pytest
import torch
import torch.nn.functional as F

from unidiff.ar_decode import ar_decode
from unidiff.canvas import Role, attention_mask, position_roles, prompt_canvas
from unidiff.decode import decode
from unidiff.model import Backbone, BackboneConfig, KVCache
from unidiff.objective import autoregressive_loss
from unidiff.train import UnidiffModule
from unidiff.vocab import EOS_ID, MODALITIES, PAD_ID

G, T, A = Role.GIVEN, Role.TARGET, Role.ABSENT


@pytest.fixture(params=[False, True], ids=["learned-pos", "rope"])
def ar_net(spec, request) -> Backbone:
    torch.manual_seed(0)
    return Backbone(spec, BackboneConfig(width=32, depth=2, heads=2, causal=True, rope=request.param)).eval()


def _rank_order(pos_roles_row: torch.Tensor) -> list[int]:
    """Canvas indices in the twin's order, written the slow way: GIVEN, then TARGET, canvas order."""
    pr = pos_roles_row.tolist()
    return [i for i, r in enumerate(pr) if r == G] + [i for i, r in enumerate(pr) if r == T]


def test_causal_mask_follows_given_then_target_rank():
    # canvas: 2 target cols, 2 given, 1 absent, 1 target -> order 2, 3, 0, 1, 5
    pr = torch.tensor([[T, T, G, G, A, T]])
    m = attention_mask(pr, causal=True)[0]
    order = _rank_order(pr[0])
    for i in order:  # (an ABSENT query's output is never used)
        for j in range(6):
            expect = i == j or (j in order and order.index(j) <= order.index(i))
            assert bool(m[i, j]) == expect, (i, j)
    assert not m[2, 0] and m[0, 2] and m[1, 0] and not m[0, 1] and m[5, 1] and not m[5, 4]
    # a column subset ranks by canvas position, not by column index
    sub = attention_mask(torch.tensor([[T, G]]), causal=True, positions=torch.tensor([5, 3]))[0]
    assert sub.tolist() == [[True, True], [False, True]]
    # the diffusion rule is untouched: targets see all targets
    assert attention_mask(pr)[0][0, 5]


def test_backbone_causal_prefix_needs_positions(ar_net):
    idx = torch.tensor([0, 1])
    pr = torch.full((1, 2), int(G))
    _, kv = ar_net.run(torch.tensor([[5, 6]]), idx, pr)
    with pytest.raises(ValueError, match="prefix_positions"):
        ar_net.run(torch.tensor([[7]]), torch.tensor([2]), torch.full((1, 3), int(G)), prefix=KVCache(kv, room=1))


def test_kv_cache_overwrites_until_kept_and_refuses_overflow(ar_net):
    """A run against a KVCache equals a run with its keys/values concatenated; unkept runs are
    overwritten (diffusion steps), kept ones extend the prefix (AR steps)."""
    idx, pr = torch.tensor([0, 1]), torch.full((1, 2), int(G))
    _, kv = ar_net.run(torch.tensor([[5, 6]]), idx, pr)
    cache = KVCache(kv, room=1)
    roles3, seen = torch.full((1, 3), int(G)), idx
    a, _ = ar_net.run(torch.tensor([[9]]), torch.tensor([2]), roles3, prefix=cache, prefix_positions=seen)
    b, _ = ar_net.run(torch.tensor([[7]]), torch.tensor([2]), roles3, prefix=cache, prefix_positions=seen)  # overwrites 9
    full, _ = ar_net.run(torch.tensor([[5, 6, 7]]), torch.tensor([0, 1, 2]), roles3)
    assert torch.allclose(b[:, -1], full[:, -1], atol=1e-5) and not torch.allclose(a, b)
    cache.keep()
    assert cache.length == 3
    with pytest.raises(ValueError, match="do not fit"):
        ar_net.run(torch.tensor([[8]]), torch.tensor([3]), torch.full((1, 4), int(G)), prefix=cache, prefix_positions=torch.tensor([0, 1, 2]))


def test_ar_loss_matches_a_hand_computed_value(spec, ar_net, random_sample):
    g = torch.Generator().manual_seed(1)
    tokens = torch.stack([torch.cat([random_sample(spec, g)[s.modality] for s in spec.segments]) for _ in range(3)])
    roles = torch.tensor([[T, G, A, A], [G, T, A, A], [G, G, G, T]])  # caption, t2i, policy
    pr = position_roles(spec, roles)
    out = autoregressive_loss(ar_net, tokens, pr)
    hidden = ar_net(tokens, pr)
    per_mod: dict[str, list[torch.Tensor]] = {}
    for b in range(3):
        order = _rank_order(pr[b])
        for src, dst in zip(order[:-1], order[1:]):
            if pr[b, dst] != T:
                continue
            m = MODALITIES[int(spec.modality_ids[dst])]
            col = ar_net.output_ids(m).tolist().index(int(tokens[b, dst]))
            logits = ar_net.logits(hidden[b, src], m)
            per_mod.setdefault(m, []).append(F.cross_entropy(logits[None], torch.tensor([col])))
    expect = sum(torch.stack(v).mean() for v in per_mod.values())
    assert set(out) >= {f"loss/{m}" for m in per_mod} | {"loss"}
    torch.testing.assert_close(out["loss"], expect)


def test_ar_loss_decreases_on_a_fixed_batch(spec, random_sample):
    torch.manual_seed(0)
    net = Backbone(spec, BackboneConfig(width=32, depth=2, heads=2, causal=True))
    g = torch.Generator().manual_seed(2)
    tokens = torch.stack([torch.cat([random_sample(spec, g)[s.modality] for s in spec.segments]) for _ in range(4)])
    pr = position_roles(spec, torch.tensor([[T, G, A, A], [G, T, A, A]] * 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = autoregressive_loss(net, tokens, pr)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def _reference(net, tokens, roles):
    """Greedy AR decoding by recomputing the full causal forward for every token (no cache)."""
    spec, x = net.spec, tokens.clone()
    pr = position_roles(spec, roles)
    order = _rank_order(pr[0])
    ended = torch.zeros(len(x), dtype=torch.bool)
    for src, dst in zip(order[:-1], order[1:]):
        if pr[0, dst] != T:
            continue
        m = MODALITIES[int(spec.modality_ids[dst])]
        new = net.output_ids(m)[net.logits(net(x, pr)[:, src], m).argmax(-1)]
        if m == "text":
            new = torch.where(ended, PAD_ID, new)
            ended |= new == EOS_ID
        x[:, dst] = new
    return x


@pytest.mark.parametrize("targets,keep", [(("text",), ("image",)), (("image", "action"), ("text", "state"))])
def test_kv_cached_decoding_equals_full_recompute(spec, ar_net, random_sample, targets, keep):
    g = torch.Generator().manual_seed(3)
    given = [{m: v for m, v in random_sample(spec, g).items() if m in keep} for _ in range(3)]
    tokens, roles = prompt_canvas(spec, given, targets)
    out = ar_decode(ar_net, tokens, roles)
    assert torch.equal(out.tokens, _reference(ar_net, tokens, roles))
    n_target = sum(spec.segment(m).length for m in targets)
    assert 1 <= out.nfe <= n_target
    if targets == ("text",):  # elastic: [PAD] only after an [EOS]
        for row in out.tokens[:, spec.slices["text"]].tolist():
            assert PAD_ID not in row or EOS_ID in row[: row.index(PAD_ID)]


def test_early_stop_at_eos_saves_forwards(spec, ar_net, random_sample):
    logits = ar_net.logits  # make [EOS] the twin's favourite text token

    def eos_first(hidden, modality, head=None):
        out = logits(hidden, modality, head)
        return out + 100.0 * (ar_net.output_ids(modality) == EOS_ID) if modality == "text" else out

    ar_net.logits = eos_first
    g = torch.Generator().manual_seed(4)
    tokens, roles = prompt_canvas(spec, [{"image": random_sample(spec, g)["image"]} for _ in range(2)], ("text",))
    out = ar_decode(ar_net, tokens, roles)
    assert out.tokens[:, spec.slices["text"]][:, 0].eq(EOS_ID).all()
    assert out.nfe == 1 and (out.tokens[:, spec.slices["text"]][:, 1:] == PAD_ID).all()


def test_mixed_roles_and_sampling_do_not_depend_on_the_batch(spec, ar_net, random_sample):
    g = torch.Generator().manual_seed(5)
    samples = [random_sample(spec, g) for _ in range(4)]
    t1, r1 = prompt_canvas(spec, [{"image": s["image"]} for s in samples[:2]], ("text",))
    t2, r2 = prompt_canvas(spec, [{"text": s["text"], "state": s["state"]} for s in samples[2:]], ("image", "action"))
    tokens, roles = torch.cat([t1, t2]), torch.cat([r1, r2])
    batch = ar_decode(ar_net, tokens, roles, temperature=1.0, seeds=[10, 11, 12, 13]).tokens
    single = torch.cat([ar_decode(ar_net, tokens[i : i + 1], roles[i : i + 1], temperature=1.0, seeds=[10 + i]).tokens for i in range(4)])
    assert torch.equal(batch, single)
    assert not torch.equal(batch, ar_decode(ar_net, tokens, roles, temperature=1.0, seeds=99).tokens)


def test_bad_arguments_are_rejected(spec, net, ar_net, random_sample):
    g = torch.Generator().manual_seed(6)
    tokens, roles = prompt_canvas(spec, [{"image": random_sample(spec, g)["image"]}], ("text",))
    with pytest.raises(ValueError, match="causal backbone"):
        ar_decode(net, tokens, roles)
    with pytest.raises(ValueError, match="temperature"):
        ar_decode(ar_net, tokens, roles, temperature=-1.0)
    with pytest.raises(ValueError, match="seeds"):
        ar_decode(ar_net, tokens, roles, seeds=[1, 2])
    uncond, uroles = prompt_canvas(spec, [{}], ("text",))
    with pytest.raises(ValueError, match="GIVEN"):
        ar_decode(ar_net, uncond, uroles)
    with pytest.raises(ValueError, match="causal"):
        autoregressive_loss(net, tokens, position_roles(spec, roles))
    with pytest.raises(ValueError, match="backbone.causal"):
        UnidiffModule(backbone=BackboneConfig(causal=False), objective="autoregressive")
    with pytest.raises(ValueError, match="backbone.causal"):
        UnidiffModule(backbone=BackboneConfig(causal=True))


def test_module_objective_switch_trains_the_twin_on_the_same_noise_roles(spec, random_sample):
    from unidiff.canvas import collate
    from unidiff.noise import NoiseConfig, apply_noise

    g = torch.Generator().manual_seed(7)
    batch = collate(spec, [{"tokens": random_sample(spec, g), "tasks": ("caption", "t2i", "policy")} for _ in range(6)])
    noise = NoiseConfig(tasks={"caption": 1.0, "t2i": 1.0, "policy": 1.0}, condition_dropout=0.0)
    module = UnidiffModule(backbone=BackboneConfig(width=32, depth=2, heads=2, causal=True), noise=noise, objective="autoregressive")
    module.build(spec)
    out = module._step(batch, torch.Generator().manual_seed(0))
    nb = apply_noise(spec, batch, noise, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["loss"], autoregressive_loss(module.net, batch.tokens, nb.pos_roles)["loss"])
    with pytest.raises(ValueError, match="objective must be"):
        UnidiffModule(objective="causal")


def test_decoded_tokens_are_ordinary_writable_tensors(spec, net, ar_net, random_sample):
    """Decoders run under inference_mode but must not hand inference tensors to the caller."""
    g = torch.Generator().manual_seed(0)
    tokens, roles = prompt_canvas(spec, [{"text": random_sample(spec, g)["text"]} for _ in range(2)], ("image",))
    for out in (decode(net, tokens, roles, steps=3), ar_decode(ar_net, tokens, roles)):
        assert not out.tokens.is_inference()
        out.tokens[0, 0] = out.tokens[0, 0]  # raises for an inference tensor outside inference mode


def test_compiled_twin_gives_the_eager_tokens(spec, ar_net, random_sample):
    """The twin's growing prefix changes shapes every step; compiled it still matches eager."""
    g = torch.Generator().manual_seed(8)
    tokens, roles = prompt_canvas(spec, [{"image": random_sample(spec, g)["image"]} for _ in range(2)], ("text", "action"))
    eager = ar_decode(ar_net, tokens, roles)
    compiled = ar_decode(ar_net, tokens, roles, compile=True)
    assert torch.equal(compiled.tokens, eager.tokens) and compiled.nfe == eager.nfe

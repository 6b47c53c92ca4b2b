import pytest
import torch

from unidiff.canvas import position_roles, prompt_canvas
from unidiff.decode import commit_rule, decode
from unidiff.model import KVCache
from unidiff.vocab import EOS_ID, PAD_ID


def _prompts(spec, n, random_sample, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{k: v for k, v in random_sample(spec, g).items() if k in ("text", "state")} for _ in range(n)]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"temperature": 1.0, "noise_scale": 2.0, "cfg_scale": 1.5},
        {"threshold": 0.3, "remask": 0.5, "remask_budget": 3, "temperature": 1.0},
    ],
)
def test_batch_of_8_equals_one_at_a_time(spec, net, extra, random_sample):
    tokens, roles = prompt_canvas(spec, _prompts(spec, 8, random_sample), ("image", "action"))
    kw = dict(steps=4, **extra)
    batch = decode(net, tokens, roles, seeds=list(range(100, 108)), **kw).tokens
    single = torch.cat([decode(net, tokens[i : i + 1], roles[i : i + 1], seeds=[100 + i], **kw).tokens for i in range(8)])
    assert torch.equal(batch, single)


def test_decode_fills_every_target_within_range_and_keeps_given(spec, net, random_sample):
    tokens, roles = prompt_canvas(spec, _prompts(spec, 4, random_sample), ("image", "action"))
    out = decode(net, tokens, roles, steps=3, temperature=1.0, seeds=0)
    assert out.nfe == 3
    for m in ("image", "action"):
        lo, hi = spec.vocab.range(m)
        seg = out.tokens[:, spec.slices[m]]
        assert ((seg >= lo) & (seg < hi)).all()
    for m in ("text", "state"):
        assert torch.equal(out.tokens[:, spec.slices[m]], tokens[:, spec.slices[m]])


def test_same_seed_same_samples_and_other_seed_differs(spec, net, random_sample):
    tokens, roles = prompt_canvas(spec, _prompts(spec, 4, random_sample), ("image",))
    a = decode(net, tokens, roles, steps=4, temperature=1.0, seeds=7).tokens
    b = decode(net, tokens, roles, steps=4, temperature=1.0, seeds=7).tokens
    c = decode(net, tokens, roles, steps=4, temperature=1.0, seeds=8).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_schedule_commits_one_token_per_step_at_most_length_steps(spec, net, random_sample):
    tokens, roles = prompt_canvas(spec, _prompts(spec, 2, random_sample), ("image",))
    out = decode(net, tokens, roles, steps=50)
    assert out.steps == 9  # 9 image tokens: at least one commit per step, then stop


def test_bad_arguments_are_rejected(spec, net, random_sample):
    tokens, roles = prompt_canvas(spec, _prompts(spec, 2, random_sample), ("image",))
    with pytest.raises(ValueError, match="steps"):
        decode(net, tokens, roles, steps=0)
    with pytest.raises(ValueError, match="schedule"):
        decode(net, tokens, roles, schedule="cosin")
    with pytest.raises(ValueError, match="seeds"):
        decode(net, tokens, roles, seeds=[1, 2, 3])
    with pytest.raises(ValueError, match="canvas"):
        decode(net, tokens[:, :-1], roles)
    with pytest.raises(ValueError, match="text_block"):
        decode(net, tokens, roles, text_block=0)
    with pytest.raises(KeyError, match="no 'video' segment"):
        prompt_canvas(spec, _prompts(spec, 1, random_sample), ("video",))


@pytest.mark.parametrize("kw", [{}, {"cfg_scale": 2.0, "temperature": 1.0}, {"threshold": 0.5, "remask": 0.2, "remask_budget": 4}])
def test_condition_cache_gives_identical_tokens(spec, net, random_sample, kw):
    tokens, roles = prompt_canvas(spec, _prompts(spec, 6, random_sample), ("image", "action"))
    a = decode(net, tokens, roles, steps=5, cache=True, seeds=3, **kw)
    b = decode(net, tokens, roles, steps=5, cache=False, seeds=3, **kw)
    assert torch.equal(a.tokens, b.tokens) and a.nfe == b.nfe


def test_run_of_fewer_outputs_matches_the_full_run(spec, net, random_sample):
    """run(outputs=n) computes the last layer's queries for the last n positions only: the condition
    cache is built with outputs=0 (keys/values alone), the AR twin's prefill with outputs=1."""
    tokens, roles = prompt_canvas(spec, _prompts(spec, 3, random_sample), ("action",))
    pos = torch.arange(spec.length)
    pos_roles = position_roles(spec, roles)
    h, full = net.run(tokens, pos, pos_roles)
    for n in (0, 1, 5):
        h_n, kvs = net.run(tokens, pos, pos_roles, outputs=n)
        assert h_n.shape == (3, n, h.shape[-1]) and len(kvs) == len(full) == len(net.blocks)
        torch.testing.assert_close(h_n, h[:, spec.length - n :], rtol=0, atol=1e-5)
        for (k, v), (k2, v2) in zip(full, kvs):
            assert torch.equal(k, k2) and torch.equal(v, v2)
    with pytest.raises(ValueError, match="no prefix"):
        net.run(tokens, pos, pos_roles, prefix=KVCache(full, room=1), outputs=0)
    with pytest.raises(ValueError, match="outputs must be in"):
        net.run(tokens, pos, pos_roles, outputs=spec.length + 1)


def test_threshold_commit_adapts_the_number_of_steps(spec, net, random_sample):
    tokens, roles = prompt_canvas(spec, _prompts(spec, 2, random_sample), ("image",))
    loose = decode(net, tokens, roles, steps=9, threshold=1e-6)  # everything is confident enough
    strict = decode(net, tokens, roles, steps=9, threshold=0.999999)  # nothing is: one per step
    assert loose.steps == 1 and strict.steps == 9


def test_commit_rule_commits_the_most_confident_masked_tokens():
    """The decoder's step rule alone: by the schedule, n_masked - n_keep per row, the most confident
    masked ones; by threshold, every masked token above it (at least one); nothing else changes."""
    g = torch.Generator().manual_seed(0)
    h, head, ids = torch.randn(2, 6, 8, generator=g), torch.randn(8, 5, generator=g), torch.arange(5) + 100
    masked = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0]], dtype=torch.bool)
    seg = torch.where(masked, 7, 3)  # 7: the mask id, 3: tokens already there
    logits = h @ head
    p = torch.softmax(logits, -1).amax(-1)
    for threshold, n_keep in ((None, torch.tensor([1, 2])), (0.5, None), (0.999, None)):
        out, still, commit, p_pick = commit_rule(logits, seg, masked, ids, torch.arange(6), n_keep, threshold=threshold, want_p=True)
        assert torch.allclose(p_pick.float(), p) and not (commit & ~masked).any() and torch.equal(still, masked & ~commit)
        assert torch.equal(out[commit], ids[logits.argmax(-1)][commit]) and torch.equal(out[~commit], seg[~commit])
        if threshold is None:
            assert commit.sum(1).tolist() == [3, 1]
        else:
            sure = masked & (p > threshold)  # all of them commit; a row with none commits its most confident
            assert (commit >= sure).all() and commit.sum(1).tolist() == sure.sum(1).clamp(min=1).tolist()
        for b in range(2):  # every committed token is at least as confident as every one left masked
            if still[b].any():
                assert p[b][commit[b]].min() >= p[b][still[b]].max()


def test_remasking_respects_its_budget(spec, net, random_sample):
    tokens, roles = prompt_canvas(spec, _prompts(spec, 4, random_sample), ("image", "action"))
    out = decode(net, tokens, roles, steps=8, remask=0.9, remask_budget=3, temperature=1.0)
    assert 0 < out.remasked <= 3 * 4
    assert not (out.tokens == spec.mask_ids).any()  # still fills everything


def test_remasking_leaves_the_last_step_to_re_predict(spec, net, random_sample):
    """Remasking judges a token by the probability it was committed with (the model is trained on
    masked positions only) and re-predicts it at the next step, so the schedule ends a step early."""
    tokens, roles = prompt_canvas(spec, _prompts(spec, 4, random_sample), ("image", "action"))
    idle = decode(net, tokens, roles, steps=6, remask=0.5, remask_budget=0)
    assert idle.remasked == 0 and idle.nfe == 5  # the schedule is done after 5 steps; nothing to redo
    # an untrained net doubts everything: what the 5th step commits goes back, the 6th re-predicts it
    busy = decode(net, tokens, roles, steps=6, remask=0.999, remask_budget=100, temperature=1.0)
    assert busy.remasked > 0 and busy.nfe == 6 and not (busy.tokens == spec.mask_ids).any()


@pytest.mark.parametrize("block,threshold", [(None, None), (1, None), (2, None), (1, 0.2)])
def test_text_block_commits_text_left_to_right(spec, net, random_sample, block, threshold):
    """Semi-autoregressive text: every step's input has the masked text positions in the blocks at
    and after the first masked one only; the plain confidence order does not."""
    tokens, roles = prompt_canvas(spec, _prompts(spec, 4, random_sample), ("text",))
    text, seen = spec.slices["text"], []
    hook = net.tok_emb.register_forward_pre_hook(lambda _, args: seen.append(args[0][:, text].clone()))
    try:
        out = decode(net, tokens, roles, steps=6, text_block=block, threshold=threshold, cache=False, elastic=False, temperature=1.0, seeds=5)
    finally:
        hook.remove()
    assert len(seen) == out.nfe and (out.nfe == 6 or threshold is not None)
    masked = torch.stack(seen) == spec.mask_ids[text]  # (steps, B, text_len)
    first = torch.where(masked.any(-1), masked.float().argmax(-1), masked.shape[-1])
    pos = torch.arange(masked.shape[-1])
    width = block or 1
    later_blocks = pos // width > (first // width).unsqueeze(-1)
    in_order = (masked | ~later_blocks).all()
    assert bool(in_order) == (block is not None)


def test_elastic_length_pads_after_eos(spec, net, random_sample):
    # force [EOS] at text position 2 by giving it; the masked tail must come back as [PAD]
    tokens, roles = prompt_canvas(spec, _prompts(spec, 2, random_sample), ("text",))
    text = spec.slices["text"]
    tokens[:, text.start + 2] = EOS_ID
    out = decode(net, tokens, roles, steps=4)
    assert (out.tokens[:, text.start + 3 : text.stop] == PAD_ID).all()


def test_compiled_decoding_gives_the_eager_tokens(spec, net, random_sample):
    """decode(compile=True) runs the backbone through torch.compile (inductor's C++ kernels on a
    CPU): the same tokens as eager, cached and full recompute, and still batch-independent."""
    tokens, roles = prompt_canvas(spec, _prompts(spec, 4, random_sample), ("image", "action"))
    for cache in (True, False):
        eager = decode(net, tokens, roles, steps=4, cache=cache, seeds=5)
        compiled = decode(net, tokens, roles, steps=4, cache=cache, compile=True, seeds=5)
        assert torch.equal(compiled.tokens, eager.tokens) and compiled.nfe == eager.nfe
    single = decode(net, tokens[:1], roles[:1], steps=4, compile=True, seeds=5).tokens
    assert torch.equal(single, eager.tokens[:1])


def test_guidance_drops_only_the_named_modalities(spec, net, random_sample):
    """``cfg_drop``: the unconditional pass drops only those GIVEN modalities.  Dropping one that is
    not given (the target) leaves both passes equal, so guidance then changes nothing; dropping the
    text (the prompts give text and state) does change the samples."""
    tokens, roles = prompt_canvas(spec, _prompts(spec, 4, random_sample), ("image",))
    kw = dict(steps=4, temperature=1.0, seeds=2)
    plain = decode(net, tokens, roles, **kw).tokens
    assert torch.equal(decode(net, tokens, roles, cfg_scale=3.0, cfg_drop=("image",), **kw).tokens, plain)
    text = decode(net, tokens, roles, cfg_scale=3.0, cfg_drop=("text",), **kw).tokens
    assert not torch.equal(text, plain)
    assert not torch.equal(text, decode(net, tokens, roles, cfg_scale=3.0, **kw).tokens)  # all given dropped
    for bad in ("text", ("video",)):
        with pytest.raises(ValueError, match="cfg_drop"):
            decode(net, tokens, roles, cfg_scale=3.0, cfg_drop=bad, **kw)

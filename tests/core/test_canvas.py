import pytest
import torch

from unidiff.canvas import Role, attention_mask, collate, position_roles, prompt_canvas, text_ids, text_segment
from unidiff.noise import NoiseConfig, apply_noise, mask_fraction
from unidiff.vocab import EOS_ID, MASK_IDS, NUM_SPECIALS, PAD_ID, Vocab


def test_vocab_ranges_are_disjoint_and_cover_the_space():
    v = Vocab(text=10, image=4, state=3, action=2)
    ranges = [v.range(m) for m in ("text", "image", "state", "action")]
    assert ranges[0][0] == NUM_SPECIALS
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert ranges[-1][1] == v.size
    assert len(set(MASK_IDS.values())) == 4  # one mask token per modality
    assert EOS_ID in v.output_ids("text").tolist() and EOS_ID not in v.output_ids("image").tolist()
    with pytest.raises(ValueError, match=r"image ids must lie in \[0, 4\)"):
        v.to_joint("image", torch.tensor([4]))


def test_layout_positions(spec):
    assert spec.length == 6 + 9 + 2 + 6
    rows, cols = spec.grid_positions
    img = spec.slices["image"]
    assert rows[img].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and cols[img].tolist() == [0, 1, 2] * 3


def test_collate_reports_wrong_lengths(spec, random_sample):
    item = random_sample(spec, torch.Generator().manual_seed(0))
    item["image"] = item["image"][:5]
    with pytest.raises(ValueError, match="image segment needs 9 tokens"):
        collate(spec, [{"tokens": item, "tasks": ("t2i",)}])


def test_text_segment_round_trip():
    seg = text_segment([10, 11, 12], 6)
    assert seg.tolist() == [10, 11, 12, EOS_ID, PAD_ID, PAD_ID]
    assert text_ids(seg) == [10, 11, 12]
    with pytest.raises(ValueError, match="does not fit"):
        text_segment(list(range(10, 16)), 6)


def test_attention_rule_matrix():
    roles = torch.tensor([[Role.GIVEN, Role.TARGET, Role.ABSENT]])
    m = attention_mask(roles)[0]
    assert m[0].tolist() == [True, False, False]  # given sees only given
    assert m[1].tolist() == [True, True, False]  # target sees given + target
    assert not m[:, 2].tolist()[0] and not m[1, 2]  # nobody sees the absent key...
    assert m[2, 2]  # ...except itself (no empty softmax row)


def test_changing_targets_never_changes_given_hidden_states(spec, net, random_sample):
    g = torch.Generator().manual_seed(1)
    tokens, roles = prompt_canvas(spec, [{k: v for k, v in random_sample(spec, g).items() if k != "action"} for _ in range(3)], ("action",))
    pr = position_roles(spec, roles)
    h1 = net(tokens, pr)
    tokens2 = tokens.clone()
    act = spec.slices["action"]
    tokens2[:, act] = random_sample(spec, g)["action"]  # fill targets with arbitrary clean ids
    h2 = net(tokens2, pr)
    given = pr == Role.GIVEN
    assert torch.equal(h1[given], h2[given])
    assert not torch.allclose(h1[:, act], h2[:, act])  # targets do see the change


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_noise_masks_only_targets_and_follows_the_schedule(spec, random_sample, schedule):
    g = torch.Generator().manual_seed(0)
    items = [{"tokens": random_sample(spec, g), "tasks": ("caption", "t2i", "policy", "joint")} for _ in range(256)]
    batch = collate(spec, items)
    nb = apply_noise(spec, batch, NoiseConfig(schedule=schedule, condition_dropout=0.0), torch.Generator().manual_seed(0))
    assert not (nb.masked & (nb.pos_roles != Role.TARGET)).any()
    assert torch.equal(nb.tokens[~nb.masked], batch.tokens[~nb.masked])
    assert (nb.tokens[nb.masked] == spec.mask_ids.expand(256, -1)[nb.masked]).all()
    # E[masked fraction] = E_t[gamma(t)]: 1/2 (linear), 2/pi (cosine) for t ~ U(0, 1]
    frac = nb.masked.sum() / (nb.pos_roles == Role.TARGET).sum()
    assert abs(float(frac) - float(mask_fraction(schedule, torch.rand(100_000, generator=g)).mean())) < 0.05


def test_suffix_masking_masks_a_suffix_of_the_named_modality_only(spec, random_sample):
    g = torch.Generator().manual_seed(0)
    items = [{"tokens": random_sample(spec, g), "tasks": ("caption", "t2i", "policy", "joint")} for _ in range(256)]
    batch = collate(spec, items)
    cfg = NoiseConfig(condition_dropout=0.0, suffix_masking={"text": 0.5})
    nb = apply_noise(spec, batch, cfg, torch.Generator().manual_seed(0))
    text = spec.slices["text"]
    rows = nb.pos_roles[:, text.start] == Role.TARGET
    m = nb.masked[rows, text]
    is_suffix = (m.long().diff(dim=1) >= 0).all(1) & m[:, -1]  # no visible token after a masked one
    # about half the text targets are suffixes; random masking alone rarely makes one of 6 positions
    frac = float(is_suffix.float().mean())
    assert 0.45 < frac < 0.75
    # other modalities keep random masking: their masks are not all suffixes
    img = spec.slices["image"]
    mi = nb.masked[nb.pos_roles[:, img.start] == Role.TARGET, img]
    assert float(((mi.long().diff(dim=1) >= 0).all(1) & mi[:, -1]).float().mean()) < 0.3
    # the expected masked fraction still follows the schedule
    frac_text = m.sum() / m.numel()
    assert abs(float(frac_text) - 0.5) < 0.08


def test_noise_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown task"):
        NoiseConfig(tasks={"captioning": 1.0})
    with pytest.raises(ValueError, match="condition_dropout"):
        NoiseConfig(condition_dropout=1.5)
    with pytest.raises(ValueError, match="unknown modality 'txt'"):
        NoiseConfig(suffix_masking={"txt": 0.5})
    with pytest.raises(ValueError, match="suffix_masking"):
        NoiseConfig(suffix_masking={"text": 2.0})


def test_task_mixture_respects_what_the_data_supports(spec, random_sample):
    g = torch.Generator().manual_seed(0)
    s = random_sample(spec, g)
    scene = {"tokens": {k: s[k] for k in ("text", "image")}, "tasks": ("caption", "t2i")}
    batch = collate(spec, [scene] * 64)
    nb = apply_noise(spec, batch, NoiseConfig(tasks={"caption": 1.0, "t2i": 1.0, "policy": 5.0}, condition_dropout=0.0), g)
    a = spec.modalities.index("action")
    assert (nb.roles[:, a] == Role.ABSENT).all()  # policy never drawn for scene samples
    text, image = spec.modalities.index("text"), spec.modalities.index("image")
    assert ((nb.roles[:, text] == Role.TARGET) ^ (nb.roles[:, image] == Role.TARGET)).all()
    with pytest.raises(ValueError, match="gives none of them a positive weight"):
        apply_noise(spec, batch, NoiseConfig(tasks={"policy": 1.0}), g)

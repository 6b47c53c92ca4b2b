"""Scripted experts succeed; the scene parser recovers scenes from real renders."""
import numpy as np
import pytest

import unidiff_envs
from unidiff_envs import tabletop
from unidiff_envs.experts import make_expert
from unidiff_envs.parser import parse_scene, scenes_match
from unidiff_envs.rollout import run_episode


@pytest.mark.parametrize("env_id", ["unidiff/TabletopReach-v0", "unidiff/TabletopPush-v0"])
def test_expert_success(env_id):
    env = unidiff_envs.make(env_id, size=32)
    expert = make_expert(env)
    results = [run_episode(env, expert, seed)["meta"]["success"] for seed in range(1000, 1012)]
    assert sum(results) >= 11, results
    env.close()


def test_dart_noise_keeps_clean_labels():
    env = unidiff_envs.make("unidiff/TabletopPush-v0", size=32)
    ep = run_episode(env, make_expert(env), seed=5, noise_std=0.3)
    assert not np.allclose(ep["actions"], ep["executed_actions"])
    assert np.all(np.abs(ep["executed_actions"]) <= 1.0)
    assert len(ep["frames"]) == len(ep["actions"]) + 1 == len(ep["captions"])


def test_parser_on_held_out_renders():
    seeds = range(900_000, 900_150)
    hits = sum(scenes_match(tabletop.describe(tabletop.sample_scene(s)),
                            parse_scene(tabletop.render_scene(tabletop.sample_scene(s)))) for s in seeds)
    assert hits / len(seeds) >= 0.98


def test_scenes_match_rejects_wrong_scenes():
    scene = tabletop.sample_scene(3, n_objects=3)
    desc = tabletop.describe(scene)
    assert scenes_match(desc, desc)
    wrong_colour = {**desc, "objects": [dict(desc["objects"][0], color="none")] + desc["objects"][1:]}
    assert not scenes_match(desc, wrong_colour)
    moved = {**desc, "objects": [dict(desc["objects"][0], x=desc["objects"][0]["x"] + 0.2)] + desc["objects"][1:]}
    assert not scenes_match(desc, moved)
    assert not scenes_match(desc, {"objects": desc["objects"][:2], "relations": []})


def test_parser_ignores_the_pusher_and_reads_env_frames():
    env = unidiff_envs.make("unidiff/TabletopReach-v0")
    obs, _ = env.reset(seed=4)
    parsed = parse_scene(obs["image"])
    names = sorted(f"{o['color']} {o['shape']}" for o in parsed["objects"])
    assert names == sorted(o.name for o in env.unwrapped.scene.objects)
    env.close()

"""Tabletop world: registration, determinism, language, env API."""
import json
import importlib.util
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import unidiff_envs
from unidiff_envs import tabletop
from unidiff_envs.tabletop.scene import footprints_clear


def test_ids_registered_and_make():
    for env_id in ("unidiff/TabletopReach-v0", "unidiff/TabletopPush-v0", "unidiff/MetaWorld-reach-v3"):
        assert env_id in gym.registry
    env = gym.make("unidiff/TabletopPush-v0", size=32)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    assert obs["state"].shape == (6,) and isinstance(info["instruction"], str)
    env.close()


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
@pytest.mark.parametrize("env_id", ["unidiff/TabletopPush-v0", "unidiff/MetaWorld-reach-v3"])
def test_a_model_can_load_after_an_env_has_rendered(env_id):
    """Mesa's LLVM (headless GL) loaded before Triton's crashed ``import triton`` -- and so
    torch.compile, torchvision.ops and Lightning -- with a segfault: "make an env, then load a
    model" killed a notebook.  In a fresh process, as a user would."""
    code = (f"import unidiff_envs; env = unidiff_envs.make({env_id!r}); env.reset(seed=0); env.render()\n"
            "import triton, torch._dynamo; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.returncode, r.stderr[-2000:])


def test_unknown_id_lists_known_ids():
    with pytest.raises(ValueError, match="TabletopReach-v0"):
        unidiff_envs.make("unidiff/Nope-v0")


def test_check_env_passes():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("unidiff/TabletopReach-v0", disable_env_checker=True)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_scene_sampling_rules():
    counts = set()
    for seed in range(200):
        scene = tabletop.sample_scene(seed)
        objs = scene.objects
        counts.add(len(objs))
        assert len({o.name for o in objs}) == len(objs)
        assert all(o.color in tabletop.COLORS and o.shape in tabletop.SHAPES for o in objs)
        assert all(footprints_clear(a, b) for i, a in enumerate(objs) for b in objs[i + 1:])
    assert counts == {1, 2, 3, 4}
    assert len(tabletop.sample_scene(3, n_objects=4).objects) == 4
    with pytest.raises(ValueError):
        tabletop.sample_scene(0, n_objects=5)


def test_scene_determinism_and_language():
    a, b = tabletop.sample_scene(11), tabletop.sample_scene(11)
    assert a == b
    assert np.array_equal(tabletop.render_scene(a), tabletop.render_scene(b))
    assert tabletop.caption(a, phrasing=2) == tabletop.caption(b, phrasing=2)
    caps = {tabletop.caption(tabletop.sample_scene(5, 3), phrasing=p) for p in range(4)}
    assert len(caps) == 4  # several phrasings of the same content
    desc = tabletop.describe(a)
    assert json.loads(json.dumps(desc)) == desc
    for obj in a.objects:
        assert obj.name in tabletop.caption(a, phrasing=0)
    assert tabletop.render_scene(a, size=48).shape == (48, 48, 3)


@pytest.mark.parametrize("env_id", ["unidiff/TabletopReach-v0", "unidiff/TabletopPush-v0"])
def test_env_determinism(env_id):
    runs = []
    for _ in range(2):
        env = unidiff_envs.make(env_id)
        obs, info = env.reset(seed=123)
        obs2, *_ = env.step(np.array([0.5, -0.5, -1.0], np.float32))
        runs.append((obs["image"], obs2["image"], obs2["state"], info["instruction"], env.unwrapped.caption()))
        env.close()
    (i1, j1, s1, t1, c1), (i2, j2, s2, t2, c2) = runs
    assert np.array_equal(i1, i2) and np.array_equal(j1, j2) and np.array_equal(s1, s2)
    assert t1 == t2 and c1 == c2


def test_scene_sample_has_image_caption_description():
    s = tabletop.scene_sample(7)
    assert s["image"].shape == (64, 64, 3)
    assert s["caption"] and s["description"]["objects"]


def _drive(env, act, steps):
    """Step ``act(env)`` until the episode ends or ``steps`` run out; -> last info."""
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(act(env))
        if terminated or truncated:
            break
    return info


def test_diagnostics_tell_failures_apart():
    from unidiff_envs.experts import TabletopExpert

    # the expert pushes the named object all the way; diagnostics start at zero
    env = unidiff_envs.make("unidiff/TabletopPush-v0", size=32).unwrapped
    _, info = env.reset(seed=3)
    assert info["diagnostics"] == {"touched_target": 0.0, "touched_other": 0.0, "low_far": 0.0, "push_progress": 0.0}
    expert = TabletopExpert(env)
    info = _drive(env, lambda e: expert(), 150)
    assert info["success"] and info["diagnostics"]["touched_target"] == 1.0 and info["diagnostics"]["push_progress"] == 1.0
    assert info["diagnostics"]["low_far"] == 0.0  # the expert travels high and descends at its object
    env.close()
    # going to the wrong object: touched another, not the named one, no success
    env = unidiff_envs.make("unidiff/TabletopReach-v0", size=32).unwrapped
    for seed in range(100):  # a scene with a second object
        env.reset(seed=seed)
        if len(env.scene.objects) > 1:
            break
    other = next(o for o in env.scene.objects if o.name != env.spec_task.target)
    expert = TabletopExpert(env)
    info = _drive(env, lambda e: expert._goto(e.pusher_pos(), np.array(e.object_xy(other.name)), 0.0), 60)
    assert info["diagnostics"] == {"touched_target": 0.0, "touched_other": 1.0, "low_far": 0.0} and not info["success"]
    env.close()
    # descending at once, far from every object: sweeping height for all but the first steps
    env = unidiff_envs.make("unidiff/TabletopPush-v0", size=32).unwrapped
    for seed in range(100):
        env.reset(seed=seed)
        if min(np.linalg.norm(env.pusher_pos()[:2] - env.object_xy(o.name)) for o in env.scene.objects) > 0.12:
            break
    info = _drive(env, lambda e: np.array([0.0, 0.0, -1.0]), 30)
    assert 0.8 < info["diagnostics"]["low_far"] < 1.0 and info["diagnostics"]["touched_target"] == 0.0
    env.close()


@pytest.mark.parametrize("task", ["push", "reach"])
def test_decoy_instruction_names_another_object(task):
    """``--lead-decoy``'s instruction acts on a different object of the same scene (push: the
    reference becomes the object to move), so a policy told it drives to the wrong object."""
    env = unidiff_envs.make(f"unidiff/Tabletop{task.title()}-v0", size=32)
    for seed in range(8):
        _, info = env.reset(seed=seed)
        base, spec = env.unwrapped, info["task"]
        decoy, names = base.decoy_instruction(), [o.name for o in base.scene.objects]
        if len(names) == 1:  # nothing else to name (reach only: push scenes hold >= 2)
            assert decoy == info["instruction"]
            continue
        assert decoy != info["instruction"]
        named = sorted((decoy.index(n), n) for n in names if n in decoy)
        assert named[0][1] != spec["target"]  # the first object named is the one to act on
        if task == "push":
            assert [n for _, n in named] == [spec["reference"], spec["target"]]
    env.close()


def test_a_decoy_lead_is_told_the_decoy_and_the_recording_keeps_the_true_instruction():
    from unidiff_envs.experts import make_expert
    from unidiff_envs.rollout import run_episode

    class Recorder:  # a lead that drives up and records what it was told
        def __init__(self):
            self.told = []

        def reset(self):
            self.told.clear()

        def select_action(self, obs):
            self.told.append(obs["instruction"])
            return np.array([0.0, 0.0, 1.0], np.float32)

    env, lead = unidiff_envs.make("unidiff/TabletopPush-v0", size=32), Recorder()
    seed = next(s for s in range(100) if np.random.default_rng([s, 11]).integers(0, 9))  # draws >= 1 lead step
    for decoy in (False, True):
        ep = run_episode(env, make_expert(env), seed, lead=lead, lead_steps=8, lead_decoy=decoy)
        true, told = ep["meta"]["instruction"], set(lead.told)
        assert len(lead.told) == ep["meta"]["lead_steps"] >= 1
        assert told == ({env.unwrapped.decoy_instruction()} if decoy else {true})
        assert true not in told if decoy else True
    env.close()

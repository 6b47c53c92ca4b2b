"""Meta-World adapter: upright corner2 images, correct rendering with several envs, expert."""
import concurrent.futures as cf
import multiprocessing as mp

import numpy as np

import unidiff_envs
from unidiff_envs.experts import make_expert
from unidiff_envs.rollout import replay, run_episode


def _project(env, point):
    """Pixel (row, col) of a world point in the env's (flipped, upright) corner2 image."""
    m, d, cam = env.model, env.data, env._cam
    R, pos = d.cam_xmat[cam].reshape(3, 3), d.cam_xpos[cam]
    pc = R.T @ (np.asarray(point) - pos)
    f = (env.size / 2) / np.tan(np.deg2rad(m.cam_fovy[cam]) / 2)
    col = env.size / 2 + f * pc[0] / -pc[2]
    row = env.size / 2 - f * pc[1] / -pc[2]
    return env.size - 1 - row, env.size - 1 - col  # the 180-degree flip


def test_corner2_image_is_upright():
    env = unidiff_envs.make("unidiff/MetaWorld-reach-v3", size=64).unwrapped
    env.reset(seed=0)
    R = env.data.cam_xmat[env._cam].reshape(3, 3)
    assert R[:, 1] @ np.array([0, 0, 1.0]) < 0  # raw corner2 frames have world-up pointing down
    before, p0 = env.render(), env.raw_obs[:3].copy()
    for _ in range(25):
        env.step(np.array([0.0, 0.0, 1.0, 0.0]))
    after, p1 = env.render(), env.raw_obs[:3].copy()
    assert p1[2] > p0[2] + 0.05
    r0, r1 = _project(env, p0)[0], _project(env, p1)[0]
    assert r1 < r0  # the hand moved up in the world and up in the image
    changed = np.argwhere(np.abs(after.astype(int) - before.astype(int)).max(-1) > 40)
    for p in (p0, p1):  # the pixels that changed are where the hand was and is
        dist = np.hypot(*(changed - np.array(_project(env, p))).T).min()
        assert dist < 6, dist
    env.close()


def test_several_envs_render_like_a_fresh_single_env():
    tasks = ["reach-v3", "drawer-open-v3"]
    envs = [unidiff_envs.make(f"unidiff/MetaWorld-{t}", size=48) for t in tasks]
    tabletop = unidiff_envs.make("unidiff/TabletopReach-v0", size=48)  # another GL context in play
    tabletop.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(6, 4)).astype(np.float32)
    frames = {t: [e.reset(seed=3)[0]["image"]] for t, e in zip(tasks, envs)}
    for a in actions:
        for t, e in zip(tasks, envs):
            frames[t].append(e.step(a)[0]["image"])
            tabletop.render()
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        for t in tasks:
            fresh = pool.submit(replay, f"unidiff/MetaWorld-{t}", 3, actions, 48).result()
            assert np.array_equal(np.stack(frames[t]), fresh), t
    assert not np.array_equal(frames[tasks[0]][-1], frames[tasks[1]][-1])


def test_metaworld_expert_and_proprio():
    env = unidiff_envs.make("unidiff/MetaWorld-reach-v3", size=32)
    ep = run_episode(env, make_expert(env), seed=1)
    assert ep["meta"]["success"]
    assert ep["state"].shape[1] == 4 and ep["actions"].shape[1] == 4
    assert ep["meta"]["instruction"].startswith("reach")
    env.close()


def test_metaworld_env_passes_check_env():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    env = gym.make("unidiff/MetaWorld-drawer-close-v3", size=32, disable_env_checker=True)
    check_env(env.unwrapped)
    env.close()

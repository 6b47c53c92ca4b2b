"""Does the policy know where to go?  Its first action chunk against the expert's, from one state.

Closed-loop success mixes reading the scene (which object the instruction names, where it is)
with control (one wrong chunk and the episode drifts where no demonstration went).  This probe
isolates the first, as ``caption_binding`` does for captions: for held-out env seeds the policy
plans from the reset observation, and the scripted expert (privileged, no noise) acts from the
same state for as many steps (both executed).  ``heading_agreement`` is the fraction of the
expert's large commands (|a| > 0.5, any dimension) whose sign the policy's actions match -- 0.5
is a coin, 1 is the expert -- and ``action_mae`` the mean absolute difference over those steps
(``action_mae_zero``: what all-zero actions would score).

    python -m unidiff.eval.policy_heading --ckpt BUNDLE [--episodes 50]   # prints JSON
"""
from __future__ import annotations

import argparse
import json
from typing import Callable

import numpy as np

LARGE = 0.5  # an expert command this large is a heading (travel), not a fine correction


def _act(env, act: Callable, horizon: int, seed: int) -> np.ndarray:
    """Reset with ``seed`` and step ``act(obs, info)`` for up to ``horizon`` steps -> (n, action_dim)."""
    obs, info = env.reset(seed=seed)
    actions = []
    for _ in range(horizon):
        actions.append(np.asarray(act(obs, info), dtype=np.float64))
        obs, _, terminated, truncated, info = env.step(actions[-1])
        if terminated or truncated:
            break
    return np.stack(actions)


def heading_agreement(make_policy: Callable, env_id: str, episodes: int, *, horizon: int, start_seed: int,
                      env_kwargs: dict | None = None) -> dict:
    """Compare ``horizon`` actions of ``make_policy()`` with the expert's from each reset state.

    Episode i resets the env with seed ``start_seed + i`` twice (resets are deterministic): once to
    run the expert, once to run the policy from the same first observation (a chunking policy
    plays its first chunk open loop).  A policy with ``attach(env)`` (a privileged baseline such
    as :class:`ExpertPolicy`) gets the env."""
    import unidiff_envs
    from unidiff_envs.experts import make_expert

    if isinstance(episodes, bool) or int(episodes) != episodes or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    env = unidiff_envs.make(env_id, **(env_kwargs or {}))
    policy = make_policy()
    if callable(getattr(policy, "attach", None)):
        policy.attach(env.unwrapped)
    expert = make_expert(env)  # stateless: reads the simulator at each call
    agree, large, err, zero = 0, 0, [], []
    try:
        for i in range(episodes):
            want = _act(env, lambda obs, info: expert(), horizon, start_seed + i)
            policy.reset()
            got = _act(env, lambda obs, info: policy.select_action({**obs, "instruction": info["instruction"]}), horizon, start_seed + i)
            n = min(len(want), len(got))  # an episode may end inside the horizon
            want, got = want[:n], got[:n]
            big = np.abs(want) > LARGE
            agree += int((np.sign(got[big]) == np.sign(want[big])).sum())
            large += int(big.sum())
            err.append(np.abs(got - want).mean())
            zero.append(np.abs(want).mean())
    finally:
        env.close()
    return {"heading_agreement": agree / large if large else float("nan"), "large_commands": large,
            "action_mae": float(np.mean(err)), "action_mae_zero": float(np.mean(zero)), "episodes": episodes}


def bundle_heading(model, env_id: str, episodes: int, *, steps: int | None = None, image_size: int, seed: int = 0) -> dict:
    """:func:`heading_agreement` of a bundle's policy over one action chunk, on the held-out seeds
    of ``unidiff eval``'s rollouts."""
    from functools import partial

    from unidiff.evaluate import EVAL_EPISODE_SEED

    return heading_agreement(partial(model.policy, steps=steps, seed=seed), env_id, episodes,
                             horizon=model.spec.segment("action").rows, start_seed=EVAL_EPISODE_SEED,
                             env_kwargs={"size": image_size})


def main(argv: list[str] | None = None) -> int:
    from unidiff.bundle import load_bundle
    from unidiff.commands import add_steps_arg
    from unidiff.evaluate import bundle_env_id, bundle_image_size

    p = argparse.ArgumentParser(prog="python -m unidiff.eval.policy_heading", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="bundle directory with a policy")
    p.add_argument("--episodes", type=int, default=50, help="held-out env seeds (the first of unidiff eval's)")
    add_steps_arg(p)
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error(f"--episodes must be >= 1, got {a.episodes}")
    model = load_bundle(a.ckpt)
    if "action" not in model.spec.modalities:
        p.error(f"bundle {a.ckpt} has no policy (its modalities: {', '.join(model.spec.modalities)})")
    env_id = bundle_env_id(model)  # the bundle's eval env, else the tabletop default (it has an action segment)
    print(json.dumps(bundle_heading(model, env_id, a.episodes, steps=a.steps, image_size=bundle_image_size(model)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

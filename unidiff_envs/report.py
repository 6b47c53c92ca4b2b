"""Numbers for the closing note: expert success rates and scene-parser accuracy.

    python -m unidiff_envs.report [--episodes 200] [--renders 500] [--mt10-episodes 0]

Expert episodes use seeds 0..N-1; parser renders use held-out scene seeds 10**6 + i (the
parser's thresholds were chosen on seeds below 1000).  Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import unidiff_envs
from unidiff_envs import tabletop
from unidiff_envs.experts import make_expert
from unidiff_envs.parser import parse_scene, scenes_match
from unidiff_envs.registry import METAWORLD_IDS, TABLETOP_IDS
from unidiff_envs.rollout import run_episode


def expert_success(env_id: str, episodes: int, size: int = 64) -> dict:
    env = unidiff_envs.make(env_id, size=size)
    expert = make_expert(env)
    t0, steps, wins = time.perf_counter(), 0, 0
    for seed in range(episodes):
        meta = run_episode(env, expert, seed)["meta"]
        wins += bool(meta["success"])
        steps += meta["length"]
    env.close()
    return {"episodes": episodes, "success_rate": wins / episodes, "mean_length": steps / episodes,
            "steps_per_s": round(steps / (time.perf_counter() - t0), 1)}


def parser_accuracy(renders: int, size: int = 64) -> dict:
    hits, errors = 0, []
    for i in range(renders):
        scene = tabletop.sample_scene(10**6 + i)
        truth, parsed = tabletop.describe(scene), parse_scene(tabletop.render_scene(scene, size))
        ok = scenes_match(truth, parsed)
        hits += ok
        if ok:
            errors += [abs(a["x"] - b["x"]) + abs(a["y"] - b["y"])
                       for a, b in zip(truth["objects"], parsed["objects"])]
    return {"renders": renders, "exact_scene_recovery": hits / renders,
            "mean_abs_position_error_m": round(float(np.mean(errors)) / 2, 4) if errors else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unidiff_envs.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=200, help="seeded expert episodes per tabletop task")
    p.add_argument("--renders", type=int, default=500, help="held-out renders for the parser")
    p.add_argument("--mt10-episodes", type=int, default=0, help="seeded expert episodes per MT10 task")
    args = p.parse_args(argv)
    out = {"parser": parser_accuracy(args.renders) if args.renders > 0 else None, "experts": {}}
    ids = list(TABLETOP_IDS) + (list(METAWORLD_IDS) if args.mt10_episodes > 0 else [])
    for env_id in ids:
        n = args.episodes if env_id in TABLETOP_IDS else args.mt10_episodes
        if n > 0:
            out["experts"][env_id] = expert_success(env_id, n)
            print(env_id, out["experts"][env_id], flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

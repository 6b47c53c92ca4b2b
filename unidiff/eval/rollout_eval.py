"""Policy evaluation in the simulator: success rate over seeded episodes, LeRobot style.

Episode i always uses seed `start_seed + i`, and global RNGs are re-seeded from that seed
before each episode, so a result does not depend on how episodes were spread over workers.
Workers are spawn-context processes (EGL: a process forked after rendering hangs); each one
builds its own env and calls `make_policy()` once, so `make_policy` must be picklable (and a
script that uses workers must call this under `if __name__ == "__main__":`).

A policy is any object with `reset()` and `select_action(obs) -> np.ndarray`; `obs` is the env
observation plus `obs["instruction"]`.  Optional hooks: `reset(seed=...)` if it accepts a seed,
`stats() -> dict` (`nfe`, `ms_per_chunk`, averaged over episodes) and `attach(env)`, which
only privileged baselines such as `ExpertPolicy` use.  Where the env reports
`info["diagnostics"]` (the tabletop: touched the named object, touched another, push progress),
its last values are kept per episode and averaged in the result's `diagnostics`.
"""
from __future__ import annotations

import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import inspect
import multiprocessing as mp
import pickle
import random
import sys
import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from unidiff.eval.stats import wilson_interval
from unidiff.files import atomic_path

_WORKER: dict = {}
POLICY_STATS = ("nfe", "ms_per_chunk")


class Policy(Protocol):
    def reset(self) -> None: ...

    def select_action(self, obs: dict) -> np.ndarray: ...


class ExpertPolicy:
    """The scripted expert as a Policy: an upper bound that checks the harness, not a model."""

    def __init__(self):
        self.expert = None

    def attach(self, env) -> None:
        from unidiff_envs.experts import make_expert

        self.expert = make_expert(env)

    def reset(self) -> None:
        if self.expert is None:
            raise RuntimeError("ExpertPolicy needs attach(env) before use (evaluate_policy does it)")

    def select_action(self, obs: dict) -> np.ndarray:
        return self.expert(obs)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:  # only if the policy uses torch; never import it here
        sys.modules["torch"].manual_seed(seed)


def _init_worker(env_id: str, make_policy: Callable, env_kwargs: dict, video_dir: str | None,
                 n_videos: int, start_seed: int) -> None:
    """Build this process's env and policy once (also used in-process when workers == 1)."""
    import unidiff_envs

    policy = make_policy()
    for name in ("reset", "select_action"):
        if not callable(getattr(policy, name, None)):
            raise TypeError(f"make_policy() returned {type(policy).__name__}, which has no {name}()")
    env = unidiff_envs.make(env_id, **env_kwargs)
    if callable(getattr(policy, "attach", None)):
        policy.attach(env)
    takes_seed = "seed" in inspect.signature(policy.reset).parameters
    _WORKER.update(env=env, policy=policy, takes_seed=takes_seed, video_dir=video_dir,
                   n_videos=n_videos, start_seed=start_seed, env_id=env_id)


def _run_episode(index: int) -> dict:
    """One seeded episode in this process's env; writes its video if it is one of the first."""
    env, policy, w = _WORKER["env"], _WORKER["policy"], _WORKER
    seed = w["start_seed"] + index
    _seed_everything(seed)
    obs, info = env.reset(seed=seed)
    if w["takes_seed"]:
        policy.reset(seed=seed)
    else:
        policy.reset()
    record = w["video_dir"] is not None and index < w["n_videos"]
    frames = [obs["image"]] if record else None
    success, steps, policy_s, done = bool(info.get("success", False)), 0, 0.0, False
    while not done:
        obs["instruction"] = info["instruction"]
        t0 = time.perf_counter()
        action = np.asarray(policy.select_action(obs), dtype=np.float32)
        policy_s += time.perf_counter() - t0
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        success = success or bool(info.get("success", False))
        done = terminated or truncated
        if record:
            frames.append(obs["image"])
    out = {"episode": index, "seed": seed, "success": success, "steps": steps,
           "instruction": info["instruction"], "policy_ms_per_step": 1000 * policy_s / max(steps, 1)}
    stats = policy.stats() if callable(getattr(policy, "stats", None)) else {}
    out.update({k: float(stats[k]) for k in POLICY_STATS if k in stats})
    if "diagnostics" in info:  # how far the episode got, where the env says (tabletop)
        out["diagnostics"] = {k: float(v) for k, v in info["diagnostics"].items()}
    if record:
        fps = env.metadata.get("render_fps", 20)
        name = f"{w['env_id'].replace('/', '_')}_ep{index:04d}_seed{seed}_{'success' if success else 'fail'}"
        out["video"] = write_video(Path(w["video_dir"]) / name, frames, fps)
    return out


def write_video(stem: Path, frames: list[np.ndarray], fps: float) -> str:
    """Write `stem`.mp4 (H.264 via imageio-ffmpeg), or `stem`.gif if ffmpeg fails; returns the path."""
    import imageio.v2 as imageio

    stem.parent.mkdir(parents=True, exist_ok=True)
    frames = np.stack(frames).astype(np.uint8)
    try:
        path = stem.with_suffix(".mp4")
        with atomic_path(path) as tmp:
            imageio.mimwrite(tmp, frames, fps=fps, codec="libx264", quality=8, macro_block_size=16,
                             ffmpeg_log_level="error")
    except Exception:  # no usable ffmpeg: fall back to an (always available) GIF
        path = stem.with_suffix(".gif")
        with atomic_path(path) as tmp:
            imageio.mimwrite(tmp, frames, duration=1000.0 / fps, loop=0)
    return str(path)


def _summarise(results: list[dict], start_seed: int) -> dict:
    n = len(results)
    wins = sum(r["success"] for r in results)
    low, high = wilson_interval(wins, n)
    ms = float(np.mean([r["policy_ms_per_step"] for r in results]))
    out = {"success_rate": wins / n, "ci95_low": low, "ci95_high": high, "episodes": n,
           "successes": wins, "mean_steps": float(np.mean([r["steps"] for r in results])),
           "seeds": [start_seed, start_seed + n - 1], "videos": [r["video"] for r in results if "video" in r],
           "policy_ms_per_step": ms, "control_hz": 1000.0 / ms if ms > 0 else None}
    for key in POLICY_STATS:
        vals = [r[key] for r in results if key in r]
        if vals:
            out[key] = float(np.mean(vals))
    diagnostics = [r["diagnostics"] for r in results if "diagnostics" in r]
    if diagnostics:  # each averaged over the episodes: a rate for the 0/1 ones
        out["diagnostics"] = {k: float(np.mean([d[k] for d in diagnostics])) for k in diagnostics[0]}
    out["per_episode"] = results
    return out


def evaluate_policy(make_policy: Callable[[], Policy], env_id: str, episodes: int,
                    start_seed: int = 100_000, workers: int = 1, video_dir: str | None = None,
                    n_videos: int = 2, max_steps: int | None = None, env_kwargs: dict | None = None,
                    progress: bool = True) -> dict:
    """Success rate (with Wilson 95 % CI), mean steps, videos and policy timing over seeded episodes.

    `workers == 1` runs in this process; more start that many spawn-context processes.
    `control_hz` is 1 / (mean wall time of `select_action`), the rate the policy could drive at.
    """
    from tqdm.auto import tqdm

    from unidiff_envs.registry import check_env_id

    check_env_id(env_id)
    if isinstance(episodes, bool) or int(episodes) != episodes or episodes <= 0:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if int(workers) != workers or workers <= 0:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if n_videos < 0:
        raise ValueError(f"n_videos must be >= 0, got {n_videos}")
    kwargs = dict(env_kwargs or {})
    if max_steps is not None:
        kwargs["max_steps"] = int(max_steps)
    init = (env_id, make_policy, kwargs, None if video_dir is None else str(video_dir), n_videos, start_seed)
    results = []
    with tqdm(total=episodes, desc=env_id, unit="ep", disable=not progress) as bar:
        if workers == 1:
            _init_worker(*init)
            try:
                for i in range(episodes):
                    results.append(_run_episode(i))
                    bar.update()
            finally:
                _WORKER.pop("env").close()
                _WORKER.clear()
        else:
            try:
                pickle.dumps(make_policy)
            except Exception as e:
                raise TypeError("make_policy must be picklable for workers > 1 (use a module-level "
                                f"class or functools.partial, not a lambda): {e}") from e
            try:
                with cf.ProcessPoolExecutor(min(workers, episodes), mp_context=mp.get_context("spawn"),
                                            initializer=_init_worker, initargs=init) as pool:
                    for fut in cf.as_completed([pool.submit(_run_episode, i) for i in range(episodes)]):
                        results.append(fut.result())
                        bar.update()
            except BrokenProcessPool as e:
                raise RuntimeError("an evaluation worker died or failed to start (env creation or "
                                   "make_policy()); rerun with workers=1 to see its error") from e
    return _summarise(sorted(results, key=lambda r: r["episode"]), start_seed)

"""Collection worker processes: each builds its own env once (EGL contexts are per process)
and turns seeds into episode files.  Used with a spawn-context process pool."""
from __future__ import annotations

import os
from pathlib import Path

_STATE: dict = {}
# Fault injection for tests: a worker asked to run this seed dies abruptly (like a SIGKILL).
CRASH_ENV = "UNIDIFF_COLLECT_CRASH_SEED"


def init_worker(env_id: str, size: int, root: str, noise_std: float, keep_failed: bool) -> None:
    import unidiff_envs
    from unidiff_envs.experts import make_expert

    env = unidiff_envs.make(env_id, size=size)
    _STATE.update(env=env, expert=make_expert(env), root=Path(root), noise_std=noise_std,
                  keep_failed=keep_failed)


def collect_one(seed: int) -> dict:
    """Run one expert episode; write it if kept.  Returns the manifest record (file None if dropped)."""
    from unidiff.data.episodes import write_episode
    from unidiff_envs.rollout import run_episode

    if os.environ.get(CRASH_ENV) == str(seed):
        os._exit(17)
    ep = run_episode(_STATE["env"], _STATE["expert"], seed, _STATE["noise_std"])
    meta = ep["meta"]
    if meta["success"] or _STATE["keep_failed"]:
        return write_episode(_STATE["root"], ep)
    return {"file": None, "seed": seed, "length": meta["length"], "success": False}

"""Collection worker processes: each builds its own env once (EGL contexts are per process)
and turns seeds into episode files.  Used with a spawn-context process pool."""
from __future__ import annotations

import os
from pathlib import Path

_STATE: dict = {}
# Fault injection for tests: a worker asked to run this seed dies abruptly (like a SIGKILL).
CRASH_ENV = "UNIDIFF_COLLECT_CRASH_SEED"


def init_worker(env_id: str, size: int, root: str, noise_std: float, keep_failed: bool,
                lead: str | None = None, lead_steps: int = 0, lead_decoy: bool = False) -> None:
    import unidiff_envs
    from unidiff_envs.experts import make_expert

    policy = None
    if lead is not None:  # a bundle's policy drives first (recovery demonstrations)
        import torch

        import unidiff

        torch.set_num_threads(1)  # one core per worker, beside its simulator
        policy = unidiff.load(lead).policy()
    env = unidiff_envs.make(env_id, size=size)
    _STATE.update(env=env, expert=make_expert(env), root=Path(root), noise_std=noise_std,
                  keep_failed=keep_failed, lead=policy, lead_steps=lead_steps, lead_decoy=lead_decoy)


def collect_one(seed: int) -> dict:
    """Run one expert episode; write it if kept.  Returns the manifest record (file None if dropped)."""
    from unidiff.data.episodes import write_episode
    from unidiff_envs.rollout import run_episode

    if os.environ.get(CRASH_ENV) == str(seed):
        os._exit(17)
    ep = run_episode(_STATE["env"], _STATE["expert"], seed, _STATE["noise_std"], _STATE["lead"], _STATE["lead_steps"],
                     _STATE["lead_decoy"])
    meta = ep["meta"]
    if meta["length"] > 0 and (meta["success"] or _STATE["keep_failed"]):  # 0: the lead ended it
        return write_episode(_STATE["root"], ep)
    return {"file": None, "seed": seed, "length": meta["length"], "success": False}

"""On-disk episode format: one `.npz` per episode plus `manifest.json`, written atomically.

Layout of a dataset directory::

    manifest.json           schema_version, env, counts, per-file sha256, expert_success_rate
    episodes/ep_<seed>.npz  frames (T+1,H,W,3) uint8, state (T+1,Ds) f32, actions (T,Da) f32,
                            executed_actions (T,Da) f32, rewards (T,) f32, captions (T+1,) str,
                            meta: JSON string (seed, instruction, caption, description, success)

Every file is written to a temporary name and moved into place with `os.replace`, so a crash
leaves either the old file or the new one, never half of one.  Nothing is pickled.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unidiff.files import atomic_write, sha256_file, write_json_atomic

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
EPISODE_DIR = "episodes"
TMP_MARK = ".tmp"
ARRAY_KEYS = ("frames", "state", "actions", "executed_actions", "rewards", "captions", "meta")


class CorruptDatasetError(RuntimeError):
    """A dataset file is missing, truncated or does not match its manifest checksum."""


def episode_name(seed: int) -> str:
    return f"{EPISODE_DIR}/ep_{seed:08d}.npz"


def write_episode(root: Path, episode: dict) -> dict:
    """Write one rollout (see `unidiff_envs.rollout.run_episode`); returns its manifest record."""
    meta = episode["meta"]
    rel = episode_name(meta["seed"])
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: episode[k] for k in ARRAY_KEYS if k not in ("captions", "meta")}
    arrays["captions"] = np.asarray(episode["captions"], dtype=np.str_)
    arrays["meta"] = np.asarray(json.dumps(meta), dtype=np.str_)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return {"file": rel, "seed": meta["seed"], "sha256": sha256_file(path),
            "bytes": path.stat().st_size, "length": meta["length"], "success": meta["success"]}


def read_episode(path: Path, sha256: str | None = None) -> dict:
    """Load one episode; with `sha256`, check it first.  Errors name the file and the fix."""
    path = Path(path)
    hint = (f"Run `unidiff collect --verify {path.parent.parent}` to list damaged files, delete "
            f"them, and rerun the same `unidiff collect` command to re-collect them")
    if not path.is_file():
        raise CorruptDatasetError(f"episode file {path} is missing. {hint}")
    if sha256 is not None and sha256_file(path) != sha256:
        raise CorruptDatasetError(f"episode file {path} is corrupt (checksum mismatch). {hint}")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in ARRAY_KEYS}
        out["meta"] = json.loads(str(out["meta"]))
    except Exception as exc:  # zip/npy/json errors all mean the same thing to the user
        raise CorruptDatasetError(f"episode file {path} is corrupt ({type(exc).__name__}: {exc}). {hint}") from exc
    out["captions"] = [str(c) for c in out["captions"]]
    return out


def read_manifest(root) -> dict:
    """The dataset manifest; a clear error when the directory is not a unidiff dataset."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a unidiff dataset (no {MANIFEST}); create one with "
                                f"`unidiff collect --env ID --episodes N --out {root}`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CorruptDatasetError(f"{path} is corrupt ({exc}); restore it or re-collect") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise CorruptDatasetError(f"{path} has schema_version {manifest.get('schema_version')!r}; "
                                  f"this unidiff reads version {SCHEMA_VERSION}")
    return manifest


def write_manifest(root, manifest: dict) -> None:
    """Recompute counts and the success rate, then write atomically."""
    eps = manifest["episodes"]
    attempts = manifest["attempts"]
    manifest["counts"] = {
        "episodes": len(eps),
        "steps": int(sum(e["length"] for e in eps)),
        "frames": int(sum(e["length"] + 1 for e in eps)),
        "successful_episodes": int(sum(bool(e["success"]) for e in eps)),
        "attempts": len(attempts),
    }
    manifest["expert_success_rate"] = (sum(attempts.values()) / len(attempts)) if attempts else None
    write_json_atomic(Path(root) / MANIFEST, manifest)


def verify(root) -> list[str]:
    """Check a dataset; returns one line per problem (empty list = healthy)."""
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, CorruptDatasetError) as exc:
        return [str(exc)]
    problems = []
    listed = set()
    for rec in manifest.get("episodes", []):
        listed.add(rec["file"])
        path = root / rec["file"]
        try:
            ep = read_episode(path, rec["sha256"])
        except CorruptDatasetError as exc:
            problems.append(f"{rec['file']}: {str(exc).split('. Run')[0]}")
            continue
        T = ep["actions"].shape[0]
        if not (ep["frames"].shape[0] == ep["state"].shape[0] == len(ep["captions"]) == T + 1 == rec["length"] + 1):
            problems.append(f"{rec['file']}: inconsistent lengths (actions {T}, frames {ep['frames'].shape[0]})")
    ep_dir = root / EPISODE_DIR
    for path in sorted(ep_dir.iterdir()) if ep_dir.is_dir() else []:
        rel = f"{EPISODE_DIR}/{path.name}"
        if TMP_MARK in path.name:
            problems.append(f"{rel}: leftover temporary file (an interrupted write; safe to delete)")
        elif rel not in listed:
            problems.append(f"{rel}: not listed in {MANIFEST} (rerun `unidiff collect` to adopt it)")
    return problems

"""`unidiff collect`: run scripted experts in worker processes and write an episode dataset.

    unidiff collect --env ID --episodes N --out DIR [--workers K] [--seed S] [--size 64]
                    [--noise STD] [--keep-failed] [--lead BUNDLE --lead-steps K [--lead-decoy]]
    unidiff collect --verify DIR

`--episodes N` is the number of episodes DIR should hold: running again with the same N
resumes an interrupted run, a larger N appends.  Attempt i uses seed S+i; seeds already
attempted are skipped, so results do not depend on the number of workers or on restarts.

`--lead BUNDLE` collects recovery demonstrations (DAgger-style): in each episode the bundle's
policy drives first for a seeded number of steps in [0, K], and the recording (expert labels,
expert actions) starts where it left the robot.  `--lead-decoy` tells that policy to act on another
object than the episode's (tabletop: target and reference swapped), so the expert's recording starts
at the wrong object and shows the way to the named one.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from unidiff.data.episodes import (EPISODE_DIR, MANIFEST, SCHEMA_VERSION, TMP_MARK, CorruptDatasetError,
                                   read_episode, read_manifest, verify, write_manifest)
from unidiff.data.workers import collect_one, init_worker
from unidiff.files import sha256_file


class CollectError(ValueError):
    """Bad input to `unidiff collect` (message says what to do)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unidiff collect", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", help="env id, e.g. unidiff/TabletopPush-v0 or unidiff/MetaWorld-reach-v3")
    p.add_argument("--episodes", type=int, help="number of episodes the dataset should hold")
    p.add_argument("--out", type=Path, help="dataset directory (new, empty, or an earlier collect's)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (one env each)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first attempt")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--noise", type=float, default=0.0, help="DART action noise std (labels stay clean)")
    p.add_argument("--keep-failed", action="store_true", help="also keep episodes the expert failed")
    p.add_argument("--lead", type=Path, metavar="BUNDLE", help="a bundle whose policy drives before the expert takes over")
    p.add_argument("--lead-steps", type=int, default=64, help="most steps the --lead policy drives (each episode draws 0..K)")
    p.add_argument("--lead-decoy", action="store_true",
                   help="give the --lead policy an instruction naming another object (tabletop envs)")
    p.add_argument("--verify", type=Path, metavar="DIR", help="check a dataset and exit")
    return p


def _new_manifest(args) -> dict:
    return {"schema_version": SCHEMA_VERSION, "env_id": args.env, "image_size": args.size,
            "noise_std": args.noise, "keep_failed": args.keep_failed, **_lead_settings(args), "episodes": [], "attempts": {}}


NO_LEAD = {"lead": None, "lead_steps": 0, "lead_decoy": False}  # also what datasets from before --lead hold


def _lead_settings(args) -> dict:
    return NO_LEAD if args.lead is None else {"lead": str(args.lead), "lead_steps": args.lead_steps,
                                                "lead_decoy": args.lead_decoy}


def prepare(args) -> dict:
    """Validate the output dir and return its manifest (new, or resumed with orphans adopted)."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise CollectError(f"--out {out} is a file; give a directory path")
    if not (out / MANIFEST).exists():
        entries = sorted(p.name for p in out.iterdir()) if out.exists() else []
        if entries:
            raise CollectError(f"--out {out} already holds files that are not a unidiff dataset "
                               f"({', '.join(entries[:5])}{' ...' if len(entries) > 5 else ''}); "
                               f"choose a new or empty directory")
        (out / EPISODE_DIR).mkdir(parents=True, exist_ok=True)
        manifest = _new_manifest(args)
        write_manifest(out, manifest)
        return manifest
    manifest = read_manifest(out)
    for key, value in (("env_id", args.env), ("image_size", args.size), *_lead_settings(args).items()):
        held = manifest.get(key, NO_LEAD.get(key))
        if held != value:
            raise CollectError(f"--out {out} holds a dataset with {key}={held!r}, not {value!r}; "
                               f"use a different --out or the same settings")
    ep_dir = out / EPISODE_DIR
    ep_dir.mkdir(exist_ok=True)
    for tmp in ep_dir.glob(f"*{TMP_MARK}*"):  # half-written files of a killed run
        tmp.unlink()
    kept = []
    for rec in manifest["episodes"]:  # deleted files are dropped and re-collected
        if (out / rec["file"]).exists():
            if sha256_file(out / rec["file"]) != rec["sha256"]:
                raise CorruptDatasetError(f"{out / rec['file']} is corrupt (checksum mismatch); delete it "
                                          f"and rerun the same command to re-collect it")
            kept.append(rec)
        else:
            manifest["attempts"].pop(str(rec["seed"]), None)
    listed = {rec["file"] for rec in kept}
    for path in sorted(ep_dir.glob("ep_*.npz")):  # finished by a worker, not yet in the manifest
        rel = f"{EPISODE_DIR}/{path.name}"
        if rel not in listed:
            meta = read_episode(path)["meta"]
            kept.append({"file": rel, "seed": meta["seed"], "sha256": sha256_file(path),
                         "bytes": path.stat().st_size, "length": meta["length"], "success": meta["success"]})
            manifest["attempts"][str(meta["seed"])] = bool(meta["success"])
    manifest["episodes"] = sorted(kept, key=lambda r: r["seed"])
    write_manifest(out, manifest)
    return manifest


def _seeds(start: int, attempted: dict):
    seed = start
    while True:
        if str(seed) not in attempted:
            yield seed
        seed += 1


def run(args) -> int:
    manifest = prepare(args)
    need = args.episodes - len(manifest["episodes"])
    if need <= 0:
        print(f"{args.out} already holds {len(manifest['episodes'])} episodes (>= {args.episodes}); nothing to do")
        return 0
    from tqdm import tqdm

    seeds = _seeds(args.seed, manifest["attempts"])
    budget = 3 * need + 20  # attempts allowed in this run before giving up on a weak expert
    frames, added, t0 = 0, 0, time.perf_counter()
    ctx = mp.get_context("spawn")
    bar = tqdm(total=args.episodes, initial=len(manifest["episodes"]), desc=args.env, unit="ep")
    try:
        with cf.ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=init_worker,
                                    initargs=(args.env, args.size, str(args.out), args.noise, args.keep_failed,
                                              *_lead_settings(args).values())) as pool:
            pending: set = set()
            while need > 0 or pending:
                while need > len(pending) and len(pending) < 2 * args.workers and budget > 0:
                    pending.add(pool.submit(collect_one, next(seeds)))
                    budget -= 1
                if not pending:
                    raise RuntimeError(f"the expert failed too often ({manifest['expert_success_rate']:.0%} "
                                       f"success); stopped after {3 * args.episodes + 20} attempts")
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: f.exception() is not None):  # record finished first
                    rec = fut.result()
                    manifest["attempts"][str(rec["seed"])] = bool(rec["success"])
                    if rec["file"] is not None:
                        manifest["episodes"].append(rec)
                        manifest["episodes"].sort(key=lambda r: r["seed"])
                        frames += rec["length"] + 1
                        added += 1
                        need -= 1
                        bar.update(1)
                    write_manifest(args.out, manifest)
                    bar.set_postfix(fps=f"{frames / (time.perf_counter() - t0):.0f}",
                                    success=f"{manifest['expert_success_rate']:.0%}")
    except BrokenProcessPool:
        bar.close()
        print(f"unidiff collect: a worker process died; the {len(manifest['episodes'])} finished episodes "
              f"are safe in {args.out}. Rerun the same command to resume.", file=sys.stderr)
        return 1
    bar.close()
    dt = time.perf_counter() - t0
    print(f"collected {added} episodes into {args.out}: "
          f"{frames} frames in {dt:.1f} s ({frames / dt:.1f} frames/s with {args.workers} workers), "
          f"expert success rate {manifest['expert_success_rate']:.3f} over {len(manifest['attempts'])} attempts")
    return 0


def validate(args) -> None:
    from unidiff_envs.registry import check_env_id

    missing = [f"--{k}" for k in ("env", "episodes", "out") if getattr(args, k) is None]
    if missing:
        raise CollectError(f"missing {', '.join(missing)} (or use --verify DIR)")
    check_env_id(args.env)
    if args.episodes <= 0:
        raise CollectError(f"--episodes must be a positive number of episodes, got {args.episodes}")
    if args.workers <= 0:
        raise CollectError(f"--workers must be at least 1, got {args.workers}")
    if not 8 <= args.size <= 512:
        raise CollectError(f"--size must be between 8 and 512 pixels, got {args.size}")
    if args.noise < 0:
        raise CollectError(f"--noise must be >= 0, got {args.noise}")
    if args.lead is not None and not (args.lead / "model.safetensors").is_file():
        raise CollectError(f"--lead {args.lead} is not a bundle directory (no model.safetensors); give e.g. runs/x/bundle")
    if args.lead_decoy and args.lead is None:
        raise CollectError("--lead-decoy needs --lead BUNDLE (the policy that is given the decoy instruction)")
    if args.lead_decoy and not args.env.startswith("unidiff/Tabletop"):
        raise CollectError(f"--lead-decoy needs a tabletop env (unidiff/Tabletop...), not {args.env}: "
                           f"only those can name another object")
    if args.lead_steps < 0:
        raise CollectError(f"--lead-steps must be >= 0, got {args.lead_steps}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.verify is not None:
            problems = verify(args.verify)
            for line in problems:
                print(f"PROBLEM {line}")
            print(f"{args.verify}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 0 if not problems else 1
        validate(args)
        return run(args)
    except (CollectError, CorruptDatasetError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"unidiff collect: error: {exc}", file=sys.stderr)
        return 2

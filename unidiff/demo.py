"""`unidiff demo`: one bundle (the shipped one by default) captions held-out scenes, draws images
from prompts and drives the robot, in a few minutes on a CPU.  Writes ``DIR/report.html``
(pictures, videos, scores) and ``DIR/metrics.json`` (the scores of this small run).

Held-out scenes and episode seeds are the ones ``unidiff eval`` uses (seeds training never
uses), so the demo's scores are computed on a subset of the full evaluation's samples.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_PROMPTS = (
    "a red cube on the left.",
    "there is a blue ball in the center.",
    "one object: a purple cylinder at the top.",
    "two objects: a green cube in the bottom left and a yellow ball on the right. "
    "the green cube is left of the yellow ball.",
)
TILE = 192  # px of one report tile (images are upscaled, nearest neighbour)


def _stage(msg: str) -> None:
    print(f"unidiff demo: {msg}", file=sys.stderr, flush=True)


def _grid(images: list, labels: list[str]):
    from unidiff.eval import image_grid

    return image_grid(images, labels, cols=min(4, len(images)), tile=TILE)


def run_demo(model, out_dir, *, scenes: int = 8, prompts=DEFAULT_PROMPTS, episodes: int = 2,
             steps: int | None = None, seed: int = 0, log=_stage, started: float | None = None) -> dict:
    """Caption ``scenes`` held-out scenes, generate one image per prompt, roll the policy out for
    ``episodes`` episodes of the bundle's env; write ``report.html`` and ``metrics.json`` into
    ``out_dir`` (atomically) and return the metrics.  A count of 0 skips that stage; the policy is
    skipped too for a bundle without an action segment.  ``wall_s`` counts from ``started`` (a
    ``time.perf_counter()`` value, e.g. taken before loading the bundle), else from this call."""
    from unidiff.eval import parse_caption, score_captions, score_images, write_report
    from unidiff.evaluate import (EVAL_SCENE_SEED, bundle_env_id, bundle_image_size,
                                  decode_batched, heldout_scenes, rollout_policy)
    from unidiff.tasks.codec import target_steps

    t_start = time.perf_counter() if started is None else started
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    size = bundle_image_size(model)
    prompts = list(prompts or [])
    env_id = bundle_env_id(model) if episodes else None
    stages = sum(map(bool, (scenes, prompts, env_id)))
    stage = 0
    task_steps = {t: target_steps(model, m, steps) for t, m in (("caption", "text"), ("t2i", "image"), ("policy", "action"))
                  if m in model.spec.modalities}
    metrics: dict = {"demo.bundle": str(model.path), "demo.seed": seed, "demo.image_size": size,
                     **{f"{t}.steps": n for t, n in task_steps.items()}}
    sections: list[dict] = []

    if scenes:
        stage += 1
        log(f"[{stage}/{stages}] captioning {scenes} held-out scenes ({size}x{size}, {_steps(task_steps['caption'])})")
        t0 = time.perf_counter()
        samples = heldout_scenes(scenes, size)
        images = [s["image"] for s in samples]
        truth = [s["description"] for s in samples]
        captions, nfe = decode_batched(model, "image", images, "text", steps=steps, seed=seed)
        scores = score_captions(captions, truth)
        metrics.update({f"caption.{k}": v for k, v in scores.items()})
        metrics.update({"caption.nfe": nfe, "caption.wall_s": time.perf_counter() - t0})
        labels = [f"[{'exact' if ok else 'not exact'}] model: {c or '(empty)'} | truth: {s['caption']}"
                  for c, ok, s in zip(captions, scores["passed"], samples)]
        sections.append({
            "title": "Captioning held-out scenes",
            "text": f"{scenes} scenes rendered by the simulator with seeds training never used "
                    f"(SceneDataset seed {EVAL_SCENE_SEED}). Under each scene: the model's caption, then the truth.",
            "metrics": {k: scores[k] for k in ("object_f1", "exact_match", "cell_accuracy", "relation_accuracy")},
            "images": [_grid(images, labels)],
        })
        log(f"      object F1 {scores['object_f1']:.3f}, exact match {scores['exact_match']:.3f} "
            f"({metrics['caption.wall_s']:.1f} s)")

    if prompts:
        stage += 1
        log(f"[{stage}/{stages}] generating {len(prompts)} images from prompts ({_steps(task_steps['t2i'])})")
        t0 = time.perf_counter()
        generated, nfe = decode_batched(model, "text", prompts, "image", steps=steps, seed=seed)
        # a prompt is scored by what it names (parsed with the caption parser); one that names no
        # object of this world is shown but not scored
        wanted = [parse_caption(p) for p in prompts]
        scored = [i for i, d in enumerate(wanted) if d["objects"]]
        passed: list = [None] * len(prompts)
        t2i = {"scene_accuracy": None, "object_recall": None}
        if scored:
            t2i = score_images([generated[i] for i in scored], [wanted[i] for i in scored])
            for i, ok in zip(scored, t2i["passed"]):
                passed[i] = ok
        metrics.update({"t2i.scene_accuracy": t2i["scene_accuracy"], "t2i.object_recall": t2i["object_recall"],
                        "t2i.n": len(prompts), "t2i.scored": len(scored), "t2i.passed": passed,
                        "t2i.prompts": prompts, "t2i.nfe": nfe, "t2i.wall_s": time.perf_counter() - t0})
        mark = {True: "[pass]", False: "[fail]", None: "[not scored]"}
        sections.append({
            "title": "Text to image",
            "text": "One image per prompt. The scene parser reads each image back; a prompt passes when every "
                    "object it names is there, in its cell, in the stated relations, and nothing else is.",
            "metrics": {k: metrics[f"t2i.{k}"] for k in ("scene_accuracy", "object_recall", "scored")},
            "images": [_grid(generated, [f"{mark[ok]} {p}" for p, ok in zip(prompts, passed)])],
        })
        acc = "n/a" if t2i["scene_accuracy"] is None else f"{t2i['scene_accuracy']:.3f}"
        log(f"      scene accuracy {acc} ({metrics['t2i.wall_s']:.1f} s)")

    if env_id:
        stage += 1
        log(f"[{stage}/{stages}] policy: {episodes} episode(s) of {env_id}")
        t0 = time.perf_counter()
        res = rollout_policy(model, env_id, episodes, steps=steps, seed=seed, image_size=size,
                             video_dir=str(out / "videos"), n_videos=min(episodes, 4))
        videos = [Path(v).resolve().relative_to(out).as_posix() for v in res["videos"]]
        metrics["policy.env"] = env_id
        for k in ("success_rate", "ci95_low", "ci95_high", "episodes", "successes", "mean_steps", "nfe",
                  "ms_per_chunk", "control_hz"):
            if k in res:
                metrics[f"policy.{k}"] = res[k]
        metrics.update({"policy.videos": videos, "policy.wall_s": time.perf_counter() - t0})
        per = "; ".join(f"seed {r['seed']}: \"{r['instruction']}\" {'succeeded' if r['success'] else 'failed'} "
                        f"after {r['steps']} steps" for r in res["per_episode"])
        sections.append({
            "title": "Policy rollouts",
            "text": f"{env_id}, rendered at {size}x{size}, env seeds training never used. {per}.",
            "metrics": {k: res[k] for k in ("success_rate", "ci95_low", "ci95_high", "episodes", "mean_steps")},
            "videos": [out / v for v in videos],
        })
        log(f"      success {res['successes']}/{res['episodes']} ({metrics['policy.wall_s']:.1f} s)")
    elif episodes:
        log("policy skipped: this bundle has no action segment")

    spec = model.spec
    shape = ", ".join(f"{s.modality} {s.rows}x{s.cols}" for s in spec.segments)
    sections.append({
        "title": "The bundle",
        "text": f"{model.path}: backbone {model.net.cfg.width} wide, {model.net.cfg.depth} layers; canvas {shape}; "
                f"images {size}x{size}. The table is the bundle's own metrics.json (its held-out evaluation at fit time).",
        "metrics": model.metrics,
    })
    metrics["wall_s"] = time.perf_counter() - t_start
    write_report(out, metrics, sections, title="unidiff demo")
    return metrics


def summary(metrics: dict, out_dir) -> str:
    """A few human lines about a :func:`run_demo` result."""
    steps = ", ".join(f"{t} {_steps(metrics[f'{t}.steps'])}" for t in ("caption", "t2i", "policy") if f"{t}.steps" in metrics)
    lines = [f"unidiff demo of {metrics['demo.bundle']} ({metrics['demo.image_size']}px images; decoding: {steps})"]
    if "caption.n" in metrics:
        lines.append(f"  captioning     {metrics['caption.n']:>3} held-out scenes  object F1 {metrics['caption.object_f1']:.3f}"
                     f"   exact match {metrics['caption.exact_match']:.3f}")
    if "t2i.n" in metrics:
        acc = metrics["t2i.scene_accuracy"]
        lines.append(f"  text-to-image  {metrics['t2i.n']:>3} prompts          scene accuracy "
                     + ("n/a (no prompt names an object)" if acc is None else f"{acc:.3f}"))
    if "policy.env" in metrics:
        lines.append(f"  policy         {metrics['policy.episodes']:>3} episodes         success {metrics['policy.successes']}/"
                     f"{metrics['policy.episodes']} = {metrics['policy.success_rate']:.2f} (95% CI "
                     f"{metrics['policy.ci95_low']:.2f}-{metrics['policy.ci95_high']:.2f}) in {metrics['policy.env']}")
    out = Path(out_dir)
    lines.append(f"  wall time {metrics['wall_s']:.1f} s; report {out / 'report.html'}, metrics {out / 'metrics.json'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from unidiff.bundle import BundleError, shipped_bundle_path
    from unidiff.commands import add_steps_arg, check_action_space, load_or_exit
    from unidiff.evaluate import bundle_env_id

    p = argparse.ArgumentParser(
        prog="unidiff demo",
        description="Caption held-out scenes, generate images from prompts and roll the policy out with one "
                    "bundle (the one shipped with unidiff by default); write DIR/report.html and DIR/metrics.json.")
    p.add_argument("--out", default="unidiff-demo", help="output directory (default: ./unidiff-demo)")
    p.add_argument("--ckpt", default=None, help="bundle directory (default: the shipped one, unidiff/assets/tabletop)")
    p.add_argument("--scenes", type=int, default=8, help="held-out scenes to caption (0: skip)")
    p.add_argument("--prompts", nargs="+", default=list(DEFAULT_PROMPTS), help="text-to-image prompts")
    p.add_argument("--episodes", type=int, default=2, help="policy episodes, with videos (0: skip)")
    add_steps_arg(p)
    p.add_argument("--seed", type=int, default=0, help="decoder seed (scenes and episodes are the fixed held-out ones)")
    a = p.parse_args(argv)
    for name in ("scenes", "episodes"):
        if getattr(a, name) < 0:
            sys.exit(f"unidiff demo: --{name} must be >= 0")
    if any(not t.strip() for t in a.prompts):
        sys.exit("unidiff demo: prompts must be non-empty strings")
    started = time.perf_counter()
    try:
        ckpt = a.ckpt or shipped_bundle_path()
    except BundleError as e:
        sys.exit(f"unidiff: {e}")
    _stage(f"loading {ckpt}")
    model = load_or_exit(ckpt)
    env = bundle_env_id(model)
    if a.episodes and env:
        check_action_space(model, env)
    try:
        metrics = run_demo(model, a.out, scenes=a.scenes, prompts=a.prompts, episodes=a.episodes, steps=a.steps,
                           seed=a.seed, started=started)
    except ValueError as e:  # e.g. a bundle without the tokenizer a stage needs
        sys.exit(f"unidiff demo: {e}")
    print(summary(metrics, a.out))
    return 0


def _steps(n: int | None) -> str:
    """A task's decoder steps for the log (None: an autoregressive twin's token-by-token decoding)."""
    return "left to right" if n is None else f"{n} steps"

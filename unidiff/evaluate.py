"""Evaluate one tabletop bundle on all three tasks, on held-out seeds training never saw.

Captioning is scored against the simulator's scene description, text-to-image with the scene
parser, the policy by seeded rollouts in worker processes (each loads the bundle itself).
"""
from __future__ import annotations

import time
from functools import partial

from unidiff.bundle import load_bundle

EVAL_SCENE_SEED = 7_000_000  # SceneDataset seed for held-out scenes (training uses small seeds)
EVAL_EPISODE_SEED = 100_000  # first env seed of policy evaluation


def make_policy(path: str, **kw):
    """Picklable policy factory for rollout workers."""
    return load_bundle(path).policy(**kw)


def evaluate_bundle(
    model,
    *,
    scenes: int = 200,
    env_id: str | None = None,
    episodes: int = 50,
    steps: int = 8,
    image_size: int = 64,
    workers: int = 1,
    video_dir: str | None = None,
    batch: int = 50,
) -> dict:
    """Returns the flat metric dict of ``unidiff eval`` (caption.*, t2i.*, policy.*, decode.nfe:
    measured forward passes per sample, not the configured step count)."""
    from unidiff.data import SceneDataset
    from unidiff.eval import evaluate_policy, score_captions, score_images
    from unidiff.tasks.codec import complete

    data = SceneDataset(scenes, EVAL_SCENE_SEED, image_size)
    samples = [data[i] for i in range(len(data))]
    images = [s["image"] for s in samples]
    truth = [s["description"] for s in samples]

    def run(given: str, values: list, target: str) -> tuple[list, int]:
        """Decode in batches; returns the values and the NFE of one sample (forward passes)."""
        outs, nfe = [], 0
        for i in range(0, len(values), batch):
            vals, n = complete(model, {given: values[i : i + batch]}, target, steps=steps, seed=i)
            outs += vals
            nfe = max(nfe, n)
        return outs, nfe

    t0 = time.perf_counter()
    captions, nfe_caption = run("image", images, "text")
    t_cap = time.perf_counter() - t0
    generated, nfe_t2i = run("text", [s["caption"] for s in samples], "image")
    out = {f"caption.{k}": v for k, v in score_captions(captions, truth).items()}
    out.update({f"t2i.{k}": v for k, v in score_images(generated, truth).items()})
    out["caption.ms_per_sample"] = 1000 * t_cap / max(1, len(images))
    out["caption.nfe"], out["t2i.nfe"] = nfe_caption, nfe_t2i
    out["decode.nfe"] = max(nfe_caption, nfe_t2i)
    if env_id is not None:
        res = evaluate_policy(
            partial(make_policy, str(model.path), steps=steps),
            env_id,
            episodes,
            start_seed=EVAL_EPISODE_SEED,
            workers=workers,
            video_dir=video_dir,
            env_kwargs={"size": image_size},  # render at the size the image tokenizer reads
        )
        for k in ("success_rate", "ci95_low", "ci95_high", "episodes"):
            out[f"policy.{env_id}.{k}"] = res[k]
        for k in ("ms_per_chunk", "nfe"):
            if k in res:
                out[f"policy.{k}"] = res[k]
    return out

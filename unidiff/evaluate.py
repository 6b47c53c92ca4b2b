"""Evaluate one tabletop bundle on all three tasks, on held-out seeds training never saw.

Captioning is scored against the simulator's scene description, text-to-image with the scene
parser, the policy by seeded rollouts in worker processes (each loads the bundle itself).

The pieces (held-out scenes, batched decoding, seeded rollouts, what a bundle says about its own
image size and env) are shared with ``unidiff rollout | eval | demo``.
"""
from __future__ import annotations

import time
from functools import partial

from unidiff.bundle import load_bundle

EVAL_SCENE_SEED = 7_000_000  # SceneDataset seed for held-out scenes (training uses small seeds)
EVAL_EPISODE_SEED = 100_000  # first env seed of policy evaluation
DEFAULT_ENV = "unidiff/TabletopPush-v0"  # the tabletop recipe's env (TabletopDataModule.eval_env)


def make_policy(path: str, **kw):
    """Picklable policy factory for rollout workers."""
    return load_bundle(path).policy(**kw)


# ---- what a bundle says about itself ----------------------------------------------------------
def bundle_image_size(model) -> int:
    """Render size the bundle's image tokenizer reads (scenes and envs must render at it)."""
    if "image" not in model.tokenizers:
        raise ValueError(f"bundle {model.path} has no image tokenizer (it has {sorted(model.tokenizers)})")
    return int(model.tokenizers["image"].config.size)


def bundle_env_id(model) -> str | None:
    """The env the bundle's policy was evaluated in when it was trained (``data.eval_env`` of its
    fit config, else the tabletop default); None for a bundle without an action segment."""
    if "action" not in model.spec.modalities:
        return None
    return str(model.data_config.get("eval_env") or DEFAULT_ENV)


# ---- shared pieces ------------------------------------------------------------------------------
def heldout_scenes(n: int, image_size: int) -> list[dict]:
    """The first ``n`` held-out scenes (image, caption, description), rendered at ``image_size``;
    the same scenes for every caller, so a small run scores a subset of ``unidiff eval``'s."""
    from unidiff.data import SceneDataset

    data = SceneDataset(n, EVAL_SCENE_SEED, image_size)
    return [data[i] for i in range(len(data))]


def decode_batched(model, given: str, values: list, target: str, *, steps: int | None = None, seed: int = 0,
                   batch: int = 50, **decode_kw) -> tuple[list, int]:
    """Decode ``target`` from ``given`` values in batches (batch at offset i uses seed ``seed + i``);
    returns the values and the NFE of one sample (forward passes).  ``steps`` (None: the bundle's
    for ``target``) and ``decode_kw`` override the bundle's decode settings."""
    from unidiff.tasks.codec import complete

    outs, nfe = [], 0
    for i in range(0, len(values), batch):
        vals, n = complete(model, {given: values[i : i + batch]}, target, steps=steps, seed=seed + i, **decode_kw)
        outs += vals
        nfe = max(nfe, n)
    return outs, nfe


def rollout_policy(model, env_id: str, episodes: int, *, steps: int | None = None, image_size: int, seed: int = 0,
                   workers: int = 1, video_dir: str | None = None, n_videos: int = 2, n_action_steps: int | None = None,
                   **decode_kw) -> dict:
    """Seeded rollouts of the bundle's policy (episode i uses env seed ``EVAL_EPISODE_SEED + i``),
    rendering at ``image_size``; returns :func:`unidiff.eval.evaluate_policy`'s result.
    ``n_action_steps``: actions executed from each chunk before re-planning (None: all);
    ``decode_kw`` override the bundle's action decode settings (e.g. ``cfg_scale``, ``cfg_drop``).
    One worker drives ``model`` itself (so a model in training, with no bundle on disk yet, can be
    rolled out); more workers each load the bundle at ``model.path``."""
    from unidiff.eval import evaluate_policy

    kw = dict(steps=steps, seed=seed, n_action_steps=n_action_steps, **decode_kw)
    return evaluate_policy(
        partial(model.policy, **kw) if workers == 1 else partial(make_policy, str(model.path), **kw),
        env_id,
        episodes,
        start_seed=EVAL_EPISODE_SEED,
        workers=workers,
        video_dir=video_dir,
        n_videos=n_videos,
        env_kwargs={"size": image_size},  # render at the size the image tokenizer reads
    )


def evaluate_bundle(
    model,
    *,
    scenes: int = 200,
    env_id: str | None = None,
    episodes: int = 50,
    steps: int | None = None,
    image_size: int = 64,
    workers: int = 1,
    video_dir: str | None = None,
    batch: int = 50,
    caption_kw: dict | None = None,
    image_kw: dict | None = None,
) -> dict:
    """Returns the flat metric dict of ``unidiff eval`` (caption.*, t2i.*, policy.*, decode.nfe:
    measured forward passes per sample, not the configured step count).  ``steps``: every task's
    decoder steps (None: the bundle's per task, recorded as ``<task>.steps``).  ``caption_kw``: decoder
    settings for the captions over the bundle's (e.g. ``{"text_block": None}``: by confidence);
    ``image_kw`` the same for the images (e.g. ``{"cfg_scale": 0.0}``)."""
    from unidiff.eval import score_captions, score_images
    from unidiff.eval.caption_binding import word_accuracy
    from unidiff.eval.policy_heading import bundle_heading
    from unidiff.eval.stats import wilson_interval
    from unidiff.tasks.codec import target_steps

    samples = heldout_scenes(scenes, image_size)
    images = [s["image"] for s in samples]
    truth = [s["description"] for s in samples]

    t0 = time.perf_counter()
    captions, nfe_caption = decode_batched(model, "image", images, "text", steps=steps, batch=batch, **(caption_kw or {}))
    t_cap = time.perf_counter() - t0
    generated, nfe_t2i = decode_batched(model, "text", [s["caption"] for s in samples], "image", steps=steps, batch=batch, **(image_kw or {}))
    out = {f"caption.{k}": v for k, v in score_captions(captions, truth).items()}
    out.update({f"t2i.{k}": v for k, v in score_images(generated, truth).items()})
    # 95 % Wilson intervals of the per-scene pass rates, as for the policy's success rate: a few
    # hundred scenes leave a few points of doubt, which comparisons of bundles must exceed
    for task, rate in (("caption", "exact_match"), ("t2i", "scene_accuracy")):
        passed = out[f"{task}.passed"]
        out[f"{task}.{rate}_ci95_low"], out[f"{task}.{rate}_ci95_high"] = wilson_interval(sum(passed), len(passed))
    # where a model fails: the same two scores per number of objects in the scene
    for n in sorted({len(d["objects"]) for d in truth}):
        idx = [i for i, d in enumerate(truth) if len(d["objects"]) == n]
        out[f"caption.object_f1.{n}_objects"] = score_captions([captions[i] for i in idx], [truth[i] for i in idx])["object_f1"]
        out[f"t2i.scene_accuracy.{n}_objects"] = sum(out["t2i.passed"][i] for i in idx) / len(idx)
    # binding (is the k-th name of the list about the k-th object?), apart from decoding
    out.update({f"caption.binding.{k}": v for k, v in word_accuracy(model, samples).items()})
    out["caption.ms_per_sample"] = 1000 * t_cap / max(1, len(images))
    out["caption.nfe"], out["t2i.nfe"] = nfe_caption, nfe_t2i
    out["caption.steps"], out["t2i.steps"] = target_steps(model, "text", steps), target_steps(model, "image", steps)
    out["decode.nfe"] = max(nfe_caption, nfe_t2i)
    if env_id is not None:
        res = rollout_policy(model, env_id, episodes, steps=steps, image_size=image_size, workers=workers,
                             video_dir=video_dir)
        for k in ("success_rate", "ci95_low", "ci95_high", "episodes"):
            out[f"policy.{env_id}.{k}"] = res[k]
        out.update({f"policy.{env_id}.{k}": v for k, v in res.get("diagnostics", {}).items()})
        # does it head the right way?  its first chunk against the expert's (unidiff.eval.policy_heading)
        heading = bundle_heading(model, env_id, episodes, steps=steps, image_size=image_size)
        out[f"policy.{env_id}.heading_agreement"] = heading["heading_agreement"]
        for k in ("ms_per_chunk", "nfe"):
            if k in res:
                out[f"policy.{k}"] = res[k]
        out["policy.steps"] = target_steps(model, "action", steps)
    return out

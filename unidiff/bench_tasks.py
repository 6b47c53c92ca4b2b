"""The held-out tasks `unidiff bench` decodes, one builder per world (keyed by the data module a
bundle was trained with), and how each task scores a decoded target.

* the synthetic world (``unidiff.synthetic.SyntheticDataModule``): held-out scenes of its
  ``evaluate``; quality is exact match of the generated tokens with the ground truth.
* the tabletop (``unidiff.tabletop.TabletopDataModule``): captioning and text-to-image on the
  held-out scenes ``unidiff eval`` scores (scene seed ``EVAL_SCENE_SEED``); the policy on
  windows of scripted-expert episodes run here in the bundle's env on the env seeds ``unidiff eval``
  rolls out from (``EVAL_EPISODE_SEED`` on).  Everything is tokenized with the bundle's own
  tokenizers; no episode data on disk is needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch

from unidiff.canvas import prompt_canvas, text_ids

@dataclass
class BenchTask:
    """Held-out prompts of one task, their ground truth and how a decoded target is scored."""

    name: str
    tokens: torch.Tensor  # (N, L) prompt canvases, targets masked
    roles: torch.Tensor  # (N, S)
    target: str  # the generated modality
    truth: torch.Tensor  # (N, target segment length) ground-truth target tokens
    span: slice  # the target segment's slice of the canvas
    horizon: int = 0  # policy: steps H per action chunk (0 for other tasks)
    # decoded target segments (N, span length) -> {metric: value}, holding ``metric`` and
    # ``per_sample`` (that metric per sample, whose mean it is: the bench's standard errors);
    # default: exact match of the tokens with ``truth`` (text: up to [EOS])
    score: Callable[[torch.Tensor], dict] | None = None
    metric: str = "exact_match"  # the headline quality (ratios and checks use it)
    higher_is_better: bool = True
    info: dict = field(default_factory=dict)  # facts about the task for the report

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = partial(exact_match, self.target, self.truth)


def exact_match(target: str, truth: torch.Tensor, got: torch.Tensor) -> dict:
    """Fraction of samples whose decoded segment equals the ground truth (text: up to [EOS])."""
    if target == "text":
        hits = [text_ids(g) == text_ids(t) for g, t in zip(got, truth)]
    else:
        hits = [bool(torch.equal(g, t)) for g, t in zip(got, truth)]
    return {"exact_match": sum(hits) / len(hits), "per_sample": [float(h) for h in hits]}


# ---- tasks -----------------------------------------------------------------------------------
def _synthetic_tasks(bundle, init_args: dict, n: int) -> list[BenchTask]:
    """The synthetic world's three tasks on held-out scenes (the seed range of its ``evaluate``)."""
    from unidiff.synthetic import SyntheticDataModule

    dm = SyntheticDataModule(**init_args)
    if dm.spec != bundle.spec:
        raise ValueError("the bundle's canvas differs from the one its fit_config's data module builds; was the config edited?")
    if "text" in bundle.tokenizers:
        dm.text = bundle.tokenizers["text"]  # encode prompts with exactly the tokenizer that ships
    scenes = [dm.world.sample(dm.base + 900_000_000 + i) for i in range(n)]
    tasks = []
    for name, policy, keep, target in (
        ("caption", False, ("image",), "text"),
        ("t2i", False, ("text",), "image"),
        ("policy", True, ("text", "image", "state"), "action"),
    ):
        truth = [dm.encode(s, policy) for s in scenes]
        tokens, roles = prompt_canvas(bundle.spec, [{m: t[m] for m in keep} for t in truth], (target,))
        horizon = bundle.spec.segment("action").rows if policy else 0
        tasks.append(BenchTask(name, tokens, roles, target, torch.stack([t[target] for t in truth]), bundle.spec.slices[target], horizon))
    return tasks


def _fits(text_tok, text: str, text_len: int) -> bool:
    return len(text_tok.encode(text)) + 1 <= text_len


def heldout_scenes_that_fit(bundle, n: int, image_size: int) -> list[dict]:
    """The first ``n`` held-out scenes of ``unidiff eval`` (SceneDataset seed ``EVAL_SCENE_SEED``)
    whose caption fits the bundle's text segment (normally all of them: a scene is only skipped
    where the bundle could not take its caption as a prompt at all)."""
    from unidiff.data import SceneDataset
    from unidiff.evaluate import EVAL_SCENE_SEED

    data = SceneDataset(10 * n + 100, EVAL_SCENE_SEED, image_size)  # rendered lazily, per index
    out = []
    for i in range(len(data)):
        scene = data[i]
        if _fits(bundle.tokenizers["text"], scene["caption"], bundle.spec.text_len):
            out.append(scene)
            if len(out) == n:
                return out
    raise ValueError(f"fewer than {n} of the first {len(data)} held-out captions fit the bundle's text segment ({bundle.spec.text_len} tokens)")


def heldout_expert_windows(env_id: str, n: int, horizon: int, image_size: int, text_tok=None, text_len: int = 0) -> list[dict]:
    """``n`` policy windows (image, state, instruction, expert action chunk of ``horizon`` steps;
    see :func:`unidiff.data.episode_window`) from scripted-expert episodes run in ``env_id`` on the
    env seeds ``unidiff eval`` rolls out from (``EVAL_EPISODE_SEED`` on), rendering at
    ``image_size``.  Like ``unidiff collect`` it keeps only episodes the expert solves; from each it
    takes the steps 0, H, 2H, ... where a policy executing whole chunks would re-plan."""
    import unidiff_envs
    from unidiff.data import episode_window
    from unidiff.evaluate import EVAL_EPISODE_SEED
    from unidiff_envs.experts import make_expert
    from unidiff_envs.rollout import run_episode

    env = unidiff_envs.make(env_id, size=image_size)
    try:
        expert, out = make_expert(env), []
        for seed in range(EVAL_EPISODE_SEED, EVAL_EPISODE_SEED + 3 * n + 20):
            ep = run_episode(env, expert, seed)
            if not ep["meta"]["success"] or (text_tok is not None and not _fits(text_tok, ep["meta"]["instruction"], text_len)):
                continue
            for k in range(0, ep["meta"]["length"], horizon):
                out.append(episode_window(ep, k, horizon) | {"seed": seed, "step": k})
                if len(out) == n:
                    return out
    finally:
        env.close()
    raise RuntimeError(f"the scripted expert in {env_id} solved too few held-out episodes to give {n} windows")


def _score_captions(codec, descriptions: list[dict], got: torch.Tensor) -> dict:
    from unidiff.eval import score_captions

    scores = score_captions(codec.decode("text", got), descriptions)
    return {k: scores[k] for k in ("exact_match", "object_f1", "relation_accuracy", "cell_accuracy")} | {"per_sample": [float(p) for p in scores["passed"]]}


def _score_images(codec, descriptions: list[dict], got: torch.Tensor) -> dict:
    from unidiff.eval import score_images

    scores = score_images(codec.decode("image", got), descriptions)
    return {k: scores[k] for k in ("scene_accuracy", "object_recall")} | {"per_sample": [float(p) for p in scores["passed"]]}


def _score_actions(codec, chunks, truth: torch.Tensor, got: torch.Tensor) -> dict:
    """Mean absolute error of the decoded chunks (bin centres) vs the expert's, in action units,
    and the fraction of action tokens in the expert action's bin."""
    import numpy as np

    decoded = np.stack(codec.decode("action", got))
    per_sample = np.abs(decoded - np.asarray(chunks)).reshape(len(decoded), -1).mean(1)
    return {"action_mae": float(per_sample.mean()), "token_accuracy": float((got == truth).float().mean()), "per_sample": per_sample.tolist()}


def _tabletop_tasks(bundle, init_args: dict, n: int) -> list[BenchTask]:
    """The tabletop's tasks on held-out scenes and held-out expert episodes (module docstring),
    tokenized with the bundle's tokenizers (nothing is re-fit; no episode data is read)."""
    import numpy as np

    from unidiff.evaluate import bundle_env_id, bundle_image_size
    from unidiff.tasks.codec import Codec

    spec, toks = bundle.spec, bundle.tokenizers
    policy = "action" in spec.modalities
    need = {"text", "image"} | (set(spec.modalities) & {"state", "action"})
    if need - set(toks):
        raise ValueError(f"bundle {bundle.path} lacks the {sorted(need - set(toks))} tokenizer(s) a tabletop bench needs (it has {sorted(toks)})")
    codec = Codec(spec, toks)
    size = bundle_image_size(bundle)  # what the image tokenizer reads; scenes and env render at it
    scenes = heldout_scenes_that_fit(bundle, n, size)
    descriptions = [s["description"] for s in scenes]
    images = codec.encode("image", [s["image"] for s in scenes])
    captions = codec.encode("text", [s["caption"] for s in scenes])

    def task(name, given, target, truth, score, metric, higher=True, horizon=0, info=None):
        tokens, roles = prompt_canvas(spec, given, (target,))
        return BenchTask(name, tokens, roles, target, torch.stack(truth), spec.slices[target], horizon, score, metric, higher, info or {})

    tasks = [
        task("caption", [{"image": im} for im in images], "text", captions, partial(_score_captions, codec, descriptions), "exact_match"),
        task("t2i", [{"text": c} for c in captions], "image", images, partial(_score_images, codec, descriptions), "scene_accuracy"),
    ]
    if policy:
        horizon = spec.segment("action").rows
        env_id = bundle_env_id(bundle)
        windows = heldout_expert_windows(env_id, n, horizon, size, toks["text"], spec.text_len)
        given = {"text": codec.encode("text", [w["instruction"] for w in windows]), "image": codec.encode("image", [w["image"] for w in windows])}
        if "state" in spec.modalities:
            given["state"] = codec.encode("state", [w["state"] for w in windows])
        chunks = np.stack([w["actions"] for w in windows])
        truth = codec.encode("action", list(chunks))
        # the MAE of a model that reproduces the expert's tokens exactly (bin centres): the floor
        floor = _score_actions(codec, chunks, torch.stack(truth), torch.stack(truth))["action_mae"]
        info = {"env": env_id, "episode_seeds": sorted({w["seed"] for w in windows}), "action_mae_floor": floor}
        tasks.append(task("policy", [{m: v[i] for m, v in given.items()} for i in range(n)], "action", truth,
                          partial(_score_actions, codec, chunks, torch.stack(truth)), "action_mae", False, horizon, info))
    return tasks


# data module class_path (from the bundle's fit_config) -> builder(bundle, data init_args, n)
TASK_BUILDERS: dict[str, Callable[..., list[BenchTask]]] = {
    "unidiff.synthetic.SyntheticDataModule": _synthetic_tasks,
    "unidiff.tabletop.TabletopDataModule": _tabletop_tasks,
}


def bench_tasks(bundle, n: int) -> list[BenchTask]:
    """The benchmark's tasks for a bundle, built by the data module its training used."""
    data = bundle.fit_config.get("data") or {}
    builder = TASK_BUILDERS.get(data.get("class_path"))
    if builder is None:
        raise ValueError(
            f"bundle {bundle.path}: `unidiff bench` builds tasks for data modules {sorted(TASK_BUILDERS)}; "
            f"its fit_config names {data.get('class_path')!r}"
        )
    return builder(bundle, dict(data.get("init_args") or {}), n)

"""Inference commands on a bundle: `unidiff caption | generate | rollout | eval`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from unidiff.bundle import BundleError, load_bundle
from unidiff.files import atomic_write, write_json_atomic


def positive_int(text: str) -> int:
    """argparse type of counts that must be >= 1 (``--steps``): refused before any work."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def add_steps_arg(p: argparse.ArgumentParser) -> None:
    """``--steps N``: decoder steps of every task; default: the bundle's own for each."""
    p.add_argument("--steps", type=positive_int, default=None, help="decoder steps (default: the bundle's for each task)")


def _parser(prog: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"unidiff {prog}", description=doc)
    p.add_argument("--ckpt", required=True, help="bundle directory (e.g. runs/x/bundle)")
    add_steps_arg(p)
    p.add_argument("--seed", type=int, default=0)
    return p


def load_or_exit(path: str):
    """Load a bundle, or exit with its BundleError's message (no traceback)."""
    try:
        return load_bundle(path)
    except BundleError as e:
        sys.exit(f"unidiff: {e}")


def add_text_block_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--text-block N`` (caption, eval, bench): left-to-right text in blocks of N, 0: by confidence."""
    p.add_argument("--text-block", type=int, default=None,
                   help=f"{what} decoded left to right in blocks of this many tokens, 0: by confidence (default: the bundle's setting)")


def text_block_kw(text_block: int | None) -> dict:
    """``--text-block`` as decode() keyword arguments: {} keeps the bundle's setting."""
    if text_block is None:
        return {}
    if text_block < 0:
        sys.exit(f"unidiff: --text-block must be >= 0 (0: by confidence), got {text_block}")
    return {"text_block": text_block or None}


def add_cfg_arg(p: argparse.ArgumentParser, target: str = "images") -> None:
    """``--cfg W``: classifier-free guidance of the ``target`` (generate, eval: images; rollout:
    actions, with ``--cfg-drop``: what the unconditional pass leaves out)."""
    p.add_argument("--cfg", type=float, default=None,
                   help=f"classifier-free guidance scale of the {target} (default: unidiff.tasks.codec.DECODE_DEFAULTS)")
    if target == "actions":
        p.add_argument("--cfg-drop", nargs="+", default=["text"], metavar="MODALITY",
                       help="given modalities the unguided pass drops (default: text, i.e. guide toward the instruction)")


def cfg_kw(cfg: float | None, drop: list[str] | None = None) -> dict:
    """``--cfg`` (and ``--cfg-drop``) as decode() keyword arguments: {} keeps the default."""
    if cfg is None:
        return {}
    if cfg < 0:
        sys.exit(f"unidiff: --cfg must be >= 0 (0: no guidance), got {cfg}")
    return {"cfg_scale": cfg} if drop is None else {"cfg_scale": cfg, "cfg_drop": tuple(drop)}


def _read_image(path: str) -> np.ndarray:
    import imageio.v3 as iio

    if not Path(path).is_file():
        sys.exit(f"unidiff: no image file {path}")
    try:
        img = np.asarray(iio.imread(path))
    except Exception as e:  # imageio raises per-plugin types; all mean "not an image we can read"
        sys.exit(f"unidiff: cannot read {path} as an image ({type(e).__name__}); give PNG or JPEG files")
    return img[..., :3] if img.ndim == 3 else img


def caption_main(argv: list[str] | None = None) -> int:
    p = _parser("caption", "Caption images (PNG/JPEG) with a bundle.")
    p.add_argument("images", nargs="+")
    add_text_block_arg(p, "captions")
    a = p.parse_args(argv)
    kw = text_block_kw(a.text_block)
    model = load_or_exit(a.ckpt)
    try:
        caps = model.caption([_read_image(f) for f in a.images], steps=a.steps, seed=a.seed, **kw)
    except ValueError as e:
        sys.exit(f"unidiff: {e}")
    for f, c in zip(a.images, caps):
        print(f"{f}\t{c}")
    return 0


def generate_main(argv: list[str] | None = None) -> int:
    import imageio.v3 as iio

    p = _parser("generate", "Generate images from text prompts with a bundle.")
    p.add_argument("prompts", nargs="+")
    p.add_argument("--out", required=True, help="directory for the PNGs")
    add_cfg_arg(p)
    a = p.parse_args(argv)
    image_kw = cfg_kw(a.cfg)
    model = load_or_exit(a.ckpt)
    try:
        images = model.generate(a.prompts, steps=a.steps, seed=a.seed, **image_kw)
    except ValueError as e:
        sys.exit(f"unidiff: {e}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (prompt, img) in enumerate(zip(a.prompts, images)):
        path = out / f"{i:03d}.png"
        atomic_write(path, lambda f: iio.imwrite(f, img, extension=".png"))
        print(f"{path}\t{prompt}")
    return 0


def rollout_main(argv: list[str] | None = None) -> int:
    from unidiff.evaluate import bundle_env_id, bundle_image_size, rollout_policy
    from unidiff.tasks.codec import check_ar_settings
    from unidiff.tasks.policy import action_steps

    p = _parser("rollout", "Roll the bundle's policy out in a simulated env.")
    p.add_argument("--env", default=None, help="env id, e.g. unidiff/TabletopPush-v0 (default: the env the bundle was evaluated in)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--video", default=None, help="directory for videos of the first episodes")
    p.add_argument("--n-action-steps", type=int, default=None, help="actions executed from each chunk before re-planning (default: the whole chunk)")
    add_cfg_arg(p, "actions")
    p.add_argument("--compile", action="store_true",
                   help="decode through torch.compile: faster chunks after a compile of seconds per process (untimed; the same actions)")
    a = p.parse_args(argv)
    if a.episodes < 1:
        sys.exit("unidiff: --episodes must be >= 1")
    model = load_or_exit(a.ckpt)
    if "action" not in model.spec.modalities:
        sys.exit(f"unidiff: bundle {a.ckpt} has no action segment; it cannot drive {a.env or 'an env'}")
    env = a.env or bundle_env_id(model)
    check_action_space(model, env)
    unknown = sorted(set(a.cfg_drop) - set(model.spec.modalities))
    if unknown:
        sys.exit(f"unidiff: --cfg-drop {' '.join(unknown)}: this bundle's modalities are {' '.join(model.spec.modalities)}")
    decode_kw = {**cfg_kw(a.cfg, a.cfg_drop), **({"compile": True} if a.compile else {})}
    try:  # checked here, before the worker processes build their policies
        action_steps(model, a.n_action_steps, name="--n-action-steps")
        check_ar_settings(model, a.steps, decode_kw)
    except ValueError as e:
        sys.exit(f"unidiff: {e}")
    res = rollout_policy(model, env, a.episodes, steps=a.steps, seed=a.seed, image_size=bundle_image_size(model),
                         workers=a.workers, video_dir=a.video, n_action_steps=a.n_action_steps, **decode_kw)
    print(json.dumps({k: v for k, v in res.items() if k != "per_episode"}, indent=2, default=str))
    return 0


def check_action_space(model, env_id: str) -> None:
    """Exit with a clear message unless ``env_id`` exists and takes the bundle's action size."""
    import unidiff_envs

    try:
        env = unidiff_envs.make(env_id)
    except ValueError as e:
        sys.exit(f"unidiff: {e}")
    dim = int(np.prod(env.action_space.shape))
    env.close()
    want = model.spec.segment("action").cols
    if dim != want:
        sys.exit(f"unidiff: {env_id} takes {dim}-D actions but this bundle emits {want}-D actions; use a bundle trained on that env")


def eval_main(argv: list[str] | None = None) -> int:
    from unidiff.evaluate import bundle_env_id, bundle_image_size, evaluate_bundle
    from unidiff.tasks.codec import check_ar_settings

    p = _parser("eval", "Evaluate a tabletop bundle on captioning, text-to-image and policy.")
    p.add_argument("--out", required=True)
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--env", default=None, help="env of the policy metric (default: the env the bundle was evaluated in)")
    p.add_argument("--episodes", type=int, default=50, help="policy episodes (0 skips the policy, as in unidiff demo)")
    p.add_argument("--workers", type=int, default=1)
    add_text_block_arg(p, "captions")
    add_cfg_arg(p)
    a = p.parse_args(argv)
    if a.scenes < 1 or a.episodes < 0:
        sys.exit(f"unidiff: --scenes must be >= 1 and --episodes >= 0, got {a.scenes} and {a.episodes}")
    caption_kw, image_kw = text_block_kw(a.text_block), cfg_kw(a.cfg)
    model = load_or_exit(a.ckpt)
    try:  # before any decoding
        for kw in (caption_kw, image_kw):
            check_ar_settings(model, a.steps, kw)
    except ValueError as e:
        sys.exit(f"unidiff: {e}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = (a.env or bundle_env_id(model)) if "action" in model.spec.modalities and a.episodes else None
    if env:
        check_action_space(model, env)
    metrics = evaluate_bundle(
        model, scenes=a.scenes, env_id=env, episodes=a.episodes, steps=a.steps, workers=a.workers,
        video_dir=str(out / "videos"), image_size=bundle_image_size(model),
        caption_kw=caption_kw, image_kw=image_kw,
    )
    write_json_atomic(out / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    return 0

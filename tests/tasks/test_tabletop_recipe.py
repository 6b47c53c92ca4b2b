"""The whole tabletop recipe at toy scale, through the real commands: VQ tokenizer fit ->
expert collection -> unified fit -> bundle (the ``bundle`` fixture in conftest.py) -> caption /
generate / policy / eval."""
import subprocess
import sys

import numpy as np
import pytest

import unidiff


def test_bundle_holds_every_tokenizer_and_the_eval_metrics(bundle):
    m = unidiff.load(bundle)
    assert set(m.tokenizers) == {"text", "image", "state", "action"}
    for key in ("caption.exact_match", "caption.object_f1", "t2i.scene_accuracy", "policy.unidiff/TabletopPush-v0.success_rate",
                "policy.unidiff/TabletopPush-v0.ci95_low", "policy.unidiff/TabletopPush-v0.touched_target",
                "policy.unidiff/TabletopPush-v0.push_progress", "policy.unidiff/TabletopPush-v0.heading_agreement",
                "policy.ms_per_chunk", "decode.nfe",
                "tokenizer.action.max_abs_error", "tokenizer.action.mean_abs_error", "tokenizer.image.psnr"):
        assert key in m.metrics, key


def test_one_bundle_captions_generates_and_acts(bundle):
    from unidiff_envs import make

    m = unidiff.load(bundle)
    env = make("unidiff/TabletopPush-v0", size=32)
    obs, info = env.reset(seed=3)
    caps = m.caption([obs["image"], obs["image"]], steps=2)
    assert len(caps) == 2 and all(isinstance(c, str) for c in caps)
    imgs = m.generate(["a red cube on the left."], steps=2)
    assert imgs[0].shape == (32, 32, 3) and imgs[0].dtype == np.uint8
    policy = m.policy(steps=2, n_action_steps=2)
    policy.reset()
    acts = [policy.select_action({**obs, "instruction": info["instruction"]}) for _ in range(4)]
    assert all(a.shape == env.action_space.shape for a in acts)
    assert policy.stats()["chunks"] == 2  # two actions popped per decoded chunk
    # guided toward the instruction (the unguided pass drops only the text): two passes per step
    guided = m.policy(steps=2, cfg_scale=2.0, cfg_drop=("text",))
    guided.reset()
    assert guided.select_action({**obs, "instruction": info["instruction"]}).shape == env.action_space.shape
    assert guided.stats()["nfe"] == 4


def test_one_worker_rolls_out_the_model_in_memory(bundle, tmp_path):
    """A model in training has no bundle on disk yet (EvaluateTasks): one worker drives the model
    itself, with the same episodes as a policy loaded from the bundle."""
    from functools import partial

    from unidiff.eval import evaluate_policy
    from unidiff.evaluate import EVAL_EPISODE_SEED, make_policy, rollout_policy

    m = unidiff.load(bundle)
    m.path = tmp_path / "not-a-bundle-yet"
    got = rollout_policy(m, "unidiff/TabletopPush-v0", 2, steps=2, image_size=32)
    want = evaluate_policy(partial(make_policy, str(bundle), steps=2, seed=0, n_action_steps=None), "unidiff/TabletopPush-v0",
                           2, start_seed=EVAL_EPISODE_SEED, env_kwargs={"size": 32}, progress=False)
    drop = ("policy_ms_per_step", "ms_per_chunk")
    assert [{k: v for k, v in e.items() if k not in drop} for e in got["per_episode"]] == \
        [{k: v for k, v in e.items() if k not in drop} for e in want["per_episode"]]


def test_a_compiled_policy_gives_the_eager_actions_and_times_no_compile(bundle, tmp_path):
    """``compile=True`` (``unidiff rollout --compile``): the same actions and episodes; the policy
    compiles when it is built, so ``ms_per_chunk`` is the decoding alone."""
    import json

    from unidiff_envs import make

    m = unidiff.load(bundle)
    env = make("unidiff/TabletopPush-v0", size=32)
    obs, info = env.reset(seed=3)
    obs = {**obs, "instruction": info["instruction"]}
    eager, compiled = m.policy(steps=2, n_action_steps=2), m.policy(steps=2, n_action_steps=2, compile=True)
    for p in (eager, compiled):
        p.reset()
    assert all(np.array_equal(eager.select_action(obs), compiled.select_action(obs)) for _ in range(4))
    assert compiled.stats()["chunks"] == eager.stats()["chunks"] == 2
    assert compiled.stats()["ms_per_chunk"] < 1000  # a tiny model's 2-step chunk; its compile alone takes seconds
    out = {}
    for flag in ([], ["--compile"]):
        r = subprocess.run([sys.executable, "-m", "unidiff.cli", "rollout", "--ckpt", str(bundle), "--episodes", "1", "--steps", "2", *flag],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        out[bool(flag)] = json.loads(r.stdout)
    timing = ("policy_ms_per_step", "control_hz", "ms_per_chunk")
    assert {k: v for k, v in out[True].items() if k not in timing} == {k: v for k, v in out[False].items() if k not in timing}
    assert out[True]["policy_ms_per_step"] < 1000  # no compile in the controller's step time either


def test_an_ar_twin_bundle_captions_and_acts_through_the_same_calls(bundle, tmp_path):
    """A causal (AR-twin) bundle decodes left to right with its KV cache behind the same calls, one
    pass per token, and refuses a diffusion decoder's settings instead of ignoring them."""
    from dataclasses import replace

    import torch
    from unidiff_envs import make

    from unidiff.bundle import save_bundle
    from unidiff.model import Backbone

    m = unidiff.load(bundle)
    torch.manual_seed(0)
    twin = Backbone(m.spec, replace(m.net.cfg, causal=True))
    ar = unidiff.load(save_bundle(tmp_path / "ar", twin, tokenizers=m.tokenizers, fit_config=m.config["fit_config"]))
    env = make("unidiff/TabletopPush-v0", size=32)
    obs, info = env.reset(seed=3)
    assert all(isinstance(c, str) for c in ar.caption([obs["image"]] * 2))
    assert ar.generate(["a red cube on the left."], temperature=1.0)[0].shape == (32, 32, 3)
    policy = ar.policy(n_action_steps=2)
    policy.reset()
    assert policy.select_action({**obs, "instruction": info["instruction"]}).shape == env.action_space.shape
    seg = m.spec.segment("action")
    assert policy.stats()["nfe"] == seg.rows * seg.cols  # one pass per action token
    for kw in ({"steps": 2}, {"cfg_scale": 2.0}, {"threshold": 0.9}):
        with pytest.raises(ValueError, match="autoregressive-twin bundle"):
            ar.caption([obs["image"]], **kw)


def test_images_are_sampled_with_the_task_defaults_and_seeded(bundle):
    from unidiff.tasks.codec import DECODE_DEFAULTS

    m = unidiff.load(bundle)
    prompts = ["a red cube on the left.", "there is a blue ball in the center."]
    default = m.generate(prompts, steps=2, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(default, m.generate(prompts, steps=2, seed=5, **DECODE_DEFAULTS["image"])))
    assert all(np.array_equal(a, b) for a, b in zip(default, m.generate(prompts, steps=2, seed=5)))  # same seed, same image
    argmax = m.generate(prompts, steps=2, seed=5, temperature=0.0, noise_scale=0.0, cfg_scale=0.0)  # a caller overrides
    assert not all(np.array_equal(a, b) for a, b in zip(default, argmax))


def test_the_bundle_decodes_with_its_own_settings(bundle, tmp_path):
    """The data module's ``decode`` settings travel with the bundle (configs/tabletop-tiny.yaml:
    semi-autoregressive captions in 3 steps, 2 for the rest) and a caller's arguments still
    override them."""
    from unidiff.tasks.codec import check_decode_settings, complete, decode_settings

    m = unidiff.load(bundle)
    assert decode_settings(m, "text") == {"text_block": 4, "steps": 3}
    assert decode_settings(m, "image")["cfg_scale"] == 3.0  # the task defaults stay under it
    assert decode_settings(m, "image")["steps"] == decode_settings(m, "action")["steps"] == 2  # decode_steps
    obs = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    assert m.caption(obs, steps=4) == m.caption(obs, steps=4, text_block=4)
    # the steps are the target's own, and a caller's steps win (elastic=False: every step runs)
    assert complete(m, {"image": list(obs)}, "text", elastic=False)[1] == 3
    assert complete(m, {"image": list(obs)}, "text", steps=4, elastic=False)[1] == 4
    assert complete(m, {"text": ["a red cube on the left."]}, "image")[1] == 4  # 2 steps, 2 passes each (guidance)
    assert m.caption(obs) == m.caption(obs, steps=3)
    assert (m.metrics["caption.steps"], m.metrics["t2i.steps"], m.metrics["policy.steps"]) == (3, 2, 2)  # what fit's evaluation used
    for rate in ("caption.exact_match", "t2i.scene_accuracy"):  # with their 95 % intervals, of width > 0
        assert 0.0 <= m.metrics[f"{rate}_ci95_low"] <= m.metrics[rate] <= m.metrics[f"{rate}_ci95_high"] <= 1.0
        assert m.metrics[f"{rate}_ci95_high"] - m.metrics[f"{rate}_ci95_low"] > 0.0
    with pytest.raises(ValueError, match=r"unknown decode setting\(s\) \['text_blok'\]"):
        check_decode_settings({"text": {"text_blok": 4}})
    with pytest.raises(ValueError, match="unknown modality 'txt'"):
        check_decode_settings({"txt": {"text_block": 4}})
    with pytest.raises(ValueError, match="steps for 'text' must be a positive int"):
        check_decode_settings({"text": {"steps": 0}})
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "scene.png", obs[0])
    cli = [sys.executable, "-m", "unidiff.cli", "caption", "--ckpt", str(bundle), "--steps", "4", str(tmp_path / "scene.png")]
    r = subprocess.run([*cli, "--text-block", "4"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split("\t", 1)[1].strip() == m.caption(obs[:1], steps=4)[0]
    r = subprocess.run([*cli, "--text-block", "-1"], capture_output=True, text=True)
    assert r.returncode != 0 and "--text-block must be >= 0" in r.stderr
    # 0: by confidence, the decoder's own default
    r = subprocess.run([*cli, "--text-block", "0"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split("\t", 1)[1].strip() == m.caption(obs[:1], steps=4, text_block=None)[0]


def test_bad_inputs_get_clear_errors(bundle, tmp_path):
    m = unidiff.load(bundle)
    with pytest.raises(ValueError, match="non-empty"):
        m.generate([""])
    with pytest.raises(ValueError):
        m.caption([np.zeros((20, 20, 3), np.uint8)])
    with pytest.raises(ValueError, match="n_action_steps must be in"):
        m.policy(n_action_steps=0)  # 0 used to fall back to the whole chunk silently
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "rollout", "--ckpt", str(bundle), "--env", "unidiff/MetaWorld-reach-v3"], capture_output=True, text=True)
    assert r.returncode != 0 and "4-D actions" in r.stderr
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "rollout", "--ckpt", str(bundle), "--n-action-steps", "99"], capture_output=True, text=True)
    assert r.returncode != 0 and "--n-action-steps must be in [1, " in r.stderr
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "rollout", "--ckpt", str(bundle), "--cfg", "2", "--cfg-drop", "video"], capture_output=True, text=True)
    assert r.returncode != 0 and "--cfg-drop video" in r.stderr
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "caption", "--ckpt", str(tmp_path / "nope"), "x.png"], capture_output=True, text=True)
    assert r.returncode != 0 and "no bundle at" in r.stderr
    (tmp_path / "notes.png").write_text("not an image")
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "caption", "--ckpt", str(bundle), str(tmp_path / "notes.png")], capture_output=True, text=True)
    assert r.returncode != 0 and f"cannot read {tmp_path / 'notes.png'} as an image" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "eval", "--ckpt", str(bundle), "--out", str(tmp_path / "e"), "--episodes", "-1"], capture_output=True, text=True)
    assert r.returncode != 0 and "--episodes >= 0" in r.stderr and not (tmp_path / "e").exists()
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "eval", "--ckpt", str(bundle), "--out", str(tmp_path / "e"), "--text-block", "-2"], capture_output=True, text=True)
    assert r.returncode != 0 and "--text-block must be >= 0" in r.stderr and not (tmp_path / "e").exists()
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "eval", "--ckpt", str(bundle), "--out", str(tmp_path / "e"), "--cfg", "-1"], capture_output=True, text=True)
    assert r.returncode != 0 and "--cfg must be >= 0" in r.stderr and not (tmp_path / "e").exists()
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", "eval", "--ckpt", str(bundle), "--out", str(tmp_path / "e"), "--steps", "0"], capture_output=True, text=True)
    assert r.returncode != 0 and "--steps: must be >= 1, got 0" in r.stderr and not (tmp_path / "e").exists()


def test_eval_with_zero_episodes_scores_captions_and_images_only(bundle, tmp_path):
    import json

    def run_eval(out, *extra):
        r = subprocess.run([sys.executable, "-m", "unidiff.cli", "eval", "--ckpt", str(bundle), "--out", str(tmp_path / out),
                            "--scenes", "2", "--episodes", "0", "--steps", "2", *extra], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-4000:]
        return json.loads((tmp_path / out / "metrics.json").read_text())

    metrics = run_eval("e")
    assert metrics["t2i.nfe"] == 4  # the default image guidance costs a second pass per step
    unguided = run_eval("e0", "--cfg", "0")  # --cfg reaches the image decoder only
    assert unguided["t2i.nfe"] == 2 and unguided["caption.object_f1"] == metrics["caption.object_f1"]
    assert metrics["caption.n"] == 2 and metrics["t2i.n"] == 2
    by_count = sorted(k for k in metrics if k.startswith("caption.object_f1."))  # per number of objects
    assert by_count and len(by_count) == len([k for k in metrics if k.startswith("t2i.scene_accuracy.")])
    assert all(0.0 <= metrics[k] <= 1.0 for k in by_count)
    binding = [k for k in metrics if k.startswith("caption.binding.")]  # teacher-forced word accuracy
    assert {"caption.binding.colour", "caption.binding.shape"} <= set(binding)
    assert all(0.0 <= metrics[k] <= 1.0 for k in binding)
    assert not any(k.startswith("policy.") for k in metrics)


def test_a_stage_on_other_data_reuses_the_bundle_tokenizers(bundle):
    """More scenes and more episodes refit the BPE and the bins, so ``init_from`` refuses the
    bundle (token ids would change meaning) and says what to do; ``data.tokenizers_from`` takes
    the bundle's tokenizers and the stage trains."""
    from pathlib import Path

    from unidiff.train import _dir_bytes

    root, repo = bundle.parents[1], Path(__file__).resolve().parents[2]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "unidiff.cli", *args], capture_output=True, text=True, cwd=root)

    r = cli("collect", "--env", "unidiff/TabletopPush-v0", "--episodes", "2", "--seed", "50", "--size", "32", "--out", str(root / "push-more"))
    assert r.returncode == 0, r.stderr[-2000:]
    fit = ["fit", "--config", str(repo / "configs/tabletop-tiny.yaml"), "--data.init_args.image_tokenizer", str(root / "vq" / "tokenizer"),
           "--data.init_args.episodes", f"[{root / 'push'}, {root / 'push-more'}]", "--data.init_args.scenes", "24",
           "--model.init_args.init_from", str(bundle)]
    r = cli(*fit, "--trainer.default_root_dir", str(root / "refit"))
    assert r.returncode != 0 and "tokenizers_from" in r.stderr
    r = cli(*fit, "--trainer.default_root_dir", str(root / "reuse"), "--data.init_args.tokenizers_from", str(bundle))
    assert r.returncode == 0, r.stderr[-4000:]
    for modality in ("text", "action", "state", "image"):
        assert _dir_bytes(root / "reuse" / "bundle" / "tokenizers" / modality) == _dir_bytes(bundle / "tokenizers" / modality)


def test_episode_repeat_lists_each_training_window_n_times_and_never_the_held_out_ones(bundle):
    """``episode_repeat`` keeps the policy's share of a batch when the scenes grow; the held-out
    windows must stay out of every copy, or validation would score training windows."""
    from unidiff.tabletop import TabletopDataModule

    root = bundle.parents[1]
    kw = dict(image_tokenizer=str(root / "vq" / "tokenizer"), episodes=[str(root / "push")], scenes=16, image_size=32,
              horizon=4, val_fraction=0.2, tokenizers_from=str(bundle))

    def windows(items):
        return [tuple(it["tokens"]["action"].tolist()) for it in items if "action" in it["tokens"]]

    once, thrice = TabletopDataModule(**kw), TabletopDataModule(episode_repeat=3, **kw)
    once.setup(), thrice.setup()
    assert windows(once.val_set) and windows(once.val_set) == windows(thrice.val_set)
    assert sorted(windows(thrice.train_set)) == sorted(windows(once.train_set) * 3)
    assert not set(windows(thrice.val_set)) & set(windows(thrice.train_set))
    assert len(thrice.train_set) - len(once.train_set) == 2 * len(windows(once.train_set))
    with pytest.raises(ValueError, match="episode_repeat"):
        TabletopDataModule(episode_repeat=0, **kw)


def test_recovery_demonstrations_start_where_the_lead_policy_left_the_robot(bundle):
    """``collect --lead``: the bundle's policy drives a seeded number of steps, then the expert's
    recording starts there; the settings are part of the dataset (a resume must repeat them)."""
    import json

    from unidiff.data.episodes import read_episode

    root = bundle.parents[1]

    def collect(*extra):
        return subprocess.run([sys.executable, "-m", "unidiff.cli", "collect", "--env", "unidiff/TabletopPush-v0", "--size", "32",
                               "--seed", "300", "--out", str(root / "recover"), *extra], capture_output=True, text=True, cwd=root)

    r = collect("--episodes", "2", "--lead", str(bundle), "--lead-steps", "12", "--keep-failed")
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((root / "recover" / "manifest.json").read_text())
    assert manifest["lead"] == str(bundle) and manifest["lead_steps"] == 12 and len(manifest["episodes"]) == 2
    leads = [read_episode(root / "recover" / rec["file"])["meta"]["lead_steps"] for rec in manifest["episodes"]]
    assert all(0 <= n <= 12 for n in leads)
    assert any(leads)  # seeds 300 and 301 draw 1 and 5 lead steps
    # the recording starts after the lead: not at the reset state the expert alone would record
    import unidiff_envs

    env = unidiff_envs.make("unidiff/TabletopPush-v0", size=32)
    rec = next(rec for rec, n in zip(manifest["episodes"], leads) if n)
    reset_state = env.reset(seed=rec["seed"])[0]["state"]
    assert not np.allclose(read_episode(root / "recover" / rec["file"])["state"][0], reset_state)
    r = collect("--episodes", "3", "--keep-failed")  # resuming without the lead would mix two kinds of data
    assert r.returncode == 2 and "lead" in r.stderr
    r = collect("--episodes", "3", "--lead", str(root / "nope"))
    assert r.returncode == 2 and "not a bundle" in r.stderr
    r = collect("--episodes", "3", "--lead-decoy")
    assert r.returncode == 2 and "--lead-decoy needs --lead" in r.stderr
    r = collect("--episodes", "3", "--lead", str(bundle), "--lead-steps", "12", "--lead-decoy", "--keep-failed")
    assert r.returncode == 2 and "lead_decoy" in r.stderr  # the dataset was collected without it

"""`unidiff bench` on a tabletop bundle: the tiny recipe's bundle (VQ fit -> collect -> fit, the
``bundle`` fixture in conftest.py), held-out scenes and expert episodes made on the fly."""
import json

import numpy as np
import pytest
import torch

import unidiff
from unidiff.bench import DIFFUSION_VARIANTS, bench_tasks
from unidiff.canvas import Role, text_segment
from unidiff.cli import main as cli_main
from unidiff.data import SceneDataset
from unidiff.evaluate import EVAL_EPISODE_SEED, EVAL_SCENE_SEED
from unidiff.vocab import MASK_IDS

METRICS = {"caption": ("exact_match", True), "t2i": ("scene_accuracy", True), "policy": ("action_mae", False)}
TIMINGS = ("ms_per_sample", "tokens_per_s", "ms_per_chunk", "control_hz")


def _bench(bundle, out):
    argv = ["bench", "--ckpt", str(bundle), "--out", str(out), "--n", "4", "--batch-sizes", "1", "2", "--no-progress"]
    assert cli_main(argv) == 0
    return json.loads(out.read_text())


def _untimed(report: dict) -> dict:
    return {t: {v: {bs: {k: x for k, x in c.items() if k not in TIMINGS} for bs, c in by_bs.items()} for v, by_bs in cells.items()}
            for t, cells in report["results"].items()}


def test_bench_runs_on_a_tabletop_bundle_deterministically(bundle, tmp_path, capsys):  # noqa: F811
    report = _bench(bundle, tmp_path / "a.json")
    spec = unidiff.load(bundle).spec
    assert set(report["results"]) == set(METRICS)
    for task, (metric, higher) in METRICS.items():
        info = report["tasks"][task]
        assert (info["quality_metric"], info["higher_is_better"], info["n"]) == (metric, higher, 4)
        assert set(report["results"][task]) == set(DIFFUSION_VARIANTS)
        for v in DIFFUSION_VARIANTS:
            for bs in ("1", "2"):
                cell = report["results"][task][v][bs]
                assert cell["ms_per_sample"] > 0 and cell["nfe"] >= 1 and cell["quality"] == cell[metric]
                assert ("control_hz" in cell) == (task == "policy")
        assert report["cached_identical_to_full"][task] == {"1": True, "2": True}
    # the policy's condition is the long one: instruction + image + state given, the chunk generated
    pol = report["tasks"]["policy"]
    assert pol["given_tokens"] == spec.text_len + spec.segment("image").length + spec.segment("state").length
    assert pol["target_tokens"] == spec.segment("action").length and pol["horizon"] == spec.segment("action").rows
    assert pol["env"] == "unidiff/TabletopPush-v0" and pol["episode_seeds"][0] == EVAL_EPISODE_SEED
    assert 0 <= pol["action_mae_floor"] <= report["results"]["policy"]["full"]["1"]["action_mae"]
    assert {"object_f1", "exact_match"} <= set(report["results"]["caption"]["cached"]["1"])
    assert "action_mae (lower is better" in capsys.readouterr().out
    assert report["decode"]["text_block"] == 4  # the bundle's own text setting (configs/tabletop-tiny.yaml)
    # a second run with the same n decodes the same prompts to the same tokens and scores
    again = _bench(bundle, tmp_path / "b.json")
    assert _untimed(again) == _untimed(report) and again["tasks"] == report["tasks"]


def test_tabletop_tasks_hold_the_held_out_ground_truth(bundle):  # noqa: F811
    m = unidiff.load(bundle)
    tasks = {t.name: t for t in bench_tasks(m, 4)}
    small = {t.name: t for t in bench_tasks(m, 2)}
    for name, t in tasks.items():  # deterministic, and a smaller n is a prefix of a larger one
        assert torch.equal(small[name].tokens, t.tokens[:2]) and torch.equal(small[name].truth, t.truth[:2])
    size = m.tokenizers["image"].config.size
    scene = SceneDataset(4, EVAL_SCENE_SEED, size)[1]  # the scenes `unidiff eval` scores
    codes = m.spec.vocab.to_joint("image", m.tokenizers["image"].encode(scene["image"][None]).flatten())
    caption = text_segment(m.tokenizers["text"].encode(scene["caption"]), m.spec.text_len)
    cap, t2i, pol = tasks["caption"], tasks["t2i"], tasks["policy"]
    assert torch.equal(cap.tokens[1, m.spec.slices["image"]], codes) and (cap.tokens[1, cap.span] == MASK_IDS["text"]).all()
    assert torch.equal(cap.truth[1], caption) and torch.equal(t2i.tokens[1, m.spec.slices["text"]], caption)
    assert pol.roles[0].tolist() == [Role.GIVEN, Role.GIVEN, Role.GIVEN, Role.TARGET]
    # scoring the ground truth: captions parse exactly, the expert's own tokens give the MAE floor
    assert cap.score(cap.truth)["exact_match"] == 1.0
    perfect = pol.score(pol.truth)
    assert perfect["token_accuracy"] == 1.0 and perfect["action_mae"] == pytest.approx(pol.info["action_mae_floor"])
    assert perfect["action_mae"] < np.mean(m.tokenizers["action"].width)  # within a bin of the expert
    # each task's per-prompt quality averages to its headline metric (the bench's standard errors)
    for t, got in ((cap, cap.truth), (pol, pol.truth), (pol, torch.flip(pol.truth, [0]))):
        s = t.score(got)
        assert len(s["per_sample"]) == 4 and np.mean(s["per_sample"]) == pytest.approx(s[t.metric])

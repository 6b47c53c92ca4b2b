"""`unidiff bench` end to end on tiny untrained synthetic bundles made here."""
import json

import pytest
import torch

from unidiff.bench import DIFFUSION_VARIANTS, bench_tasks, checks, ratios
from unidiff.bundle import load_bundle, save_bundle
from unidiff.cli import main as cli_main
from unidiff.model import Backbone, BackboneConfig
from unidiff.synthetic import SyntheticDataModule
from unidiff.vocab import MASK_IDS

DATA = dict(grid=2, max_objects=1, text_len=8, train_size=8, val_size=4, eval_size=4, decode_steps=2)
FIT_CONFIG = "data:\n  class_path: unidiff.synthetic.SyntheticDataModule\n  init_args:\n" + "".join(
    f"    {k}: {v}\n" for k, v in DATA.items()
)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    dm = SyntheticDataModule(**DATA)
    out = {}
    for name, causal in (("diffusion", False), ("ar", True)):
        torch.manual_seed(0)
        net = Backbone(dm.spec, BackboneConfig(width=32, depth=2, heads=2, causal=causal))
        out[name] = save_bundle(root / name, net, tokenizers=dm.tokenizers(), fit_config=FIT_CONFIG)
    return out


def test_bench_writes_every_field(bundles, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--ckpt", str(bundles["diffusion"]), "--ar", str(bundles["ar"]), "--out", str(out)]
    assert cli_main(argv + ["--n", "4", "--batch-sizes", "1", "2", "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["decode"]["steps"] == 2 and report["torch_threads"] >= 1 and report["compile"] is False
    for costs in report["step_costs"].values():  # the per-call breakdown of a batch-1 decode
        assert set(costs) == {"cache_build_ms", "cached_step_ms", "full_step_ms", "commit_ms"} and min(costs.values()) > 0
    variants = (*DIFFUSION_VARIANTS, "ar")
    for task in ("caption", "t2i", "policy"):
        assert set(report["results"][task]) == set(variants)
        for v in variants:
            for bs in ("1", "2"):
                cell = report["results"][task][v][bs]
                assert {"ms_per_sample", "tokens_per_s", "nfe", "exact_match"} <= set(cell)
                assert cell["ms_per_sample"] > 0 and cell["nfe"] >= 1 and 0 <= cell["exact_match"] <= 1
                assert ("control_hz" in cell) == (task == "policy")
                if task == "caption":  # elastic length: decoded positions never exceed the capacity
                    assert 1 <= cell["mean_text_length"] <= cell["text_capacity"] == load_bundle(bundles["diffusion"]).spec.text_len
        # the cache is exact: same tokens as full recompute
        assert report["cached_identical_to_full"][task] == {"1": True, "2": True}
        r = report["ratios"][task]["1"]
        assert {"cached_speedup_vs_full", "threshold_nfe_ratio_vs_fixed", "cached+threshold_speedup_vs_ar"} <= set(r)
        # the synthetic world keeps exact match as its quality
        assert report["tasks"][task]["quality_metric"] == "exact_match" and report["tasks"][task]["higher_is_better"] is True
        assert all(c["quality"] == c["exact_match"] for c in report["results"][task]["cached"].values())
        for bs in ("1", "2"):  # each prompt's quality, their mean the headline, their spread its standard error
            c, ar = report["results"][task]["cached"][bs], report["results"][task]["ar"][bs]
            per = torch.tensor(c["per_sample_quality"], dtype=torch.float64)
            assert len(per) == 4 and per.mean().item() == pytest.approx(c["quality"])
            assert c["quality_se"] == pytest.approx((per.std() / 2).item())
            diff = per - torch.tensor(ar["per_sample_quality"], dtype=torch.float64)
            assert report["ratios"][task][bs]["cached_quality_delta_vs_ar_se"] == pytest.approx((diff.std() / 2).item())
    policy = report["results"]["policy"]["cached"]["1"]
    horizon = load_bundle(bundles["diffusion"]).spec.segment("action").rows
    assert policy["control_hz"] == pytest.approx(horizon * 1000.0 / policy["ms_per_chunk"])
    assert report["results"]["t2i"]["ar"]["1"]["nfe"] == 4  # one forward per image token
    assert "policy_control_hz_cached+threshold_>=100" in report["checks"]
    assert "cached+threshold" in capsys.readouterr().out


def test_tasks_hold_the_ground_truth(bundles):
    tasks = {t.name: t for t in bench_tasks(load_bundle(bundles["diffusion"]), 3)}
    dm = SyntheticDataModule(**DATA)
    scene = dm.world.sample(dm.base + 900_000_000 + 2)
    assert torch.equal(tasks["policy"].truth[2], dm.encode(scene, True)["action"])
    cap = tasks["caption"]
    assert torch.equal(cap.tokens[2, dm.spec.slices["image"]], dm.encode(scene, False)["image"])
    assert (cap.tokens[2, cap.span] == MASK_IDS["text"]).all() and cap.roles[2].tolist() == [2, 1, 0, 0]
    assert torch.equal(tasks["t2i"].truth[2], dm.encode(scene, False)["image"])


def test_bench_rejects_swapped_bundles_and_bad_sizes(bundles, tmp_path):
    out = str(tmp_path / "b.json")
    with pytest.raises(SystemExit):
        cli_main(["bench", "--ckpt", str(bundles["ar"]), "--out", out])
    with pytest.raises(SystemExit):
        cli_main(["bench", "--ckpt", str(bundles["diffusion"]), "--ar", str(bundles["diffusion"]), "--out", out])
    with pytest.raises(SystemExit):
        cli_main(["bench", "--ckpt", str(bundles["diffusion"]), "--out", out, "--n", "5", "--batch-sizes", "2"])
    with pytest.raises(SystemExit):
        cli_main(["bench", "--ckpt", str(bundles["diffusion"]), "--out", out, "--tasks", "captions"])
    assert not (tmp_path / "b.json").exists()


def test_bench_runs_only_the_tasks_asked_for(bundles, tmp_path):
    out = tmp_path / "b.json"
    argv = ["bench", "--ckpt", str(bundles["diffusion"]), "--out", str(out), "--n", "2", "--batch-sizes", "1", "--no-progress"]
    assert cli_main(argv + ["--tasks", "caption", "policy"]) == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == set(report["tasks"]) == set(report["step_costs"]) == {"caption", "policy"}
    assert "policy_cached_3x_faster_and_identical" in report["checks"] and "t2i_threshold_2x_fewer_nfe_within_1pt" not in report["checks"]


def _cells(quality: dict[str, float]) -> dict:
    return {v: {"1": {"ms_per_sample": 1.0, "nfe": 2.0, "quality": q, "control_hz": 100.0}} for v, q in quality.items()}


def test_quality_deltas_are_signed_so_positive_is_better():
    """A lower-is-better metric (the tabletop policy's action MAE) flips the deltas' sign."""
    q = {"full": 0.2, "cached": 0.2, "cached+remask": 0.15, "cached+threshold": 0.1, "cached+threshold+remask": 0.3, "ar": 0.25}
    results = {"policy": _cells(q), "caption": _cells(q)}
    tasks = {"policy": {"higher_is_better": False}, "caption": {"higher_is_better": True}}
    r = ratios(results, [1], tasks)
    assert r["policy"]["1"]["threshold_quality_delta_vs_fixed"] == pytest.approx(0.1)  # lower MAE: better
    assert r["caption"]["1"]["threshold_quality_delta_vs_fixed"] == pytest.approx(-0.1)
    assert r["policy"]["1"]["remask_quality_delta_vs_fixed"] == pytest.approx(0.05)  # same NFE, lower MAE
    assert r["caption"]["1"]["remask_quality_delta_vs_fixed"] == pytest.approx(-0.05)
    assert r["policy"]["1"]["cached+threshold_quality_delta_vs_ar"] == pytest.approx(0.15)
    assert r["policy"]["1"]["cached+threshold+remask_quality_delta_vs_ar"] == pytest.approx(-0.05)
    assert ratios(results, [1])["policy"]["1"]["threshold_quality_delta_vs_fixed"] == pytest.approx(-0.1)  # default: higher is better
    same = {"policy": {"1": True}, "caption": {"1": True}}
    c = checks({"results": results, "ratios": r, "cached_identical_to_full": same, "batch_sizes": [1]})
    assert c["policy_diffusion_faster_than_ar_at_equal_quality"] is False  # as fast as AR, not faster
    assert c["policy_remask_raises_quality_at_equal_nfe"] is True and c["caption_remask_raises_quality_at_equal_nfe"] is False
    assert not any(k.endswith("_se") for k in r["policy"]["1"])  # no per-prompt qualities, no standard errors


def test_paired_standard_errors_of_the_quality_deltas():
    """The same prompts decode in every variant: a delta's error comes from the per-prompt differences."""
    cells = _cells({"full": 0.5, "cached": 0.5, "cached+remask": 0.75, "cached+threshold": 0.5, "cached+threshold+remask": 0.5, "ar": 0.25})
    per = {"cached": [1.0, 0.0, 1.0, 0.0], "cached+remask": [1.0, 1.0, 1.0, 0.0], "ar": [1.0, 0.0, 0.0, 0.0]}
    for v, cell in cells.items():
        cell["1"]["per_sample_quality"] = per.get(v, per["cached"])
    r = ratios({"caption": cells}, [1])["caption"]["1"]
    # remask - cached per prompt: 0, 1, 0, 0 -> mean 0.25, sd 0.5, se 0.25
    assert r["remask_quality_delta_vs_fixed"] == pytest.approx(0.25) and r["remask_quality_delta_vs_fixed_se"] == pytest.approx(0.25)
    assert r["threshold_quality_delta_vs_fixed_se"] == 0.0  # identical per prompt: no error at all
    # cached - ar per prompt: 0, 0, 1, 0 -> 0.25 +- 0.25
    assert r["cached_quality_delta_vs_ar"] == pytest.approx(0.25) and r["cached_quality_delta_vs_ar_se"] == pytest.approx(0.25)

"""`unidiff bench`: what the decoder's speed features buy, measured against the AR twin.

For each task (caption, text-to-image, policy) and batch size, every decoding variant runs the
same held-out prompts in one process: full recompute, cached, cached + remasking (the same step
budget, so at most equal NFE: any gain is self-correction), cached + threshold commit, cached +
threshold + remasking, and (with ``--ar``) the autoregressive twin with a KV cache.
Per cell: median latency per sample, generated tokens/s, mean NFE and the task's quality; the
policy rows add ms per action chunk and the effective control rate H / (seconds per chunk).
Every ratio (cached vs full, threshold vs fixed-schedule NFE, diffusion vs AR) is computed from
numbers taken in this run, so they compare like with like on this machine.

Worlds: the synthetic world and the tabletop, each with held-out tasks built by
:mod:`unidiff.bench_tasks` (keyed by the data module the bundle was trained with).  Quality:
exact match on the synthetic world; on the tabletop caption exact match (object F1 too),
text-to-image scene accuracy (scene parser), and the policy's mean absolute action error vs the
scripted expert, in action units (lower is better).

Each task names its quality metric and whether higher is better (``tasks`` in the JSON); quality
deltas in ``ratios`` are signed so that positive means better.  ``step_costs`` splits a batch-1
decode into its calls (cache build, cached step, full step, the commit rule), so a ratio can be explained.
``--compile`` runs every variant, the AR twin included, through ``torch.compile``.

    unidiff bench --ckpt runs/synthetic-tiny/bundle --ar runs/synthetic-tiny-ar/bundle --out bench.json
    unidiff bench --ckpt runs/tabletop/bundle --out bench-tabletop.json
    unidiff bench --ckpt runs/tabletop/bundle --compile --out bench-tabletop-compiled.json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from unidiff.ar_decode import ar_decode
from unidiff.bench_tasks import BenchTask, bench_tasks
from unidiff.canvas import Role, position_roles, text_ids
from unidiff.decode import ConditionCache, DecodeOutput, commit_rule, decode

DIFFUSION_VARIANTS = ("full", "cached", "cached+remask", "cached+threshold", "cached+threshold+remask")
AR = "ar"


# ---- measurement -----------------------------------------------------------------------------
def _generated_tokens(task: BenchTask, got: torch.Tensor) -> int:
    """Content tokens generated (text: up to and with [EOS])."""
    if task.target == "text":
        return sum(min(len(text_ids(g)) + 1, got.shape[1]) for g in got)
    return got.numel()


def _standard_error(values: list[float]) -> float:
    """Standard error of the mean of ``values`` (0 for fewer than two)."""
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0


def measure(variants: dict[str, Callable[..., DecodeOutput]], task: BenchTask, batch_size: int, tick=None, seed: int = 0) -> tuple[dict, dict]:
    """Decode every prompt in chunks of ``batch_size`` with every variant, the variants taking turns
    chunk by chunk (so load from other processes on a shared machine hits them alike), after one
    untimed warm-up chunk each.  Quality is ``task.score`` of all the decoded targets (``quality``:
    its headline ``task.metric``, next to every metric the scorer returns; ``quality_se``: its
    standard error over the prompts; ``per_sample_quality``: the metric of each prompt).  Seeds follow the sample index (plus ``seed``), so a sample decodes the same in
    every chunking.  NFE is per chunk (the batch's forward passes; per sample at batch 1).
    Latency is the median chunk time over the batch size: at batch 1 the real per-sample (per
    action chunk) latency, above it the amortised cost.  Returns cells and canvases per variant."""
    n = task.tokens.shape[0]
    log = {v: {"outs": [], "times": [], "nfes": []} for v in variants}
    for fn in variants.values():
        fn(task.tokens[:batch_size], task.roles[:batch_size], seeds=list(range(seed, seed + batch_size)))
    for start in range(0, n, batch_size):
        stop = start + batch_size
        for v, fn in variants.items():
            t0 = time.perf_counter()
            out = fn(task.tokens[start:stop], task.roles[start:stop], seeds=list(range(seed + start, seed + stop)))
            log[v]["times"].append(time.perf_counter() - t0)
            log[v]["outs"].append(out.tokens)
            log[v]["nfes"].append(out.nfe)
        if tick is not None:
            tick()
    cells, tokens = {}, {}
    for v, lg in log.items():
        tokens[v] = torch.cat(lg["outs"])
        got = tokens[v][:, task.span]
        scores = task.score(got)
        per_sample = scores.pop("per_sample")
        ms = 1000.0 * statistics.median(lg["times"]) / batch_size
        cells[v] = {"ms_per_sample": ms, "tokens_per_s": _generated_tokens(task, got) / sum(lg["times"]), "nfe": sum(lg["nfes"]) / len(lg["nfes"]),
                    "quality": scores[task.metric], "quality_se": _standard_error(per_sample), **scores, "per_sample_quality": per_sample}
        if task.target == "text":  # elastic length: positions decoded (with [EOS]) vs the segment's capacity
            cells[v]["mean_text_length"] = _generated_tokens(task, got) / got.shape[0]
            cells[v]["text_capacity"] = got.shape[1]
        if task.horizon:
            cells[v]["ms_per_chunk"] = ms
            cells[v]["control_hz"] = task.horizon / (ms / 1000.0)
    return cells, tokens


def decoders(model, ar_model, steps: int, schedule: str, threshold: float, remask: float, remask_budget: int,
             compile: bool = False, temperature: float = 0.0, text_block: int | None = None) -> dict[str, Callable]:
    """Variant name -> decoder(tokens, roles, seeds=...) with everything else fixed.  ``cached`` is
    the fixed-schedule baseline the threshold variants are compared with (same step budget).
    ``compile``: every variant, the AR twin's too, runs its backbone through ``torch.compile``;
    ``temperature``: every variant samples its tokens at it (0: argmax); ``text_block``: every
    diffusion variant decodes text left to right in blocks of it (None: by confidence)."""
    base = partial(decode, model, steps=steps, schedule=schedule, compile=compile, temperature=temperature, text_block=text_block)
    out = {
        "full": partial(base, cache=False),
        "cached": partial(base, cache=True),
        "cached+remask": partial(base, remask=remask, remask_budget=remask_budget),  # same step budget as cached
        "cached+threshold": partial(base, threshold=threshold),
        "cached+threshold+remask": partial(base, threshold=threshold, remask=remask, remask_budget=remask_budget),
    }
    if ar_model is not None:
        out[AR] = partial(ar_decode, ar_model, compile=compile, temperature=temperature)
    return out


def step_costs(model, task: BenchTask, compile: bool = False, repeats: int = 20) -> dict:
    """Where a batch-1 decode's time goes, per call (median ms over the task's first prompts):
    building the condition cache, one cached step over the targets, one full step, and the
    decoder's commit rule for the target segment at the first step.  A decode is one build plus
    ``steps`` cached steps, or ``steps`` full steps, and ``steps`` commits in both (plus a little
    bookkeeping)."""
    sl = task.span
    head, ids, ranks = model.output_head(task.target), model.output_ids(task.target), torch.arange(sl.stop - sl.start)

    def timed(i: int) -> tuple[float, float, float, float]:
        x = task.tokens[i : i + 1]
        pos_roles = position_roles(model.spec, task.roles[i : i + 1])
        full = ConditionCache(model, x, pos_roles, enabled=False, compiled=compile)
        masked = x[:, sl] == model.spec.mask_ids[sl]
        t0 = time.perf_counter()
        cached = ConditionCache(model, x, pos_roles, compiled=compile)
        t1 = time.perf_counter()
        hidden = cached(x)
        t2 = time.perf_counter()
        commit_rule(model.logits(hidden[:, cached.segment(sl)], task.target, head), x[:, sl], masked, ids, ranks, masked.sum(1) // 2)  # as after a cached step
        t3 = time.perf_counter()
        full(x)
        return t1 - t0, t2 - t1, time.perf_counter() - t3, t3 - t2

    with torch.inference_mode():
        timed(0)  # warm-up (compiled: the compiles)
        runs = [timed(i) for i in range(min(repeats, task.tokens.shape[0]))]
    keys = ("cache_build_ms", "cached_step_ms", "full_step_ms", "commit_ms")
    return {k: 1000.0 * statistics.median(r[j] for r in runs) for j, k in enumerate(keys)}


def describe_tasks(spec, tasks: list[BenchTask]) -> dict:
    """What each task measures: its quality metric and direction, prompt (GIVEN positions, the
    part the cache computes once) and target sizes in tokens."""
    out = {}
    for t in tasks:
        given = (position_roles(spec, t.roles) == Role.GIVEN).sum(1).float()
        out[t.name] = {
            "quality_metric": t.metric,
            "higher_is_better": t.higher_is_better,
            "n": int(t.tokens.shape[0]),
            "target": t.target,
            "target_tokens": t.span.stop - t.span.start,
            "given_tokens": float(given.mean()),
            **({"horizon": t.horizon} if t.horizon else {}),
            **t.info,
        }
    return out


def run_bench(tasks: list[BenchTask], variants: dict[str, Callable], batch_sizes: list[int], progress: bool = True, seed: int = 0) -> dict:
    """results[task][variant][str(batch size)] = cell; whether cached matches full, per task and size."""
    from tqdm import tqdm

    results: dict = {t.name: {v: {} for v in variants} for t in tasks}
    identical: dict = {t.name: {} for t in tasks}
    bar = tqdm(total=sum(t.tokens.shape[0] // bs for t in tasks for bs in batch_sizes), desc="bench chunks", disable=not progress, file=sys.stderr)
    for task in tasks:
        for bs in batch_sizes:
            bar.set_postfix_str(f"{task.name} b={bs}")
            cells, tokens = measure(variants, task, bs, tick=bar.update, seed=seed)
            for v, cell in cells.items():
                results[task.name][v][str(bs)] = cell
            identical[task.name][str(bs)] = bool(torch.equal(tokens["cached"], tokens["full"]))
    bar.close()
    return {"results": results, "cached_identical_to_full": identical}


def _gain(a: float, b: float, higher_is_better: bool) -> float:
    """How much better quality ``a`` is than ``b`` (positive: better), whatever the direction."""
    return a - b if higher_is_better else b - a


def _delta(a: dict, b: dict, higher_is_better: bool) -> dict:
    """Quality gain of cell ``a`` over cell ``b`` (:func:`_gain`) and, where both carry their
    per-prompt qualities, its standard error from the paired per-prompt differences (the same
    prompts decode in both, so this is far tighter than the two cells' own errors combined)."""
    out = {"delta": _gain(a["quality"], b["quality"], higher_is_better)}
    if "per_sample_quality" in a and "per_sample_quality" in b:
        out["se"] = _standard_error([x - y for x, y in zip(a["per_sample_quality"], b["per_sample_quality"])])
    return out


def ratios(results: dict, batch_sizes: list[int], tasks: dict | None = None) -> dict:
    """Every comparison the targets name, from cells of the same run.  Quality deltas are of each
    task's headline ``quality``, signed so that positive means better (``tasks``: the report's
    task descriptions, for ``higher_is_better``; every metric higher-is-better without it); each
    ``..._quality_delta_...`` has a ``..._se`` beside it, its paired standard error (:func:`_delta`)."""
    out: dict = {}
    for task, cells in results.items():
        hib = (tasks or {}).get(task, {}).get("higher_is_better", True)
        for bs in map(str, batch_sizes):
            full, cached, thr = cells["full"][bs], cells["cached"][bs], cells["cached+threshold"][bs]
            r = {
                "cached_speedup_vs_full": full["ms_per_sample"] / cached["ms_per_sample"],
                "threshold_nfe_ratio_vs_fixed": thr["nfe"] / cached["nfe"],
                # remasking within the same step budget: at most equal NFE, so any gain is self-correction
                "remask_nfe_ratio_vs_fixed": cells["cached+remask"][bs]["nfe"] / cached["nfe"],
            }
            deltas = {"threshold_quality_delta_vs_fixed": (thr, cached), "remask_quality_delta_vs_fixed": (cells["cached+remask"][bs], cached)}
            if AR in cells:
                ar = cells[AR][bs]
                for v in DIFFUSION_VARIANTS:
                    r[f"{v}_speedup_vs_ar"] = ar["ms_per_sample"] / cells[v][bs]["ms_per_sample"]
                    deltas[f"{v}_quality_delta_vs_ar"] = (cells[v][bs], ar)
            for key, (a, b) in deltas.items():
                d = _delta(a, b, hib)
                r[key] = d["delta"]
                if "se" in d:
                    r[f"{key}_se"] = d["se"]
            out.setdefault(task, {})[bs] = r
    return out


def checks(report: dict, deploy: str = "cached+threshold") -> dict:
    """The issue's targets at the smallest batch size (1 by default), each True/False, or None
    where the run lacks the data (no AR twin).  "Within 1pt" is a quality loss of at most 0.01 in
    the task's metric (a rate for exact match / scene accuracy, action units for the MAE)."""
    res, rat, same = report["results"], report["ratios"], report["cached_identical_to_full"]
    b = str(min(report["batch_sizes"]))
    out: dict = {"batch_size": int(b), "deploy_variant": deploy}
    if "policy" in res:
        out["policy_cached_3x_faster_and_identical"] = rat["policy"][b]["cached_speedup_vs_full"] >= 3.0 and same["policy"][b]
        out[f"policy_control_hz_{deploy}_>=100"] = res["policy"][deploy][b]["control_hz"] >= 100.0
    for task in res:
        r = rat[task][b]
        out[f"{task}_threshold_2x_fewer_nfe_within_1pt"] = r["threshold_nfe_ratio_vs_fixed"] <= 0.5 and r["threshold_quality_delta_vs_fixed"] >= -0.01
        out[f"{task}_remask_raises_quality_at_equal_nfe"] = r["remask_nfe_ratio_vs_fixed"] <= 1.0 and r["remask_quality_delta_vs_fixed"] > 0.0
        if task in ("caption", "policy"):
            key = f"{deploy}_speedup_vs_ar"
            ok = key in r and r[key] > 1.0 and r[f"{deploy}_quality_delta_vs_ar"] >= 0.0
            out[f"{task}_diffusion_faster_than_ar_at_equal_quality"] = ok if key in r else None
    return out


def table(report: dict) -> str:
    tasks = report.get("tasks", {})
    lines = [f"{'task':<8} {'variant':<24} {'B':>3} {'ms/sample':>10} {'tok/s':>9} {'NFE':>6} {'quality ± se':>14}  extra"]
    for task, cells in report["results"].items():
        for v, by_bs in cells.items():
            for bs, c in by_bs.items():
                extra = f"{c['control_hz']:.0f} Hz" if "control_hz" in c else ""
                if v == "cached":
                    extra += f" identical={report['cached_identical_to_full'][task][bs]}"
                lines.append(f"{task:<8} {v:<24} {bs:>3} {c['ms_per_sample']:>10.2f} {c['tokens_per_s']:>9.0f} {c['nfe']:>6.2f} {c['quality']:>7.3f} ± {c.get('quality_se', 0.0):.3f}  {extra.strip()}")
    for task, c in report.get("step_costs", {}).items():
        lines.append(f"{task} at B=1: cache build {c['cache_build_ms']:.2f} ms, cached step {c['cached_step_ms']:.2f} ms, "
                     f"full step {c['full_step_ms']:.2f} ms, commit {c['commit_ms']:.2f} ms")
    if tasks:
        lines.append("quality: " + ", ".join(
            f"{t} {d['quality_metric']} ({'higher' if d['higher_is_better'] else 'lower'} is better; {d['given_tokens']:.0f} given -> {d['target_tokens']} target tokens)"
            for t, d in tasks.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import unidiff
    from unidiff.files import write_json_atomic
    from unidiff.commands import add_text_block_arg, positive_int, text_block_kw
    from unidiff.tasks.codec import bundle_steps, decode_settings

    p = argparse.ArgumentParser(prog="unidiff bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="diffusion bundle directory")
    p.add_argument("--ar", default=None, help="AR-twin bundle directory (backbone.causal: true)")
    p.add_argument("--out", required=True, help="JSON report path")
    p.add_argument("--n", type=int, default=64, help="held-out prompts per task (a multiple of every batch size)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks (caption, t2i, policy; default: every task of the bundle's world)")
    p.add_argument("--steps", type=positive_int, default=None, help="decoder steps of every task, so that the variants compare at one budget (default: the data module's decode_steps, else 8)")
    p.add_argument("--schedule", default="cosine", help="fixed mask schedule of the diffusion decoder")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--remask", type=float, default=0.3)
    p.add_argument("--remask-budget", type=int, default=2)
    p.add_argument("--temperature", type=float, default=0.0, help="token sampling temperature of every decoder (0: argmax)")
    p.add_argument("--seed", type=int, default=0, help="prompt i decodes with seed SEED + i (matters when sampling)")
    add_text_block_arg(p, "the diffusion variants' text")
    p.add_argument("--compile", action="store_true", help="run every decoder's backbone through torch.compile (each shape compiles once, in the untimed warm-up)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.n < 1 or any(b < 1 or a.n % b for b in a.batch_sizes):
        p.error(f"--n ({a.n}) must be a positive multiple of every batch size {a.batch_sizes}")
    model = unidiff.load(a.ckpt)
    if model.net.cfg.causal:
        p.error(f"--ckpt {a.ckpt} is a causal (AR-twin) bundle; pass it as --ar")
    ar_model = None
    if a.ar is not None:
        ar_model = unidiff.load(a.ar)
        if not ar_model.net.cfg.causal:
            p.error(f"--ar {a.ar} is not an AR-twin bundle (backbone.causal is false)")
        if ar_model.spec != model.spec:
            p.error("--ar and --ckpt have different canvases; the twin must be trained on the same data")
    tasks = bench_tasks(model, a.n)
    if a.tasks is not None:
        unknown = sorted(set(a.tasks) - {t.name for t in tasks})
        if unknown:
            p.error(f"--tasks {unknown}: this bundle's tasks are {[t.name for t in tasks]}")
        tasks = [t for t in tasks if t.name in a.tasks]
    steps = a.steps or bundle_steps(model)
    text_block = text_block_kw(a.text_block).get("text_block", decode_settings(model, "text").get("text_block"))
    variants = decoders(model.net, ar_model.net if ar_model else None, steps, a.schedule, a.threshold, a.remask, a.remask_budget, a.compile,
                        a.temperature, text_block)
    report = {
        "ckpt": str(a.ckpt),
        "ar": a.ar,
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "compile": a.compile,
        "n_per_task": a.n,
        "batch_sizes": a.batch_sizes,
        "decode": {"steps": steps, "schedule": a.schedule, "threshold": a.threshold, "remask": a.remask, "remask_budget": a.remask_budget,
                   "temperature": a.temperature, "seed": a.seed, "text_block": text_block},
        "tasks": describe_tasks(model.spec, tasks),
    }
    report.update(run_bench(tasks, variants, a.batch_sizes, progress=not a.no_progress, seed=a.seed))
    report["step_costs"] = {t.name: step_costs(model.net, t, a.compile) for t in tasks}
    report["ratios"] = ratios(report["results"], a.batch_sizes, report["tasks"])
    report["checks"] = checks(report)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(a.out), report)
    print(table(report))
    print("checks: " + ", ".join(f"{k}={v}" for k, v in report["checks"].items()))
    print(f"wrote {a.out} ({report['torch_threads']} torch threads{', compiled' if a.compile else ''})")
    return 0

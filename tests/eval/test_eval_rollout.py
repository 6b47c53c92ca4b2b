"""Policy rollouts: the scripted expert succeeds, worker count does not change results, videos play."""
import functools

import imageio.v3 as iio
import numpy as np
import pytest

from unidiff.eval.rollout_eval import ExpertPolicy, evaluate_policy, write_video

REACH = "unidiff/TabletopReach-v0"
SMALL = {"size": 32}


class ConstantPolicy:
    """Drives straight up, never succeeds; reports fake diffusion stats and records what it saw."""

    def __init__(self, nfe=8):
        self.nfe, self.seeds, self.instructions = nfe, [], []

    def reset(self, seed=None):
        self.seeds.append(seed)

    def select_action(self, obs):
        assert obs["image"].dtype == np.uint8 and obs["state"].shape == (6,)
        self.instructions.append(obs["instruction"])
        return np.array([0.0, 0.0, 1.0], np.float32)

    def stats(self):
        return {"nfe": self.nfe, "ms_per_chunk": 2.0 * self.nfe, "other": 1}


def _per_episode(result):
    return [{k: v for k, v in e.items() if k not in ("policy_ms_per_step", "video")}
            for e in result["per_episode"]]


def test_expert_succeeds_and_workers_do_not_change_results(tmp_path):
    one = evaluate_policy(ExpertPolicy, REACH, episodes=4, start_seed=500, workers=1,
                          video_dir=str(tmp_path), n_videos=2, env_kwargs=SMALL, progress=False)
    two = evaluate_policy(ExpertPolicy, REACH, episodes=4, start_seed=500, workers=2,
                          env_kwargs=SMALL, progress=False)
    assert one["success_rate"] == 1.0 and one["successes"] == 4 and one["episodes"] == 4
    assert one["seeds"] == [500, 503] and [e["seed"] for e in one["per_episode"]] == [500, 501, 502, 503]
    assert one["ci95_low"] < 1.0 == one["ci95_high"]
    assert _per_episode(one) == _per_episode(two)
    assert len({e["instruction"] for e in one["per_episode"]}) > 1  # seeds really differ
    assert one["mean_steps"] == np.mean([e["steps"] for e in one["per_episode"]])
    # videos: the first n_videos episodes, every frame of the episode, readable back
    assert len(one["videos"]) == 2 and two["videos"] == []
    for path, ep in zip(one["videos"], one["per_episode"]):
        frames = iio.imread(path)
        assert frames.shape == (ep["steps"] + 1, 32, 32, 3) and frames.std() > 0


def test_expert_pushes():
    result = evaluate_policy(ExpertPolicy, "unidiff/TabletopPush-v0", episodes=3, env_kwargs=SMALL,
                             progress=False)
    assert result["successes"] >= 2, result["per_episode"]
    # diagnostics: kept per episode, averaged in the summary; a success pushed the named object all the way
    for e in result["per_episode"]:
        if e["success"]:
            assert e["diagnostics"]["touched_target"] == 1.0 and e["diagnostics"]["push_progress"] == 1.0
    for k in ("touched_target", "touched_other", "push_progress"):
        assert result["diagnostics"][k] == np.mean([e["diagnostics"][k] for e in result["per_episode"]])


def test_policy_hooks_stats_and_max_steps():
    result = evaluate_policy(functools.partial(ConstantPolicy, nfe=4), REACH, episodes=2,
                             start_seed=7, max_steps=5, env_kwargs=SMALL, progress=False)
    assert result["success_rate"] == 0.0 and result["ci95_low"] == 0.0
    assert [e["steps"] for e in result["per_episode"]] == [5, 5]
    assert result["nfe"] == 4 and result["ms_per_chunk"] == 8.0 and "other" not in result
    # straight up from the start height: nothing touched (reach has no push progress)
    assert result["diagnostics"] == {"touched_target": 0.0, "touched_other": 0.0, "low_far": 0.0}
    assert result["control_hz"] > 0


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown env id.*Known ids"):
        evaluate_policy(ExpertPolicy, "unidiff/Nope-v0", episodes=1)
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="episodes"):
            evaluate_policy(ExpertPolicy, REACH, episodes=bad)
    with pytest.raises(ValueError, match="workers"):
        evaluate_policy(ExpertPolicy, REACH, episodes=1, workers=0)
    with pytest.raises(TypeError, match="picklable"):
        evaluate_policy(lambda: ConstantPolicy(), REACH, episodes=2, workers=2)
    with pytest.raises(TypeError, match="has no reset"):
        evaluate_policy(object, REACH, episodes=1, env_kwargs=SMALL, progress=False)
    with pytest.raises(RuntimeError, match="workers=1 to see"):  # same failure inside a worker
        evaluate_policy(object, REACH, episodes=2, workers=2, env_kwargs=SMALL, progress=False)


def test_write_video_falls_back_to_gif(tmp_path, monkeypatch):
    frames = [np.full((16, 16, 3), v, np.uint8) for v in (0, 120, 240)]
    import imageio.v2 as imageio

    real = imageio.mimwrite

    def no_ffmpeg(path, *a, **k):
        if str(path).endswith(".mp4"):
            raise RuntimeError("no ffmpeg here")
        return real(path, *a, **k)

    monkeypatch.setattr(imageio, "mimwrite", no_ffmpeg)
    path = write_video(tmp_path / "clip", frames, fps=10)
    assert path.endswith(".gif")
    assert iio.imread(path).shape[0] == 3

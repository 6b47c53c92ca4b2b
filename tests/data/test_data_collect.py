"""`unidiff collect`: round trip, resume after crashes, verification, bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from unidiff.data import CorruptDatasetError, EpisodeWindowDataset, read_manifest, verify
from unidiff.data.collect import main
from unidiff.data.workers import CRASH_ENV

REPO = Path(__file__).resolve().parents[2]
PUSH = "unidiff/TabletopPush-v0"


def _collect(out, n, *extra):
    return main(["--env", PUSH, "--episodes", str(n), "--out", str(out), "--size", "32", *extra])


def test_collect_read_round_trip(tmp_path):
    out = tmp_path / "ds"
    assert _collect(out, 4, "--workers", "2", "--seed", "10") == 0
    m = read_manifest(out)
    assert m["schema_version"] == 1 and m["counts"]["episodes"] == 4 and m["expert_success_rate"] > 0.5
    assert all(len(e["sha256"]) == 64 for e in m["episodes"])
    assert verify(out) == []
    ds = EpisodeWindowDataset(out, horizon=5)
    assert len(ds) == m["counts"]["steps"]
    item = ds[0]
    assert item["image"].shape == (32, 32, 3) and item["image"].dtype == np.uint8
    assert item["state"].shape == (6,) and item["state"].dtype == np.float32
    assert item["actions"].shape == (5, 3) and item["actions"].dtype == np.float32
    assert item["instruction"] and item["caption"]
    import pickle

    assert pickle.loads(pickle.dumps(ds))[3]["caption"] == ds[3]["caption"]
    last = ds[m["episodes"][0]["length"] - 1]  # last step of the first episode: padded chunk
    assert np.all(last["actions"] == last["actions"][0])
    # appending: a larger N adds episodes, the same N is a no-op
    assert _collect(out, 6, "--seed", "10") == 0
    assert read_manifest(out)["counts"]["episodes"] == 6
    assert _collect(out, 6, "--seed", "10") == 0
    assert assert_same_seeds(out) == [10, 11, 12, 13, 14, 15]


def assert_same_seeds(out):
    return [e["seed"] for e in read_manifest(out)["episodes"]]


def test_resume_after_a_worker_dies(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    monkeypatch.setenv(CRASH_ENV, "3")
    assert _collect(out, 6) == 1
    before = {e["file"]: e["sha256"] for e in read_manifest(out)["episodes"]}
    assert {"episodes/ep_00000000.npz", "episodes/ep_00000001.npz"} <= set(before)
    assert not list((out / "episodes").glob("*.tmp*"))
    monkeypatch.delenv(CRASH_ENV)
    assert _collect(out, 6) == 0
    after = {e["file"]: e["sha256"] for e in read_manifest(out)["episodes"]}
    assert len(after) == 6 and all(after[f] == h for f, h in before.items())
    assert verify(out) == []


def test_resume_after_the_whole_run_is_killed(tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "unidiff.cli", "collect", "--env", PUSH, "--episodes", "400",
           "--out", str(out), "--size", "32", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            if json.loads((out / "manifest.json").read_text())["counts"]["episodes"] >= 5:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
    os.killpg(proc.pid, signal.SIGKILL)  # the collector and its workers, mid-write
    proc.wait()
    finished = read_manifest(out)["episodes"]
    assert len(finished) >= 5
    for path in (out / "episodes").glob("ep_*.npz"):  # every final-named file is whole
        np.load(path)["frames"]
    assert _collect(out, len(finished) + 3, "--workers", "2") == 0
    after = {e["file"]: e["sha256"] for e in read_manifest(out)["episodes"]}
    assert all(after[e["file"]] == e["sha256"] for e in finished)
    assert verify(out) == [] and not list((out / "episodes").glob("*.tmp*"))


def test_keep_failed_and_noise(tmp_path):
    out = tmp_path / "ds"
    assert _collect(out, 2, "--keep-failed", "--noise", "0.2") == 0
    m = read_manifest(out)
    assert m["keep_failed"] and m["noise_std"] == 0.2 and m["counts"]["episodes"] == 2


def test_bad_inputs_have_clear_errors(tmp_path, capsys):
    assert main(["--env", "unidiff/Nope-v0", "--episodes", "1", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "unknown env id" in err and "unidiff/TabletopReach-v0" in err
    assert main(["--env", PUSH, "--episodes", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--episodes must be a positive" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["--env", PUSH, "--episodes", "1", "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "new or empty directory" in err
    assert main(["--verify", str(other)]) == 1
    assert "not a unidiff dataset" in capsys.readouterr().out


def test_corrupt_shard_is_named(tmp_path, capsys):
    out = tmp_path / "ds"
    assert _collect(out, 2) == 0
    rec = read_manifest(out)["episodes"][1]
    path = out / rec["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["--verify", str(out)]) == 1
    assert rec["file"] in capsys.readouterr().out
    ds = EpisodeWindowDataset(out, horizon=2)
    with pytest.raises(CorruptDatasetError, match=rec["file"].split("/")[-1]):
        [ds[i] for i in range(len(ds))]
    assert _collect(out, 3) == 2  # resuming over a corrupt file stops and names it
    assert rec["file"].split("/")[-1] in capsys.readouterr().err
    path.unlink()  # the documented fix: delete it and rerun
    assert _collect(out, 3) == 0 and verify(out) == []

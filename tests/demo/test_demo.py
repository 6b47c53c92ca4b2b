"""`unidiff demo` and the notebooks, against the bundle shipped in unidiff/assets/tabletop."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import unidiff
from unidiff.bundle import BundleError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _demo(*args, cwd):
    return subprocess.run([sys.executable, "-m", "unidiff.cli", "demo", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def shipped():
    return unidiff.shipped_bundle_path()  # fails here, with the reason, when no bundle ships


def test_demo_writes_report_metrics_and_video(shipped, tmp_path):
    r = _demo("--out", "out", "--scenes", "2", "--prompts", "a red cube on the left.", "--episodes", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("caption.object_f1", "caption.exact_match", "t2i.scene_accuracy", "policy.success_rate",
                "policy.ci95_low", "policy.env", "wall_s", "demo.bundle"):
        assert key in metrics, key
    assert metrics["caption.n"] == 2 and metrics["t2i.n"] == 1 and metrics["policy.episodes"] == 1
    assert metrics["demo.bundle"] == str(shipped)
    [video] = metrics["policy.videos"]
    assert video.endswith((".mp4", ".gif")) and (out / video).stat().st_size > 0
    page = (out / "report.html").read_text()
    assert video in page and page.count("<img") >= 2  # caption grid, generated images
    assert not list(out.glob(".*.tmp"))  # atomic writes left no temporaries
    assert "object F1" in r.stdout and re.search(r"success [01]/1", r.stdout), r.stdout


def test_demo_refuses_missing_or_broken_bundles(tmp_path, shipped, monkeypatch):
    r = _demo("--ckpt", str(tmp_path / "nope"), "--out", "out", cwd=tmp_path)
    assert r.returncode != 0 and "no bundle at" in r.stderr and "Traceback" not in r.stderr
    broken = tmp_path / "broken"
    shutil.copytree(shipped, broken)
    with open(broken / "tokenizers" / "tokenizers.json", "a") as f:
        f.write(" ")
    r = _demo("--ckpt", str(broken), "--out", "out", cwd=tmp_path)
    assert r.returncode != 0 and "checksum" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr("unidiff.bundle.SHIPPED_BUNDLE", tmp_path / "absent")
    with pytest.raises(BundleError, match="no shipped bundle"):
        unidiff.shipped_bundle_path()


def test_notebooks_are_stored_without_outputs():
    import nbformat

    assert {p.name for p in NOTEBOOKS} == {"generate_images.ipynb", "captions.ipynb", "rollouts.ipynb"}
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), p


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, shipped, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # a cell error raises CellExecutionError (with the cell and its traceback) and fails the test
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # pictures are shown inline

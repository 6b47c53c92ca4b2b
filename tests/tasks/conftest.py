"""The tiny tabletop recipe's bundle, built once per test session through the real commands
(VQ tokenizer fit -> expert collection -> unified fit) and shared by the tests of this folder."""
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args, cwd):
    r = subprocess.run([sys.executable, "-m", "unidiff.cli", *args], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    repo = Path(__file__).resolve().parents[2]
    _run("fit", "--config", str(repo / "configs/vq-tiny.yaml"), "--trainer.default_root_dir", str(root / "vq"), cwd=root)
    _run("collect", "--env", "unidiff/TabletopPush-v0", "--episodes", "2", "--size", "32", "--out", str(root / "push"), cwd=root)
    _run(
        "fit", "--config", str(repo / "configs/tabletop-tiny.yaml"), "--trainer.default_root_dir", str(root / "run"),
        "--data.init_args.image_tokenizer", str(root / "vq" / "tokenizer"), "--data.init_args.episodes", f"[{root / 'push'}]",
        cwd=root,
    )
    return root / "run" / "bundle"

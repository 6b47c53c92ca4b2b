"""Crash-safe writes: a failed write keeps the old file and leaves no temp file behind."""
import hashlib
import json

import pytest

from unidiff.files import atomic_write, sha256_file, write_json_atomic


def test_atomic_write_replaces_a_file_whole(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    atomic_write(path, lambda f: f.write(b"new contents"))
    assert path.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # a shared dataset or report stays as readable as a plainly written file
    assert path.stat().st_mode == plain.stat().st_mode


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def half_then_crash(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt  # e.g. Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_json_that_cannot_be_serialised_touches_nothing(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"b": 1, "a": [0.5]})
    assert json.loads(path.read_text()) == {"a": [0.5], "b": 1}
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(path, {"x": object()})
    assert json.loads(path.read_text()) == {"a": [0.5], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    write_json_atomic(path, {"x": {1, 2}}, default=sorted)  # a default makes it serialisable
    assert json.loads(path.read_text()) == {"x": [1, 2]}


def test_sha256_file_is_the_digest_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 9000  # larger than one read chunk
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_atomic_path_keeps_the_suffix_for_writers_that_read_it(tmp_path):
    import imageio.v3 as iio
    import numpy as np

    from unidiff.files import atomic_path

    frames = np.stack([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)])
    with atomic_path(tmp_path / "v.gif") as tmp:
        assert tmp.suffix == ".gif" and tmp.parent == tmp_path
        iio.imwrite(tmp, frames)  # imageio picks the GIF writer from the suffix
    assert iio.imread(tmp_path / "v.gif", index=None).shape[0] == 2
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "w.gif"):
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif"]


def test_atomic_dir_replaces_a_directory_whole_or_not_at_all(tmp_path):
    from unidiff.files import atomic_dir

    target = tmp_path / "bundle"
    target.mkdir()
    (target / "stale.txt").write_text("from the last export")
    with atomic_dir(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "model.bin").write_bytes(b"weights")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["sub", "sub/model.bin"]
    assert target.stat().st_mode & 0o777 == 0o755 and (target / "sub" / "model.bin").stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.bin").write_bytes(b"half")
        raise RuntimeError("export failed")
    assert (target / "sub" / "model.bin").read_bytes() == b"weights" and not (target / "half.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temp or set-aside directories left

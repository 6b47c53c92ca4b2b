"""Reports: labelled grids, an HTML page whose every reference exists, metrics.json that round-trips."""
import json
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from unidiff.eval.report import image_grid, write_report


def _tiles(n, size=32):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_image_grid_layout_and_labels():
    grid = image_grid(_tiles(5), [f"caption number {i} " * 3 for i in range(5)], cols=3, tile=128)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[1] == 3 * (128 + 4) + 4 and grid.shape[0] > 2 * 128  # 2 rows plus labels
    label = grid[4 + 128 + 2: 4 + 128 + 30, 4: 4 + 128]
    assert (label < 128).any(), "no text drawn under the first tile"
    unlabelled = image_grid(_tiles(2), ["", ""], cols=2, tile=128)
    assert not (unlabelled[4 + 128 + 2: 4 + 128 + 14, 4:-4] < 250).any()


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="2 images but 1"):
        image_grid(_tiles(2), ["a"], cols=2)
    with pytest.raises(ValueError, match="uint8"):
        image_grid([np.zeros((8, 8, 3), np.float32)], ["a"], cols=1)
    with pytest.raises(ValueError, match="cols"):
        image_grid(_tiles(1), ["a"], cols=0)


def test_report_references_existing_files_and_metrics_round_trip(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    gif = outside / "episode.gif"
    iio.imwrite(gif, np.stack(_tiles(3, 16)), duration=100, loop=0)
    out = tmp_path / "report"
    (out / "videos").mkdir(parents=True)
    mp4 = out / "videos" / "ep.mp4"
    iio.imwrite(mp4, np.stack(_tiles(4, 32)), fps=10, codec="libx264")
    metrics = {"policy": {"success_rate": 0.75, "episodes": 4, "seeds": [1, 4]},
               "caption": {"exact_match": np.float64(0.5), "n": np.int64(3)}, "note": "a<b"}
    path = write_report(out, metrics, [
        {"title": "Captions & grids", "text": "x < y", "images": [image_grid(_tiles(2), ["a", "b"], 2)],
         "metrics": {"object_f1": 0.9}},
        {"title": "Policy", "videos": [str(mp4), str(gif)]},
    ])
    assert path == (out / "report.html").resolve()
    page = path.read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(refs) == 4  # grid PNG, MP4, GIF, metrics.json
    for ref in refs:
        assert not Path(ref).is_absolute() and (out / ref).is_file(), ref
    assert '<video src="videos/ep.mp4"' in page and '<img src="assets/episode.gif"' in page
    assert "Captions &amp; grids" in page and "x &lt; y" in page and "0.75" in page
    loaded = json.loads((out / "metrics.json").read_text())
    assert loaded == {"policy": {"success_rate": 0.75, "episodes": 4, "seeds": [1, 4]},
                      "caption": {"exact_match": 0.5, "n": 3}, "note": "a<b"}
    assert not list(out.rglob("*.tmp*"))  # atomic writes leave no temp files behind


def test_report_rejects_bad_sections(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        write_report(tmp_path, {}, [{"title": "x", "imgs": []}])
    with pytest.raises(ValueError, match="title"):
        write_report(tmp_path, {}, [{"text": "no title"}])
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path, {}, [{"title": "x", "videos": [str(tmp_path / "missing.mp4")]}])
    with pytest.raises(TypeError, match="metrics"):
        write_report(tmp_path, [1, 2], [])
    out = tmp_path / "unserialisable"
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        write_report(out, {"x": object()}, [{"title": "x", "images": [np.zeros((8, 8, 3), np.uint8)]}])
    assert not out.exists()  # nothing written, not even the section's images

"""Scene datasets: deterministic per index, the contract's item format."""
import json

import numpy as np
import pytest

from unidiff.data import SceneDataset
from unidiff_envs.parser import parse_scene, scenes_match


def test_scene_dataset_is_deterministic_per_index():
    a, b = SceneDataset(8, seed=1), SceneDataset(8, seed=1)
    assert len(a) == 8
    for i in (0, 5):
        x, y = a[i], b[i]
        assert np.array_equal(x["image"], y["image"]) and x["caption"] == y["caption"]
        assert x["image"].shape == (64, 64, 3) and x["image"].dtype == np.uint8
        assert json.loads(json.dumps(x["description"])) == x["description"]
        assert scenes_match(x["description"], parse_scene(x["image"]))
    assert a[0]["caption"] != SceneDataset(8, seed=2)[0]["caption"] or not np.array_equal(
        a[0]["image"], SceneDataset(8, seed=2)[0]["image"])
    assert SceneDataset(2, seed=0, size=32)[1]["image"].shape == (32, 32, 3)
    with pytest.raises(IndexError):
        a[8]


def _captions(items):
    return [item["caption"] for item in items]


@pytest.mark.parametrize("context,cache", [("spawn", False), ("fork", True)])
def test_scene_dataset_in_a_dataloader_with_workers(context, cache):
    from torch.utils.data import DataLoader

    ds = SceneDataset(4, seed=3, size=32, cache=cache)
    expected = [ds[i]["caption"] for i in range(4)]  # renders here first: the hard case for fork
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=_captions,
                        multiprocessing_context=context)
    assert [c for batch in loader for c in batch] == expected

"""Caption scoring: ground truth is perfect in every phrasing, and each kind of error costs points."""
import pytest

from unidiff.eval.caption_score import OPPOSITE, parse_caption, score_captions
from unidiff_envs import tabletop
from unidiff_envs.tabletop.language import _CELL_PHRASE, N_CAPTION_PHRASINGS

SEEDS = range(300, 340)


def _truth(seed, n=None):
    scene = tabletop.sample_scene(seed, n)
    return scene, tabletop.describe(scene)


@pytest.mark.parametrize("phrasing", range(N_CAPTION_PHRASINGS))
def test_ground_truth_captions_score_perfectly(phrasing):
    scenes = [tabletop.sample_scene(s) for s in SEEDS]
    assert {len(s.objects) for s in scenes} == {1, 2, 3, 4}  # every object count is covered
    got = score_captions([tabletop.caption(s, phrasing) for s in scenes],
                         [tabletop.describe(s) for s in scenes])
    for key in ("exact_match", "object_precision", "object_recall", "object_f1",
                "relation_accuracy", "cell_accuracy"):
        assert got[key] == 1.0, (key, got)


def test_parse_caption_reads_objects_cells_relation_and_count():
    scene, desc = _truth(7, 3)
    parsed = parse_caption(tabletop.caption(scene, 3))
    assert [(o["color"], o["shape"], o["cell"]) for o in parsed["objects"]] == \
        [(o["color"], o["shape"], o["cell"]) for o in desc["objects"]]
    assert parsed["relations"] == desc["relations"][:1]
    assert parsed["count"] == 3
    loose = parse_caption("  There is AN Red Cube in the  top left.  The red cube is above the blue ball ")
    assert loose["objects"] == [{"color": "red", "shape": "cube", "cell": "top left"}]
    assert loose["relations"] == [{"subject": "red cube", "relation": "above", "object": "blue ball"}]


def test_wrong_colour_loses_points():
    scene, desc = _truth(11, 3)
    text = tabletop.caption(scene, 0)
    used = {o.color for o in scene.objects}
    wrong = next(c for c in tabletop.COLORS if c not in used)
    first = scene.objects[0].color
    bad = text.replace(first, wrong)  # every mention of that colour, relation included
    got = score_captions([bad], [desc])
    assert got["exact_match"] == 0.0
    assert got["object_precision"] < 1.0 and got["object_recall"] < 1.0 and got["object_f1"] < 1.0


def test_flipped_relation_and_wrong_cell_are_caught_separately():
    scene, desc = _truth(21, 2)
    text = tabletop.caption(scene, 1)
    rel = desc["relations"][0]["relation"]
    flipped = text.replace(f"is {rel} the", f"is {OPPOSITE[rel]} the")
    got = score_captions([flipped], [desc])
    assert got["relation_accuracy"] == 0.0 and got["exact_match"] == 0.0 and got["object_f1"] == 1.0
    cell = desc["objects"][0]["cell"]
    other = "in the center" if cell != "center" else "in the top left"
    moved = text.replace(_CELL_PHRASE[cell], other, 1)
    got = score_captions([moved], [desc])
    assert got["exact_match"] == 0.0 and got["object_f1"] == 1.0 and got["cell_accuracy"] < 1.0


def test_missing_extra_and_repeated_objects():
    scene, desc = _truth(5, 4)
    names = [o["color"] + " " + o["shape"] for o in desc["objects"]]
    got = score_captions([f"a {names[0]} and a {names[1]}."], [desc])
    assert got["object_precision"] == 1.0 and got["object_recall"] == 0.5
    assert got["relation_accuracy"] == 0.0  # the scene has relations and none was stated
    got = score_captions([". ".join(f"a {n}" for n in names + names[:1])], [desc])
    assert got["object_recall"] == 1.0 and got["object_precision"] == pytest.approx(4 / 5)
    one, one_desc = _truth(3, 1)
    text = tabletop.caption(one, 0)
    assert score_captions([text], [one_desc])["relation_accuracy"] == 1.0
    lying = score_captions([text + f" the {one.objects[0].name} is left of the {names[0]}."], [one_desc])
    assert lying["relation_accuracy"] == 0.0 and lying["exact_match"] == 0.0
    assert score_captions(["four objects: " + tabletop.caption(one, 0)], [one_desc])["exact_match"] == 0.0


def test_bad_input_is_rejected():
    _, desc = _truth(1)
    with pytest.raises(ValueError, match="2 captions but 1"):
        score_captions(["a", "b"], [desc])
    with pytest.raises(ValueError, match="no captions"):
        score_captions([], [])
    with pytest.raises(TypeError, match="str"):
        score_captions([None], [desc])
    with pytest.raises(TypeError, match="describe"):
        score_captions(["a red cube."], [{"things": []}])

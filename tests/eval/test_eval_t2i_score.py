"""Text-to-image scoring: real renders of the described scene pass; wrong images fail."""
import numpy as np
import pytest

from unidiff.eval.caption_score import parse_caption
from unidiff.eval.t2i_score import in_cell, score_images
from unidiff_envs import tabletop
from unidiff_envs.tabletop.scene import Scene, SceneObject

SEEDS = range(700, 760)


@pytest.fixture(scope="module")
def scenes():
    return [tabletop.sample_scene(s) for s in SEEDS]


@pytest.fixture(scope="module")
def renders(scenes):
    return [tabletop.render_scene(s) for s in scenes]


def test_real_renders_pass(scenes, renders):
    got = score_images(renders, [tabletop.describe(s) for s in scenes])
    assert got["scene_accuracy"] == 1.0 and got["object_recall"] == 1.0 and all(got["passed"])
    # the prompt as a model would get it: a caption, parsed back into a description
    prompts = [parse_caption(tabletop.caption(s, i % 4)) for i, s in enumerate(scenes)]
    assert score_images(renders, prompts)["scene_accuracy"] == 1.0


def test_blank_and_other_scene_fail(scenes, renders):
    descs = [tabletop.describe(s) for s in scenes]
    blank = score_images([np.zeros_like(renders[0])] * 3, descs[:3])
    assert blank["scene_accuracy"] == 0.0 and blank["object_recall"] == 0.0
    table = np.full_like(renders[0], 200)
    assert score_images([table], descs[:1])["scene_accuracy"] == 0.0
    shifted = score_images(renders[1:] + renders[:1], descs)
    assert shifted["scene_accuracy"] == 0.0 and shifted["object_recall"] < 0.5


def _render(*objs):
    return tabletop.render_scene(Scene(tuple(SceneObject(*o) for o in objs)))


def test_position_relation_and_extra_objects_matter():
    red_left, blue_right = ("red", "cube", -0.15, 0.0), ("blue", "ball", 0.15, 0.0)
    truth = tabletop.describe(Scene((SceneObject(*red_left), SceneObject(*blue_right))))
    assert score_images([_render(red_left, blue_right)], [truth])["scene_accuracy"] == 1.0
    swapped = _render(("red", "cube", 0.15, 0.0), ("blue", "ball", -0.15, 0.0))
    assert score_images([swapped], [truth])["scene_accuracy"] == 0.0  # wrong cells and relation
    extra = _render(red_left, blue_right, ("green", "cylinder", 0.0, 0.15))
    assert score_images([extra], [truth])["scene_accuracy"] == 0.0  # complete prompt: no extras
    assert score_images([extra], [{**truth, "complete": False}])["scene_accuracy"] == 1.0
    # a short GenEval-style prompt: objects without cells, one relation, extras allowed
    prompt = {"objects": [{"color": "red", "shape": "cube"}, {"color": "blue", "shape": "ball"}],
              "relations": [{"subject": "red cube", "relation": "left of", "object": "blue ball"}],
              "complete": False}
    assert score_images([extra, swapped], [prompt, prompt])["passed"] == [True, False]
    wrong_shape = _render(("red", "ball", -0.15, 0.0), blue_right)
    got = score_images([wrong_shape], [truth])
    assert got["scene_accuracy"] == 0.0 and got["object_recall"] == 0.5


def test_in_cell_tolerance():
    assert in_cell(-0.2, 0.2, "top left") and in_cell(0.0, 0.0, "center")
    assert in_cell(0.09, 0.0, "center") and not in_cell(0.11, 0.0, "center")
    assert not in_cell(0.09, 0.0, "center", tol=0.0)


def test_bad_input_is_rejected(renders, scenes):
    desc = tabletop.describe(scenes[0])
    with pytest.raises(ValueError, match="2 images but 1"):
        score_images(renders[:2], [desc])
    with pytest.raises(ValueError, match="no images"):
        score_images([], [])
    with pytest.raises(ValueError, match="uint8"):
        score_images([renders[0].astype(np.float32)], [desc])
    with pytest.raises(ValueError, match="uint8"):
        score_images([renders[0][..., 0]], [desc])
    with pytest.raises(TypeError, match="numpy"):
        score_images([[[0, 0, 0]]], [desc])
    with pytest.raises(TypeError, match="objects"):
        score_images(renders[:1], [{}])

"""The synthetic world's confusable scenes: the held-out policy case that needs the whole instruction."""
import pytest

from unidiff.synthetic import SyntheticWorld


def _twins(scene):
    """Objects other than the target that share exactly one of its colour and shape."""
    _, c, s = scene.objects[scene.target]
    return [o for i, o in enumerate(scene.objects) if i != scene.target and (o[1] == c) != (o[2] == s)]


def test_confusable_scenes_put_a_twin_beside_the_target():
    world = SyntheticWorld(grid=3, max_objects=3)
    for seed in range(200):
        scene = world.sample(seed, confusable=True)
        assert len(scene.objects) >= 2 and _twins(scene)
        assert list(scene.objects) == sorted(scene.objects) and len({o[0] for o in scene.objects}) == len(scene.objects)
        assert world.sample(seed, confusable=True) == scene  # a pure function of the seed
    natural = [world.sample(seed) for seed in range(600)]
    assert 0.05 < sum(bool(_twins(s)) for s in natural) / 600 < 0.5  # natural scenes: some, far from all
    with pytest.raises(ValueError, match="max_objects >= 2"):
        SyntheticWorld(grid=3, max_objects=1).sample(0, confusable=True)

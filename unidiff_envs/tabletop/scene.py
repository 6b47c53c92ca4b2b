"""Scenes of the tabletop world: what is on the table, sampled from a seed.

A scene is pure data (no MuJoCo): colours, shapes and table positions.  Everything else
(rendering, language, the parser, the gym envs) reads it, so a seed fully fixes a scene.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLORS: tuple[str, ...] = ("red", "yellow", "green", "blue", "purple")
SHAPES: tuple[str, ...] = ("cube", "ball", "cylinder")

# Flat colours with well separated hues (about 0, 50, 125, 225, 285 degrees).
RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "yellow": (0.90, 0.78, 0.08),
    "green": (0.10, 0.68, 0.16),
    "blue": (0.10, 0.26, 0.92),
    "purple": (0.62, 0.14, 0.82),
}

# Geometry in metres.  The camera sees x, y in [-VIEW, VIEW]; image right = +x, image up = +y.
VIEW = 0.25
PLACE = 0.17  # object centres are sampled in [-PLACE, PLACE]^2 so every object is fully in view
MAX_OBJECTS = 4
# half extents (x, y, z) of each shape's footprint; the cylinder lies along y (a 1:2 bar from above)
HALF_EXTENTS: dict[str, tuple[float, float, float]] = {
    "cube": (0.04, 0.04, 0.04),
    "ball": (0.045, 0.045, 0.045),
    "cylinder": (0.035, 0.065, 0.035),
}
GAP = 0.03  # minimum free space between two objects' footprints at sampling time


@dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str
    x: float
    y: float

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Objects on the table; (colour, shape) pairs are unique so every name is unambiguous."""

    objects: tuple[SceneObject, ...]
    seed: int | None = field(default=None, compare=False)

    def find(self, name: str) -> SceneObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"no {name!r} in scene {[o.name for o in self.objects]}")

    def moved(self, positions: dict[str, tuple[float, float]]) -> "Scene":
        """The same objects at new positions (used to describe the scene mid-episode)."""
        objs = tuple(SceneObject(o.color, o.shape, *map(float, positions.get(o.name, (o.x, o.y))))
                     for o in self.objects)
        return Scene(objs, self.seed)


def footprints_clear(a: SceneObject, b: SceneObject, gap: float = GAP) -> bool:
    """True when the axis-aligned footprints of a and b are at least `gap` apart on some axis."""
    ax, ay, _ = HALF_EXTENTS[a.shape]
    bx, by, _ = HALF_EXTENTS[b.shape]
    return abs(a.x - b.x) >= ax + bx + gap or abs(a.y - b.y) >= ay + by + gap


def sample_scene(seed: int, n_objects: int | None = None) -> Scene:
    """Sample 1-4 objects (distinct colour+shape pairs) at random non-overlapping poses."""
    rng = np.random.default_rng(seed)
    if n_objects is None:
        n_objects = int(rng.integers(1, MAX_OBJECTS + 1))
    if not 1 <= n_objects <= MAX_OBJECTS:
        raise ValueError(f"n_objects must be in 1..{MAX_OBJECTS}, got {n_objects}")
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    chosen = rng.choice(len(pairs), size=n_objects, replace=False)
    objects: list[SceneObject] = []
    for idx in chosen:
        color, shape = pairs[int(idx)]
        for _ in range(1000):
            x, y = rng.uniform(-PLACE, PLACE, size=2)
            cand = SceneObject(color, shape, round(float(x), 4), round(float(y), 4))
            if all(footprints_clear(cand, o) for o in objects):
                objects.append(cand)
                break
        else:  # pragma: no cover - 4 small objects always fit
            raise RuntimeError(f"could not place {n_objects} objects for seed {seed}")
    return Scene(tuple(objects), seed)

"""Tabletop tasks: sampling a feasible (scene, goal) pair and checking success.

`reach`: touch the named object with the pusher.  `push`: push the named object until it is
clearly left of / right of / above / below a reference object.  Push goals are sampled only
where a straight push works (nothing in the way, room behind the object for the pusher), so
the scripted expert can be near perfect and failures mean something.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from unidiff_envs.tabletop.language import instruction
from unidiff_envs.tabletop.scene import HALF_EXTENTS, PLACE, Scene, SceneObject, sample_scene

PUSHER_RADIUS = 0.018
PUSH_MARGIN = 0.10  # "left of" = centre at least this much further left
GOAL_SLACK = 0.03   # the expert aims this far past the margin
# relation -> (axis index, sign of motion of the target relative to the reference)
RELATION_AXIS = {"left of": (0, -1), "right of": (0, 1), "above": (1, 1), "below": (1, -1)}


@dataclass(frozen=True)
class TaskSpec:
    task: str
    target: str
    relation: str | None = None
    reference: str | None = None
    phrasing: int = 0  # which instruction template

    def instruction(self) -> str:
        """The instruction text of this goal."""
        return instruction(self.task, self.target, self.phrasing, self.relation, self.reference)

    def decoy(self, names: list[str]) -> "TaskSpec":
        """The same goal acting on another object of a scene holding ``names``: push swaps target and
        reference, reach takes the next object (itself in a one-object scene)."""
        if self.task == "push":
            return replace(self, target=self.reference, reference=self.target)
        return replace(self, target=names[(names.index(self.target) + 1) % len(names)])

    def to_dict(self) -> dict:
        return {"task": self.task, "target": self.target, "relation": self.relation,
                "reference": self.reference}


def relation_gap(target: tuple[float, float], reference: tuple[float, float], relation: str,
                 margin: float = PUSH_MARGIN) -> float:
    """How much further (m) the target must move along the relation's axis for it to hold
    (negative once it holds)."""
    axis, sign = RELATION_AXIS[relation]
    return margin - sign * (target[axis] - reference[axis])


def relation_holds(target: tuple[float, float], reference: tuple[float, float], relation: str,
                   margin: float = PUSH_MARGIN) -> bool:
    return relation_gap(target, reference, relation, margin) < 0


def push_plan(target: SceneObject, reference: SceneObject, relation: str) -> tuple[int, int, float, float]:
    """(axis, sign, start coordinate of the pusher behind the object, goal coordinate)."""
    axis, sign = RELATION_AXIS[relation]
    ref_c = (reference.x, reference.y)[axis]
    goal = ref_c + sign * (PUSH_MARGIN + GOAL_SLACK)
    half = HALF_EXTENTS[target.shape][axis]
    start = (target.x, target.y)[axis] - sign * (half + PUSHER_RADIUS + 0.012)
    return axis, sign, start, goal


def _push_feasible(scene: Scene, target: SceneObject, reference: SceneObject, relation: str) -> bool:
    axis, sign, start, goal = push_plan(target, reference, relation)
    tc = (target.x, target.y)
    if relation_holds(tc, (reference.x, reference.y), relation) or abs(goal) > PLACE + 0.02:
        return False
    if abs(start) > 0.23 or sign * (goal - tc[axis]) < 0.03:
        return False
    perp = 1 - axis
    th = HALF_EXTENTS[target.shape]
    lo = min(start - PUSHER_RADIUS, goal - th[axis]) - 0.01
    hi = max(start + PUSHER_RADIUS, goal + th[axis]) + 0.01
    for other in scene.objects:  # the swept corridor must be free (reference included)
        if other is target:
            continue
        oc, oh = (other.x, other.y), HALF_EXTENTS[other.shape]
        if abs(oc[perp] - tc[perp]) < th[perp] + oh[perp] + 0.02 and oc[axis] + oh[axis] > lo and oc[axis] - oh[axis] < hi:
            return False
    return True


def sample_task(task: str, rng: np.random.Generator) -> tuple[Scene, TaskSpec, str]:
    """A scene, a feasible goal in it, and the instruction text (phrasing drawn from rng)."""
    phrasing = int(rng.integers(4))
    for _ in range(1000):
        seed = int(rng.integers(2**31 - 1))
        if task == "reach":
            scene = sample_scene(seed)
            target = scene.objects[int(rng.integers(len(scene.objects)))]
            spec = TaskSpec("reach", target.name, phrasing=phrasing)
            return scene, spec, spec.instruction()
        if task != "push":
            raise ValueError(f"unknown tabletop task {task!r}; expected 'reach' or 'push'")
        scene = sample_scene(seed, int(rng.integers(2, 5)))
        i, j = rng.choice(len(scene.objects), size=2, replace=False)
        relation = list(RELATION_AXIS)[int(rng.integers(4))]
        target, reference = scene.objects[int(i)], scene.objects[int(j)]
        if _push_feasible(scene, target, reference, relation):
            spec = TaskSpec("push", target.name, relation, reference.name, phrasing)
            return scene, spec, spec.instruction()
    raise RuntimeError("could not sample a feasible push task")  # pragma: no cover

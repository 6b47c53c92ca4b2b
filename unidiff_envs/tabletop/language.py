"""Language for tabletop scenes: ground-truth captions, structured descriptions, instructions.

All text is generated from simulator state, so captions are exact by construction.  The
structured description (`describe`) is what evaluators compare against; captions are several
phrasings of the same content so that a text model does not overfit one template.
"""
from __future__ import annotations

import numpy as np

from unidiff_envs.tabletop.scene import VIEW, Scene, SceneObject

THIRD = VIEW / 3.0  # coarse grid: the table split into 3 x 3 cells
RELATION_MARGIN = 0.05  # a pairwise relation is stated only when the centres differ by more

_CELL_PHRASE = {
    "top left": "in the top left", "top": "at the top", "top right": "in the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left", "bottom": "at the bottom", "bottom right": "in the bottom right",
}
_NUMBER = {1: "one object", 2: "two objects", 3: "three objects", 4: "four objects"}
N_CAPTION_PHRASINGS = 4


def cell(x: float, y: float) -> str:
    """Coarse position name of a table point (image view: top = +y, right = +x)."""
    col = "left" if x < -THIRD else "right" if x > THIRD else ""
    row = "top" if y > THIRD else "bottom" if y < -THIRD else ""
    return f"{row} {col}".strip() or "center"


def relations(objects: tuple[SceneObject, ...] | list[SceneObject]) -> list[dict]:
    """Clear pairwise relations (left of / right of / above / below) for every pair."""
    out = []
    for i, a in enumerate(objects):
        for b in objects[i + 1:]:
            dx, dy = a.x - b.x, a.y - b.y
            if abs(dx) > RELATION_MARGIN:
                out.append({"subject": a.name, "relation": "left of" if dx < 0 else "right of", "object": b.name})
            if abs(dy) > RELATION_MARGIN:
                out.append({"subject": a.name, "relation": "below" if dy < 0 else "above", "object": b.name})
    return out


def _ordered(scene: Scene) -> list[SceneObject]:
    return sorted(scene.objects, key=lambda o: (o.x, -o.y))


def describe(scene: Scene) -> dict:
    """JSON-able structured description: objects (left to right) with cells, and relations."""
    objs = _ordered(scene)
    return {
        "objects": [{"color": o.color, "shape": o.shape, "x": round(o.x, 3), "y": round(o.y, 3),
                     "cell": cell(o.x, o.y)} for o in objs],
        "relations": relations(objs),
    }


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption(scene: Scene, phrasing: int | None = None, rng=None) -> str:
    """A ground-truth caption; `phrasing` picks the template (None: drawn from `rng`)."""
    if phrasing is None:
        rng = rng if rng is not None else np.random.default_rng(scene.seed)
        phrasing = int(rng.integers(N_CAPTION_PHRASINGS))
    phrasing %= N_CAPTION_PHRASINGS
    objs = _ordered(scene)
    listed = _join([f"a {o.name} {_CELL_PHRASE[cell(o.x, o.y)]}" for o in objs])
    head = [f"{listed}.", f"there is {listed}.", f"on the table: {listed}.",
            f"{_NUMBER[len(objs)]}: {listed}."][phrasing]
    rels = relations(objs)
    if not rels:
        return head
    rel = rels[0]
    return f"{head} the {rel['subject']} is {rel['relation']} the {rel['object']}."


REACH_TEMPLATES = ("touch the {t}.", "reach the {t}.", "move to the {t}.", "go and touch the {t}.")
PUSH_TEMPLATES = ("push the {t} {r} the {o}.", "move the {t} {r} the {o}.",
                  "slide the {t} so it is {r} the {o}.", "put the {t} {r} the {o}.")
PUSH_RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of",
                       "above": "above", "below": "below"}


def instruction(task: str, target: str, phrasing: int, relation: str | None = None,
                reference: str | None = None) -> str:
    """Instruction text for a tabletop task (`reach` or `push`)."""
    if task == "reach":
        return REACH_TEMPLATES[phrasing % len(REACH_TEMPLATES)].format(t=target)
    if task == "push":
        return PUSH_TEMPLATES[phrasing % len(PUSH_TEMPLATES)].format(
            t=target, r=PUSH_RELATION_WORDS[relation], o=reference)
    raise ValueError(f"unknown tabletop task {task!r}; expected 'reach' or 'push'")

"""Text-to-image scoring, GenEval-style: the scene parser reads each generated image and the
prompt passes when what it asks for is there.

A prompt is given as a description dict (`tabletop.describe(scene)`, or `parse_caption(text)`,
or a hand-written partial one).  What is checked is what a caption can say:

* every named object (colour + shape) is present; duplicates count;
* an object with a `cell` lies in that 3 x 3 cell, widened by `cell_tol` metres (a render of
  an object sitting on a cell border must not fail on parser noise);
* every stated relation holds: the two parsed centres are ordered the stated way;
* if the description is `complete` (the default: a full caption names every object), no extra
  object may appear; `{"complete": False}` allows extras, as GenEval does for short prompts.

Exact positions are never compared: a caption does not state them, so a generator cannot know them.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from unidiff_envs.parser import parse_scene
from unidiff_envs.tabletop.language import THIRD

CELL_TOL = 0.015  # parser noise: 0.005 already suffices on 500 held-out renders
_AXIS = {"left of": (0, -1), "right of": (0, 1), "above": (1, 1), "below": (1, -1)}


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"images must be numpy arrays, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"images must be uint8 (H, W, 3); got {image.dtype} {image.shape}")
    return image


def in_cell(x: float, y: float, cell: str, tol: float = CELL_TOL) -> bool:
    """True when (x, y) lies in the named 3 x 3 cell widened by `tol` on every side."""
    words = cell.split()
    col = "left" if "left" in words else "right" if "right" in words else "middle"
    row = "top" if "top" in words else "bottom" if "bottom" in words else "middle"
    band = {"left": (-np.inf, -THIRD), "middle": (-THIRD, THIRD), "right": (THIRD, np.inf),
            "bottom": (-np.inf, -THIRD), "top": (THIRD, np.inf)}
    (x0, x1), (y0, y1) = band[col], band[row]
    return x0 - tol <= x <= x1 + tol and y0 - tol <= y <= y1 + tol


def _match_objects(wanted: list[dict], found: list[dict], tol: float) -> list[dict | None]:
    """Assign each wanted object a distinct found object of its colour+shape (in its cell if given)."""
    free = list(found)
    out: list[dict | None] = []
    # objects with a cell constraint first, so an unconstrained one cannot steal their match
    for w in sorted(wanted, key=lambda o: o.get("cell") is None):
        hit = next((f for f in free if (f["color"], f["shape"]) == (w["color"], w["shape"])
                    and (w.get("cell") is None or in_cell(f["x"], f["y"], w["cell"], tol))), None)
        if hit is not None:
            free.remove(hit)
        out.append(hit)
    return out


def _relation_holds(rel: dict, position: dict[str, tuple[float, float]]) -> bool:
    a, b = position.get(rel["subject"]), position.get(rel["object"])
    if a is None or b is None:
        return False
    axis, sign = _AXIS[rel["relation"]]
    return sign * (a[axis] - b[axis]) > 0


def score_image(image: np.ndarray, description: dict, cell_tol: float = CELL_TOL) -> dict:
    """Pass/fail and object counts of one generated image against one prompt description."""
    if not isinstance(description, dict) or "objects" not in description:
        raise TypeError("a description must be a dict with an 'objects' list (see tabletop.describe)")
    wanted = description["objects"]
    found = parse_scene(_check_image(image))["objects"]
    present = Counter(f"{o['color']} {o['shape']}" for o in found)
    named = Counter(f"{o['color']} {o['shape']}" for o in wanted)
    recalled = sum((present & named).values())
    matched = _match_objects(wanted, found, cell_tol)
    position = {f"{f['color']} {f['shape']}": (f["x"], f["y"]) for f in matched if f is not None}
    rels_ok = all(_relation_holds(r, position) for r in description.get("relations", []))
    extra = description.get("complete", True) and bool(present - named)
    passed = all(m is not None for m in matched) and rels_ok and not extra
    return {"passed": bool(passed), "objects_found": recalled, "objects_named": sum(named.values())}


def score_images(images: list[np.ndarray], descriptions: list[dict], cell_tol: float = CELL_TOL) -> dict:
    """Scene accuracy (fraction of prompts that pass) and object recall (micro) over a batch."""
    if len(images) != len(descriptions):
        raise ValueError(f"{len(images)} images but {len(descriptions)} descriptions")
    if not images:
        raise ValueError("no images to score")
    per = [score_image(img, desc, cell_tol) for img, desc in zip(images, descriptions)]
    named = sum(p["objects_named"] for p in per)
    return {"scene_accuracy": sum(p["passed"] for p in per) / len(per),
            "object_recall": sum(p["objects_found"] for p in per) / named if named else 1.0,
            "passed": [p["passed"] for p in per], "n": len(per)}

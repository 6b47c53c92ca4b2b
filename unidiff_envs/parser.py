"""Scene parser: reads a top-down tabletop render and returns its objects.

Pixels are classified by hue (the five object colours are saturated, the table and pusher
are grey), grouped into connected components, and each component's silhouette gives the
shape (bar = cylinder, square = cube, round = ball) and its centroid the table position.
Evaluators use it to score generated images (text-to-image) and VQ reconstructions.
"""
from __future__ import annotations

import colorsys

import numpy as np
from scipy import ndimage

from unidiff_envs.tabletop.language import describe
from unidiff_envs.tabletop.scene import COLORS, RGB, VIEW, Scene, SceneObject

_HUES = np.array([colorsys.rgb_to_hsv(*RGB[c])[0] * 360.0 for c in COLORS])
MAX_HUE_DIST = 30.0
MIN_SATURATION, MIN_VALUE = 0.35, 0.15
CAMERA_HEIGHT = 1.5
MEAN_HEIGHT = 0.045  # silhouettes are mostly the objects' top faces; undo that perspective


def _hue_labels(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour index into COLORS, or -1 for table/pusher/background."""
    rgb = image[..., :3].astype(np.float32) / 255.0
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    d = np.maximum(mx - mn, 1e-6)
    hue = np.select([mx == r, mx == g], [((g - b) / d) % 6, (b - r) / d + 2], (r - g) / d + 4) * 60.0
    dist = np.abs((hue[..., None] - _HUES + 180.0) % 360.0 - 180.0)
    labels = dist.argmin(-1)
    ok = (sat > MIN_SATURATION) & (mx > MIN_VALUE) & (dist.min(-1) < MAX_HUE_DIST)
    return np.where(ok, labels, -1)


def _shape(mask: np.ndarray) -> str:
    rows, cols = np.nonzero(mask)
    h, w = np.ptp(rows) + 1, np.ptp(cols) + 1
    if h / w > 1.45:
        return "cylinder"
    fill = mask.sum() / float(h * w)
    return "ball" if fill < 0.94 else "cube"


def parse_objects(image: np.ndarray, min_area: float = 0.004) -> list[SceneObject]:
    """Objects found in `image` (components smaller than `min_area` of the image are noise)."""
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    H, W = image.shape[:2]
    labels = _hue_labels(image)
    scale = (CAMERA_HEIGHT - MEAN_HEIGHT) / CAMERA_HEIGHT
    found = []
    for ci, color in enumerate(COLORS):
        comps, n = ndimage.label(labels == ci)
        for k in range(1, n + 1):
            mask = comps == k
            if mask.sum() < min_area * H * W:
                continue
            r, c = ndimage.center_of_mass(mask)
            x = ((c + 0.5) / W - 0.5) * 2 * VIEW * scale
            y = (0.5 - (r + 0.5) / H) * 2 * VIEW * scale
            found.append(SceneObject(color, _shape(mask), round(float(x), 4), round(float(y), 4)))
    return found


def parse_scene(image: np.ndarray) -> dict:
    """Structured description (same format as `tabletop.describe`) read from an RGB image."""
    return describe(Scene(tuple(parse_objects(np.asarray(image)))))


_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _relation_keys(desc: dict) -> set[tuple[str, str, str]]:
    keys = set()
    for r in desc.get("relations", []):
        keys.add((r["subject"], r["relation"], r["object"]))
        keys.add((r["object"], _OPPOSITE[r["relation"]], r["subject"]))
    return keys


def scenes_match(a: dict, b: dict, pos_tol: float = 0.05) -> bool:
    """Same objects (colour, shape), each within `pos_tol` metres, and no contradicting relation."""
    def by_name(desc):
        out: dict[str, list[tuple[float, float]]] = {}
        for o in desc["objects"]:
            out.setdefault(f"{o['color']} {o['shape']}", []).append((o["x"], o["y"]))
        return {k: sorted(v) for k, v in out.items()}

    na, nb = by_name(a), by_name(b)
    if {k: len(v) for k, v in na.items()} != {k: len(v) for k, v in nb.items()}:
        return False
    for name, pa in na.items():
        for (xa, ya), (xb, yb) in zip(pa, nb[name]):
            if abs(xa - xb) > pos_tol or abs(ya - yb) > pos_tol:
                return False
    ka, kb = _relation_keys(a), _relation_keys(b)
    return not any((s, _OPPOSITE[r], o) in kb for s, r, o in ka)

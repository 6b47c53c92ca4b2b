"""Caption scoring: read a generated caption back into objects and relations, compare with truth.

The tabletop world's captions are templated (`unidiff_envs.tabletop.language`), so a caption can
be parsed with the world's own vocabulary instead of an n-gram metric: BLEU would reward a
fluent caption with the wrong colour, this does not.  The parser is tolerant (any head phrase,
any order, `a`/`an`/`the`) so that a model's near-miss captions still get partial credit.
"""
from __future__ import annotations

import re
from collections import Counter

from unidiff_envs.tabletop.language import _CELL_PHRASE, _NUMBER
from unidiff_envs.tabletop.scene import COLORS, SHAPES

RELATIONS = ("left of", "right of", "above", "below")
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_CELL_OF_PHRASE = {phrase: name for name, phrase in _CELL_PHRASE.items()}
_COUNT_OF_WORD = {text.split()[0]: n for n, text in _NUMBER.items()}

_NAME = rf"({'|'.join(COLORS)})\s+({'|'.join(SHAPES)})"
_CELL = "|".join(sorted(map(re.escape, _CELL_OF_PHRASE), key=len, reverse=True))
_RELATION_RE = re.compile(
    rf"\b(?:the\s+)?{_NAME}\s+is\s+({'|'.join(RELATIONS)})\s+(?:the\s+)?{_NAME}\b")
_OBJECT_RE = re.compile(rf"\b(?:(?:a|an|the)\s+)?{_NAME}\b(?:\s+({_CELL})\b)?")
_COUNT_RE = re.compile(rf"\b({'|'.join(_COUNT_OF_WORD)})\s+objects?\b")


def parse_caption(text: str) -> dict:
    """Objects (colour, shape, cell or None), stated relations and stated object count of a caption."""
    if not isinstance(text, str):
        raise TypeError(f"caption must be a str, got {type(text).__name__}")
    text = " ".join(text.lower().split())
    relations = [{"subject": f"{m[1]} {m[2]}", "relation": m[3], "object": f"{m[4]} {m[5]}"}
                 for m in _RELATION_RE.finditer(text)]
    rest = _RELATION_RE.sub(" ", text)  # objects named inside a relation are not new objects
    objects = [{"color": m[1], "shape": m[2], "cell": _CELL_OF_PHRASE.get(m[3]) if m[3] else None}
               for m in _OBJECT_RE.finditer(rest)]
    count = _COUNT_RE.search(rest)
    return {"objects": objects, "relations": relations,
            "count": _COUNT_OF_WORD[count[1]] if count else None}


def relation_keys(description: dict) -> set[tuple[str, str, str]]:
    """Every relation of a description, stated both ways ("a left of b" also gives "b right of a")."""
    keys = set()
    for r in description.get("relations", []):
        keys.add((r["subject"], r["relation"], r["object"]))
        keys.add((r["object"], OPPOSITE[r["relation"]], r["subject"]))
    return keys


def _names(objects: list[dict]) -> Counter:
    return Counter(f"{o['color']} {o['shape']}" for o in objects)


def _placed(objects: list[dict]) -> Counter:
    return Counter((o["color"], o["shape"], o["cell"]) for o in objects)


def score_captions(predicted: list[str], descriptions: list[dict]) -> dict:
    """Object P/R/F1 (micro, by colour+shape), relation accuracy and exact match against `describe()` dicts.

    Relation accuracy = true stated relations / (stated relations + captions that state none
    although their scene has one); 1.0 when there is nothing to score.  Exact match also
    requires every object's cell phrase to be right; ``passed`` is each caption's exact match.
    """
    if len(predicted) != len(descriptions):
        raise ValueError(f"{len(predicted)} captions but {len(descriptions)} descriptions")
    if not predicted:
        raise ValueError("no captions to score")
    tp = n_pred = n_true = rel_hits = rel_total = cell_hits = 0
    passed = []
    for text, truth in zip(predicted, descriptions):
        if not isinstance(truth, dict) or "objects" not in truth:
            raise TypeError("each description must be a dict from unidiff_envs.tabletop.describe")
        parsed = parse_caption(text)
        pred_names, true_names = _names(parsed["objects"]), _names(truth["objects"])
        tp += sum((pred_names & true_names).values())
        n_pred += sum(pred_names.values())
        n_true += sum(true_names.values())
        placed, true_placed = _placed(parsed["objects"]), _placed(truth["objects"])
        cell_hits += sum((placed & true_placed).values())
        true_rel = relation_keys(truth)
        ok = sum((r["subject"], r["relation"], r["object"]) in true_rel for r in parsed["relations"])
        rel_hits += ok
        rel_total += len(parsed["relations"]) or int(bool(true_rel))
        # exact: same objects in the same cells, stated count right, every stated relation true,
        # and a relation stated iff the scene has one (as the ground-truth captions do)
        passed.append(bool(placed == true_placed and parsed["count"] in (None, len(truth["objects"]))
                           and ok == len(parsed["relations"]) and bool(parsed["relations"]) == bool(true_rel)))
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"exact_match": sum(passed) / len(predicted), "object_precision": precision,
            "object_recall": recall, "object_f1": f1,
            "relation_accuracy": rel_hits / rel_total if rel_total else 1.0,
            "cell_accuracy": cell_hits / tp if tp else 0.0, "n": len(predicted), "passed": passed}

"""Does a model tie each caption word to the right object?  Teacher-forced word accuracy.

A decoded caption's object F1 mixes reading (which colours and shapes are on the table) with
binding (which object the k-th name of the list is about: the list runs left to right).  This
probe separates them.  For each colour and shape word of a held-out caption's object list, the
model sees the image and the caption *before* that word and predicts it: a diffusion backbone
gets that word and everything after it masked, the autoregressive twin its next-token
prediction (teacher forcing) -- the same context for both.  On a k-object scene a model that
reads the objects but does not bind scores about its one-object accuracy / k (it names a random
object present); one that binds scores about what it scores on one object.

    python -m unidiff.eval.caption_binding --ckpt BUNDLE [--scenes 200]   # prints JSON
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch

from unidiff.canvas import position_roles, prompt_canvas, text_segment
from unidiff_envs.tabletop.scene import COLORS, SHAPES

KINDS = {"colour": set(COLORS), "shape": set(SHAPES)}


def _word_slots(tok, caption: str, n_objects: int) -> tuple[list[int], list[tuple[int, str]]]:
    """Token ids of a caption and (index, kind) of the first ``n_objects`` colour and shape words
    (the object list comes first; the relation sentence names objects again)."""
    ids = tok.encode(caption)
    pieces = [tok.decode([i]).strip() for i in ids]
    slots, seen = [], defaultdict(int)
    for j, p in enumerate(pieces):
        for kind, words in KINDS.items():
            if p in words and seen[kind] < n_objects and j > 0:
                slots.append((j, kind))
                seen[kind] += 1
    return ids, slots


@torch.inference_mode()
def word_accuracy(model, scenes: list[dict], batch: int = 64) -> dict[str, float]:
    """``{"colour": acc, "shape": acc, "colour.<n>_objects": acc, ...}`` over ``scenes`` (items of
    :func:`unidiff.evaluate.heldout_scenes`); keys for a kind are missing when the text tokenizer
    never gives that kind's words a token of their own."""
    from unidiff.tasks.codec import Codec

    spec, net = model.spec, model.net
    tok, codec = model.tokenizers["text"], Codec(model.spec, model.tokenizers)
    causal = bool(net.cfg.causal)
    text = spec.slices["text"]
    mask_id = int(spec.mask_ids[text.start])
    head, out_ids = net.output_head("text"), net.output_ids("text")
    dev = next(net.parameters()).device
    images = codec.encode("image", [s["image"] for s in scenes])  # one VQ pass for all scenes
    rows = []  # (tokens, pos_roles, canvas index read, true id, kind, n objects)
    for s, image in zip(scenes, images):
        n = len(s["description"]["objects"])
        ids, slots = _word_slots(tok, s["caption"], n)
        if not slots:
            continue
        tokens, roles = prompt_canvas(spec, [{"image": image}], ("text",))
        pos_roles = position_roles(spec, roles)[0]
        seg = text_segment(ids, spec.text_len)
        clean = tokens[0].clone()
        clean[text] = seg
        for j, kind in slots:
            t = clean.clone()
            if not causal:
                t[text.start + j : text.stop] = mask_id
            read = text.start + j - (1 if causal else 0)  # the twin predicts token j at j - 1
            rows.append((t, pos_roles, read, int(seg[j]), kind, n))
    hits = defaultdict(list)
    for i in range(0, len(rows), batch):
        part = rows[i : i + batch]
        tokens = torch.stack([r[0] for r in part]).to(dev)
        roles = torch.stack([r[1] for r in part]).to(dev)
        hidden = net(tokens, roles)
        read = torch.tensor([r[2] for r in part], device=dev)
        pred = out_ids[(hidden[torch.arange(len(part), device=dev), read] @ head).argmax(-1)].cpu()
        for r, p in zip(part, pred.tolist()):
            hits[r[4]].append(p == r[3])
            hits[f"{r[4]}.{r[5]}_objects"].append(p == r[3])
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def main(argv: list[str] | None = None) -> int:
    from unidiff.bundle import load_bundle
    from unidiff.evaluate import bundle_image_size, heldout_scenes

    p = argparse.ArgumentParser(prog="python -m unidiff.eval.caption_binding", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="bundle directory (diffusion or AR twin)")
    p.add_argument("--scenes", type=int, default=200, help="held-out scenes (the first of unidiff eval's)")
    a = p.parse_args(argv)
    if a.scenes < 1:
        p.error(f"--scenes must be >= 1, got {a.scenes}")
    model = load_bundle(a.ckpt)
    print(json.dumps(word_accuracy(model, heldout_scenes(a.scenes, bundle_image_size(model))), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

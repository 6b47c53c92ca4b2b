"""A small multimodal world made in code, to prove the core (canvas, noise, backbone, decoder,
training, bundle) before the simulated worlds and learned tokenizers exist.

A scene is a ``grid x grid`` board with 1..max_objects objects (colour x shape) and an agent.
- image: one code per cell (0 = empty, else colour and shape);
- caption: "a red square at upper right and a blue circle at south west" (objects in cell order), so the
  image fully determines the caption and the caption fully determines the image;
- instruction: "go to the red square";
- state: the agent's (row, col);
- action: a chunk of ``grid - 1`` moves (drow, dcol) in {-1, 0, 1} toward the named object
  (diagonal steps, then stay) -- a function of instruction, image and state together.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from unidiff.canvas import CanvasSpec, prompt_canvas, text_ids, text_segment
from unidiff.decode import decode
from unidiff.tokenize.text import TextTokenizer
from unidiff.train import CanvasDataModule
from unidiff.vocab import Vocab

COLORS = ("red", "green", "blue", "yellow")
SHAPES = ("square", "circle", "triangle")
ROWS = ("north", "upper", "lower", "south")  # position words (digits would split under byte-level BPE)
COLS = ("west", "left", "right", "east")
SCENE_TASKS = ("caption", "t2i", "joint", "unconditional")
POLICY_TASKS = ("policy",)


@dataclass(frozen=True)
class SyntheticScene:
    objects: tuple[tuple[int, int, int], ...]  # (cell, colour, shape), sorted by cell
    agent: tuple[int, int]
    target: int  # index of the object the instruction names


@dataclass(frozen=True)
class SyntheticWorld:
    grid: int = 4
    max_objects: int = 3

    def __post_init__(self) -> None:
        if not 2 <= self.grid <= len(ROWS):
            raise ValueError(f"grid must be in [2, {len(ROWS)}], got {self.grid}")
        if not 1 <= self.max_objects <= self.grid * self.grid:
            raise ValueError(f"max_objects must be in [1, grid*grid], got {self.max_objects}")

    @property
    def horizon(self) -> int:
        return self.grid - 1

    def sample(self, seed: int, confusable: bool = False) -> SyntheticScene:
        """The scene of ``seed``.  ``confusable``: at least two objects, and the target shares its
        colour or its shape with another one, so only the instruction's other word tells them apart
        (the case a policy that reads one word of the instruction gets wrong)."""
        if confusable and self.max_objects < 2:
            raise ValueError("a confusable scene needs max_objects >= 2")
        rng = random.Random(seed)
        kinds = [(c, s) for c in range(len(COLORS)) for s in range(len(SHAPES))]
        if not confusable:
            n = rng.randint(1, self.max_objects)
            cells = sorted(rng.sample(range(self.grid * self.grid), n))
            objects = tuple((cell, c, s) for cell, (c, s) in zip(cells, rng.sample(kinds, n)))
            agent = (rng.randrange(self.grid), rng.randrange(self.grid))
            return SyntheticScene(objects, agent, rng.randrange(n))
        n = rng.randint(2, self.max_objects)
        target = rng.choice(kinds)
        twin = rng.choice([k for k in kinds if k != target and (k[0] == target[0] or k[1] == target[1])])
        picked = [target, twin] + rng.sample([k for k in kinds if k not in (target, twin)], n - 2)
        cells = rng.sample(range(self.grid * self.grid), n)
        objects = tuple(sorted((cell, c, s) for cell, (c, s) in zip(cells, picked)))
        agent = (rng.randrange(self.grid), rng.randrange(self.grid))
        return SyntheticScene(objects, agent, objects.index((cells[0], *target)))

    def image(self, scene: SyntheticScene) -> torch.Tensor:
        codes = torch.zeros(self.grid * self.grid, dtype=torch.long)
        for cell, c, s in scene.objects:
            codes[cell] = 1 + c * len(SHAPES) + s
        return codes

    def caption(self, scene: SyntheticScene) -> str:
        parts = [f"a {COLORS[c]} {SHAPES[s]} at {ROWS[cell // self.grid]} {COLS[cell % self.grid]}" for cell, c, s in scene.objects]
        return " and ".join(parts)

    def instruction(self, scene: SyntheticScene) -> str:
        _, c, s = scene.objects[scene.target]
        return f"go to the {COLORS[c]} {SHAPES[s]}"

    def state(self, scene: SyntheticScene) -> torch.Tensor:
        return torch.tensor(scene.agent, dtype=torch.long)

    def actions(self, scene: SyntheticScene) -> torch.Tensor:
        """(horizon * 2,) local ids (move + 1): each step moves one cell toward the target in
        both directions at once, then stays."""
        tr, tc = divmod(scene.objects[scene.target][0], self.grid)
        r, c = scene.agent
        steps = []
        for _ in range(self.horizon):
            d = ((tr > r) - (tr < r), (tc > c) - (tc < c))
            r, c = r + d[0], c + d[1]
            steps.append(d)
        return torch.tensor(steps, dtype=torch.long).flatten() + 1

    @property
    def image_vocab(self) -> int:
        return 1 + len(COLORS) * len(SHAPES)


class SyntheticDataModule(CanvasDataModule):
    """Scene samples (caption / text-to-image / joint) and policy samples, half and half.

    Args:
        grid, max_objects: world size.
        text_len: text segment capacity (with [EOS]).
        text_vocab_size: BPE vocabulary size (specials included).
        train_size, val_size: number of distinct samples; eval_size: held-out scenes per task.
        decode_steps: decoder steps used by :meth:`evaluate`.
        seed: data seed; train / val / eval scenes come from disjoint seed ranges.
    """

    def __init__(
        self,
        grid: int = 4,
        max_objects: int = 3,
        text_len: int = 24,
        text_vocab_size: int = 400,
        train_size: int = 50_000,
        val_size: int = 256,
        eval_size: int = 200,
        decode_steps: int = 8,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed=seed)
        self.world = SyntheticWorld(grid, max_objects)
        self.text_len, self.eval_size, self.decode_steps = text_len, eval_size, decode_steps
        self.base = seed * 1_000_000_000
        corpus = [t for i in range(2000) for t in self._texts(self.world.sample(self.base + i))]
        self.text = TextTokenizer.train(corpus, vocab_size=text_vocab_size)
        vocab = Vocab(text=self.text.vocab_size, image=self.world.image_vocab, state=grid, action=3)
        self._spec = CanvasSpec(vocab, text_len, (grid, grid), 2, (self.world.horizon, 2))
        self.train_set = _Samples(self, self.base, train_size)
        self.val_set = _Samples(self, self.base + 500_000_000, val_size)

    def _texts(self, scene: SyntheticScene) -> tuple[str, str]:
        return self.world.caption(scene), self.world.instruction(scene)

    @property
    def spec(self) -> CanvasSpec:
        return self._spec

    def tokenizers(self) -> dict:
        return {"text": self.text}

    def encode(self, scene: SyntheticScene, policy: bool) -> dict[str, torch.Tensor]:
        """A scene as joint-id segments: scene sample, or policy sample with instruction."""
        v = self.spec.vocab
        text = self.world.instruction(scene) if policy else self.world.caption(scene)
        out = {"text": text_segment(self.text.encode(text), self.text_len), "image": v.to_joint("image", self.world.image(scene))}
        if policy:
            out["state"] = v.to_joint("state", self.world.state(scene))
            out["action"] = v.to_joint("action", self.world.actions(scene))
        return out

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        """Exact match on held-out scenes for image->text, text->image, (text,image,state)->action,
        all from the same bundle and the same :func:`~unidiff.decode.decode`; ``policy_confusable``
        repeats the policy on held-out scenes whose target has a same-colour or same-shape twin."""
        spec, net = model.spec, model.net
        seeds = range(self.base + 900_000_000, self.base + 900_000_000 + self.eval_size)
        scenes = [self.world.sample(i) for i in seeds]
        twins = [self.world.sample(i, confusable=True) for i in seeds] if self.world.max_objects >= 2 else None
        dev = next(net.parameters()).device
        out = {}
        for task, chosen, policy, keep, target in (
            ("caption", scenes, False, ("image",), "text"),
            ("t2i", scenes, False, ("text",), "image"),
            ("policy", scenes, True, ("text", "image", "state"), "action"),
            ("policy_confusable", twins, True, ("text", "image", "state"), "action"),
        ):
            if chosen is None:
                continue
            truth = [self.encode(s, policy) for s in chosen]
            tokens, roles = prompt_canvas(spec, [{m: t[m] for m in keep} for t in truth], (target,))
            res = decode(net, tokens.to(dev), roles.to(dev), steps=self.decode_steps, seeds=0)
            got = res.tokens[:, spec.slices[target]].cpu()
            if target == "text":
                hits = [text_ids(g) == text_ids(t["text"]) for g, t in zip(got, truth)]
            else:
                hits = [bool(torch.equal(g, t[target])) for g, t in zip(got, truth)]
            out[f"synthetic.{task}.exact_match"] = sum(hits) / len(hits)
            out[f"synthetic.{task}.nfe"] = res.nfe
        return out


class _Samples(torch.utils.data.Dataset):
    """Sample ``i``: scene seed ``base + i // 2``; even ``i`` a scene sample, odd a policy sample."""

    def __init__(self, dm: SyntheticDataModule, base: int, size: int) -> None:
        self.dm, self.base, self.size = dm, base, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        policy = bool(i % 2)
        scene = self.dm.world.sample(self.base + i // 2)
        return {"tokens": self.dm.encode(scene, policy), "tasks": POLICY_TASKS if policy else SCENE_TASKS}

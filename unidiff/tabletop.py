"""The unified model's real data: tabletop scene renders (captioning, text-to-image, joint) and
expert episodes (policy), tokenized once with the bundle's tokenizers.

Tokenizers: the image VQ comes pre-trained (``unidiff fit --config configs/vq-tabletop.yaml``);
the text BPE is trained here on every caption and instruction; action and state bins are fit on
the episodes.  All of them go into the bundle.  Everything is tokenized once in ``setup`` (the VQ
encoder is the only costly part), so training steps only gather tensors.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unidiff.canvas import CanvasSpec, text_segment
from unidiff.tasks.codec import check_decode_settings
from unidiff.tokenize import load_tokenizers
from unidiff.tokenize.bins import BinTokenizer
from unidiff.tokenize.image import ImageTokenizer
from unidiff.tokenize.text import TextTokenizer
from unidiff.train import CanvasDataModule
from unidiff.vocab import Vocab

SCENE_TASKS = ("caption", "t2i", "joint", "unconditional")
POLICY_TASKS = ("policy",)


def _encode_images(tok: ImageTokenizer, images: list[np.ndarray], batch: int = 256) -> torch.Tensor:
    out = [tok.encode(np.stack(images[i : i + batch])) for i in tqdm(range(0, len(images), batch), desc="VQ-encoding", leave=False)]
    return torch.cat(out).flatten(1)


class TabletopDataModule(CanvasDataModule):
    """Args:
        image_tokenizer: tokenizer directory written by an image-tokenizer fit (its ``output_dir``).
        episodes: directories written by ``unidiff collect`` (policy windows).
        episode_repeat: how many times each training window is listed.  A batch draws items
            uniformly, so this sets the policy's share of the samples when ``scenes`` grows
            without new demonstrations; the held-out windows stay out of every copy.
        scenes: number of rendered scene samples for captioning / text-to-image.
        image_size: render size; must match the image tokenizer.
        horizon: action-chunk length H.
        text_len: text segment capacity (with [EOS]).
        text_vocab_size: BPE size (specials and bytes included).
        action_bins, state_bins: bins per dimension.
        val_fraction: share of scenes and episodes held out for validation loss.
        eval_scenes: held-out scenes for caption / text-to-image metrics at export.
        eval_env, eval_episodes: env and seeded episodes for the policy metric at export.
        decode_steps: decoder steps of every target that ``decode`` gives none.
        decode: decoder settings per target modality over ``unidiff.tasks.codec.DECODE_DEFAULTS``
            (``decode()`` arguments, e.g. ``{text: {text_block: 4, steps: 24}}``); saved with the
            bundle, so its evaluation and every ``m.caption`` / ``m.generate`` / ``m.policy`` call
            use them.
        seed: scene seed (held-out scenes use other seeds).
        tokenizers_from: a bundle whose text, action and state tokenizers to reuse instead of fitting
            them to this data.  Fine-tuning a bundle (``model.init_from``) on other data needs it:
            BPE merges and bin edges fit to new data give ids other meanings (or another count).
    """

    def __init__(
        self,
        image_tokenizer: str,
        episodes: list[str] | None = None,
        episode_repeat: int = 1,
        scenes: int = 20_000,
        image_size: int = 64,
        horizon: int = 8,
        text_len: int = 48,
        text_vocab_size: int = 640,
        action_bins: int = 256,
        state_bins: int = 256,
        val_fraction: float = 0.02,
        eval_scenes: int = 200,
        eval_env: str = "unidiff/TabletopPush-v0",
        eval_episodes: int = 50,
        decode_steps: int = 8,
        decode: dict[str, dict] | None = None,
        seed: int = 0,
        tokenizers_from: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed=seed)
        check_decode_settings(decode)
        if episode_repeat < 1:
            raise ValueError(f"data.episode_repeat must be a positive integer, got {episode_repeat}")
        self.save_hyperparameters()
        toks = load_tokenizers(image_tokenizer)
        if "image" not in toks:
            raise ValueError(f"{image_tokenizer} holds no image tokenizer (it has {sorted(toks)}); train one with configs/vq-tabletop.yaml")
        self.image_tok: ImageTokenizer = toks["image"]
        self._spec = None

    # ---- tokenizers and layout ------------------------------------------------------------
    def _raw(self):
        from unidiff.data import EpisodeWindowDataset, SceneDataset

        hp = self.hparams
        scenes = list(tqdm(SceneDataset(hp.scenes, hp.seed, hp.image_size), desc="rendering scenes", leave=False))
        windows = [w for root in hp.episodes or [] for w in EpisodeWindowDataset(root, hp.horizon)]
        return scenes, windows

    def setup(self, stage: str | None = None) -> None:
        if self._spec is not None:
            return
        hp = self.hparams
        scenes, windows = self._raw()
        policy = bool(windows)
        if hp.tokenizers_from is not None:
            self._reuse_tokenizers(hp.tokenizers_from, policy)
        else:
            texts = [s["caption"] for s in scenes] + [w["instruction"] for w in windows]
            self.text_tok = TextTokenizer.train(texts, vocab_size=hp.text_vocab_size)
            if policy:
                self.action_tok = BinTokenizer("action", hp.action_bins).fit(np.stack([w["actions"] for w in windows]).reshape(-1, windows[0]["actions"].shape[-1]))
                self.state_tok = BinTokenizer("state", hp.state_bins).fit(np.stack([w["state"] for w in windows]))
        grid = self.image_tok.grid_shape
        vocab = Vocab(
            text=self.text_tok.vocab_size,
            image=self.image_tok.vocab_size,
            state=self.state_tok.vocab_size if policy else 0,
            action=self.action_tok.vocab_size if policy else 0,
        )
        self._spec = CanvasSpec(
            vocab,
            text_len=hp.text_len,
            image_hw=grid,
            state_dim=self.state_tok.dim if policy else 0,
            action_shape=(hp.horizon, self.action_tok.dim) if policy else (0, 0),
        )
        items = self._tokenize(scenes, windows)
        n_val_s = max(1, int(len(scenes) * hp.val_fraction))
        n_val_w = int(len(windows) * hp.val_fraction)
        scene_items, window_items = items[: len(scenes)], items[len(scenes) :]
        self.train_set = scene_items[n_val_s:] + window_items[n_val_w:] * hp.episode_repeat
        self.val_set = scene_items[:n_val_s] + window_items[:n_val_w]
        # tokenizer quality goes into the bundle's metrics.json: the VQ's own held-out numbers, and
        # the bins' round-trip error on the held-out windows (all windows if none are held out)
        vq_metrics = Path(hp.image_tokenizer) / "metrics.json"
        self.tokenizer_metrics = json.loads(vq_metrics.read_text()) if vq_metrics.is_file() else {}
        if policy:
            held = windows[:n_val_w] or windows
            self.tokenizer_metrics.update(self.action_tok.metrics(np.concatenate([w["actions"] for w in held])))
            self.tokenizer_metrics.update(self.state_tok.metrics(np.stack([w["state"] for w in held])))

    def _reuse_tokenizers(self, bundle: str, policy: bool) -> None:
        """Take the text (and, with episodes, action and state) tokenizers of ``bundle``."""
        toks = load_tokenizers(Path(bundle) / "tokenizers")
        need = ["text"] + (["action", "state"] if policy else [])
        missing = [m for m in need if m not in toks]
        if missing:
            raise ValueError(f"data.tokenizers_from={bundle} has no {', '.join(missing)} tokenizer (it has {sorted(toks)})")
        self.text_tok = toks["text"]
        if policy:
            self.action_tok, self.state_tok = toks["action"], toks["state"]

    def _tokenize(self, scenes: list[dict], windows: list[dict]) -> list[dict]:
        spec, v = self._spec, self._spec.vocab
        codes = _encode_images(self.image_tok, [s["image"] for s in scenes] + [w["image"] for w in windows])
        items = []
        for i, s in enumerate(scenes):
            tokens = {"text": text_segment(self.text_tok.encode(s["caption"]), spec.text_len), "image": v.to_joint("image", codes[i])}
            items.append({"tokens": tokens, "tasks": SCENE_TASKS})
        if windows:
            states = self.state_tok.encode(np.stack([w["state"] for w in windows]))
            actions = self.action_tok.encode(np.stack([w["actions"] for w in windows]))
        for j, w in enumerate(windows):
            tokens = {
                "text": text_segment(self.text_tok.encode(w["instruction"]), spec.text_len),
                "image": v.to_joint("image", codes[len(scenes) + j]),
                "state": v.to_joint("state", states[j].flatten()),
                "action": v.to_joint("action", actions[j].flatten()),
            }
            items.append({"tokens": tokens, "tasks": POLICY_TASKS})
        return items

    @property
    def spec(self) -> CanvasSpec:
        if self._spec is None:
            self.setup()
        return self._spec

    def tokenizers(self) -> dict:
        toks = {"text": self.text_tok, "image": self.image_tok}
        if "action" in self.spec.modalities:
            toks.update(action=self.action_tok, state=self.state_tok)
        return toks

    # ---- evaluation of the exported bundle ----------------------------------------------------
    def evaluate(self, model, scenes: int | None = None, episodes: int | None = None) -> dict:
        """Task metrics on held-out scenes and seeded episodes; ``scenes`` / ``episodes`` override
        ``eval_scenes`` / ``eval_episodes`` (``episodes=0``: no rollouts), e.g. for a cheaper
        curve during training (:class:`unidiff.export.EvaluateTasks` ``eval_args``)."""
        from unidiff.evaluate import evaluate_bundle

        hp = self.hparams
        episodes = hp.eval_episodes if episodes is None else episodes
        return self.tokenizer_metrics | evaluate_bundle(
            model,
            scenes=hp.eval_scenes if scenes is None else scenes,
            env_id=hp.eval_env if "action" in model.spec.modalities and episodes > 0 else None,
            episodes=episodes,
            image_size=hp.image_size,
        )

"""Training the image tokenizer: a LightningModule around the diffusers ``VQModel`` and a data
module of scene renders.  ``unidiff fit --config configs/vq-tabletop.yaml`` runs it; at the end
of fit the tokenizer and its held-out metrics are written (atomically) to ``output_dir``::

    output_dir/tokenizers.json, output_dir/image/vq.{json,safetensors}, output_dir/metrics.json

Loss: L1 + L2 reconstruction + the VQ codebook/commitment loss (no perceptual loss: no hub
weights).  The codebook is initialised from encoder outputs and unused codes are restarted onto
encoder outputs, which keeps codebook usage high without EMA machinery.  Those outputs are
drawn uniformly (``restart_picks: uniform``, the shipped tokenizer's recipe) or by k-means++
seeding (``spread``: far from every live code, so new codes go to object edges and colours rather
than onto the flat table that most of a render is).  ``codes_per_image`` (distinct codes in a
held-out render) measures how consistently the same content gets the same code.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from unidiff.files import atomic_dir, write_json_atomic
from unidiff.tokenize.base import save_tokenizers
from unidiff.tokenize.image import ImageTokenizer, VQConfig, to_unit

HELDOUT_SEED_OFFSET = 1_000_000_000  # held-out scene seeds never overlap training seeds


def synthetic_render(seed: int, size: int = 64) -> np.ndarray:
    """A flat-coloured stand-in for a tabletop render (discs and squares on grey), for tests."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 210, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(rng.integers(1, 5)):
        colour = rng.integers(0, 256, 3)
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(0.05, 0.12) * size
        mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r) if rng.random() < 0.5 else (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[mask] = colour
    return img


def render(seeds: range, size: int, source: str) -> torch.Tensor:
    """uint8 (N, size, size, 3) renders of the scenes with these seeds."""
    if source == "tabletop":
        from unidiff_envs.tabletop import render_scene, sample_scene

        frames = [render_scene(sample_scene(s), size) for s in seeds]
    elif source == "synthetic":
        frames = [synthetic_render(s, size) for s in seeds]
    else:
        raise ValueError(f"unknown render source {source!r}; expected 'tabletop' or 'synthetic'")
    return torch.from_numpy(np.stack(frames))


class SceneRenders(L.LightningDataModule):
    """Scene renders held in memory: ``n_train`` training scenes (seeds ``seed..``), ``n_val``
    validation and ``n_heldout`` test scenes (seeds offset by 1e9, disjoint from training).

    Args:
        source: ``tabletop`` (MuJoCo renders, parser agreement measured) or ``synthetic``.
    """

    def __init__(
        self,
        n_train: int = 20000,
        n_val: int = 256,
        n_heldout: int = 512,
        size: int = 64,
        seed: int = 0,
        batch_size: int = 32,
        source: Literal["tabletop", "synthetic"] = "tabletop",
    ) -> None:
        super().__init__()
        self.n_train, self.n_val, self.n_heldout = n_train, n_val, n_heldout
        self.size, self.seed, self.batch_size, self.source = size, seed, batch_size, source
        self.train_images = self.val_images = None

    def heldout_seeds(self) -> range:
        start = HELDOUT_SEED_OFFSET + self.seed + self.n_val
        return range(start, start + self.n_heldout)

    def heldout_images(self) -> torch.Tensor:
        return render(self.heldout_seeds(), self.size, self.source)

    def setup(self, stage: str | None = None) -> None:
        if self.train_images is None:
            self.train_images = render(range(self.seed, self.seed + self.n_train), self.size, self.source)
            start = HELDOUT_SEED_OFFSET + self.seed
            self.val_images = render(range(start, start + self.n_val), self.size, self.source)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train_images, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.val_images, batch_size=self.batch_size)


def spread_picks(points: torch.Tensor, centres: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``points`` (N, C) drawn by k-means++ seeding: each with probability in
    proportion to its squared distance from the nearest of ``centres`` (M, C) and the rows already
    drawn.  Points a code already covers are (almost) never drawn again, so new codes go to
    content the codebook lacks (object edges, colours) instead of onto the common background."""
    d2 = torch.cdist(points, centres).pow(2).min(1).values if len(centres) else torch.full((len(points),), float("inf"), device=points.device)
    picks = []
    for _ in range(n):
        w = d2 if bool(torch.isfinite(d2).all()) and float(d2.sum()) > 0 else torch.ones_like(d2)
        i = int(torch.multinomial(w, 1))
        picks.append(points[i])
        d2 = torch.minimum(d2, (points - points[i]).pow(2).sum(1))
    return torch.stack(picks)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of uint8 images (B, H, W, 3)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(255.0**2 / mse)


def parser_agreement(originals: torch.Tensor, recons: torch.Tensor) -> float | None:
    """Fraction of images whose reconstruction the scene parser reads as the same scene; None
    when no scene parser is installed."""
    try:
        from unidiff_envs.parser import parse_scene, scenes_match
    except ImportError:
        return None
    hits = [scenes_match(parse_scene(o.numpy()), parse_scene(r.numpy())) for o, r in zip(originals, recons)]
    return float(np.mean(hits))


def evaluate_tokenizer(tok: ImageTokenizer, images: torch.Tensor, source: str, batch_size: int = 64) -> dict:
    """Held-out metrics: mean PSNR, fraction of the codebook used, distinct codes per image (how
    consistently the same content gets the same code: lower is easier for the model that reads and
    writes the codes), parser agreement."""
    codes, recons = [], []
    for i in range(0, len(images), batch_size):
        c = tok.encode(images[i : i + batch_size])
        codes.append(c)
        recons.append(tok.decode(c))
    codes, recons = torch.cat(codes), torch.cat(recons)
    metrics = {
        "tokenizer.image.psnr": float(psnr(images, recons).mean()),
        "tokenizer.image.codebook_usage": float(codes.unique().numel() / tok.vocab_size),
        "tokenizer.image.codes_per_image": float(np.mean([c.unique().numel() for c in codes])),
        "tokenizer.image.grid": list(tok.grid_shape),
        "tokenizer.image.heldout_images": len(images),
    }
    agreement = parser_agreement(images, recons) if source == "tabletop" else None
    if agreement is not None:
        metrics["tokenizer.image.parser_agreement"] = agreement
    return metrics


class VQTokenizerModule(L.LightningModule):
    """Trains the VQ-VAE image tokenizer.

    Args:
        size, block_out_channels, layers_per_block, latent_channels, num_vq_embeddings,
            norm_num_groups: the :class:`VQConfig`.
        lr, warmup_steps: Adam, linear warm-up then cosine decay to 5 % at ``max_steps``.
        l1_weight, l2_weight, vq_weight: loss terms.
        restart_every: every this many steps, codes unused since the last restart are moved onto
            encoder outputs of the current batch (0 disables).
        restart_picks: how those outputs (and the initial codebook) are picked: ``uniform`` at
            random, or ``spread`` by k-means++ seeding (:func:`spread_picks`).
        time_budget_s: stop training after this many seconds; the learning-rate decay then follows
            whichever of steps or time runs out first, so a time-capped run still anneals.
        train_crop: train on random ``train_crop``-pixel squares of each batch (the VQ-VAE is
            fully convolutional, so it still encodes full images): several times less compute per
            step on CPU.  None trains on full images.
        output_dir: where the trained tokenizer + metrics.json go (default
            ``<default_root_dir>/tokenizer``).
    """

    def __init__(
        self,
        size: int = 64,
        block_out_channels: list[int] = [16, 32, 64],
        layers_per_block: int = 1,
        latent_channels: int = 8,
        num_vq_embeddings: int = 256,
        norm_num_groups: int = 8,
        lr: float = 1e-3,
        warmup_steps: int = 100,
        l1_weight: float = 1.0,
        l2_weight: float = 1.0,
        vq_weight: float = 1.0,
        restart_every: int = 50,
        restart_picks: Literal["uniform", "spread"] = "uniform",
        time_budget_s: float | None = None,
        train_crop: int | None = None,
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vq_config = VQConfig(
            size=size,
            block_out_channels=list(block_out_channels),
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            num_vq_embeddings=num_vq_embeddings,
            norm_num_groups=norm_num_groups,
        )
        self.model = self.vq_config.build()
        self.register_buffer("usage", torch.zeros(num_vq_embeddings))
        self.register_buffer("initialised", torch.tensor(False))
        self._fit_start = time.time()

    def _check(self, batch: torch.Tensor) -> torch.Tensor:
        size = self.vq_config.size
        if batch.dtype != torch.uint8 or batch.ndim != 4 or tuple(batch.shape[1:]) != (size, size, 3):
            raise ValueError(f"expected uint8 batches of shape (B, {size}, {size}, 3), got {batch.dtype} {tuple(batch.shape)}")
        return to_unit(batch)

    def forward(self, x: torch.Tensor):
        h = self.model.quant_conv(self.model.encoder(x))
        z_q, vq_loss, (_, _, idx) = self.model.quantize(h)
        recon = self.model.decoder(self.model.post_quant_conv(z_q))
        return recon, vq_loss, idx.reshape(-1), h

    @torch.no_grad()
    def _restart_codes(self, h: torch.Tensor, all_codes: bool = False) -> None:
        """Move codes unused since the last restart (or all codes, to initialise the codebook from
        data) onto encoder outputs of this batch, picked as ``restart_picks`` says."""
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        weight = self.model.quantize.embedding.weight
        dead = torch.arange(len(weight), device=weight.device) if all_codes else (self.usage == 0).nonzero().squeeze(1)
        if len(dead):
            if self.hparams.restart_picks == "spread":
                live = torch.ones(len(weight), dtype=torch.bool, device=weight.device)
                live[dead] = False
                picks = spread_picks(flat, weight[live], len(dead))
            else:
                picks = flat[torch.randint(0, len(flat), (len(dead),), device=flat.device)]
            weight[dead] = picks + 1e-3 * torch.randn_like(picks)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(weight, src=0)  # every rank keeps rank 0's codebook
        self.log("train/restarted_codes", float(len(dead)))
        self.usage.zero_()

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        """A random square of side ``train_crop`` at a grid-aligned offset (one per batch)."""
        crop, step = self.hparams.train_crop, self.vq_config.downsample
        if not crop or crop >= x.shape[-1]:
            return x
        i, j = (torch.randint(0, (x.shape[-1] - crop) // step + 1, (2,)) * step).tolist()
        return x[..., i : i + crop, j : j + crop]

    def training_step(self, batch: torch.Tensor, batch_idx: int):
        x = self._crop(self._check(batch))
        if not bool(self.initialised):
            with torch.no_grad():
                self._restart_codes(self.model.quant_conv(self.model.encoder(x)), all_codes=True)
            self.initialised.fill_(True)
        recon, vq_loss, idx, h = self(x)
        l1, l2 = F.l1_loss(recon, x), F.mse_loss(recon, x)
        loss = self.hparams.l1_weight * l1 + self.hparams.l2_weight * l2 + self.hparams.vq_weight * vq_loss
        self.usage += torch.bincount(idx, minlength=len(self.usage)).float()
        every = self.hparams.restart_every
        if every and (self.global_step + 1) % every == 0:
            self._restart_codes(h.detach())
        self.log_dict(
            {"train/loss": loss, "train/l1": l1, "train/vq": vq_loss,
             "train/psnr": 10 * torch.log10(4.0 / l2.detach().clamp_min(1e-10))},
            prog_bar=True,
        )
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x = self._check(batch)
        recon, vq_loss, idx, _ = self(x)
        self.log("val/psnr", 10 * torch.log10(4.0 / F.mse_loss(recon, x).clamp_min(1e-10)), prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = self.hparams.warmup_steps

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            progress = min(1.0, max((step - warm) / max(1, total - warm), self._time_fraction()))
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_fit_start(self) -> None:
        self._fit_start = time.time()

    def _time_fraction(self) -> float:
        budget = self.hparams.time_budget_s
        return (time.time() - self._fit_start) / budget if budget else 0.0

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self._time_fraction() >= 1.0:
            self.trainer.should_stop = True

    def tokenizer(self) -> ImageTokenizer:
        return ImageTokenizer(self.vq_config, self.model)

    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        dm = self.trainer.datamodule
        tok = self.tokenizer()
        metrics = evaluate_tokenizer(tok, dm.heldout_images(), dm.source)
        metrics["tokenizer.image.train_steps"] = int(self.global_step)
        metrics["tokenizer.image.train_wall_s"] = round(time.time() - self._fit_start, 1)
        out = Path(self.hparams.output_dir or Path(self.trainer.default_root_dir) / "tokenizer")
        write_tokenizer_dir(out, tok, metrics)
        self.model.train()
        print(json.dumps(metrics, indent=2))


def write_tokenizer_dir(out: Path, tok: ImageTokenizer, metrics: dict) -> None:
    """Write tokenizer + metrics.json into a temporary sibling, then rename it into place."""
    with atomic_dir(out) as tmp:
        save_tokenizers(tmp, {"image": tok})
        write_json_atomic(tmp / "metrics.json", metrics)

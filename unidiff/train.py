"""Training: the LightningModule of the unified model, the data-module contract, and `unidiff fit`.

`unidiff fit --config configs/X.yaml` is a LightningCLI in subclass mode: the YAML names the
LightningModule and LightningDataModule by ``class_path``, so the same command trains the unified
model and the image tokenizer.  The backbone is built in ``configure_model`` from the data
module's canvas spec (vocabulary sizes come from the trained tokenizers, not from hand-typed
numbers), EMA weights follow every step (diffusers ``EMAModel``) and travel in checkpoints, so a
resumed run continues step, optimizer and EMA exactly.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from diffusers.training_utils import EMAModel
from lightning.pytorch.cli import LightningCLI

from unidiff.canvas import Batch, CanvasSpec, collate
from unidiff.model import Backbone, BackboneConfig
from unidiff.noise import NoiseConfig, apply_noise
from unidiff.objective import autoregressive_loss, diffusion_loss


def _dir_bytes(directory: Path) -> dict[str, bytes]:
    """Relative path -> contents of every file under ``directory`` ({} when it does not exist)."""
    return {str(f.relative_to(directory)): f.read_bytes() for f in sorted(directory.rglob("*")) if f.is_file()}


class EpochSampler(torch.utils.data.Sampler):
    """A shuffle that is a pure function of (seed, epoch): Lightning calls ``set_epoch``, so a run
    resumed from a checkpoint sees exactly the batches the uninterrupted run would have seen."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())


class CanvasDataModule(L.LightningDataModule):
    """What the unified model needs from data: a canvas spec, tokenizers to store in the bundle,
    batches of :class:`~unidiff.canvas.Batch`, and (optionally) a task evaluation run on the
    exported bundle.  Subclasses fill ``train_set`` / ``val_set`` with items accepted by
    :func:`unidiff.canvas.collate`."""

    def __init__(self, batch_size: int = 32, num_workers: int = 0, shuffle_seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.shuffle_seed = batch_size, num_workers, shuffle_seed
        self.train_set = self.val_set = None

    @property
    def spec(self) -> CanvasSpec:
        raise NotImplementedError(f"{type(self).__name__} must define the canvas spec")

    def tokenizers(self) -> dict:
        """Modality -> tokenizer, saved into the bundle.  Default: none (ids are already tokens)."""
        return {}

    def evaluate(self, model) -> dict:
        """Task metrics for a loaded bundle (``unidiff.load``); written to its metrics.json."""
        return {}

    def _loader(self, dataset, shuffle: bool):
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(dataset), self.shuffle_seed) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=partial(collate, self.spec),
            drop_last=shuffle and len(dataset) >= self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False)


class UnidiffModule(L.LightningModule):
    """Masked-diffusion training of the one backbone on a task mixture.

    Args:
        backbone: transformer size.
        noise: mask schedule, task mixture, condition dropout, loss weighting.
        loss_weights: per-modality loss weights (missing modalities weigh 1).
        lr, weight_decay, betas: AdamW.
        warmup_steps: linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at max_steps.
        ema_decay: EMA decay of the exported weights.
        objective: ``diffusion`` (masked diffusion, bidirectional backbone) or ``autoregressive``
            (the AR twin: next-token loss on clean tokens in the causal rank order; needs
            ``backbone.causal: true``).  Roles come from the same task mixture either way.
        init_from: a bundle directory to start from (fine-tuning / a second training stage): its
            weights become the initial weights and the initial EMA; its canvas, backbone and
            tokenizers must be exactly the ones this run's data module builds.  Optimizer, step
            and learning-rate schedule start fresh (use ``--ckpt_path`` to *resume* a run instead;
            resuming a run that has ``init_from`` loads the bundle first and then overwrites
            everything with the checkpoint, so the bundle must still be there).
    """

    def __init__(
        self,
        backbone: BackboneConfig = BackboneConfig(),
        noise: NoiseConfig = NoiseConfig(),
        loss_weights: dict[str, float] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        ema_decay: float = 0.999,
        objective: Literal["diffusion", "autoregressive"] = "diffusion",
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        if objective not in ("diffusion", "autoregressive"):
            raise ValueError(f"objective must be 'diffusion' or 'autoregressive', got {objective!r}")
        if backbone.causal != (objective == "autoregressive"):
            raise ValueError(
                f"objective {objective!r} needs backbone.causal: {objective == 'autoregressive'} "
                f"(got {backbone.causal}); the AR twin is a causal backbone, diffusion a bidirectional one"
            )
        # plain dicts only: training checkpoints stay loadable with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["backbone", "noise"])
        self.hparams.update(backbone=asdict(backbone), noise=asdict(noise))
        self.backbone_cfg, self.noise_cfg = backbone, noise
        self.loss_weights = loss_weights or {}
        self.net: Backbone | None = None
        self.ema: EMAModel | None = None
        self.spec: CanvasSpec | None = None

    # ---- construction ---------------------------------------------------------------------
    def build(self, spec: CanvasSpec) -> None:
        self.spec = spec
        self.net = Backbone(spec, self.backbone_cfg)
        self.ema = EMAModel(self.net.parameters(), decay=self.hparams.ema_decay)

    def configure_model(self) -> None:
        if self.net is None:
            self.build(self.trainer.datamodule.spec)
            if self.hparams.init_from:
                self._init_from_bundle(self.hparams.init_from, self.trainer.datamodule.tokenizers())

    def _init_from_bundle(self, path: str, tokenizers: dict) -> None:
        """Copy a bundle's weights into the freshly built net (and EMA), after checking that the
        bundle was trained on the same canvas, backbone and tokenizers; a mismatch would silently
        give every token id another meaning."""
        from unidiff.bundle import load_bundle
        from unidiff.tokenize import save_tokenizers

        bundle = load_bundle(path)
        if bundle.spec.to_dict() != self.spec.to_dict():
            raise ValueError(f"init_from={path}: its canvas {bundle.spec.to_dict()} differs from this data's {self.spec.to_dict()}; "
                             "fine-tune with the data settings (text_len, horizon) the bundle was trained with, and its tokenizers "
                             f"(data.init_args.tokenizers_from: {path})")
        if asdict(bundle.net.cfg) != asdict(self.backbone_cfg):
            raise ValueError(f"init_from={path}: its backbone {asdict(bundle.net.cfg)} differs from model.backbone {asdict(self.backbone_cfg)}")
        with tempfile.TemporaryDirectory() as tmp:
            mine = save_tokenizers(Path(tmp) / "mine", tokenizers)
            for modality in sorted(set(tokenizers) | set(bundle.tokenizers)):
                a, b = mine / modality, bundle.path / "tokenizers" / modality
                if _dir_bytes(a) != _dir_bytes(b):
                    raise ValueError(f"init_from={path}: the {modality} tokenizer this data module built differs from the bundle's "
                                     f"(different data or tokenizer settings); token ids would not mean the same: reuse the bundle's with data.init_args.tokenizers_from: {path}")
        self.net.load_state_dict(bundle.net.state_dict())
        self.ema = EMAModel(self.net.parameters(), decay=self.hparams.ema_decay)

    def on_fit_start(self) -> None:
        self.ema.to(self.device)

    def on_train_epoch_start(self) -> None:
        # Lightning passes its epoch-progress counter to set_epoch, which runs one ahead after a
        # resume from an epoch-end checkpoint; the epoch index itself is what the order must follow.
        sampler = getattr(self.trainer.train_dataloader, "sampler", None)
        if isinstance(sampler, EpochSampler):
            sampler.set_epoch(self.current_epoch)

    # ---- steps ----------------------------------------------------------------------------
    def _step(self, batch: Batch, generator: torch.Generator) -> dict:
        nb = apply_noise(self.spec, batch, self.noise_cfg, generator)
        if self.hparams.objective == "autoregressive":
            return autoregressive_loss(self.net, nb.clean, nb.pos_roles, self.loss_weights)
        return diffusion_loss(self.net, nb, self.loss_weights)

    def training_step(self, batch: Batch, batch_idx: int):
        # noise is a pure function of (global seed, step): a resumed run draws the same masks
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        out = self._step(batch, torch.Generator().manual_seed(seed * 1_000_003 + self.global_step))
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=len(batch))
        self.log_dict({f"train/{k}": v for k, v in out.items() if k != "loss"}, batch_size=len(batch))
        return out["loss"]

    def validation_step(self, batch: Batch, batch_idx: int):
        # the same noise every validation pass, so curves are comparable across epochs
        out = self._step(batch, torch.Generator().manual_seed(batch_idx))
        self.log("val/loss", out["loss"], prog_bar=True, batch_size=len(batch))
        self.log_dict({f"val/{k}": v for k, v in out.items() if k != "loss"}, batch_size=len(batch))

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ema.step(self.net.parameters())

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.net.named_parameters():
            (decay if p.ndim >= 2 and "emb" not in name else no_decay).append(p)
        hp = self.hparams
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            betas=tuple(hp.betas),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))

        def factor(step: int) -> float:
            if step < hp.warmup_steps:
                return (step + 1) / hp.warmup_steps
            progress = min(1.0, (step - hp.warmup_steps) / max(1, total - hp.warmup_steps))
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["unidiff"] = {"canvas": self.spec.to_dict(), "ema": self.ema.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint["unidiff"]
        if self.net is None:
            self.build(CanvasSpec.from_dict(extra["canvas"]))
        self.ema.load_state_dict(extra["ema"])

    def ema_state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA weights as a state dict of the backbone (what the bundle ships)."""
        names = [n for n, _ in self.net.named_parameters()]
        state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        for n, p in zip(names, self.ema.shadow_params):
            state[n] = p.detach().clone().to(state[n].dtype)
        return state

    def config_dict(self) -> dict:
        return {"backbone": asdict(self.backbone_cfg), "noise": asdict(self.noise_cfg)}


class UnidiffCLI(LightningCLI):
    """LightningCLI that logs to TensorBoard and CSV under ``trainer.default_root_dir`` and can
    resume with ``--ckpt_path`` (a path, or ``last``)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume from, or 'last'")

    def before_instantiate_classes(self) -> None:
        trainer = self.config.trainer
        if trainer.logger in (None, True):
            root = trainer.default_root_dir or os.getcwd()
            trainer.logger = [
                {"class_path": f"lightning.pytorch.loggers.{cls}", "init_args": {"save_dir": root, "name": name}}
                for cls, name in (("TensorBoardLogger", "logs"), ("CSVLogger", "csv"))
            ]


def cli_main(argv: list[str] | None = None) -> int:
    from unidiff.export import ExportBundle

    cli = UnidiffCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        run=False,
        save_config_kwargs={"overwrite": True},
    )
    for cb in cli.trainer.callbacks:
        if isinstance(cb, ExportBundle):
            cb.fit_config = cli.parser.dump(cli.config, format="yaml", skip_check=True)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    return 0

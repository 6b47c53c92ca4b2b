"""End-of-training export (the bundle of EMA weights plus the data module's task evaluation), and the
same task evaluation during training."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from unidiff.bundle import Unidiff, load_bundle, save_bundle
from unidiff.files import write_json_atomic


class ExportBundle(Callback):
    """Writes ``dirpath`` (default ``<default_root_dir>/bundle``) when fit ends, then evaluates
    the *loaded* bundle with the data module's ``evaluate`` and stores the result in its
    metrics.json — so the numbers describe exactly what ships.

    Args:
        dirpath: where the bundle goes.
        evaluate: run the task evaluation after export.
    """

    def __init__(self, dirpath: str | None = None, evaluate: bool = True) -> None:
        self.dirpath, self.evaluate = dirpath, evaluate
        self.fit_config: str | None = None  # filled in by `unidiff fit` with the resolved YAML

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        path = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "bundle"
        dm = trainer.datamodule
        metrics = {"train.global_step": int(trainer.global_step)}
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        save_bundle(
            path,
            pl_module.net,
            state_dict=pl_module.ema_state_dict(),
            tokenizers=dm.tokenizers(),
            metrics=metrics,
            fit_config=self.fit_config,
        )
        if self.evaluate:
            metrics.update(dm.evaluate(load_bundle(path, device=str(pl_module.device))))
            write_json_atomic(path / "metrics.json", metrics)
        rank_zero_info(f"bundle written to {path}\n{json.dumps(metrics, indent=2, sort_keys=True)}")


class EvaluateTasks(Callback):
    """Runs the data module's task evaluation on the current EMA weights every ``every_n_steps``
    training steps and logs it (``task/<metric>``), so a curve shows *when* a task is learnt
    (token accuracy can look fine long before, e.g., a policy binds its instruction to an object).

    Args:
        every_n_steps: evaluation period in optimizer steps.
        eval_args: keyword arguments of the data module's ``evaluate`` for these in-training
            evaluations, e.g. a smaller one (tabletop: ``{scenes: 100, episodes: 0}``).
    """

    def __init__(self, every_n_steps: int = 1000, eval_args: dict | None = None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps, self.eval_args = every_n_steps, dict(eval_args or {})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        last = trainer.max_steps > 0 and step >= trainer.max_steps  # ExportBundle evaluates that one
        if step % self.every_n_steps or step == 0 or last or not trainer.is_global_zero:
            return
        net = copy.deepcopy(pl_module.net)
        net.load_state_dict(pl_module.ema_state_dict())
        # the data module's settings, as a bundle's config records them (its decode settings, ...)
        config = {"fit_config": yaml.safe_dump({"data": {"init_args": dict(trainer.datamodule.hparams)}})}
        model = Unidiff(net.eval(), trainer.datamodule.tokenizers(), config, {}, Path(trainer.default_root_dir))
        metrics = trainer.datamodule.evaluate(model, **self.eval_args)
        numbers = {f"task/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for logger in trainer.loggers:  # straight to the loggers: log_every_n_steps must not drop them
            logger.log_metrics(numbers, step=step)
        rank_zero_info(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(numbers.items())))

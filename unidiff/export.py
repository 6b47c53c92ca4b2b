"""End-of-training export: the bundle (EMA weights) plus the data module's task evaluation."""
from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from unidiff.bundle import load_bundle, save_bundle, write_json_atomic


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

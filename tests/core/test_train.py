"""Training with the real Lightning Trainer: resume continues the same run; the CLI validates
config keys; loss goes down on a learnable toy mapping."""
import subprocess
import sys

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from unidiff.canvas import CanvasSpec
from unidiff.model import BackboneConfig
from unidiff.noise import NoiseConfig
from unidiff.train import CanvasDataModule, UnidiffModule
from unidiff.vocab import Vocab

SPEC = CanvasSpec(Vocab(text=8, image=8, state=1, action=1), text_len=4, image_hw=(2, 2))


class CopyData(CanvasDataModule):
    """Image = text shifted into the image range: a mapping a tiny model learns in seconds."""

    def __init__(self, size: int = 64, batch_size: int = 16) -> None:
        super().__init__(batch_size=batch_size)
        g = torch.Generator().manual_seed(0)
        items = []
        for _ in range(size):
            t = torch.randint(0, 8, (4,), generator=g)
            items.append({"tokens": {"text": SPEC.vocab.range("text")[0] + t, "image": SPEC.vocab.to_joint("image", t)}, "tasks": ("caption", "t2i")})
        self.train_set, self.val_set = items, items[:32]

    @property
    def spec(self) -> CanvasSpec:
        return SPEC


def _module(**kw):
    noise = NoiseConfig(tasks={"caption": 1.0, "t2i": 1.0}, condition_dropout=0.0)
    return UnidiffModule(backbone=BackboneConfig(width=32, depth=2, heads=2), noise=noise, warmup_steps=2, ema_decay=0.9, **kw)


def _trainer(root, max_steps, **kw):
    return L.Trainer(default_root_dir=root, max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


def test_resume_continues_the_same_run(tmp_path):
    L.seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_epochs=1, save_top_k=-1, filename="{step}")
    full = _module()
    _trainer(tmp_path, 8, callbacks=[ckpt]).fit(full, datamodule=CopyData())  # 4 steps per epoch
    L.seed_everything(0)
    resumed = _module()
    trainer = _trainer(tmp_path, 8)
    trainer.fit(resumed, datamodule=CopyData(), ckpt_path=tmp_path / "ck" / "step=4.ckpt")
    assert trainer.global_step == 8
    for (n, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), n
    for a, b in zip(full.ema.shadow_params, resumed.ema.shadow_params):
        assert torch.equal(a, b)
    assert full.ema.optimization_step == resumed.ema.optimization_step == 8
    sa, sb = full.optimizers().optimizer.state_dict()["state"], trainer.optimizers[0].state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)


def test_loss_goes_down(tmp_path):
    L.seed_everything(0)
    m = _module(lr=3e-3)
    dm = CopyData(size=256, batch_size=32)
    m.build(dm.spec)
    first = _trainer(tmp_path, 1).validate(m, datamodule=dm, verbose=False)[0]["val/loss"]
    trainer = _trainer(tmp_path, 200)
    trainer.fit(m, datamodule=dm)
    last = trainer.validate(m, datamodule=dm, verbose=False)[0]["val/loss"]
    assert last < 0.5 * first


def _fit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "unidiff.cli", "fit", *args], capture_output=True, text=True, cwd=cwd)


def test_misspelt_config_key_is_named(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "model:\n  class_path: unidiff.train.UnidiffModule\n  init_args:\n    backbon: {width: 32}\n"
        "data:\n  class_path: unidiff.synthetic.SyntheticDataModule\n"
    )
    r = _fit("--config", str(cfg), "--trainer.max_steps", "1")
    assert r.returncode != 0
    assert "backbon" in r.stderr


def test_fit_command_leaves_a_checkpoint_and_a_bundle(tmp_path):
    r = _fit("--config", "configs/synthetic-tiny.yaml", "--trainer.max_steps", "3", "--trainer.default_root_dir", str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert list(tmp_path.rglob("*.ckpt"))
    assert (tmp_path / "bundle" / "model.safetensors").is_file()
    assert "synthetic.caption.exact_match" in (tmp_path / "bundle" / "metrics.json").read_text()


class RecordingData(CopyData):
    """Records what EvaluateTasks hands to ``evaluate``: the step and the weights it saw."""

    def __init__(self, decode: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.calls, self.kwargs, self.data_configs = [], [], []

    def evaluate(self, model, **kw) -> dict:
        self.kwargs.append(kw)
        self.data_configs.append(model.data_config)
        self.calls.append({k: v.clone() for k, v in model.net.state_dict().items()})
        return {"copy.score": float(len(self.calls)), "copy.note": "not a number, not logged"}


def test_evaluate_tasks_runs_on_ema_weights_every_n_steps(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    from unidiff.export import EvaluateTasks

    class Snap(L.Callback):  # the EMA weights right after each step, as EvaluateTasks sees them
        def __init__(self):
            self.ema = {}

        def on_train_batch_end(self, trainer, pl_module, *args):
            self.ema[trainer.global_step] = pl_module.ema_state_dict()

    L.seed_everything(0)
    dm, snap, module = RecordingData(), Snap(), _module()
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=6, logger=CSVLogger(tmp_path), enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[snap, EvaluateTasks(every_n_steps=2)])
    trainer.fit(module, datamodule=dm)
    assert len(dm.calls) == 2  # steps 2 and 4; the last step is left to ExportBundle
    for got, step in zip(dm.calls, (2, 4)):
        for name, value in snap.ema[step].items():
            assert torch.equal(got[name], value), name
    assert not all(torch.equal(a, b) for a, b in zip(dm.calls[-1].values(), module.net.state_dict().values()))  # EMA, not live weights
    import csv

    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    logged = [float(r["task/copy.score"]) for r in rows if r.get("task/copy.score")]
    assert logged == [1.0, 2.0]


def test_evaluate_tasks_passes_its_eval_args(tmp_path):
    from unidiff.export import EvaluateTasks

    dm = RecordingData(decode={"text": {"text_block": 2}})
    _trainer(tmp_path, 3, callbacks=[EvaluateTasks(every_n_steps=1, eval_args={"scenes": 3, "episodes": 0})]).fit(_module(), datamodule=dm)
    assert dm.kwargs == [{"scenes": 3, "episodes": 0}] * 2  # steps 1 and 2
    # the in-training model reports the data module's settings as a bundle would (e.g. how it decodes)
    assert dm.data_configs[0]["decode"] == {"text": {"text_block": 2}}


def test_evaluate_tasks_rejects_a_bad_period():
    from unidiff.export import EvaluateTasks

    with pytest.raises(ValueError, match="every_n_steps"):
        EvaluateTasks(every_n_steps=0)


class BinnedCopyData(CopyData):
    """CopyData that also carries a (bin) tokenizer, fit on ``scale``-scaled values."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        from unidiff.tokenize.bins import BinTokenizer

        self.bins = BinTokenizer("action", 8).fit(scale * torch.linspace(-1, 1, 64).reshape(32, 2).numpy())

    def tokenizers(self) -> dict:
        return {"action": self.bins}


def _stage1_bundle(tmp_path):
    from unidiff.bundle import save_bundle

    L.seed_everything(0)
    m, dm = _module(), BinnedCopyData()
    _trainer(tmp_path / "stage1", 8).fit(m, datamodule=dm)
    return save_bundle(tmp_path / "stage1" / "bundle", m.net, state_dict=m.ema_state_dict(), tokenizers=dm.tokenizers())


def test_init_from_starts_a_second_stage_from_the_bundle_weights(tmp_path):
    from unidiff.bundle import load_bundle

    path = _stage1_bundle(tmp_path)
    shipped = load_bundle(path).net.state_dict()
    fresh = _module()
    fresh.build(SPEC)
    assert any(not torch.equal(a, shipped[n]) for n, a in fresh.net.state_dict().items())  # the test can fail
    m = _module(init_from=str(path), lr=0.0)  # lr 0: the one step leaves the initial weights as they are
    _trainer(tmp_path / "stage2", 1).fit(m, datamodule=BinnedCopyData())
    for n, a in m.net.state_dict().items():
        assert torch.equal(a, shipped[n]), n
    for (n, _), p in zip(m.net.named_parameters(), m.ema.shadow_params):
        assert torch.equal(p, shipped[n]), n


@pytest.mark.parametrize("width, scale, match", [(16, 1.0, "backbone"), (32, 2.0, "action tokenizer")])
def test_init_from_refuses_another_backbone_or_tokenizer(tmp_path, width, scale, match):
    path = _stage1_bundle(tmp_path)
    m = UnidiffModule(backbone=BackboneConfig(width=width, depth=2, heads=2), noise=NoiseConfig(tasks={"caption": 1.0, "t2i": 1.0}),
                      init_from=str(path))
    with pytest.raises(ValueError, match=match):
        _trainer(tmp_path / "stage2", 1).fit(m, datamodule=BinnedCopyData(scale))

"""Checkpoint bundle: one directory that holds everything a trained model needs, loaded without
unpickling.

    model.safetensors   backbone weights (EMA)
    config.yaml         format version, canvas spec, backbone config, the full resolved fit config,
                        and a sha256 of every other file (tampering and truncation are caught)
    tokenizers/         the tokenizers (text tokenizer.json, VQ safetensors + JSON, bin edges)
    metrics.json        evaluation results (may be rewritten by later evaluations; not checksummed)

Bundles are written to a temporary sibling directory and renamed into place, so an interrupted
export never leaves a half-written bundle.

The trained tabletop bundle ships inside the package at ``unidiff/assets/tabletop/`` (package
data, so a non-editable install carries it); :func:`shipped_bundle_path` finds it.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

import unidiff
from unidiff.canvas import CanvasSpec
from unidiff.files import atomic_dir, sha256_file, write_json_atomic
from unidiff.model import Backbone, BackboneConfig

REQUIRED = ("model.safetensors", "config.yaml")
SHIPPED_BUNDLE = Path(__file__).resolve().parent / "assets" / "tabletop"


class BundleError(RuntimeError):
    """A bundle that is missing, incomplete, modified or from an incompatible version."""


def shipped_bundle_path() -> Path:
    """The tabletop bundle installed with the package (``unidiff/assets/tabletop``).

    Raises :class:`BundleError` when this install carries none, saying how to get one."""
    path = SHIPPED_BUNDLE
    if not all((path / name).is_file() for name in REQUIRED):
        raise BundleError(
            f"no shipped bundle at {path}: this unidiff install carries no trained tabletop bundle. "
            "Pass a bundle directory instead (e.g. --ckpt runs/tabletop/bundle, written by "
            "`unidiff fit --config configs/tabletop.yaml`), or copy one there and reinstall."
        )
    return path


def save_bundle(
    path: str | os.PathLike,
    net: Backbone,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
    tokenizers: dict | None = None,
    metrics: dict | None = None,
    fit_config: str | None = None,
) -> Path:
    """Write a bundle for ``net`` (or ``state_dict``, e.g. EMA weights, in ``net``'s layout)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        state = state_dict if state_dict is not None else net.state_dict()
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp / "model.safetensors")
        if tokenizers:
            from unidiff.tokenize import save_tokenizers

            save_tokenizers(tmp / "tokenizers", tokenizers)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        config = {
            "format_version": unidiff.BUNDLE_FORMAT_VERSION,
            "unidiff_version": unidiff.__version__,
            "canvas": net.spec.to_dict(),
            "backbone": asdict(net.cfg),
            "files": {f: sha256_file(tmp / f) for f in files},
            "fit_config": fit_config,
        }
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        write_json_atomic(tmp / "metrics.json", metrics or {})
    return path


@dataclass
class Unidiff:
    """A loaded bundle: the backbone (eval mode), its canvas, tokenizers, config and metrics."""

    net: Backbone
    tokenizers: dict
    config: dict
    metrics: dict
    path: Path
    spec: CanvasSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = self.net.spec

    @cached_property
    def fit_config(self) -> dict:
        """The resolved `unidiff fit` config the bundle was trained with; {} when it records none.
        Parsed once: tasks read their decode settings from it on every call (~10 ms a parse)."""
        text = self.config.get("fit_config")
        try:
            fit = yaml.safe_load(text) if isinstance(text, str) else None
        except yaml.YAMLError:
            return {}
        return fit if isinstance(fit, dict) else {}

    @property
    def data_config(self) -> dict:
        """``init_args`` of the data module the bundle was trained with (image_size, horizon,
        eval_env, decode_steps, ...) from its resolved fit config; {} when it records none."""
        data = self.fit_config.get("data")
        args = data.get("init_args") if isinstance(data, dict) else None
        return dict(args) if isinstance(args, dict) else {}

    def caption(self, images, **kw) -> list[str]:
        """uint8 (H, W, 3) images -> captions (see :func:`unidiff.tasks.caption`)."""
        from unidiff.tasks import caption

        return caption(self, images, **kw)

    def generate(self, prompts, **kw):
        """Prompts -> uint8 (H, W, 3) images (see :func:`unidiff.tasks.generate`)."""
        from unidiff.tasks import generate

        return generate(self, prompts, **kw)

    def policy(self, **kw):
        """A :class:`unidiff.tasks.DiffusionPolicy` with ``reset()`` / ``select_action(obs)``."""
        from unidiff.tasks import DiffusionPolicy

        return DiffusionPolicy(self, **kw)


def load_bundle(path: str | os.PathLike, *, device: str = "cpu") -> Unidiff:
    """Load and verify a bundle: every file present and matching its checksum, a format this
    version reads, weights that fit the config.  Each failure is a :class:`BundleError` that says
    what is wrong and what to do."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(
            f"no bundle at {path}: expected a directory with {', '.join(REQUIRED)} "
            "(written at the end of `unidiff fit`, under <default_root_dir>/bundle)"
        )
    for name in REQUIRED:
        if not (path / name).is_file():
            raise BundleError(f"bundle {path} is incomplete: {name} is missing; re-export it from a training checkpoint")
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise BundleError(f"bundle {path}: config.yaml is not valid YAML ({e})") from e
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != unidiff.BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"bundle {path} has format_version {version!r} (written by unidiff {config.get('unidiff_version') if isinstance(config, dict) else '?'}); "
            f"this unidiff {unidiff.__version__} reads format {unidiff.BUNDLE_FORMAT_VERSION}. "
            "Install the unidiff version that wrote it, or retrain/re-export with this one."
        )
    for name, digest in config["files"].items():
        f = path / name
        if not f.is_file():
            raise BundleError(f"bundle {path} is incomplete: {name} is missing")
        if sha256_file(f) != digest:
            raise BundleError(f"bundle {path}: {name} does not match its checksum (modified or corrupted); re-export the bundle")
    spec = CanvasSpec.from_dict(config["canvas"])
    net = Backbone(spec, BackboneConfig(**config["backbone"]))
    state = load_file(path / "model.safetensors")
    missing, unexpected = set(net.state_dict()) - set(state), set(state) - set(net.state_dict())
    if missing or unexpected:
        raise BundleError(f"bundle {path}: weights do not fit the config (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    net.load_state_dict(state)
    net.to(device).eval()
    tokenizers = {}
    if (path / "tokenizers").is_dir():
        from unidiff.tokenize import load_tokenizers

        tokenizers = load_tokenizers(path / "tokenizers")
    metrics_path = path / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return Unidiff(net, tokenizers, config, metrics, path)

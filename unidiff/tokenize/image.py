"""Image tokenizer: a diffusers ``VQModel`` that turns an RGB image into an ``h x w`` grid of
codebook ids and back.  Trained by :mod:`unidiff.tokenize.vq_train`; stored as JSON config +
safetensors weights."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import VQModel
from safetensors.torch import load_file, save_file

from unidiff.tokenize.base import Tokenizer


@dataclass
class VQConfig:
    """Architecture of the VQ-VAE.  The grid is ``size / 2**(len(block_out_channels)-1)`` a side."""

    size: int = 64
    block_out_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    layers_per_block: int = 1
    latent_channels: int = 8
    num_vq_embeddings: int = 256
    norm_num_groups: int = 8
    mid_block_add_attention: bool = False

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.size // self.downsample, self.size // self.downsample

    def build(self) -> VQModel:
        if self.size % self.downsample:
            raise ValueError(f"image size {self.size} must be divisible by the downsample factor {self.downsample}")
        n = len(self.block_out_channels)
        return VQModel(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            vq_embed_dim=self.latent_channels,
            num_vq_embeddings=self.num_vq_embeddings,
            norm_num_groups=self.norm_num_groups,
            mid_block_add_attention=self.mid_block_add_attention,
            sample_size=self.size,
        )


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], the VQ's input range."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class ImageTokenizer(Tokenizer):
    """``encode``: uint8 (B,H,W,3) or (H,W,3) -> int64 (B,h,w) local codes; ``decode`` the inverse."""

    modality = "image"

    def __init__(self, config: VQConfig, model: VQModel | None = None) -> None:
        self.config = config
        self.model = (model or config.build()).eval()

    @property
    def vocab_size(self) -> int:
        return self.config.num_vq_embeddings

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.config.grid_shape

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _check_images(self, images) -> torch.Tensor:
        expected = f"uint8 images of shape (B, {self.config.size}, {self.config.size}, 3) or ({self.config.size}, {self.config.size}, 3)"
        x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected {expected}, got {type(images).__name__}")
        if x.dtype != torch.uint8:
            raise TypeError(f"expected {expected}, got dtype {x.dtype}")
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3 or tuple(x.shape[1:3]) != (self.config.size, self.config.size):
            raise ValueError(f"expected {expected}, got shape {tuple(images.shape)}")
        return x

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        x = to_unit(self._check_images(images).to(self.device))
        h = self.model.encode(x).latents
        _, _, (_, _, idx) = self.model.quantize(h)
        return idx.reshape(h.shape[0], h.shape[2], h.shape[3]).long().cpu()

    @torch.no_grad()
    def decode(self, codes) -> torch.Tensor:
        codes = torch.as_tensor(codes)
        gh, gw = self.grid_shape
        if codes.ndim == 2:
            codes = codes[None]
        if codes.dtype.is_floating_point or codes.ndim != 3 or tuple(codes.shape[1:]) != (gh, gw):
            raise ValueError(f"expected integer codes of shape (B, {gh}, {gw}) or ({gh}, {gw}), got {codes.dtype} {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.vocab_size):
            raise ValueError(f"image codes must lie in [0, {self.vocab_size}); got [{int(codes.min())}, {int(codes.max())}]")
        codes = codes.long().to(self.device)
        b = codes.shape[0]
        quant = self.model.quantize.get_codebook_entry(codes.reshape(-1), (b, gh, gw, self.config.latent_channels))
        x = self.model.decode(quant, force_not_quantize=True).sample
        return to_uint8(x).cpu()

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vq.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, directory / "vq.safetensors")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ImageTokenizer":
        directory = Path(directory)
        config = VQConfig(**json.loads((directory / "vq.json").read_text()))
        model = config.build()
        model.load_state_dict(load_file(directory / "vq.safetensors"))
        return cls(config, model)

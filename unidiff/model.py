"""The backbone: one bidirectional transformer over the whole canvas.

Nothing task-specific lives here.  Input: joint token ids and each position's role; output:
hidden states, and per-modality logits restricted to the ids that modality may emit (a text slot
never emits an image code).  Positions carry a modality embedding plus factorised 2-D (row,
column) embeddings of their segment's grid, so images are 2-D and action chunks are steps x dims.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp, RmsNorm
from torch import nn

from unidiff.canvas import CanvasSpec, Role, attention_mask
from unidiff.vocab import MODALITIES


@dataclass
class BackboneConfig:
    """Transformer size.  ``causal=True`` gives the autoregressive twin of the same backbone."""

    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    causal: bool = False
    tie_embeddings: bool = False  # untied learned faster on the synthetic world (image codes are inputs and outputs)
    # init std of the token, modality and 2-D position embeddings (linear layers: 0.02).  The
    # synthetic recipe uses 0.1: at 0.02 its policy bound the instruction to an object after ~1,500
    # to ~3,500 steps depending on the draw, at 0.1 after ~1,000 to ~2,000.  On the tabletop recipe
    # (lr 2e-3) 0.1 was worse at 1,000 steps, so the default stays GPT-2's 0.02 (README).
    embed_std: float = 0.02
    # rotary position embedding of queries and keys by canvas index (on top of the learned
    # embeddings): attention can then depend on how far apart two positions are -- what a masked
    # caption word needs to find the words before it, i.e. which object of the list it names.
    rope: bool = False
    rope_base: float = 10_000.0

    def __post_init__(self) -> None:
        if self.embed_std <= 0:
            raise ValueError(f"backbone.embed_std must be > 0, got {self.embed_std}")
        if self.width % self.heads:
            raise ValueError(f"backbone.width ({self.width}) must be divisible by backbone.heads ({self.heads})")
        if self.rope and (self.width // self.heads) % 2:
            raise ValueError(f"backbone.rope needs an even head width, got width {self.width} / heads {self.heads}")
        if self.rope_base <= 1.0:
            raise ValueError(f"backbone.rope_base must be > 1, got {self.rope_base}")
        if self.depth < 1:
            raise ValueError(f"backbone.depth must be >= 1, got {self.depth}")


def rope_angles(positions: torch.Tensor, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the rotary embedding of ``positions``: (L, dim) each, halves repeated."""
    freqs = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = positions.double().unsqueeze(1) * freqs.unsqueeze(0)
    angles = torch.cat([angles, angles], dim=1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., L, dim) queries or keys by their positions' angles (rotate-half form)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class KVCache:
    """Per-layer keys/values of positions run earlier (a decoder's condition, an AR prefix), kept
    in buffers with ``room`` for more.  A :meth:`Backbone.run` against the cache writes its own
    keys/values right after the kept ones -- no concatenation, so a step costs what its own
    positions cost -- and attends to both.  :meth:`keep` makes the last run's part of the prefix
    (an autoregressive step); without it the next run overwrites them (a diffusion step)."""

    def __init__(self, kvs: list[tuple[torch.Tensor, torch.Tensor]], room: int) -> None:
        B, H, n, D = kvs[0][0].shape
        self.k, self.v = [], []
        for k, v in kvs:
            self.k.append(k.new_empty(B, H, n + room, D))
            self.v.append(v.new_empty(B, H, n + room, D))
            self.k[-1][:, :, :n], self.v[-1][:, :, :n] = k, v
        self.length, self.written = n, 0

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    def attend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write a run's keys/values of ``layer`` after the kept ones -> the keys/values to attend to."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KVCache holds {self.capacity} positions; {self.length} kept + {k.shape[2]} new do not fit")
        self.k[layer][:, :, self.length : end], self.v[layer][:, :, self.length : end] = k, v
        self.written = k.shape[2]
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def keep(self) -> None:
        """Make the last run's keys/values part of the prefix."""
        self.length, self.written = self.length + self.written, 0


class SelfAttention(nn.Module):
    """Multi-head attention with QK-norm; can attend to a :class:`KVCache` (``attend``) too."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RmsNorm(dim // heads)
        self.k_norm = RmsNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, x, rope=None):
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def kv(self, x, rope=None):
        """Keys and values only (what a cache keeps of a layer nothing later reads the output of)."""
        _, k, v = self._qkv(x, rope)
        return k, v

    def forward(self, x, mask, attend=None, outputs=None, rope=None):
        """``outputs``: only the last this many positions query (all of them still give keys/values).
        ``rope``: (cos, sin) of these positions, for a backbone with rotary embeddings."""
        q, k, v = self._qkv(x, rope)
        kv = (k, v)
        if outputs is not None:
            q, mask = q[:, :, -outputs:], None if mask is None else mask[:, -outputs:]
        if attend is not None:
            k, v = attend(k, v)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if mask is None else mask.unsqueeze(1), dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(rearrange(out, "b h l d -> b l (h d)")), kv


class Block(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.norm1 = RmsNorm(cfg.width)
        self.attn = SelfAttention(cfg.width, cfg.heads, cfg.dropout)
        self.norm2 = RmsNorm(cfg.width)
        self.mlp = Mlp(cfg.width, int(cfg.width * cfg.mlp_ratio), act_layer=nn.GELU, drop=cfg.dropout)

    def forward(self, x, mask, attend=None, outputs=None, rope=None):
        """-> (hidden states of the last ``outputs`` positions (None: all; 0: none), (keys, values))."""
        if outputs == 0:
            return x[:, :0], self.attn.kv(self.norm1(x), rope)
        a, kv = self.attn(self.norm1(x), mask, attend, outputs, rope)
        x = (x if outputs is None else x[:, -outputs:]) + a
        return x + self._mlp(self.norm2(x)), kv

    def _mlp(self, x):
        """timm's Mlp; without dropout through its two linears and activation alone: its forward
        also calls two dropouts and a norm that are identities then (no ``norm_layer``), module calls
        that count at batch 1, where a decoding step is bound by per-call costs (README, fast decoding)."""
        m = self.mlp
        return m(x) if self.training and m.drop1.p else m.fc2(m.act(m.fc1(x)))


_COMPUTE = object()  # run(mask=...) not given: compute it (None is a valid mask: nothing hidden)


class Backbone(nn.Module):
    def __init__(self, spec: CanvasSpec, cfg: BackboneConfig) -> None:
        super().__init__()
        self.spec, self.cfg = spec, cfg
        d = cfg.width
        self.tok_emb = nn.Embedding(spec.vocab.size, d)
        self.mod_emb = nn.Embedding(len(MODALITIES), d)
        rows, cols = spec.grid_positions
        seg = spec.segment_ids
        row_off = torch.tensor([0] + [s.rows for s in spec.segments]).cumsum(0)
        col_off = torch.tensor([0] + [s.cols for s in spec.segments]).cumsum(0)
        self.row_emb = nn.Embedding(int(row_off[-1]), d)
        self.col_emb = nn.Embedding(int(col_off[-1]), d)
        self.register_buffer("pos_row", rows + row_off[seg], persistent=False)
        self.register_buffer("pos_col", cols + col_off[seg], persistent=False)
        self.register_buffer("pos_mod", spec.modality_ids.clone(), persistent=False)
        if cfg.rope:
            cos, sin = rope_angles(torch.arange(spec.length), d // cfg.heads, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        for m in spec.modalities:
            self.register_buffer(f"out_ids_{m}", spec.vocab.output_ids(m), persistent=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = RmsNorm(d)
        self.head = None if cfg.tie_embeddings else nn.Linear(d, spec.vocab.size, bias=False)
        self.apply(self._init)
        for emb in (self.tok_emb, self.mod_emb, self.row_emb, self.col_emb):
            nn.init.normal_(emb.weight, std=cfg.embed_std)
        # every linear weight of the blocks is stored column-major (its transpose row-major), so that
        # F.linear hands BLAS a row-major matrix: at decoding sizes (tens of rows) MKL multiplies by a
        # transposed one about 2.5x slower on some CPUs (README, fast decoding).  The same values and
        # state dict; load_state_dict, deep copies, EMA and optimisers keep the layout.
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                m.weight = nn.Parameter(m.weight.detach().t().contiguous().t())

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def output_ids(self, modality: str) -> torch.Tensor:
        """Joint ids behind the columns of :meth:`logits` for this modality."""
        return getattr(self, f"out_ids_{modality}")

    def position_embedding(self, positions: torch.Tensor) -> torch.Tensor:
        """Modality + 2-D position embedding of canvas ``positions`` (indices into its layout)."""
        return self.mod_emb(self.pos_mod[positions]) + self.row_emb(self.pos_row[positions]) + self.col_emb(self.pos_col[positions])

    def embed(self, tokens: torch.Tensor, positions: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """Token + position embedding; ``pos``: :meth:`position_embedding` of ``positions``, if known."""
        return self.tok_emb(tokens) + (self.position_embedding(positions) if pos is None else pos)

    def attention(self, positions, pos_roles, prefix_positions=None):
        """The attention mask of a :meth:`run` over ``positions`` (after a prefix at
        ``prefix_positions``, whose roles come first in ``pos_roles``): (B, queries, keys) bool."""
        if not self.cfg.causal:
            mask = attention_mask(pos_roles)
        elif prefix_positions is None:
            mask = attention_mask(pos_roles, causal=True, positions=positions)
        else:
            mask = attention_mask(pos_roles, causal=True, positions=torch.cat([prefix_positions, positions]))
        return mask[:, -positions.shape[0] :]

    def run(self, tokens, positions, pos_roles, prefix=None, prefix_positions=None, mask=_COMPUTE, outputs=None, pos=None):
        """Transformer over a subset of canvas positions.  ``prefix``: a :class:`KVCache` of positions
        computed earlier (the cached condition) that these positions may attend to; their roles come
        first in ``pos_roles``.  Returns final hidden states and the per-layer (k, v) of this run.
        A causal backbone ranks keys by canvas position, so with a prefix it also needs the
        prefix's canvas indices, ``prefix_positions``.  ``mask``: :meth:`attention` of these
        arguments, for a caller that runs them many times (a decoder, once per step), or None for
        no mask at all (where it would hide nothing: attention then takes its unmasked path).
        ``outputs``: return the hidden states of only the last this many positions (None: all), so
        the last layer computes queries and MLP for those alone -- an AR prefill reads only its last
        position; ``outputs=0`` (no prefix) wants only the keys/values, a new cache of positions
        whose outputs nobody reads, and the last layer stops there.  ``pos``: :meth:`position_embedding`
        of ``positions``, for a caller that runs the same positions many times (a decoder)."""
        if self.cfg.causal and prefix is not None and prefix_positions is None:
            raise ValueError("a causal backbone with a prefix needs prefix_positions (the prefix's canvas indices)")
        if outputs is not None and not 0 <= outputs <= len(positions):
            raise ValueError(f"outputs must be in [0, {len(positions)}] (the positions run) or None, got {outputs}")
        if outputs == 0 and prefix is not None:
            raise ValueError("outputs=0 computes the keys/values of a new cache; it takes no prefix")
        if mask is _COMPUTE:
            mask = self.attention(positions, pos_roles, prefix_positions if prefix is not None else None)
        x = self.embed(tokens, positions, pos)
        rope = (self.rope_cos[positions], self.rope_sin[positions]) if self.cfg.rope else None
        kvs = []
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x, kv = block(x, mask, None if prefix is None else partial(prefix.attend, i), outputs if last else None, rope)
            kvs.append(kv)
        return self.norm(x), kvs

    def runner(self, compiled: bool = False):
        """:meth:`run`, or (``compiled``) :meth:`run` through ``torch.compile``.

        A decoding step at batch 1 is bound by the per-call cost of its many small operators; the
        compiled run fuses each layer's norms, activations and reshapes into a few kernels.  It
        compiles once per model, input shape and argument pattern (seconds on a CPU, the first
        time each is seen), so it pays off for a decoder called many times with the same shapes
        (a policy).  Nothing is stored on the module (a deep copy stays an independent model)."""
        return partial(_compiled_run(), self) if compiled else self.run

    def forward(self, tokens: torch.Tensor, pos_roles: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens and roles -> (B, L, width) hidden states.

        Positions that are ABSENT in every row of the batch are dropped before the transformer
        (they cost no compute) and come back as zeros.
        """
        B, L = tokens.shape
        if L != self.spec.length:
            raise ValueError(f"expected a canvas of length {self.spec.length}, got {L}")
        keep = (pos_roles != Role.ABSENT).any(0)
        if bool(keep.all()):
            return self.run(tokens, torch.arange(L, device=tokens.device), pos_roles)[0]
        idx = keep.nonzero().squeeze(1)
        h = self.run(tokens[:, idx], idx, pos_roles[:, idx])[0]
        out = h.new_zeros(B, L, h.shape[-1])
        out[:, idx] = h
        return out

    def output_head(self, modality: str) -> torch.Tensor:
        """(width, n_ids) output weights of ``modality``'s ids, transposed and row-major (for the reason
        the blocks' weights are stored column-major), so that ``hidden @ head`` are its logits (a
        decoder takes it once per call)."""
        weight = self.tok_emb.weight if self.head is None else self.head.weight
        return weight[self.output_ids(modality)].T.contiguous()

    def logits(self, hidden: torch.Tensor, modality: str, head: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states of ``modality`` positions -> logits over that modality's output ids only.
        ``head``: :meth:`output_head` of the modality, when the caller already holds it."""
        return hidden @ (self.output_head(modality) if head is None else head)


@cache
def _compiled_run():
    """:meth:`Backbone.run` compiled once per process; dynamo keeps an entry per model and shape.
    Inductor's C++ wrapper calls each compiled graph's kernels from C++ instead of Python, which
    counts at batch 1 where a decoding step is a few dozen small kernels (README, fast decoding)."""
    # one entry per (model, task, batch size, cached/full/build) pattern: more than dynamo's default 8
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(Backbone.run, options={"cpp_wrapper": True})

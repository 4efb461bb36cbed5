"""A minimal GPT for ablations and the example trainers: small, plain and deterministic on CPU.

Learned positions, pre-norm blocks (causal self-attention through
``F.scaled_dot_product_attention``, a GELU MLP), no dropout, and the output head tied to the
token embedding. Nothing here is tuned for speed: an ablation compares datasets with one fixed
model, so the model only has to be the same for every dataset and cheap enough for a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from thresher.ablate.config import ModelConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """``forward(idx)`` → logits ``[batch, time, vocab]`` for int64 ids ``[batch, time]``."""

    def __init__(self, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(cfg.seq_len, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.apply(self._init)
        # GPT-2's scaling of the residual projections: the residual stream's variance stays put
        # as depth grows
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)  # the embedding is also the head: small logits
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.embed(idx) + self.pos[: idx.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.norm(h) @ self.embed.weight.T

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: matrices decay, biases, norms and positions do not."""
        decay = [p for p in self.parameters() if p.dim() >= 2 and p is not self.pos]
        rest = [p for p in self.parameters() if p.dim() < 2 or p is self.pos]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]

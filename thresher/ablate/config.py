"""What an ablation holds fixed: every hyperparameter is a field here and is written into the
report, so two ablations are comparable only when these agree, and a resumed one refuses to
continue under different settings.

The model is the same for every candidate dataset (same width, depth, context, seed, steps,
batch, optimiser); only the training tokens differ. That is the point of the exercise: the loss
differences are the data's doing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from thresher.errors import UsageError

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ModelConfig:
    """A small GPT: learned positions, pre-norm blocks, tied input/output embedding."""

    dim: int = 128
    layers: int = 4
    heads: int = 4
    seq_len: int = 128
    mlp_ratio: int = 4


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-3
    """Peak learning rate, reached after ``warmup_steps`` and decayed on a cosine to ``min_lr_ratio`` of
    it. On bench/ablation.py's tiny model 3e-3 made the loss on the same data differ by 0.43 nats
    between two seeds; 1e-3 by 0.03, with lower losses."""
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50
    """Steps between checkpoints (model, optimiser, RNG states, loader position)."""


@dataclass(frozen=True)
class DataConfig:
    vocab_size: int = 4096
    tokenizer_sample_bytes: int = 20_000_000
    """Text the shared tokenizer is trained on, split evenly between the runs (each run's share
    taken in a seeded hash order of its document ids)."""
    min_frequency: int = 2
    token_budget: int | None = None
    """Training tokens per run; None: the smallest run's token count, so every model sees the same
    amount of data and only its content differs."""


@dataclass(frozen=True)
class AblationConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    device: str = "cpu"
    threads: int | None = None
    """CPU threads for torch (None: torch's default). CPU results are reproducible for a given
    seed and thread count."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        m, t, d = self.model, self.train, self.data
        positive = {
            "dim": m.dim,
            "layers": m.layers,
            "heads": m.heads,
            "seq_len": m.seq_len,
            "mlp_ratio": m.mlp_ratio,
            "steps": t.steps,
            "batch_size": t.batch_size,
            "checkpoint_every": t.checkpoint_every,
            "tokenizer_sample_bytes": d.tokenizer_sample_bytes,
            "min_frequency": d.min_frequency,
        }
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")
        if m.dim % m.heads:
            raise UsageError(f"dim {m.dim} must be a multiple of heads {m.heads}")
        if t.lr <= 0 or t.warmup_steps < 0 or not 0 <= t.min_lr_ratio <= 1:
            raise UsageError(f"lr > 0, warmup_steps >= 0 and 0 <= min_lr_ratio <= 1; got {t}")
        if t.weight_decay < 0 or t.grad_clip < 0:
            raise UsageError("weight_decay and grad_clip must not be negative")
        if d.vocab_size < 257 or d.vocab_size > 65536:
            raise UsageError(f"vocab_size must be in [257, 65536], got {d.vocab_size}")
        if d.token_budget is not None and d.token_budget < 1:
            raise UsageError(f"token_budget must be at least 1, got {d.token_budget}")
        if self.device not in DEVICES:
            raise UsageError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AblationConfig:
        return cls(
            model=ModelConfig(**d["model"]),
            train=TrainConfig(**d["train"]),
            data=DataConfig(**d["data"]),
            device=d["device"],
            threads=d.get("threads"),
        )

    def training_hash(self) -> str:
        """What a checkpoint must agree with to be resumed: everything but the device and threads
        (a CPU run may be finished on a GPU, at the cost of bit-exactness)."""
        keep = {k: v for k, v in self.to_dict().items() if k not in ("device", "threads")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]

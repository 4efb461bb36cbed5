"""Training one ablation model on one candidate's tokens, resumably, and evaluating it.

Every model starts from the same weights (``torch.manual_seed(seed)`` right before it is built,
and every candidate shares the tokenizer, hence the vocabulary) and sees batches from a
:class:`TokenLoader` seeded alike, with ``tail="drop"`` so every step holds exactly
``batch_size * seq_len`` real tokens. On CPU, ``torch.use_deterministic_algorithms(True)``, one
loading process and one decoding thread make the losses a function of the data, the config and
the thread count.

A checkpoint (model, optimiser, step, losses so far, wall time, torch's RNG states and the
loader's position) is written atomically every ``checkpoint_every`` steps; a process killed at
any point resumes from the last one and ends with the same weights as one that never stopped,
since the learning rate is a function of the step and the loader continues with the next batch.
When training ends, ``result.json`` and the final weights are written and the checkpoint removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from thresher.ablate.config import AblationConfig, TrainConfig
from thresher.ablate.model import GPT
from thresher.ablate.reference import EvalSource
from thresher.errors import RESUME_MISMATCH, InputProblem, MissingDependency, ThresherError
from thresher.io import atomic_path, write_json_atomic
from thresher.shards.torch import TokenDataset, TokenLoader

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
MODEL = "model.pt"
EVAL_BATCH = 16


class CheckpointMismatch(ThresherError):
    """A checkpoint written under other settings than the ones asked for now."""

    exit_code = RESUME_MISMATCH
    prefix = "resume error: "


@dataclass
class TrainResult:
    steps: int
    tokens_seen: int
    epochs: float
    parameters: int
    seconds: float
    device: str
    train_loss: float
    """Mean training loss over the last 10% of steps (at least one)."""
    losses: list[float] = field(default_factory=list)
    """Training loss at every step."""
    sessions: int = 1
    """Processes that trained this model (more than one after a resume)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr``, then a cosine down to ``min_lr_ratio * lr`` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise MissingDependency("--device cuda: torch sees no CUDA device here (use --device cpu)")
    return torch.device(device)


@contextlib.contextmanager
def reproducible(cfg: AblationConfig) -> Iterator[None]:
    """Deterministic kernels on CPU and the configured thread count, restored afterwards (the
    settings are process-wide and the caller may be a notebook or a test session)."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.device == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


def build_model(vocab_size: int, cfg: AblationConfig, device: torch.device) -> GPT:
    torch.manual_seed(cfg.train.seed)  # the same initial weights for every candidate
    return GPT(vocab_size, cfg.model).to(device)


def _loader(tokens_dir: Path, cfg: AblationConfig) -> TokenLoader:
    data = TokenDataset(
        tokens_dir,
        cfg.model.seq_len,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        tail="drop",
        read_threads=1,
    )
    loader = TokenLoader(data, num_workers=0)
    if len(loader) == 0:
        need = cfg.train.batch_size * (cfg.model.seq_len + 1)
        raise InputProblem(
            f"{tokens_dir}: {data.corpus.total_tokens} training tokens, fewer than one batch "
            f"({need}); lower batch_size or seq_len or raise the token budget"
        )
    return loader


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def train_model(
    tokens_dir: Path,
    vocab_size: int,
    cfg: AblationConfig,
    work_dir: Path,
    *,
    on_checkpoint: Callable[[int], None] | None = None,
) -> tuple[GPT, TrainResult]:
    """Train (or resume, or load when finished) the model of one candidate in ``work_dir``.

    ``on_checkpoint(step)`` is called after each checkpoint is on disk (progress reporting)."""
    device = resolve_device(cfg.device)
    work_dir.mkdir(parents=True, exist_ok=True)
    result_path, model_path = work_dir / RESULT, work_dir / MODEL
    with reproducible(cfg):
        model = build_model(vocab_size, cfg, device)
        if result_path.is_file() and model_path.is_file():
            saved = json.loads(result_path.read_text(encoding="utf-8"))
            _check_hash(saved.get("config_hash"), cfg, result_path)
            model.load_state_dict(torch.load(model_path, map_location=device, weights_only=True))
            logger.info("ablate: %s already trained", work_dir.name)
            return model, TrainResult(**saved["result"])
        return model, _train(model, tokens_dir, cfg, device, work_dir, on_checkpoint)


def _check_hash(saved: str | None, cfg: AblationConfig, path: Path) -> None:
    if saved != cfg.training_hash():
        raise CheckpointMismatch(
            f"{path} was written with other ablation settings; use the same settings or another --output"
        )


def _train(
    model: GPT,
    tokens_dir: Path,
    cfg: AblationConfig,
    device: torch.device,
    work_dir: Path,
    on_checkpoint: Callable[[int], None] | None,
) -> TrainResult:
    t = cfg.train
    loader = _loader(tokens_dir, cfg)
    opt = torch.optim.AdamW(model.optimizer_groups(t.weight_decay), lr=t.lr, betas=(0.9, 0.95))
    step, tokens, losses, elapsed, sessions = 0, 0, [], 0.0, 1
    ckpt_path = work_dir / CHECKPOINT
    if ckpt_path.is_file():
        saved = torch.load(ckpt_path, map_location=device, weights_only=True)
        _check_hash(saved["config_hash"], cfg, ckpt_path)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        loader.load_state_dict(saved["loader"])
        _restore_rng(saved["rng"], device)
        step, tokens, losses = saved["step"], saved["tokens"], list(saved["losses"])
        elapsed, sessions = saved["seconds"], saved["sessions"] + 1
        logger.info("ablate: %s resumed at step %d", work_dir.name, step)
    model.train()
    started = time.perf_counter()
    while step < t.steps:
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, t)
            logits = model(inputs)
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()
            step += 1
            tokens += int((targets >= 0).sum())
            losses.append(float(loss.item()))
            if step % max(1, t.steps // 10) == 0:
                logger.info("ablate: %s step %d/%d loss %.4f", work_dir.name, step, t.steps, losses[-1])
            if step == t.steps:
                break
            if step % t.checkpoint_every == 0:
                state = {
                    "config_hash": cfg.training_hash(),
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "loader": loader.state_dict(),
                    "rng": _rng_state(device),
                    "step": step,
                    "tokens": tokens,
                    "losses": losses,
                    "seconds": elapsed + time.perf_counter() - started,
                    "sessions": sessions,
                }
                with atomic_path(ckpt_path) as tmp:
                    torch.save(state, tmp)
                if on_checkpoint is not None:
                    on_checkpoint(step)
    tail = losses[-max(1, len(losses) // 10) :]
    total_tokens = loader.dataset.corpus.total_tokens
    result = TrainResult(
        steps=step,
        tokens_seen=tokens,
        epochs=round(tokens / total_tokens, 4),
        parameters=model.parameter_count(),
        seconds=round(elapsed + time.perf_counter() - started, 3),
        device=_device_name(device),
        train_loss=sum(tail) / len(tail),
        losses=losses,
        sessions=sessions,
    )
    with atomic_path(work_dir / MODEL) as tmp:
        torch.save(model.state_dict(), tmp)
    write_json_atomic(work_dir / RESULT, {"config_hash": cfg.training_hash(), "result": result.to_dict()})
    ckpt_path.unlink(missing_ok=True)
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@torch.no_grad()
def evaluate(model: GPT, sources: list[EvalSource], device: str) -> dict[str, dict[str, float | int]]:
    """Per source: mean loss per token (nats), bits per UTF-8 byte, tokens, bytes, documents."""
    model.eval()
    out = {}
    for src in sources:
        total = 0.0
        for start in range(0, len(src.inputs), EVAL_BATCH):
            x = torch.from_numpy(src.inputs[start : start + EVAL_BATCH]).to(device)
            y = torch.from_numpy(src.targets[start : start + EVAL_BATCH]).to(device)
            logits = model(x)
            total += float(F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), reduction="sum"))
        out[src.name] = {
            "loss": total / src.tokens,
            "bits_per_byte": total / math.log(2) / src.bytes,
            "nats": total,
            "tokens": src.tokens,
            "bytes": src.bytes,
            "documents": src.documents,
        }
    model.train()
    return out

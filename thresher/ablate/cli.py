"""``thresher ablate RUN RUN [...] --reference PATH --output DIR``: compare recipes by the model
their data trains (see :mod:`thresher.ablate`)."""

from __future__ import annotations

import argparse
import logging

from thresher.ablate.config import DEVICES, AblationConfig, DataConfig, ModelConfig, TrainConfig

logger = logging.getLogger(__name__)


def config_from_args(args: argparse.Namespace) -> AblationConfig:
    return AblationConfig(
        model=ModelConfig(dim=args.dim, layers=args.layers, heads=args.heads, seq_len=args.seq_len),
        train=TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=min(args.warmup_steps, args.steps),
            seed=args.seed,
            checkpoint_every=args.checkpoint_every,
        ),
        data=DataConfig(
            vocab_size=args.vocab_size,
            tokenizer_sample_bytes=args.tokenizer_sample_bytes,
            token_budget=args.tokens,
        ),
        device=args.device,
        threads=args.threads,
    )


def cmd_ablate(args: argparse.Namespace) -> int:
    from thresher.ablate.runner import run_ablation

    report = run_ablation(
        args.runs,
        args.reference,
        args.output,
        config_from_args(args),
        resume=args.resume,
        local=not args.ray,
        group_by=args.group_by,
    )
    width = max(len(m["name"]) for m in report["models"])
    print(f"{'run':<{width}}  reference loss  bits/byte  tokens seen  wall time  device")
    for m in report["models"]:
        e, t = m["eval"]["all"], m["train"]
        print(
            f"{m['name']:<{width}}  {e['loss']:14.4f}  {e['bits_per_byte']:9.4f}  {t['tokens_seen']:11,}"
            f"  {t['seconds']:8.1f}s  {t['device']}"
        )
    print(f"report: {args.output}/report.html  ({args.output}/report.json)")
    return 0


def register(subparsers) -> None:
    defaults_m, defaults_t, defaults_d = ModelConfig(), TrainConfig(), DataConfig()
    p = subparsers.add_parser(
        "ablate",
        help="train the same small GPT on each run's data and compare their losses on reference texts",
        description=(
            "Recipe ablation: one tokenizer trained on a sample of all runs, each run cut to the same "
            "token budget, the same GPT (seed, width, depth, context, steps fixed) trained on each, every "
            "model evaluated on the same held-out reference texts. Writes report.json and report.html."
        ),
    )
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="finished run directories, or pipeline configs (.yaml) to run"
    )
    p.add_argument(
        "--reference",
        required=True,
        help="held-out texts: a .txt, JSONL or Parquet file, or a directory of them",
    )
    p.add_argument(
        "--output", required=True, help="directory for the ablation (empty or new, or one to --resume)"
    )
    p.add_argument("--group-by", choices=("file", "host"), default="file", help="what a reference source is")
    p.add_argument("--steps", type=int, default=defaults_t.steps)
    p.add_argument("--batch-size", type=int, default=defaults_t.batch_size)
    p.add_argument("--lr", type=float, default=defaults_t.lr)
    p.add_argument("--warmup-steps", type=int, default=defaults_t.warmup_steps)
    p.add_argument("--seed", type=int, default=defaults_t.seed)
    p.add_argument("--checkpoint-every", type=int, default=defaults_t.checkpoint_every, metavar="STEPS")
    p.add_argument("--dim", type=int, default=defaults_m.dim, help="model width")
    p.add_argument("--layers", type=int, default=defaults_m.layers, help="model depth")
    p.add_argument("--heads", type=int, default=defaults_m.heads)
    p.add_argument("--seq-len", type=int, default=defaults_m.seq_len, help="context length")
    p.add_argument("--vocab-size", type=int, default=defaults_d.vocab_size)
    p.add_argument("--tokenizer-sample-bytes", type=int, default=defaults_d.tokenizer_sample_bytes)
    p.add_argument(
        "--tokens", type=int, default=None, help="training tokens per run (default: the smallest run's)"
    )
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an ablation in --output from its checkpoints"
    )
    p.add_argument(
        "--ray", action="store_true", help="run configs given as RUN on Ray (default: in this process)"
    )
    p.set_defaults(func=cmd_ablate)

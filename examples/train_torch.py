"""Train a tiny GPT for a few steps on a thresher tokens directory with PyTorch.

    .venv/bin/python examples/train_torch.py OUTPUT/tokens [--steps 50] [--workers 2]
    # no pipeline output yet?  .venv/bin/thresher shards sample /tmp/sample-tokens

Shows the loader the way a trainer uses it: rank/world from torchrun's environment, batches of
(input_ids, targets), padding ignored by cross_entropy's default ignore_index (-100), and the
loader's position saved next to the model so a restart continues with the next batch. The model is
``thresher ablate``'s small GPT (thresher/ablate/model.py).
Runs on the GPU when there is one.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from thresher.ablate.config import ModelConfig
from thresher.ablate.model import GPT
from thresher.shards.torch import TokenDataset, TokenLoader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "tokens_dir",
        help="a tokens directory with manifest.json: a local path or a URI (s3://BUCKET/RUN/tokens)",
    )
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument(
        "--checkpoint", default=None, help="save model + loader state here at the end; resume if present"
    )
    args = ap.parse_args()

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    data = TokenDataset(
        args.tokens_dir, args.seq_len, batch_size=args.batch_size, rank=rank, world_size=world
    )
    loader = TokenLoader(data, num_workers=args.workers, pin_memory=device == "cuda")
    model = GPT(data.vocab_size, ModelConfig(dim=64, layers=2, heads=4, seq_len=args.seq_len)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    if args.checkpoint and os.path.exists(args.checkpoint):
        saved = torch.load(args.checkpoint)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        loader.load_state_dict(saved["data"])
        print(f"resumed at epoch {saved['data']['epoch']}, batch {saved['data']['batches']}")
    params = sum(p.numel() for p in model.parameters())
    print(f"{params:,} parameters on {device}; {len(loader)} batches per epoch on rank {rank}/{world}")

    step, tokens, start = 0, 0, time.perf_counter()
    while step < args.steps:
        for inputs, targets in loader:
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            logits = model(inputs)
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))  # ignores -100
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            tokens += inputs.numel()
            if step % 10 == 0 or step == args.steps:
                rate = tokens / (time.perf_counter() - start)
                print(f"step {step:5d}  loss {loss.item():.3f}  {rate:,.0f} tokens/s")
            if step == args.steps:
                break
    if args.checkpoint:
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "data": loader.state_dict()},
            args.checkpoint,
        )


if __name__ == "__main__":
    main()

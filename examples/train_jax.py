"""Train a tiny causal-attention language model for a few steps on a tokens directory with JAX.

    .venv/bin/python examples/train_jax.py OUTPUT/tokens [--steps 50]
    # no pipeline output yet?  .venv/bin/thresher shards sample /tmp/sample-tokens

Each host reads its share of the global batch (thresher.shards.jax.batches); the shares become
one global jax.Array sharded along the batch axis over every device of every host. Padding
targets (-100, only in an epoch's last batches) are masked out of the loss. Plain JAX: no Flax
or Optax needed. Runs on a GPU when JAX has one.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from thresher.shards.jax import batches, global_array


def init(key, vocab: int, seq_len: int, dim: int = 64) -> dict:
    k = jax.random.split(key, 6)
    s = dim**-0.5
    return {
        "embed": jax.random.normal(k[0], (vocab, dim)) * 0.02,
        "pos": jax.random.normal(k[1], (seq_len, dim)) * 0.02,
        "qkv": jax.random.normal(k[2], (dim, 3 * dim)) * s,
        "proj": jax.random.normal(k[3], (dim, dim)) * s,
        "up": jax.random.normal(k[4], (dim, 4 * dim)) * s,
        "down": jax.random.normal(k[5], (4 * dim, dim)) * (4 * dim) ** -0.5,
    }


def norm(x):
    return (x - x.mean(-1, keepdims=True)) * jax.lax.rsqrt(x.var(-1, keepdims=True) + 1e-5)


def forward(p: dict, idx):
    t = idx.shape[1]
    h = p["embed"][idx] + p["pos"][:t]
    q, k, v = jnp.split(norm(h) @ p["qkv"], 3, axis=-1)
    att = (q @ k.transpose(0, 2, 1)) * q.shape[-1] ** -0.5
    att = jnp.where(jnp.tril(jnp.ones((t, t), bool)), att, -1e9)
    h = h + jax.nn.softmax(att, axis=-1) @ v @ p["proj"]
    h = h + jax.nn.gelu(norm(h) @ p["up"]) @ p["down"]
    return norm(h) @ p["embed"].T


def loss_fn(p, inputs, targets):
    logp = jax.nn.log_softmax(forward(p, inputs))
    mask = targets >= 0  # padding targets are -100
    picked = jnp.take_along_axis(logp, jnp.maximum(targets, 0)[..., None], axis=-1)[..., 0]
    return -(picked * mask).sum() / jnp.maximum(mask.sum(), 1)


@jax.jit
def train_step(p, m, v, step, inputs, targets, lr=3e-3, b1=0.9, b2=0.99):
    loss, g = jax.value_and_grad(loss_fn)(p, inputs, targets)
    m = jax.tree_util.tree_map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
    v = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
    c1, c2 = 1 - b1 ** (step + 1), 1 - b2 ** (step + 1)
    p = jax.tree_util.tree_map(lambda w, a, b: w - lr * (a / c1) / (jnp.sqrt(b / c2) + 1e-8), p, m, v)
    return p, m, v, loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "tokens_dir",
        help="a tokens directory with manifest.json: a local path or a URI (s3://BUCKET/RUN/tokens)",
    )
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--global-batch-size", type=int, default=16)
    args = ap.parse_args()

    data = batches(args.tokens_dir, args.seq_len, args.global_batch_size, seed=0)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))  # batch rows split over all devices
    params = init(jax.random.PRNGKey(0), data.vocab_size, args.seq_len)
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    print(
        f"{n_params:,} parameters on {jax.devices()[0].platform} x{jax.device_count()}; "
        f"host {jax.process_index()}/{jax.process_count()}, {len(data)} batches per epoch"
    )

    step, tokens, start = 0, 0, time.perf_counter()
    while step < args.steps:
        for inputs, targets in data:
            x, y = global_array(inputs, sharding), global_array(targets, sharding)
            params, m, v, loss = train_step(params, m, v, step, x, y)
            step += 1
            tokens += x.size
            if step % 10 == 0 or step == args.steps:
                rate = tokens / (time.perf_counter() - start)
                print(f"step {step:5d}  loss {float(loss):.3f}  {rate:,.0f} tokens/s")
            if step == args.steps:
                break
    print(f"loader state to checkpoint: {data.state_dict()['epoch']=}, {data.state_dict()['batches']=}")


if __name__ == "__main__":
    main()

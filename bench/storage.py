"""Object storage against the local disk, in one run on this machine (issue #18's benchmark).

    .venv/bin/python bench/storage.py [--tokens 50_000_000] [--seq-len 2048] [--batch-size 8]

Sections (``--only loader``; each prints its figures and the ratio S3 / local):

* loader - tokens/s of inputs delivered by the packing loader (stream.ConsumerEpoch.pairs: decode,
  document shuffle, packing) from the token shards on the local disk, then from the same shards on
  an S3 API server on 127.0.0.1 (moto in server mode, its own process, reached over HTTP through
  the loader's normal S3 client): the first epoch with an empty shard cache (every shard
  downloaded, sha256-checked, prefetched ahead of the reader) and a second epoch from the warm
  cache. Goal: S3 >= 50% of local and >= 25M tokens/s.
* run (not yet) - the demo and the 1,171-page set with ``--output`` local vs ``s3://``: added
  with the engine's object-storage integration (RunLayout on a Store); register it in SECTIONS.

The tokens directory is bench/loader.py's (built once under --work from shared/data).

Figures on the 2-core dev machine (50.6M train tokens in one 74 MiB shard, seq 2048, batch 8,
2 read threads): local 64.5M tokens/s; S3 cold cache 26.6M/s (41%: the single shard is
downloaded and checked before its first row group is read, nothing to overlap with); S3 warm
cache 55.9M/s (87%).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loader import build  # noqa: E402
from thresher.shards.stream import ConsumerEpoch, PackingConfig, TokenCorpus  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalS3:
    """moto's S3 server in a process of its own (so it does not share the loader's GIL), with
    dummy credentials and the endpoint in this process's environment, as a user would set them."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> LocalS3:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_EC2_METADATA_DISABLED="true",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def upload(self, local: Path, bucket: str, prefix: str) -> str:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint)
        client.create_bucket(Bucket=bucket)
        for p in sorted(local.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                client.upload_file(str(p), bucket, f"{prefix}/{p.name}")
        return f"s3://{bucket}/{prefix}"


def epoch_rate(corpus: TokenCorpus, cfg: PackingConfig, epoch: int, read_threads: int) -> tuple[float, float]:
    """(tokens/s of inputs, seconds) for one whole epoch of one consumer."""
    t0 = time.perf_counter()
    n = 0
    for inputs, _ in ConsumerEpoch(corpus, cfg, epoch, 0, 1, read_threads=read_threads).pairs():
        n += inputs.size
    dt = time.perf_counter() - t0
    return n / dt, dt


def bench_loader(args: argparse.Namespace) -> None:
    tokens_dir = build(args.work, args.data, args.tokens)
    cfg = PackingConfig(args.seq_len, args.batch_size, seed=0, tail="drop")
    local = TokenCorpus(tokens_dir, "train")
    size = sum(s.bytes for s in local.shards)
    print(f"{local.total_tokens:,} train tokens, {len(local.shards)} shards, {size / 2**20:.0f} MiB")
    epoch_rate(local, cfg, 0, args.read_threads)  # page cache warm for the local figure
    local_rate, local_s = epoch_rate(local, cfg, 1, args.read_threads)
    with LocalS3() as s3, tempfile.TemporaryDirectory(prefix="thresher-bench-cache-") as cache:
        uri = s3.upload(tokens_dir, "bench", "tokens")
        remote = TokenCorpus(uri, "train", cache_dir=cache, cache_bytes=2 * size)
        cold_rate, cold_s = epoch_rate(remote, cfg, 1, args.read_threads)
        warm_rate, warm_s = epoch_rate(remote, cfg, 1, args.read_threads)
        downloads = remote.cache.downloads
    rows = [
        ("local disk", local_rate, local_s),
        ("s3, cold cache", cold_rate, cold_s),
        ("s3, warm cache", warm_rate, warm_s),
    ]
    print(f"{'loader':<18}{'Mtok/s':>9}{'s/epoch':>9}{'vs local':>10}")
    for name, rate, s in rows:
        print(f"{name:<18}{rate / 1e6:>9.1f}{s:>9.2f}{rate / local_rate:>9.0%}")
    print(f"shards downloaded: {downloads} of {len(remote.shards)}")
    ok = min(cold_rate, warm_rate) >= 0.5 * local_rate and min(cold_rate, warm_rate) >= 25e6
    print(f"goal (S3 >= 50% of local and >= 25M tokens/s): {'met' if ok else 'NOT met'}")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"loader": bench_loader}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=list(SECTIONS), action="append", help="sections to run (default all)")
    ap.add_argument("--tokens", type=int, default=50_000_000)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--read-threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/thresher-bench-loader"))
    args = ap.parse_args()
    for name in args.only or list(SECTIONS):
        print(f"== {name}")
        SECTIONS[name](args)


if __name__ == "__main__":
    main()

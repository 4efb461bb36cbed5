"""Object storage against the local disk, in one run on this machine (issue #18's benchmark).

    .venv/bin/python bench/storage.py [--only run|loader] [--inputs demo,pages] [--repeat 3] [--quick]

Sections (``--only run``; each prints its figures and the ratio S3 / local):

* run - ``thresher run pipeline/configs/demo.yaml --local`` (the whole demo recipe: extract,
  filters, dedup, BPE training, token shards, report) on the demo WARC (``demo``) and on
  bench/e2e.py's 1,171 real pages (``pages``), ``--output`` a fresh local directory against a fresh
  ``s3://`` prefix on the S3 server below, alternating which goes first, ``--repeat`` times each
  (medians; ``--quick``: once). Wall time of the command as a user sees it, the ratio, the S3
  requests of one run by kind (moto's request log) and whether the two outputs' documents/ are
  the same bytes. Goal: S3 within 1.3x of local.
* loader - tokens/s of inputs delivered by the packing loader (stream.ConsumerEpoch.pairs: decode,
  document shuffle, packing) from the token shards on the local disk, then from the same shards on
  an S3 API server on 127.0.0.1 (moto in server mode, its own process, reached over HTTP through
  the loader's normal S3 client): the first epoch with an empty shard cache (every shard
  downloaded, sha256-checked, prefetched ahead of the reader) and a second epoch from the warm
  cache. Goal: S3 >= 50% of local and >= 25M tokens/s.

The tokens directory is bench/loader.py's (built once under --work from shared/data).

Figures on the 2-core dev machine (medians of 3; README "Object storage"): run demo 9.39 s local,
10.70 s S3 (1.14x), 1,171 pages 24.39 / 27.93 s (1.15x), documents/ identical; loader (50.6M
train tokens in one 74 MiB shard, seq 2048, batch 8, 2 read threads, median of 5) local 180M
tokens/s, S3 cold cache 128M/s (71%: the shard is one streamed GET, sha256-checked, before its
first row group is read), warm cache 186M/s (104%).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
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


# One line of moto's (werkzeug's) request log: "GET /bucket/key?query HTTP/1.1" 200 -
REQUEST_LINE = re.compile(r'"([A-Z]+) (/[^ ?"]*)(\?[^ "]*)? HTTP/[0-9.]+" (\d{3})')


class LocalS3:
    """moto's S3 server in a process of its own (so it does not share the loader's GIL), with
    dummy credentials and the endpoint in this process's environment (inherited by the commands
    the bench starts), as a user would set them. Its request log goes to a file, read by
    :meth:`requests` to count what a run asked of the store."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="thresher-bench-moto-", suffix=".log")
        self._log_offset = 0

    def __enter__(self) -> LocalS3:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
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
        self._log.close()

    def requests(self) -> Counter:
        """Requests the server answered since the last call, by kind (PUT, GET, LIST, HEAD,
        DELETE, MULTIPART for the create/complete calls of a multipart upload), and ERRORS (4xx/5xx)."""
        with open(self._log.name, encoding="utf-8", errors="replace") as f:
            f.seek(self._log_offset)
            text = f.read()
            self._log_offset = f.tell()
        kinds: Counter = Counter()
        for method, path, query, status in REQUEST_LINE.findall(text):
            query = query or ""
            if method == "GET" and ("list-type" in query or "prefix=" in query or path.count("/") == 1):
                kind = "LIST"
            elif method == "POST" and "delete" in query:
                kind = "DELETE"
            elif method == "POST":
                kind = "MULTIPART"
            else:
                kind = method
            kinds[kind] += 1
            if status[0] in "45":
                kinds["ERRORS"] += 1
        return kinds

    def create_bucket(self, bucket: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=bucket)

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
    if not (args.work / "tokens" / "manifest.json").exists() and not args.data.exists():
        print(f"loader: skipped (the token shards are built from {args.data}, which is not here)")
        return
    tokens_dir = build(args.work, args.data, args.tokens)
    cfg = PackingConfig(args.seq_len, args.batch_size, seed=0, tail="drop")
    local = TokenCorpus(tokens_dir, "train")
    size = sum(s.bytes for s in local.shards)
    print(f"{local.total_tokens:,} train tokens, {len(local.shards)} shards, {size / 2**20:.0f} MiB")
    rounds = 1 if args.quick else args.repeat
    epoch_rate(local, cfg, 0, args.read_threads)  # page cache warm for the local figure
    runs: dict[str, list[tuple[float, float]]] = {"local": [], "cold": [], "warm": []}
    with LocalS3() as s3:
        uri = s3.upload(tokens_dir, "bench", "tokens")
        for _ in range(rounds):  # one of each per round, so a busy spell of the machine hits all three
            runs["local"].append(epoch_rate(local, cfg, 1, args.read_threads))
            with tempfile.TemporaryDirectory(prefix="thresher-bench-cache-") as cache:
                remote = TokenCorpus(uri, "train", cache_dir=cache, cache_bytes=2 * size)
                runs["cold"].append(epoch_rate(remote, cfg, 1, args.read_threads))
                runs["warm"].append(epoch_rate(remote, cfg, 1, args.read_threads))
                downloads = remote.cache.downloads
    median = {
        k: (statistics.median(r for r, _ in v), statistics.median(s for _, s in v)) for k, v in runs.items()
    }
    local_rate = median["local"][0]
    print(f"{'loader':<18}{'Mtok/s':>9}{'s/epoch':>9}{'vs local':>10}   (median of {rounds})")
    for key, name in (("local", "local disk"), ("cold", "s3, cold cache"), ("warm", "s3, warm cache")):
        rate, s = median[key]
        print(f"{name:<18}{rate / 1e6:>9.1f}{s:>9.2f}{rate / local_rate:>9.0%}")
    print(f"shards downloaded per cold epoch: {downloads} of {len(remote.shards)}")
    worst = min(median["cold"][0], median["warm"][0])
    ok = worst >= 0.5 * local_rate and worst >= 25e6
    print(f"goal (S3 >= 50% of local and >= 25M tokens/s): {'met' if ok else 'NOT met'}")


# ============================================================================ run: --output local vs s3://

DEMO_CONFIG = ROOT / "pipeline" / "configs" / "demo.yaml"
REQUEST_KINDS = ("PUT", "GET", "LIST", "HEAD", "DELETE", "MULTIPART", "ERRORS")


def run_inputs(names: list[str]) -> list[tuple[str, Path]]:
    """(name, WARC) of each input the bench can find; the 1,171 pages need ../shared/data."""
    from bench.e2e import CACHE, SHARED, build_large_warc

    found = []
    for name in names:
        if name == "demo":
            found.append((name, ROOT / "examples" / "demo.warc.gz"))
        elif name == "pages":
            warc = CACHE / "extraction-pages.warc.gz"
            if not warc.exists():
                if not (SHARED / "extraction-scrapinghub-aeb").exists():
                    print(f"pages: skipped ({SHARED} has no extraction-scrapinghub-aeb)")
                    continue
                build_large_warc(warc)
            found.append((name, warc))
        else:
            raise SystemExit(f"unknown input {name!r} (demo, pages)")
    return found


def thresher_run(warc: Path, output: str, ray: bool) -> float:
    """Wall seconds of ``thresher run`` of the demo config on ``warc`` into ``output``, as a
    command of its own (what a user waits for, imports and all)."""
    cmd = [sys.executable, "-m", "thresher.cli", "run", str(DEMO_CONFIG), "--input", str(warc)]
    cmd += ["--output", output, "--set", "ray.progress=false"]
    if not ray:
        cmd.append("--local")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"thresher run --output {output} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def documents_digest(output: str) -> tuple[str, int]:
    """(sha256 over every documents/ file's name and bytes, number of files) of a run's output,
    read back through Thresher's Store (so local and s3:// are read the same way)."""
    from thresher.io import Store

    store = Store.from_uri(output)
    h = hashlib.sha256()
    files = store.find("documents")
    for rel in files:
        h.update(rel.encode() + b"\0" + hashlib.sha256(store.read_bytes(rel)).digest())
    return h.hexdigest(), len(files)


def bench_run(args: argparse.Namespace) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    repeat = 1 if args.quick else args.repeat
    mode = "Ray" if args.ray else "--local"
    inputs = run_inputs(args.inputs.split(","))
    rows = []
    with LocalS3() as s3, tempfile.TemporaryDirectory(prefix="thresher-bench-run-") as tmp:
        s3.create_bucket("bench-run")
        for name, warc in inputs:
            times: dict[str, list[float]] = {"local": [], "s3": []}
            digests: dict[str, set[tuple[str, int]]] = {"local": set(), "s3": set()}
            requests: list[Counter] = []
            for i in range(repeat):
                order = ["local", "s3"] if i % 2 == 0 else ["s3", "local"]
                for where in order:
                    if where == "local":
                        output = str(Path(tmp) / f"{name}-{i}")
                    else:
                        output = f"s3://bench-run/{name}-{i}"
                        s3.requests()  # forget what came before this run
                    seconds = thresher_run(warc, output, args.ray)
                    if where == "s3":
                        time.sleep(0.5)  # the server logs a request after answering it
                        requests.append(s3.requests())
                    times[where].append(seconds)
                    digests[where].add(documents_digest(output))
                    print(f"  {name} #{i + 1} {where:<5} {seconds:7.2f} s", flush=True)
                    if where == "local":
                        shutil.rmtree(output, ignore_errors=True)
            local_s, s3_s = statistics.median(times["local"]), statistics.median(times["s3"])
            same = len(digests["local"] | digests["s3"]) == 1
            files = next(iter(digests["s3"]))[1]
            rows.append((name, local_s, s3_s, same, files, requests[-1]))
    print(
        f"\nthresher run of the demo config ({mode}), median of {repeat}, output local vs s3:// (moto on 127.0.0.1)"
    )
    print(f"{'input':<8}{'local s':>9}{'s3 s':>9}{'ratio':>7}  documents/ identical")
    for name, local_s, s3_s, same, files, _ in rows:
        print(
            f"{name:<8}{local_s:>9.2f}{s3_s:>9.2f}{s3_s / local_s:>6.2f}x  {'yes' if same else 'NO'} ({files} files)"
        )
    print(
        "\nS3 requests of one run: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{k} {req[k]}" for k in REQUEST_KINDS if req[k])
            for name, *_, req in rows
        )
    )
    ok = all(s3_s <= 1.3 * local_s for _, local_s, s3_s, *_ in rows) and all(r[3] for r in rows)
    print(f"goal (S3 within 1.3x of local, same documents): {'met' if ok else 'NOT met'}")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"run": bench_run, "loader": bench_loader}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=list(SECTIONS), action="append", help="sections to run (default all)")
    ap.add_argument(
        "--inputs", default="demo,pages", help="run section: demo, pages or both (comma-separated)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="run section: runs of each kind (medians)")
    ap.add_argument("--quick", action="store_true", help="run section: one run of each kind")
    ap.add_argument("--ray", action="store_true", help="run section: on the embedded Ray instead of --local")
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

"""Dedup benchmark: MinHash signature throughput against datasketch (``update`` per shingle and
``update_batch``), rensa and datatrove's MinhashDedupSignature on the same documents, then
end-to-end MinHash dedup time and memory against datatrove's 4-stage MinHash pipeline.

Signature documents: real text, the Lingua (Leipzig) sentences of 75 languages grouped into
paragraphs. End-to-end documents: synthetic, words drawn from the real vocabulary and word
frequencies of those sentences (English, German, French, Spanish), 10% near-duplicates with
a few words changed. Everything runs on one core (one process, datatrove with one task), so
the figures are per core.

    .venv/bin/python bench/dedup.py                 # 3k docs vs datatrove, then 100k (~5 min)
    .venv/bin/python bench/dedup.py --million       # also 1M documents (~25 min)
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(os.environ.get("THRESHER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SENTENCES = DATA / "lid-lingua-testdata" / "sentences"


def paragraphs(size: int = 12) -> list[str]:
    out = []
    for path in sorted(SENTENCES.glob("*.txt.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        out += [" ".join(lines[i : i + size]) for i in range(0, len(lines) - size + 1, size)]
    return out


def _shingles(text: str) -> list[bytes]:
    from thresher.dedup.text import normalize

    words = normalize(text).split()
    if len(words) < 5:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i : i + 5]).encode() for i in range(len(words) - 4)]


def bench_signatures(texts: list[str], num_perm: int = 112) -> dict[str, float]:
    """Documents per second, text in, signature out (normalisation and shingling included)."""
    from datasketch import MinHash

    from thresher.dedup.signatures import MinHasher

    rates: dict[str, float] = {}

    def timed(name, fn, docs):
        start = time.perf_counter()
        fn(docs)
        rates[name] = len(docs) / (time.perf_counter() - start)

    hasher = MinHasher(num_perm, 1)
    timed(
        "thresher (numpy batch)",
        lambda d: [hasher.signatures(d[i : i + 1024]) for i in range(0, len(d), 1024)],
        texts,
    )

    def ds_update(docs):
        for t in docs:
            m = MinHash(num_perm=num_perm, seed=1)
            for s in _shingles(t):
                m.update(s)

    def ds_batch(docs):
        for t in docs:
            m = MinHash(num_perm=num_perm, seed=1)
            m.update_batch(_shingles(t))

    timed("datasketch update", ds_update, texts[: len(texts) // 4])
    timed("datasketch update_batch", ds_batch, texts)
    try:
        from rensa import RMinHash

        def rensa(docs):
            for t in docs:
                m = RMinHash(num_perm=num_perm, seed=1)
                m.update([s.decode() for s in _shingles(t)])
                m.digest()

        timed("rensa RMinHash (own hash, not datasketch-equal)", rensa, texts)
    except ImportError:
        print("rensa not installed: pip install rensa")
    try:
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

        step = MinhashDedupSignature(
            tempfile.mkdtemp(), config=MinhashConfig(num_buckets=14, hashes_per_bucket=8)
        )
        step.get_shingles(texts[0])  # loads its word tokenizer outside the timing

        def datatrove(docs):
            for t in docs:
                sh = step.get_shingles(t)
                if sh.size:
                    step.get_signature(sh)

        timed("datatrove MinhashDedupSignature", datatrove, texts)
    except ImportError as exc:
        print(f"datatrove unavailable ({exc}): pip install datatrove spacy 'xxhash<4'")
    return rates


# --------------------------------------------------------------------------- end to end


def synthetic_corpus(n: int, seed: int = 0) -> pa.Table:
    counts: dict[str, int] = {}
    for lang in ("en", "de", "fr", "es"):
        with gzip.open(SENTENCES / f"{lang}.txt.gz", "rt", encoding="utf-8") as f:
            for word in f.read().split():
                counts[word] = counts.get(word, 0) + 1
    vocab = np.array(list(counts))
    p = np.array(list(counts.values()), dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(150, 450, n)
    words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
    texts, pos = [], 0
    for length in lengths.tolist():
        texts.append(" ".join(words[pos : pos + length].tolist()))
        pos += length
    r = random.Random(seed)
    for i in r.sample(range(n), n // 10):  # near-duplicates of other documents
        w = texts[r.randrange(n)].split()
        for _ in range(r.randint(1, 3)):
            w[r.randrange(len(w))] = "edited"
        texts[i] = " ".join(w)
    return pa.table({"id": [f"d{i:08d}" for i in range(n)], "text": texts})


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _thresher_child(path: str, out: mp.Queue) -> None:
    from thresher.dedup.engine import EngineSettings, run_engine
    from thresher.dedup.executor import LocalExecutor
    from thresher.dedup.stages import MinHashDedupConfig, minhash_doc_table

    table = pq.read_table(path)
    start = time.perf_counter()
    config = MinHashDedupConfig()
    keyed = [minhash_doc_table(table.slice(i, 2048), config, None) for i in range(0, table.num_rows, 2048)]
    signed = time.perf_counter()
    del table
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: measure the clustering phase only
        f.write("5")
    base = _vm("VmRSS:")
    keyed_bytes = sum(t.nbytes for t in keyed)
    result = run_engine(keyed, EngineSettings(reason="minhash_duplicate"), LocalExecutor())
    done = time.perf_counter()
    out.put(
        {
            "signatures_s": signed - start,
            "cluster_s": done - signed,
            "removed": int(result.stats["removed"]),
            "cluster_peak_extra_bytes": max(0, _vm("VmHWM:") - base),
            "key_table_bytes": keyed_bytes,
        }
    )


def run_thresher(path: str) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_thresher_child, args=(path, q))
    proc.start()
    res = q.get()
    proc.join()
    return res


def run_datatrove(jsonl_dir: str, work: str) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    config = MinhashConfig(num_buckets=14, hashes_per_bucket=8)
    stages = [
        [JsonlReader(jsonl_dir), MinhashDedupSignature(f"{work}/sigs", config=config)],
        [MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=config)],
        [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=config)],
        [JsonlReader(jsonl_dir), MinhashDedupFilter(f"{work}/remove"), JsonlWriter(f"{work}/out")],
    ]
    times = []
    for i, pipeline in enumerate(stages):
        tasks = config.num_buckets if i == 1 else 1
        start = time.perf_counter()
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=f"{work}/logs{i}").run()
        times.append(time.perf_counter() - start)
    removed = 0
    remove = Path(work) / "remove"
    for f in remove.glob("*.remove"):
        removed += f.stat().st_size // 4
    return {"stage_s": times, "total_s": sum(times), "removed": removed}


def end_to_end(n: int, with_datatrove: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="thresher-dedup-bench-"))
    try:
        table = synthetic_corpus(n)
        pq.write_table(table, work / "docs.parquet")
        (work / "jsonl").mkdir()
        with gzip.open(work / "jsonl" / "docs.jsonl.gz", "wt", encoding="utf-8") as f:
            for i, t in zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True):
                f.write(json.dumps({"id": i, "text": t}) + "\n")
        del table
        ours = run_thresher(str(work / "docs.parquet"))
        total = ours["signatures_s"] + ours["cluster_s"]
        print(
            f"\n{n:,} docs, thresher: {total:.1f} s (signatures {ours['signatures_s']:.1f} s, "
            f"clustering {ours['cluster_s']:.1f} s), removed {ours['removed']:,}; clustering phase peak "
            f"{ours['cluster_peak_extra_bytes'] / n:.0f} B/doc above its input (band-key tables "
            f"{ours['key_table_bytes'] / n:.0f} B/doc)"
        )
        if not with_datatrove:
            return
        try:
            dt = run_datatrove(str(work / "jsonl"), str(work / "datatrove"))
            print(
                f"{n:,} docs, datatrove 4-stage: {dt['total_s']:.1f} s "
                f"(stages {', '.join(f'{s:.1f}' for s in dt['stage_s'])}), removed {dt['removed']:,}; "
                f"thresher speed-up {dt['total_s'] / total:.2f}x"
            )
        except ImportError as exc:
            print(f"datatrove unavailable ({exc}): pip install datatrove spacy 'xxhash<4'")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--signature-docs", type=int, default=3000)
    parser.add_argument("--docs", type=int, default=100_000, help="end to end, thresher only")
    parser.add_argument(
        "--compare-docs", type=int, default=3000, help="end to end, thresher and datatrove (slow: ~30 docs/s)"
    )
    parser.add_argument("--million", action="store_true", help="also run 1,000,000 documents end to end")
    args = parser.parse_args()

    texts = paragraphs()
    random.Random(0).shuffle(texts)
    texts = texts[: args.signature_docs]
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"signatures: {len(texts):,} real paragraphs ({words:.0f} words each), 112 permutations, 1 core")
    rates = bench_signatures(texts)
    ours = rates["thresher (numpy batch)"]
    for name, rate in rates.items():
        print(f"  {name:50s} {rate:9.0f} docs/s   thresher is {ours / rate:5.2f}x")
    end_to_end(args.compare_docs, with_datatrove=True)
    end_to_end(args.docs, with_datatrove=False)
    if args.million:
        end_to_end(1_000_000, with_datatrove=False)


if __name__ == "__main__":
    main()

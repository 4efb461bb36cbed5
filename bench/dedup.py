"""Dedup benchmark: MinHash signature throughput against datasketch (``update`` per shingle and
``update_batch``), rensa and datatrove's MinhashDedupSignature on the same documents, then
end-to-end MinHash dedup time and memory against datatrove's 4-stage MinHash pipeline.

Signature documents: real text, the Lingua (Leipzig) sentences of 75 languages grouped into
paragraphs. End-to-end documents: synthetic, words drawn from the real vocabulary and word
frequencies of those sentences (English, German, French, Spanish), 10% near-duplicates with
a few words changed (in each block of 10,000). Thresher's clustering runs twice on the same
key tables, with and without verification of candidate pairs, each in a fresh process whose
peak RSS above the loaded key tables is reported. Everything runs on one core (one process,
datatrove with one task), so the figures are per core.

    .venv/bin/python bench/dedup.py                 # 3k docs vs datatrove, then 100k (~5 min)
    .venv/bin/python bench/dedup.py --million       # also 1M documents (~15-30 min)
    # the clustering engine alone on 1M rows of random keys (~1 min):
    .venv/bin/python bench/dedup.py --no-signatures --compare-docs 0 --docs 0 --engine-docs 1000000
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


def synthetic_corpus(n: int, path: Path, seed: int = 0, block: int = 10_000) -> None:
    """``n`` documents of 150-450 words drawn from the real vocabulary and word frequencies of
    the Lingua sentences (en, de, fr, es); in every block of ``block`` documents, 10% are a
    copy of another document of the block with 1-3 words changed. Written block by block, so
    1M documents never sit in memory as Python strings."""
    counts: dict[str, int] = {}
    for lang in ("en", "de", "fr", "es"):
        with gzip.open(SENTENCES / f"{lang}.txt.gz", "rt", encoding="utf-8") as f:
            for word in f.read().split():
                counts[word] = counts.get(word, 0) + 1
    vocab = np.array(list(counts), dtype=object)
    p = np.array(list(counts.values()), dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    with pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("text", pa.string())])) as writer:
        for start in range(0, n, block):
            size = min(block, n - start)
            lengths = rng.integers(150, 450, size)
            words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
            texts, pos = [], 0
            for length in lengths.tolist():
                texts.append(" ".join(words[pos : pos + length].tolist()))
                pos += length
            for i in r.sample(range(size), size // 10):
                w = texts[r.randrange(size)].split()
                for _ in range(r.randint(1, 3)):
                    w[r.randrange(len(w))] = "edited"
                texts[i] = " ".join(w)
            ids = [f"d{i:08d}" for i in range(start, start + size)]
            writer.write_table(pa.table({"id": ids, "text": texts}))


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _key_child(path: str, keys_path: str, out: mp.Queue) -> None:
    """Key tables (signatures, band keys) of the whole input, saved for the clustering runs."""
    from thresher.dedup.stages import MinHashDedupConfig, minhash_doc_table

    start = time.perf_counter()
    config = MinHashDedupConfig()
    keyed = [
        minhash_doc_table(pa.Table.from_batches([batch]), config, None)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=2048)
    ]
    seconds = time.perf_counter() - start
    table = pa.concat_tables(keyed)
    with pa.OSFile(keys_path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        for t in keyed:
            writer.write_table(t)
    out.put(
        {
            "signatures_s": seconds,
            "key_table_bytes": table.nbytes,
            "sig_column_bytes": table.column("sig").nbytes,
        }
    )


def _cluster_child(keys_path: str, verify: bool, out: mp.Queue) -> None:
    """The clustering engine alone, in a fresh process: time and peak RSS above the loaded
    key tables (what the grouping, verification and components phases add)."""
    with pa.OSFile(keys_path, "rb") as source:
        reader = pa.ipc.open_file(source)
        keyed = [pa.Table.from_batches([reader.get_batch(i)]) for i in range(reader.num_record_batches)]
    out.put(_measure_clustering(keyed, verify))


def _measure_clustering(keyed: list[pa.Table], verify: bool) -> dict:
    """Time and peak memory of the clustering engine alone on ready key tables (in a child)."""
    from thresher.dedup.engine import run_engine
    from thresher.dedup.executor import LocalExecutor
    from thresher.dedup.stages import MinHashDedup, MinHashDedupConfig

    settings = MinHashDedup(MinHashDedupConfig(verify=verify)).settings()
    run_engine(keyed[:1], settings, LocalExecutor())  # lazy imports and first-use allocations
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: measure the clustering only
        f.write("5")
    base = _vm("VmRSS:")
    began = time.perf_counter()
    result = run_engine(keyed, settings, LocalExecutor())
    return {
        "cluster_s": time.perf_counter() - began,
        "removed": int(result.stats["removed"]),
        "candidate_edges": int(result.stats.get("candidate_edges", result.stats["band_edges"])),
        "peak_extra_bytes": max(0, _vm("VmHWM:") - base),
    }


def _synthetic_key_tables(n: int, seed: int = 0, block: int = 2048) -> list[pa.Table]:
    """Key tables without text: random band keys and signatures, 10% of each block copying
    10 of 14 band keys and 100 of 112 signature values of another document (estimated
    Jaccard 0.89, so verification keeps them). For the clustering engine's time and memory
    at scales where computing signatures would take most of the run."""
    from thresher.dedup.engine import DOC_TABLE_SCHEMA, sig_array
    from thresher.dedup.signatures import hash64

    rng = np.random.default_rng(seed)
    tables = []
    for start in range(0, n, block):
        m = min(block, n - start)
        keys = rng.integers(0, 2**63, (m, 14), dtype=np.uint64)
        sig = rng.integers(0, 1 << 16, (m, 112), dtype=np.uint16)
        src, dst = rng.choice(m, m // 10), rng.choice(m, m // 10)
        keys[dst, :10] = keys[src, :10]
        sig[dst, :100] = sig[src, :100]
        ids = [f"d{i:08d}" for i in range(start, start + m)]
        offsets = pa.array(np.arange(0, 14 * m + 1, 14, dtype=np.int32))
        table = pa.table(
            {
                "node": pa.array(hash64(ids)),
                "id": ids,
                "shard": [""] * m,
                "length": pa.array(np.full(m, 2000)),
                "score": pa.nulls(m, pa.float64()),
                "keys": pa.ListArray.from_arrays(offsets, pa.array(keys.reshape(-1))),
            }
        ).cast(DOC_TABLE_SCHEMA)
        tables.append(table.append_column("sig", sig_array(sig)))
    return tables


def _engine_child(n: int, verify: bool, out: mp.Queue) -> None:
    out.put(_measure_clustering(_synthetic_key_tables(n), verify))


def engine_only(n: int) -> None:
    print(f"\nclustering engine alone, {n:,} synthetic key tables (random keys, 10% copies):")
    for verify in (True, False):
        r = _in_child(_engine_child, n, verify)
        print(
            f"  {'verified' if verify else 'unverified':10s}: {r['cluster_s']:.1f} s, removed "
            f"{r['removed']:,}; peak {r['peak_extra_bytes'] / n:.0f} B/doc above the key tables"
        )


def _in_child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, q))
    proc.start()
    res = q.get()
    proc.join()
    return res


def run_thresher(path: str, keys_path: str) -> dict:
    res = _in_child(_key_child, path, keys_path)
    for verify in (True, False):
        res["verified" if verify else "unverified"] = _in_child(_cluster_child, keys_path, verify)
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
        started = time.perf_counter()
        synthetic_corpus(n, work / "docs.parquet")
        print(f"\n{n:,} synthetic documents written in {time.perf_counter() - started:.0f} s")
        ours = run_thresher(str(work / "docs.parquet"), str(work / "keys.arrow"))
        sig_s = ours["signatures_s"]
        print(
            f"{n:,} docs, thresher signatures + band keys: {sig_s:.1f} s; key tables "
            f"{ours['key_table_bytes'] / n:.0f} B/doc, of which verification signatures "
            f"{ours['sig_column_bytes'] / n:.0f} B/doc"
        )
        for name in ("verified", "unverified"):
            r = ours[name]
            print(
                f"  {name:10s}: total {sig_s + r['cluster_s']:.1f} s (clustering {r['cluster_s']:.1f} s), "
                f"candidate edges {r['candidate_edges']:,}, removed {r['removed']:,}; clustering "
                f"phase peak {r['peak_extra_bytes'] / n:.0f} B/doc above the key tables"
            )
        if not with_datatrove:
            return
        table = pq.read_table(work / "docs.parquet")
        (work / "jsonl").mkdir()
        with gzip.open(work / "jsonl" / "docs.jsonl.gz", "wt", encoding="utf-8") as f:
            for i, t in zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True):
                f.write(json.dumps({"id": i, "text": t}) + "\n")
        del table
        total = sig_s + ours["verified"]["cluster_s"]
        try:
            dt = run_datatrove(str(work / "jsonl"), str(work / "datatrove"))
            print(
                f"{n:,} docs, datatrove 4-stage: {dt['total_s']:.1f} s "
                f"(stages {', '.join(f'{s:.1f}' for s in dt['stage_s'])}), removed {dt['removed']:,}; "
                f"thresher (verified) speed-up {dt['total_s'] / total:.2f}x"
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
    parser.add_argument("--no-signatures", action="store_true", help="skip the signature comparison")
    parser.add_argument(
        "--engine-docs", type=int, default=0, help="clustering engine alone on this many synthetic key rows"
    )
    args = parser.parse_args()
    if not args.no_signatures:
        compare_signatures(args.signature_docs)
    if args.compare_docs:
        end_to_end(args.compare_docs, with_datatrove=True)
    if args.docs:
        end_to_end(args.docs, with_datatrove=False)
    if args.million:
        end_to_end(1_000_000, with_datatrove=False)
    if args.engine_docs:
        engine_only(args.engine_docs)


def compare_signatures(n_docs: int) -> None:
    texts = paragraphs()
    random.Random(0).shuffle(texts)
    texts = texts[:n_docs]
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"signatures: {len(texts):,} real paragraphs ({words:.0f} words each), 112 permutations, 1 core")
    rates = bench_signatures(texts)
    ours = rates["thresher (numpy batch)"]
    for name, rate in rates.items():
        print(f"  {name:50s} {rate:9.0f} docs/s   thresher is {ours / rate:5.2f}x")


if __name__ == "__main__":
    main()

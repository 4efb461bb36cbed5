"""The whole FineWeb recipe, Thresher against datatrove, on the same WARC files in the same run.

Thresher runs ``pipeline/configs/fineweb.yaml`` (URL filter → extract (cascade) → language →
Gopher repetition → Gopher quality → C4 → FineWeb quality → MinHash dedup → PII) and tokenizes its
documents; datatrove runs its FineWeb example (``examples/fineweb.py`` in its repository: base
processing ``WarcReader → URLFilter → Trafilatura(favour_precision) → LanguageFilter →
GopherRepetitionFilter → GopherQualityFilter → C4QualityFilter(filter_no_terminal_punct=False) →
FineWebQualityFilter → JsonlWriter`` with an exclusion writer on every filter, then its four MinHash
stages ``MinhashDedupSignature → MinhashDedupBuckets → MinhashDedupCluster → MinhashDedupFilter →
PIIFormatter → JsonlWriter``), followed by ``DocumentTokenizer``. Each side runs as one process
(datatrove ``tasks=workers=1``, Thresher ``--local``) and on every core (datatrove's
LocalPipelineExecutor with ``tasks=workers=cores``, Thresher on its embedded Ray).

Settings, the same on both sides:

- English ≥ 0.65 with the same lid.176 file; extraction timeout 10 s; FineWeb's URL lists (the
  files of the datatrove wheel, ``thresher filters fetch-lists``), soft-word threshold 2.
- MinHash 14 bands × 8 rows on word 5-grams, first document of a cluster kept. Where fineweb.yaml
  differs from datatrove's example the bench overrides ours: ``verify: false`` (datatrove does not
  verify candidate pairs; ours does by default). Not equal and not made equal: the hash (datatrove's
  example: sha1 at 64 bits; ours: datasketch's 32-bit permutations of sha1) and the extraction
  mode (fineweb.yaml's ``cascade`` drops non-English pages with an early language ID before
  trafilatura; datatrove extracts every page with trafilatura).
- datatrove's word tokenizer for the Gopher/C4/FineWeb rules is NLTK's (what FineWeb ran; its
  current default for English is spaCy), as in bench/filters.py.
- One BPE vocabulary for both tokenizers: ours, trained once on the shared pages' text (cached,
  outside the clock); datatrove's DocumentTokenizer loads the same tokenizer's HF
  ``tokenizer.json`` (EOS ``<|endoftext|>`` after each document, as ours writes). The example's
  ``TokensCounter`` (gpt2 from the Hub) is left out: ``DocumentTokenizer`` counts the tokens.

Input: the 1,171 real pages of bench/e2e.py (the shared extraction sets), ``--copies`` WARC files
of them (default 4: 4,684 pages), each record with its own WARC-Record-ID, so every page is
followed by its id through both pipelines; copies 2..N are exact duplicates for the dedup stage.

Measured: wall time and the CPU of each run's whole process tree, two ways: as reaped
(``getrusage(RUSAGE_CHILDREN)``; the bench is a child subreaper, so orphaned descendants are
reaped by it), and sampled from /proc every 0.25 s (each descendant's last seen CPU time). The
larger is the run's CPU: reaped is exact for datatrove and ``--local``, but Ray's raylet ignores
SIGCHLD, so its workers' CPU reaches no one's rusage (a Ray run reaped 11 of its ~95 CPU seconds);
sampling misses each process's last 0.25 s. The per-stage split comes from each side's own
per-stage timers, which are wall seconds inside the stage (Thresher's stats.json ``seconds``,
datatrove's ``time_stats``), summed over workers; on a loaded machine a wall second is less than
a CPU second, so the one-process split is scaled by the run's CPU/wall (the same factor for every
stage of the run) and "untimed" is the rest of the run's CPU (start-up, datatrove's reading and
writing between timed steps, our compaction and report).

Agreement, by WARC record id: each input page's fate (kept, or the stage that removed it; our
cascade's early language drop counts as the language filter's) on both sides, and for each
filter the share of the pages that reached it on both sides that it treated the same way.

Projection: CPU-hours for a Common Crawl dump = CPU-s per page × pages. Default pages: 2.64
billion, the page count Common Crawl published for CC-MAIN-2024-51 (December 2024), "2.64
billion web pages (or 394 TiB of uncompressed content)",
https://blog.commoncrawl.org/blog/december-2024-crawl-archive-now-available. Fixed costs per
process (loading the URL blocklist, the language model, Ray's start) are in the small run's
figures and would be amortised over ~30,000 pages per WARC file on a real dump.

    .venv/bin/python bench/recipe.py                # 4 copies (4,684 pages), four runs (~15 min)
    .venv/bin/python bench/recipe.py --quick        # 2 files of 25 pages, one process each
    .venv/bin/python bench/recipe.py --profile out/recipe-profile   # + py-spy of Thresher --local

datatrove is a bench-only dependency (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e import CACHE, SHARED, build_large_warc  # noqa: E402

logger = logging.getLogger("bench.recipe")

CC_DUMP = "CC-MAIN-2024-51"
CC_DUMP_PAGES = 2_640_000_000
"""Pages in CC-MAIN-2024-51 as Common Crawl announced it (see the module docstring)."""

FATES = (
    "url_filter",
    "extract",
    "language",
    "gopher_repetition",
    "gopher_quality",
    "c4",
    "fineweb_quality",
    "minhash_dedup",
    "kept",
)
"""A page's fate: the stage that removed it (in the recipe's order), or kept."""

STAGE_ROWS = (
    "read",
    "url_filter",
    "extract",
    "language",
    "gopher_repetition",
    "gopher_quality",
    "c4",
    "fineweb_quality",
    "minhash_dedup",
    "pii",
    "write",
    "tokenize",
)

LANGUAGES, THRESHOLD, BANDS, ROWS, NGRAM, TIMEOUT_S = ["en"], 0.65, 14, 8, 5, 10.0


# --------------------------------------------------------------------------- input and tokenizer


def build_inputs(copies: int, limit: int | None) -> Path:
    from bench.peers import warc_copies

    source = CACHE / "extraction-pages.warc.gz"
    if not source.exists():
        build_large_warc(source)
    dest = CACHE / "recipe" / f"input-{copies}x{limit or 'all'}"
    if len(list(dest.glob("copy-*.warc.gz"))) != copies:
        warc_copies(source, dest, copies, limit)
    return dest


def build_tokenizer(vocab_size: int) -> Path:
    """Our BPE trained once on the shared pages' text; the directory holds its HF tokenizer.json."""
    from thresher.evaluation.corpora import load_documents
    from thresher.tokenize import save_tokenizer, train_tokenizer

    dest = CACHE / "recipe" / f"tokenizer-{vocab_size}"
    if not (dest / "tokenizer.json").is_file():
        texts = [d["text"] for d in load_documents(SHARED)]
        save_tokenizer(train_tokenizer(texts, vocab_size), dest)
    return dest


# --------------------------------------------------------------------------- measuring a run


def _become_subreaper() -> None:
    """Orphaned descendants (Ray's daemons, a pool's workers) are re-parented to this process, so
    their CPU reaches RUSAGE_CHILDREN when it reaps them."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_table() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, start time, CPU seconds of the process itself) from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            table[int(entry)] = (
                int(fields[1]),
                fields[19],
                (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            )
    return table


class TreeSampler:
    """The CPU of this process's descendants, sampled from /proc: each process's last seen CPU
    time, summed. It sees what RUSAGE_CHILDREN misses: Ray's raylet ignores SIGCHLD, so its
    workers are reaped without their CPU reaching anyone's rusage. It misses each process's last
    sampling interval and processes shorter than one."""

    def __init__(self) -> None:
        self.last: dict[tuple[int, str], float] = {}

    def sample(self) -> int:
        table = _process_table()
        me, alive = os.getpid(), 0
        for pid, (_, start, cpu) in table.items():
            parent, hops = pid, 0
            while parent not in (me, 0, 1) and parent in table and hops < 64:
                parent, hops = table[parent][0], hops + 1
            if parent == me and pid != me:
                self.last[(pid, start)] = cpu
                alive += 1
        return alive

    @property
    def cpu(self) -> float:
        return sum(self.last.values())


def measured(cmd: list[str], log: Path, interval: float = 0.25) -> dict:
    """Run ``cmd`` as a child; its wall seconds and the CPU seconds of its whole process tree, both
    as reaped (``cpu_rusage``) and as sampled (``cpu_sampled``); ``cpu`` is the larger."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = TreeSampler()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        while proc.poll() is None:
            sampler.sample()
            time.sleep(interval)
    wall = time.perf_counter() - start
    deadline = time.monotonic() + 60.0
    while True:  # the descendants left behind (re-parented to this subreaper): wait for them
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if sampler.sample() == 0 or time.monotonic() > deadline:
                break
            time.sleep(interval)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd[:4])}... failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-3000:]}"
        )
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall": wall,
        "cpu": max(reaped, sampler.cpu),
        "cpu_rusage": reaped,
        "cpu_sampled": sampler.cpu,
        "left_running": sampler.sample(),
    }


# --------------------------------------------------------------------------- Thresher


def thresher_config(inputs: Path, tokenizer: Path, work: Path) -> Path:
    import yaml

    config = yaml.safe_load((ROOT / "pipeline" / "configs" / "fineweb.yaml").read_text())
    for stage in config["stages"]:
        if "minhash_dedup" in stage:
            stage["minhash_dedup"]["verify"] = False  # datatrove's MinHash does not verify
    config["input"]["paths"] = [str(inputs)]
    config["ray"] = {"progress": False}
    config["tokenize"] = {"tokenizer": str(tokenizer), "validation_fraction": 0.0}
    path = work / "fineweb-bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_thresher(config: Path, out: Path, local: bool, logs: Path) -> dict:
    cmd = [str(ROOT / ".venv" / "bin" / "thresher"), "run", str(config), "--output", str(out)]
    run = measured(cmd + (["--local"] if local else []), logs / f"thresher-{'local' if local else 'ray'}.log")
    stats = json.loads((out / "stats.json").read_text())
    stages: Counter = Counter()
    for label, stage in stats["stages"].items():
        stages[_stage_name(label)] += stage["seconds"]
    stages["tokenize"] += stats["extra"].get("tokenize", {}).get("seconds", 0.0)
    run.update(
        stages=dict(stages),
        documents=stats["documents"],
        tokens=stats["extra"].get("tokenize", {}).get("tokens", 0),
        fates=thresher_fates(out),
    )
    return run


def _stage_name(label: str) -> str:
    """``08-minhash_dedup`` → ``minhash_dedup`` (stats.json and dataset stages' drops carry the label)."""
    head, _, rest = label.partition("-")
    return rest if head.isdigit() and rest else label


def thresher_fates(out: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    fates = {}
    for f in sorted((out / "dropped").glob("*.parquet")):
        for row in pq.read_table(f, columns=["id", "stage", "reason"]).to_pylist():
            stage = _stage_name(row["stage"])
            if stage == "extract" and row["reason"].startswith("early_language"):
                stage = "language"  # the cascade's early language ID
            fates[row["id"]] = stage
    for f in sorted((out / "documents").glob("*.parquet")):
        for doc_id in pq.read_table(f, columns=["id"]).column("id").to_pylist():
            fates[doc_id] = "kept"
    return fates


# --------------------------------------------------------------------------- datatrove


def datatrove_child(inputs: Path, work: Path, tokenizer_json: Path, workers: int, result: Path) -> None:
    """datatrove's FineWeb example, then DocumentTokenizer; runs in its own process."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    from bench.peers import datatrove_language_filter, datatrove_nltk_english

    words = datatrove_nltk_english(work / "nltk")
    removed = work / "removed"
    files = len(list(inputs.glob("*.warc.gz")))
    tasks = min(workers, files)

    def excluded(stage: str) -> JsonlWriter:
        return JsonlWriter(str(removed / stage))

    base = [
        ("read", WarcReader(str(inputs), glob_pattern="*.warc.gz")),
        ("url_filter", URLFilter(exclusion_writer=excluded("url_filter"))),
        ("extract", Trafilatura(favour_precision=True, timeout=TIMEOUT_S)),
        ("language", datatrove_language_filter(LANGUAGES, THRESHOLD)),
        (
            "gopher_repetition",
            GopherRepetitionFilter(language=words, exclusion_writer=excluded("gopher_repetition")),
        ),
        ("gopher_quality", GopherQualityFilter(language=words, exclusion_writer=excluded("gopher_quality"))),
        (
            "c4",
            C4QualityFilter(filter_no_terminal_punct=False, language=words, exclusion_writer=excluded("c4")),
        ),
        (
            "fineweb_quality",
            FineWebQualityFilter(language=words, exclusion_writer=excluded("fineweb_quality")),
        ),
        ("write", JsonlWriter(str(work / "base"))),
    ]
    base[3][1].exclusion_writer = excluded("language")
    minhash = MinhashConfig(
        hash_config=HashConfig(hash_fc="sha1", precision=64),
        num_buckets=BANDS,
        hashes_per_bucket=ROWS,
        n_grams=NGRAM,
    )
    mh = work / "minhash"
    stages = [
        (base, tasks),
        (
            [
                ("minhash_dedup", JsonlReader(str(work / "base"))),
                (
                    "minhash_dedup",
                    MinhashDedupSignature(str(mh / "signatures"), config=minhash, language=words),
                ),
            ],
            tasks,
        ),
        (
            [
                (
                    "minhash_dedup",
                    MinhashDedupBuckets(str(mh / "signatures"), str(mh / "buckets"), config=minhash),
                )
            ],
            BANDS,
        ),
        (
            [
                (
                    "minhash_dedup",
                    MinhashDedupCluster(str(mh / "buckets"), str(mh / "remove_ids"), config=minhash),
                )
            ],
            1,
        ),
        (
            [
                ("minhash_dedup", JsonlReader(str(work / "base"))),
                (
                    "minhash_dedup",
                    MinhashDedupFilter(str(mh / "remove_ids"), exclusion_writer=excluded("minhash_dedup")),
                ),
                ("pii", PIIFormatter()),
                ("write", JsonlWriter(str(work / "deduped"))),
                (
                    "tokenize",
                    DocumentTokenizer(str(work / "tokens"), str(tokenizer_json), eos_token="<|endoftext|>"),
                ),
            ],
            tasks,
        ),
    ]
    seconds: Counter = Counter()
    counts: Counter = Counter()
    for i, (steps, n_tasks) in enumerate(stages):
        executor = LocalPipelineExecutor(
            pipeline=[step for _, step in steps],
            tasks=n_tasks,
            workers=min(workers, n_tasks),
            logging_dir=str(work / "logs" / str(i)),
            start_method="fork",
            skip_completed=False,
        )
        stats = executor.run()
        assert len(stats.stats) == len(steps), (len(stats.stats), len(steps))
        for (name, _), stat in zip(steps, stats.stats, strict=True):
            seconds[name] += stat.time_stats.total
            for key in ("documents", "tokens"):
                if key in stat.stats:
                    counts[f"{name}.{key}"] += int(getattr(stat.stats[key], "total", stat.stats[key]))
    result.write_text(json.dumps({"stages": dict(seconds), "counts": dict(counts)}))


def run_datatrove(inputs: Path, tokenizer_json: Path, workers: int, work: Path, logs: Path) -> dict:
    work.mkdir(parents=True)
    result = work / "result.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "_datatrove",
        str(inputs),
        str(work),
        str(tokenizer_json),
        str(workers),
        str(result),
    ]
    run = measured(cmd, logs / f"datatrove-{workers}.log")
    child = json.loads(result.read_text())
    fates = datatrove_fates(work)
    run.update(
        stages=child["stages"],
        documents=sum(f == "kept" for f in fates.values()),
        tokens=child["counts"].get("tokenize.tokens", 0),
        read=child["counts"].get("read.documents", 0),
        fates=fates,
    )
    return run


def _jsonl_ids(folder: Path):
    import gzip

    for f in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)["id"]


def _record_id(raw: str) -> str:
    rid = raw.strip().strip("<>")
    return rid.removeprefix("urn:uuid:")


def datatrove_fates(work: Path) -> dict[str, str]:
    """Fates by record id; a page with none was not read or extracted to nothing (fate extract)."""
    fates = {}
    for stage in FATES[:-1]:
        for doc_id in _jsonl_ids(work / "removed" / stage):
            fates[_record_id(doc_id)] = stage
    for doc_id in _jsonl_ids(work / "deduped"):
        fates[_record_id(doc_id)] = "kept"
    return fates


# --------------------------------------------------------------------------- report


def agreement(ours: dict[str, str], theirs: dict[str, str], ids: list[str]) -> dict:
    """Same fate share, and per filter: of the pages both sides passed to it, the share it treated alike."""
    fate_a = [ours.get(i, "extract") for i in ids]
    fate_b = [theirs.get(i, "extract") for i in ids]
    out = {
        "pages": len(ids),
        "same_fate": sum(a == b for a, b in zip(fate_a, fate_b, strict=True)),
        "filters": {},
    }
    order = {f: k for k, f in enumerate(FATES)}
    for stage in FATES[:-1]:
        reached = [
            (a, b) for a, b in zip(fate_a, fate_b, strict=True) if order[a] >= order[stage] <= order[b]
        ]
        alike = sum((a == stage) == (b == stage) for a, b in reached)
        dropped = (sum(a == stage for a, _ in reached), sum(b == stage for _, b in reached))
        out["filters"][stage] = {"reached": len(reached), "alike": alike, "dropped": dropped}
    kept_a = {i for i, f in zip(ids, fate_a, strict=True) if f == "kept"}
    kept_b = {i for i, f in zip(ids, fate_b, strict=True) if f == "kept"}
    out["kept"] = {
        "both": len(kept_a & kept_b),
        "ours_only": len(kept_a - kept_b),
        "theirs_only": len(kept_b - kept_a),
    }
    return out


def input_ids(inputs: Path) -> list[str]:
    from thresher.readers.warc import read_warc

    return [d.id for f in sorted(inputs.glob("*.warc.gz")) for d in read_warc(str(f)) if d.drop is None]


def split(run: dict) -> dict[str, float]:
    """CPU seconds per stage: the stages' own wall seconds scaled by the run's CPU/wall, and the
    rest of the run's CPU as "untimed"."""
    scale = min(1.0, run["cpu"] / run["wall"]) if run["wall"] else 1.0
    rows = {name: run["stages"].get(name, 0.0) * scale for name in STAGE_ROWS}
    rows["untimed"] = run["cpu"] - sum(rows.values())
    return rows


def report(pages: int, runs: dict, agree: dict, cores: int, dump_pages: int) -> None:
    per_k = 1000.0 / pages
    ours, theirs = split(runs["thresher-local"]), split(runs["datatrove-1"])
    print(
        f"\nThe FineWeb recipe, {pages:,} input pages; CPU-seconds per 1,000 input pages "
        f"(one process each; the split scaled by each run's CPU/wall: "
        f"thresher {min(1, runs['thresher-local']['cpu'] / runs['thresher-local']['wall']):.2f}, "
        f"datatrove {min(1, runs['datatrove-1']['cpu'] / runs['datatrove-1']['wall']):.2f})\n"
    )
    print(f"{'stage':<20}{'datatrove':>11}{'thresher':>10}{'ratio':>8}")
    for name in (*STAGE_ROWS, "untimed"):
        a, b = theirs[name] * per_k, ours[name] * per_k
        ratio = f"{a / b:>7.2f}x" if b > 0.005 and a > 0 else f"{'-':>8}"
        print(f"{name:<20}{a:>11.2f}{b:>10.2f}{ratio}")
    print(
        f"\n{'run':<24}{'wall s':>8}{'reaped':>8}{'sampled':>8}{'CPU s':>8}{'CPU-s/1k':>10}{'pages/s':>9}{'/core':>7}{'docs':>7}{'tokens':>11}"
        f"{'vs dt':>8}{'CPU-h/dump':>12}"
    )
    for key, label, peer in (
        ("datatrove-1", "datatrove, 1 process", None),
        ("thresher-local", "thresher --local", "datatrove-1"),
        (f"datatrove-{cores}", f"datatrove, {cores} workers", None),
        ("thresher-ray", f"thresher Ray, {cores} cores", f"datatrove-{cores}"),
    ):
        run = runs.get(key)
        if run is None:
            continue
        width = 1 if key.endswith("-1") or key.endswith("local") else cores
        vs = f"{runs[peer]['cpu'] / run['cpu']:>7.2f}x" if peer in runs else f"{'':>8}"
        print(
            f"{label:<24}{run['wall']:>8.1f}{run['cpu_rusage']:>8.1f}{run['cpu_sampled']:>8.1f}{run['cpu']:>8.1f}"
            f"{run['cpu'] * per_k:>10.2f}{pages / run['wall']:>9.1f}"
            f"{pages / run['wall'] / width:>7.1f}{run['documents']:>7}{run['tokens']:>11,}{vs}"
            f"{run['cpu'] / pages * dump_pages / 3600:>12,.0f}"
        )
    print(
        "\nCPU of the run's process tree: reaped (RUSAGE_CHILDREN), sampled (/proc every 0.25 s; it sees Ray's "
        "workers, which the raylet reaps without rusage); CPU s: the larger"
    )
    print(
        f"'vs dt': datatrove's CPU over ours for the same pages; CPU-h/dump: {dump_pages / 1e9:.2f} billion pages "
        f"({CC_DUMP} by default) at the run's CPU per page"
    )
    if "datatrove-1" in runs:
        print(f"datatrove's WarcReader read {runs['datatrove-1'].get('read', 0):,} of the {pages:,} pages")
    for key, a in agree.items():
        print(
            f"\nagreement, {key} (of {a['pages']:,} pages by WARC record id): same fate {a['same_fate']:,} "
            f"({a['same_fate'] / a['pages']:.1%}); kept by both {a['kept']['both']:,}, thresher only "
            f"{a['kept']['ours_only']:,}, datatrove only {a['kept']['theirs_only']:,}"
        )
        print(f"  {'filter':<20}{'reached both':>13}{'same decision':>15}{'dropped th/dt':>15}")
        for stage, f in a["filters"].items():
            share = f"{f['alike'] / f['reached']:.2%}" if f["reached"] else "-"
            print(f"  {stage:<20}{f['reached']:>13,}{share:>15}{f['dropped'][0]:>8,}/{f['dropped'][1]:<6,}")


def profile(config: Path, out: Path, dest: Path) -> None:
    """An extra, untimed Thresher --local run under py-spy (with its extraction children)."""
    import shutil

    spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(spy).exists():
        logger.warning("py-spy not installed (pip install py-spy): no profile")
        return
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        spy,
        "record",
        "--subprocesses",
        "--format",
        "raw",
        "--rate",
        "50",
        "-o",
        str(dest / "thresher.txt"),
        "--",
        str(ROOT / ".venv" / "bin" / "thresher"),
        "run",
        str(config),
        "--output",
        str(out),
        "--local",
    ]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    own, total = Counter(), Counter()
    for line in (dest / "thresher.txt").read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        own[frames[-1]] += int(n)
        for frame in set(frames):
            total[frame] += int(n)
    samples = sum(own.values())
    print(f"\npy-spy, thresher --local ({samples} samples; {dest / 'thresher.txt'}): top frames by own time")
    for frame, n in own.most_common(15):
        print(f"  {n / samples:6.1%}  {frame}")
    print("top frames in thresher/ by inclusive time")
    for frame, n in [(f, n) for f, n in total.most_common() if "thresher/" in f][:15]:
        print(f"  {n / samples:6.1%}  {frame}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_datatrove":
        inputs, work, tok, workers, result = sys.argv[2:7]
        datatrove_child(Path(inputs), Path(work), Path(tok), int(workers), Path(result))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=4, help="WARC files of the 1,171 pages (default 4)")
    ap.add_argument("--limit", type=int, default=None, help="pages per file (default all 1,171)")
    ap.add_argument("--quick", action="store_true", help="2 files of 25 pages, one process each: a smoke run")
    ap.add_argument("--skip-parallel", action="store_true", help="only the one-process runs")
    ap.add_argument("--vocab-size", type=int, default=None, help="default 16384 (--quick: 1024)")
    ap.add_argument(
        "--dump-pages", type=int, default=CC_DUMP_PAGES, help=f"pages per dump (default {CC_DUMP})"
    )
    ap.add_argument(
        "--profile", type=Path, default=None, help="also profile Thresher --local with py-spy into DIR"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures (no fates) to this file")
    ap.add_argument(
        "--work", type=Path, default=None, help="keep the runs' outputs here (default: a temporary dir)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.quick:
        args.copies, args.limit, args.skip_parallel = 2, args.limit or 25, True
    if not (SHARED / "extraction-scrapinghub-aeb").exists():
        print(f"the shared extraction pages are not in {SHARED} (THRESHER_SHARED_DATA)")
        return 1
    _become_subreaper()
    cores = os.cpu_count() or 1
    inputs = build_inputs(args.copies, args.limit)
    tokenizer = build_tokenizer(args.vocab_size or (1024 if args.quick else 16384))
    ids = input_ids(inputs)
    load = os.getloadavg()
    logger.info(
        "%d pages in %d files; load average %.2f %.2f %.2f; %d cores", len(ids), args.copies, *load, cores
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="recipe-", dir=CACHE / "recipe"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    config = thresher_config(inputs, tokenizer, work)
    plan = [
        ("datatrove-1", lambda: run_datatrove(inputs, tokenizer / "tokenizer.json", 1, work / "dt-1", logs)),
        ("thresher-local", lambda: run_thresher(config, work / "th-local", True, logs)),
    ]
    if not args.skip_parallel and cores > 1:
        plan += [
            (
                f"datatrove-{cores}",
                lambda: run_datatrove(
                    inputs, tokenizer / "tokenizer.json", cores, work / f"dt-{cores}", logs
                ),
            ),
            ("thresher-ray", lambda: run_thresher(config, work / "th-ray", False, logs)),
        ]
    runs = {}
    for key, fn in plan:
        logger.info("running %s", key)
        runs[key] = fn()
        logger.info("%s: %.1f s wall, %.1f s CPU", key, runs[key]["wall"], runs[key]["cpu"])
    agree = {"one process": agreement(runs["thresher-local"]["fates"], runs["datatrove-1"]["fates"], ids)}
    if "thresher-ray" in runs:
        same = sum(
            runs["thresher-ray"]["fates"].get(i) == runs["thresher-local"]["fates"].get(i) for i in ids
        )
        logger.info("thresher Ray vs --local: same fate for %d of %d pages", same, len(ids))
        agree[f"on {cores} cores"] = agreement(
            runs["thresher-ray"]["fates"], runs[f"datatrove-{cores}"]["fates"], ids
        )
    end = os.getloadavg()
    print(
        f"\nmachine: {cores} cores; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}"
    )
    report(len(ids), runs, agree, cores, args.dump_pages)
    if args.json:
        figures = {key: {k: v for k, v in run.items() if k != "fates"} for key, run in runs.items()}
        args.json.write_text(
            json.dumps(
                {"pages": len(ids), "cores": cores, "load": [load, end], "runs": figures, "agreement": agree},
                indent=1,
            )
        )
    if args.profile:
        profile(config, work / "th-profile", args.profile)
    if args.work is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

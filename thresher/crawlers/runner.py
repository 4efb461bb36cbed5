"""Running a crawl job: resume bookkeeping, partitioning by host, one process per partition.

The job directory holds everything::

    DIR/warc/*.warc.gz          finished WARC files (``*.warc.gz.open`` while being written)
    DIR/state/journal-*.tsv     URLs discovered, one journal per partition per run
    DIR/state/*-pNNN.*          partition specs, work lists and stats of the latest run
    DIR/state/budget-*, handoff-*, live-*   what the partitions of a run share (partition.py)
    DIR/crawl-stats.json        summary of the latest run

A restart with the same DIR first salvages ``.open`` files, then treats every URL with a
response record in a WARC file as done, and re-queues the journaled URLs that are not.

Hosts are assigned to partitions by a stable hash of host:port. All partitions run at once,
each a process with its own Twisted reactor (a Ray task when ``partitions > 1``), and each
fetches only its own hosts. A link to a host of another partition is journaled by the
partition that found it and handed to the owner while both run (partition.py), so it is
fetched in the same run and by one process only; the page budget is shared the same way.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from thresher.crawlers import recrawl
from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.frontier import partition_of, read_journal
from thresher.crawlers.output import StoreOutput, journal_key
from thresher.crawlers.run_partition import start as start_partition
from thresher.crawlers.scope import netloc_of, url_key
from thresher.crawlers.spider import PartitionSpec
from thresher.crawlers.warc import StoredResponse, iter_stored_responses, salvage_open_files
from thresher.io import StorageConfig

logger = logging.getLogger(__name__)


@dataclass
class JobState:
    """What earlier runs (and rounds) of a job have archived and discovered."""

    done: dict[int, str] = field(default_factory=dict)
    host_pages: Counter = field(default_factory=Counter)
    pages: int = 0
    warc_files: int = 0

    @classmethod
    def scan(cls, warc_dir: Path, since: str | None = None) -> JobState:
        """``since``: a recrawl pass's start; only captures dated from then on count."""
        state = cls()
        for path in sorted(warc_dir.glob("*.warc.gz")):
            state.warc_files += 1
            try:
                for rec in iter_stored_responses(path):
                    state.add(rec, since)
            except Exception as exc:  # a damaged file: its readable part still counts
                logger.warning("reading %s for resume stopped early: %s", path, exc)
        return state

    @classmethod
    def from_store(cls, output: StoreOutput) -> JobState:
        """The same, from the commit records of a job on a store (output.py)."""
        state = cls()
        state.warc_files = len(output.warc_names())
        for rec in output.responses():
            state.add(rec)
        return state

    def add(self, rec: StoredResponse, since: str | None = None) -> None:
        if since is not None and rec.date < since:
            return
        self.done[url_key(rec.url)] = rec.url
        if rec.is_page:
            self.host_pages[netloc_of(rec.url)] += 1
            self.pages += 1


def _job_dirs(out_dir: Path) -> tuple[Path, Path]:
    warc_dir, state_dir = out_dir / "warc", out_dir / "state"
    warc_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    return warc_dir, state_dir


def _journal_entries(paths) -> dict[int, tuple[int, str]]:
    entries: dict[int, tuple[int, str]] = {}
    for path in paths:
        for depth, url in read_journal(path):
            key = url_key(url)
            if key not in entries or depth < entries[key][0]:
                entries[key] = (depth, url)
    return entries


def plan_run(
    config: CrawlConfig,
    out_dir: Path,
    run_id: str,
    work: dict[int, tuple[int, str]],
    seeds: set[int],
    job: JobState,
    store: StoreOutput | None = None,
) -> list[Path]:
    """Write one spec per partition, every partition (one without seeds of its own gets its
    work handed over by the others while they run); returns their paths. The page budget left
    is shared by all of them (partition.SharedBudget), not split in advance. With ``store``
    the specs go to its local scratch directory and the partitions write to the store."""
    state_dir = store.state_dir if store is not None else _job_dirs(out_dir)[1]
    n = config.partitions
    shares: list[list[tuple[str, int, str]]] = [[] for _ in range(n)]
    for key, (depth, url) in work.items():
        kind = "seed" if key in seeds else "pending"
        shares[partition_of(netloc_of(url), n)].append((kind, depth, url))
    remaining = max(config.max_pages - job.pages, 0) if config.max_pages else 0
    if config.max_pages and remaining == 0:
        return []
    budget_path = state_dir / f"budget-{run_id}.bin"
    specs = []
    for part in range(n):
        tag = f"{run_id}-of{n}-p{part:03d}"
        work_file = state_dir / f"work-{tag}.tsv"
        with open(work_file, "w", encoding="utf-8") as fh:
            for url in {netloc_of(u): u for u in config.seeds}.values():
                fh.write(f"scope\t0\t{url}\n")
            for url in job.done.values():
                if partition_of(netloc_of(url), n) == part:
                    fh.write(f"done\t0\t{url}\n")
            for kind, depth, url in sorted(shares[part], key=lambda t: (t[0] != "seed", t[1])):
                fh.write(f"{kind}\t{depth}\t{url}\n")
        spec = PartitionSpec(
            config=config.to_dict(),
            partition=part,
            partitions=n,
            output_dir=str(out_dir),
            work_file=str(work_file),
            journal_path=str(state_dir / f"journal-{tag}.tsv"),
            stats_path=str(state_dir / f"stats-{tag}.json"),
            max_pages=remaining,
            host_pages={h: c for h, c in job.host_pages.items() if partition_of(h, n) == part},
            run_tag=run_id,
            budget_path=str(budget_path),
            output_uri=store.uri if store is not None else "",
            journal_key=journal_key(tag) if store is not None else "",
            storage=asdict(store.store.config) if store is not None else {},
        )
        path = state_dir / f"spec-{tag}.json"
        path.write_text(json.dumps(asdict(spec), indent=1), encoding="utf-8")
        specs.append(path)
    return specs


_PARTITION_MAIN = (
    "import sys; del sys.path[0]; "  # the working directory: a thresher/ there is not ours
    "from thresher.crawlers.run_partition import main; sys.exit(main(sys.argv[1:]))"
)


def partition_command(spec_path: str | Path) -> list[str]:
    """The partition's process: ``python -m`` would put the working directory first on its
    path, so a crawl started inside another checkout ran that checkout's crawler."""
    return [sys.executable, "-c", _PARTITION_MAIN, str(spec_path)]


def _child_env() -> dict[str, str]:
    import thresher

    root = str(Path(thresher.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


ENDED_WELL = ("finished", "max_pages")
"""Finish reasons after which the other partitions need no stop signal."""


def _load_stats(spec_path: str | Path, returncode: int) -> dict:
    spec = PartitionSpec.load(spec_path)
    stats_path = Path(spec.stats_path)
    if not stats_path.exists():
        logger.error("partition %d exited with %d and wrote no stats", spec.partition, returncode)
        return {"partition": spec.partition, "failed": True, "returncode": returncode}
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    stats["returncode"] = returncode
    return stats


def run_partition_process(spec_path: str | Path) -> dict:
    """Run one partition to completion in a child process; returns its stats."""
    proc = subprocess.run(partition_command(spec_path), env=_child_env(), check=False)
    return _load_stats(spec_path, proc.returncode)


def _ended_badly(stats: dict) -> bool:
    return bool(stats.get("failed")) or stats.get("finish_reason") not in ENDED_WELL


def _run_specs(specs: list[Path], use_ray: bool, stop_file: Path) -> list[dict]:
    """Run every partition at once (they hand links to each other while they run); when one
    ends badly, ``stop_file`` tells the others to close rather than wait for it."""
    if not specs:
        return []
    if use_ray:
        return _run_on_ray(specs, stop_file)
    procs = {start_partition(p, partition_command(p), _child_env()): p for p in specs}
    results = []
    try:
        while procs:
            for proc in [p for p in procs if p.poll() is not None]:
                stats = _load_stats(procs.pop(proc), proc.returncode)
                if _ended_badly(stats) and procs:
                    stop_file.touch()
                results.append(stats)
            time.sleep(0.05)
    finally:
        for proc in procs:  # interrupted: the children get Ctrl-C too; wait for their stats
            proc.wait()
    return sorted(results, key=lambda r: r["partition"])


def _run_on_ray(specs: list[Path], stop_file: Path) -> list[dict]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # num_cpus=0: all partitions must run at once (each waits for the others' hand-overs),
    # whatever the CPUs. They stay on the driver's node: their specs, the shared budget, the
    # hand-over mailboxes and the liveness records are files in its state directory, which a
    # partition on a node without that disk would not see (it would fail or wait forever).
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    task = ray.remote(num_cpus=0, max_retries=0, scheduling_strategy=here)(run_partition_process)
    pending = [task.remote(str(p)) for p in specs]
    results = []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for stats in ray.get(done):
            if _ended_badly(stats) and pending:
                stop_file.touch()
            results.append(stats)
    return sorted(results, key=lambda r: r["partition"])


def _new_run_id(state_dir: Path, taken: set[str] = frozenset()) -> str:
    """A timestamp no earlier run of the job used (two runs may start in the same second);
    ``taken``: the ids of runs whose journals are on the job's store."""
    run_id = base = time.strftime("%Y%m%dT%H%M%S")
    n = 1
    while run_id in taken or any(state_dir.glob(f"*-{run_id}-*")) or any(state_dir.glob(f"*-{run_id}.*")):
        n += 1
        run_id = f"{base}.{n}"
    return run_id


def _remove_shared_files(state_dir: Path, run_id: str) -> None:
    """What the partitions shared while running (partition.py); the journals keep the links."""
    for pattern in (f"budget-{run_id}.bin", f"handoff-{run_id}-*", f"live-{run_id}-*", f"stop-{run_id}"):
        for path in state_dir.glob(pattern):
            path.unlink(missing_ok=True)


def crawl(
    config: CrawlConfig,
    out_dir: str | Path,
    use_ray: bool | None = None,
    storage: StorageConfig | None = None,
) -> dict:
    """Run (or resume) the crawl job in ``out_dir``; returns and writes ``crawl-stats.json``.

    ``out_dir`` is a local directory or a store's URI (``s3://bucket/job``, any fsspec URI;
    output.py), probed with a write before any work; ``storage``: its retries and timeouts (the
    config's ``storage:`` section). ``use_ray`` defaults to
    ``config.partitions > 1``; Ray must already be initialised then.
    """
    store = None
    if _is_uri(str(out_dir)):
        store = _open_store(config, str(out_dir), storage)
    elif str(out_dir).startswith("file://"):
        out_dir = str(out_dir)[len("file://") :]
    try:
        return _crawl(config, out_dir, use_ray, store)
    except (OSError, *_storage_errors()) as exc:
        if store is None:
            raise
        from thresher.errors import OutputProblem
        from thresher.io import _storage_problem

        raise OutputProblem(f"{store.uri}: {_storage_problem(exc, write=True)}") from exc
    finally:
        if store is not None:
            store.close()


def _storage_errors() -> tuple[type[BaseException], ...]:
    """What a store's client raises besides OSError (s3fs turns most errors into OSErrors)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()
    return (BotoCoreError, ClientError)


def _is_uri(target: str) -> bool:
    return "://" in target and not target.startswith("file://")


def _open_store(config: CrawlConfig, uri: str, storage: StorageConfig | None) -> StoreOutput:
    """The job's store, checked with a probe write (a missing bucket, no credentials or no
    permission is one line, before anything is fetched or written)."""
    from thresher.errors import UsageError
    from thresher.io import Store

    if config.recrawl:
        raise UsageError("--recrawl needs a local --output for now (its capture index is a local file)")
    backend = Store.from_uri(uri, storage)
    backend.probe()
    return StoreOutput(backend)


def _crawl(config: CrawlConfig, out_dir: str | Path, use_ray: bool | None, store: StoreOutput | None) -> dict:
    if store is None:
        out_dir = Path(out_dir)
        warc_dir, state_dir = _job_dirs(out_dir)
    else:
        out_dir, warc_dir, state_dir = store.scratch, None, store.state_dir

    def scan(since: str | None) -> JobState:
        return JobState.scan(warc_dir, since) if store is None else JobState.from_store(store)

    use_ray = config.partitions > 1 if use_ray is None else use_ray
    started = time.monotonic()
    salvaged = salvage_open_files(warc_dir) if store is None else store.salvage()
    since = recrawl.begin_pass(out_dir) if config.recrawl else None
    job = scan(since)
    pages_before = job.pages
    seeds = {url_key(u): (0, u) for u in config.seeds}
    work = _journal_entries(sorted(state_dir.glob("journal-*.tsv")) if store is None else store.journals())
    work.update(seeds)
    work = {k: v for k, v in work.items() if k not in job.done}
    if job.done:
        logger.info(
            "resuming: %d URLs archived in %d WARC files, %d still to fetch",
            len(job.done),
            job.warc_files,
            len(work),
        )
    run_id = _new_run_id(state_dir, store.taken_run_ids() if store is not None else frozenset())
    partitions: list[dict] = []
    specs = plan_run(config, out_dir, run_id, work, set(seeds), job, store) if work else []
    if specs:
        logger.info("%d partitions, %d URLs queued", len(specs), len(work))
        partitions = _run_specs(specs, use_ray, state_dir / f"stop-{run_id}")
        _remove_shared_files(state_dir, run_id)
        if any(p.get("failed") or p.get("warc_not_uploaded") for p in partitions):
            job = scan(since)  # what a partition that died left: from the WARC files
        else:  # each partition counted its pages; a second read of every WARC file was serial
            job.pages += sum(p.get("pages", 0) for p in partitions)
    complete = all(p.get("finish_reason") == "finished" for p in partitions)
    elapsed = time.monotonic() - started
    summary = summarise(partitions, elapsed)
    if since is not None and complete and not summary["failed_partitions"]:
        recrawl.end_pass(out_dir)
    summary.update(
        output_dir=str(out_dir) if store is None else store.uri,
        rounds=1 if specs else 0,
        partitions_configured=config.partitions,
        ray=use_ray,
        salvaged_warc_files=salvaged,
        pages_archived_before=pages_before,
        pages_archived_total=job.pages,
    )
    if store is None:
        summary["warc_files"] = sorted(str(p) for p in warc_dir.glob("*.warc.gz"))
        (out_dir / "crawl-stats.json").write_text(
            json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8"
        )
    else:
        try:
            summary["warc_files"] = [store.store.uri_of(f"warc/{n}") for n in store.warc_names()]
            store.write_summary(summary)
        except Exception as exc:  # the partitions logged what they could not upload, and kept it
            from thresher.errors import OutputProblem
            from thresher.io import scrub_secrets

            problem = scrub_secrets(f"{type(exc).__name__}: {exc}")
            raise OutputProblem(
                f"{store.uri}: crawl-stats.json not written ({problem}); "
                f"{summary['failed_partitions']} partitions failed"
            ) from exc
    return summary


def summarise(partitions: list[dict], elapsed: float) -> dict:
    totals: dict = {
        "pages": 0,
        "payload_bytes": 0,
        "response_bytes": 0,
        "warc_bytes": 0,
        "requests": 0,
        "robots_denied": 0,
        "robots_unavailable": 0,
        "blocked_address": 0,
        "retries": 0,
        "handed_over": 0,
        "handoffs_received": 0,
    }
    merged: dict[str, Counter] = {
        k: Counter()
        for k in (
            "status_codes",
            "errors",
            "skipped",
            "overflow",
            "redirect_refused",
            "sitemap",
            "retry_reasons",
            "robots_txt",
            "blocked_address_kinds",
            "optout",
            "optout_flagged",
            "tdmrep",
            "recrawl",
        )
    }
    failed = 0
    for p in partitions:
        if p.get("failed"):
            failed += 1
            continue
        if p.get("warc_not_uploaded"):  # archived, counted below, but not on the job's store
            failed += 1
        for k in totals:
            totals[k] += p.get(k, 0)
        for k, counter in merged.items():
            counter.update(p.get(k, {}))
    return {
        **totals,
        **{k: dict(sorted(v.items())) for k, v in merged.items()},
        "failed_partitions": failed,
        "elapsed_s": round(elapsed, 3),
        "pages_per_s": round(totals["pages"] / elapsed, 2) if elapsed else 0.0,
        "mb_per_s": round(totals["response_bytes"] / elapsed / 1e6, 3) if elapsed else 0.0,
        "partitions": partitions,
    }


def format_summary(s: dict) -> str:
    lines = [
        f"crawl finished in {s['elapsed_s']:.1f} s: {s['pages']} pages archived "
        f"({s['pages_per_s']} pages/s, {s['mb_per_s']} MB/s), {s['requests']} requests, "
        f"{s['pages_archived_total']} pages in the job's WARC files",
        f"  status codes: {s['status_codes']}",
        f"  robots.txt denials: {s['robots_denied']}; refused for an unreachable robots.txt: "
        f"{s['robots_unavailable']}; refused addresses: {s['blocked_address']}"
        + (f" {s['blocked_address_kinds']}" if s["blocked_address"] else "")
        + f"; retries: {s['retries']}"
        + (f" {s['retry_reasons']}" if s["retries"] else ""),
    ]
    if s["overflow"]:
        lines.append(f"  links not queued (frontier bounds): {s['overflow']}")
    if s["optout"] or s["optout_flagged"]:
        lines.append(
            f"  opted out of AI training: not archived {s['optout']}, archived flagged {s['optout_flagged']}"
        )
    if s["recrawl"]:
        lines.append(f"  recrawl: {s['recrawl']}")
    if s["errors"]:
        lines.append(f"  errors: {s['errors']}")
    if s["skipped"]:
        lines.append(f"  skipped: {s['skipped']}")
    if s["failed_partitions"]:
        lines.append(f"  FAILED partitions: {s['failed_partitions']}")
    lines.append(
        f"  output: {s['output_dir']}/warc ({len(s['warc_files'])} files), stats in crawl-stats.json"
    )
    return "\n".join(lines)

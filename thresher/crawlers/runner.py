"""Running a crawl job: resume bookkeeping, partitioning by host, one process per partition.

The job directory holds everything::

    DIR/warc/*.warc.gz          finished WARC files (``*.warc.gz.open`` while being written)
    DIR/state/journal-*.tsv     URLs discovered, one journal per partition per run
    DIR/state/*-pNNN.*          partition specs, work lists and stats of the latest round
    DIR/crawl-stats.json        summary of the latest run

A restart with the same DIR first salvages ``.open`` files, then treats every URL with a
response record in a WARC file as done, and re-queues the journaled URLs that are not.

Hosts are assigned to partitions by a stable hash of host:port. A link to a host of another
partition is journaled by the partition that found it and handed over in a further round,
so no URL is fetched by two processes.
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

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.frontier import partition_of, read_journal
from thresher.crawlers.scope import netloc_of, url_key
from thresher.crawlers.spider import PartitionSpec
from thresher.crawlers.warc import iter_stored_responses, salvage_open_files

logger = logging.getLogger(__name__)

MAX_ROUNDS = 20


@dataclass
class JobState:
    """What earlier runs (and rounds) of a job have archived and discovered."""

    done: dict[int, str] = field(default_factory=dict)
    host_pages: Counter = field(default_factory=Counter)
    pages: int = 0
    warc_files: int = 0

    @classmethod
    def scan(cls, warc_dir: Path) -> JobState:
        state = cls()
        for path in sorted(warc_dir.glob("*.warc.gz")):
            state.warc_files += 1
            try:
                for rec in iter_stored_responses(path):
                    state.done[url_key(rec.url)] = rec.url
                    if 200 <= rec.status < 300:
                        state.host_pages[netloc_of(rec.url)] += 1
                        state.pages += 1
            except Exception as exc:  # a damaged file: its readable part still counts
                logger.warning("reading %s for resume stopped early: %s", path, exc)
        return state


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


def _handoffs(journals: list[Path]) -> dict[int, tuple[int, str]]:
    """URLs journaled this run by a partition they do not belong to (not fetched there)."""
    out: dict[int, tuple[int, str]] = {}
    for path in journals:
        writer = int(path.stem.rsplit("-p", 1)[1])
        partitions = int(path.stem.split("-of")[1].split("-")[0])
        for depth, url in read_journal(path):
            if partition_of(netloc_of(url), partitions) != writer:
                out.setdefault(url_key(url), (depth, url))
    return out


def plan_round(
    config: CrawlConfig,
    out_dir: Path,
    run_id: str,
    round_no: int,
    work: dict[int, tuple[int, str]],
    seeds: set[int],
    job: JobState,
) -> list[Path]:
    """Write one spec per partition with work to do; returns their paths."""
    _, state_dir = _job_dirs(out_dir)
    n = config.partitions
    shares: list[list[tuple[str, int, str]]] = [[] for _ in range(n)]
    for key, (depth, url) in work.items():
        kind = "seed" if key in seeds else "pending"
        shares[partition_of(netloc_of(url), n)].append((kind, depth, url))
    remaining = max(config.max_pages - job.pages, 0) if config.max_pages else 0
    busy = [i for i in range(n) if shares[i]]
    specs = []
    for rank, part in enumerate(busy):
        budget = 0
        if config.max_pages:
            budget = remaining // len(busy) + (1 if rank < remaining % len(busy) else 0)
            if budget == 0:
                continue
        tag = f"{run_id}-r{round_no:02d}-of{n}-p{part:03d}"
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
            max_pages=budget,
            host_pages={h: c for h, c in job.host_pages.items() if partition_of(h, n) == part},
        )
        path = state_dir / f"spec-{tag}.json"
        path.write_text(json.dumps(asdict(spec), indent=1), encoding="utf-8")
        specs.append(path)
    return specs


def partition_command(spec_path: str | Path) -> list[str]:
    return [sys.executable, "-m", "thresher.crawlers.run_partition", str(spec_path)]


def _child_env() -> dict[str, str]:
    import thresher

    root = str(Path(thresher.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_partition_process(spec_path: str | Path) -> dict:
    """Run one partition to completion in a child process; returns its stats."""
    proc = subprocess.run(partition_command(spec_path), env=_child_env(), check=False)
    spec = PartitionSpec.load(spec_path)
    stats_path = Path(spec.stats_path)
    if not stats_path.exists():
        logger.error("partition %d exited with %d and wrote no stats", spec.partition, proc.returncode)
        return {"partition": spec.partition, "failed": True, "returncode": proc.returncode}
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    stats["returncode"] = proc.returncode
    return stats


def _run_specs(specs: list[Path], use_ray: bool) -> list[dict]:
    if not use_ray:
        return [run_partition_process(p) for p in specs]
    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(run_partition_process)
    return ray.get([task.remote(str(p)) for p in specs])


def crawl(config: CrawlConfig, out_dir: str | Path, use_ray: bool | None = None) -> dict:
    """Run (or resume) the crawl job in ``out_dir``; returns and writes ``crawl-stats.json``.

    ``use_ray`` defaults to ``config.partitions > 1``; Ray must already be initialised then.
    """
    out_dir = Path(out_dir)
    warc_dir, state_dir = _job_dirs(out_dir)
    use_ray = config.partitions > 1 if use_ray is None else use_ray
    started = time.monotonic()
    salvaged = salvage_open_files(warc_dir)
    job = JobState.scan(warc_dir)
    pages_before = job.pages
    seeds = {url_key(u): (0, u) for u in config.seeds}
    work = _journal_entries(sorted(state_dir.glob("journal-*.tsv")))
    work.update(seeds)
    work = {k: v for k, v in work.items() if k not in job.done}
    if job.done:
        logger.info(
            "resuming: %d URLs archived in %d WARC files, %d still to fetch",
            len(job.done),
            job.warc_files,
            len(work),
        )
    run_id = time.strftime("%Y%m%dT%H%M%S")
    dispatched: set[int] = set()
    partitions: list[dict] = []
    round_no = 0
    while work and round_no < MAX_ROUNDS:
        specs = plan_round(config, out_dir, run_id, round_no, work, set(seeds), job)
        if not specs:
            break
        dispatched.update(work)
        logger.info("round %d: %d partitions, %d URLs queued", round_no, len(specs), len(work))
        partitions += _run_specs(specs, use_ray)
        job = JobState.scan(warc_dir)
        handoff = _handoffs(sorted(state_dir.glob(f"journal-{run_id}-r{round_no:02d}-*.tsv")))
        work = {k: v for k, v in handoff.items() if k not in job.done and k not in dispatched}
        round_no += 1
    elapsed = time.monotonic() - started
    summary = summarise(partitions, elapsed)
    summary.update(
        output_dir=str(out_dir),
        rounds=round_no,
        partitions_configured=config.partitions,
        ray=use_ray,
        salvaged_warc_files=salvaged,
        pages_archived_before=pages_before,
        pages_archived_total=job.pages,
        warc_files=sorted(str(p) for p in warc_dir.glob("*.warc.gz")),
    )
    (out_dir / "crawl-stats.json").write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
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
        )
    }
    failed = 0
    for p in partitions:
        if p.get("failed"):
            failed += 1
            continue
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

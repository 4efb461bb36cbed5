"""``thresher crawl``: crawl seeds (or the bundled demo site) into WARC files."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from thresher.errors import InputProblem, UsageError

logger = logging.getLogger(__name__)

DEMO_SITE = Path(__file__).resolve().parents[2] / "examples" / "demo-site"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "crawl",
        help="crawl the web (politely) into WARC files",
        description="Crawl seed URLs into WARC/1.1 files in DIR/warc. Re-running with the same "
        "--output resumes the job without refetching archived pages.",
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="seed URLs (in addition to --seeds)")
    p.add_argument("--seeds", metavar="FILE", help="file with one seed URL per line (# comments)")
    p.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        required=True,
        help="job directory, or a URI (s3://bucket/job, gs://..., any fsspec URI): WARC files are "
        "uploaded as they close, the resume journal beside them",
    )
    p.add_argument("--config", metavar="YAML", help="crawl settings (top level or a crawl: section)")
    p.add_argument("--max-pages", type=int, help="stop after this many archived pages")
    p.add_argument(
        "--max-pages-per-host",
        type=int,
        help="store at most this many pages of one host (default 10000; 0: no limit)",
    )
    p.add_argument(
        "--max-queued-requests",
        type=int,
        help="page requests queued per partition, on disk (default 10000000, ~300 MB RAM; 0: no limit)",
    )
    p.add_argument(
        "--partitions",
        type=int,
        help="crawl processes, each owning a share of the hosts (Ray tasks with --ray-address)",
    )
    p.add_argument(
        "--allow-private",
        action="store_true",
        help="allow private/loopback addresses (link-local ones such as 169.254.169.254 stay refused)",
    )
    p.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="allow addresses in this network, link-local included (repeatable)",
    )
    p.add_argument(
        "--recrawl",
        action="store_true",
        help="fetch the job's pages again, conditionally: unchanged ones become WARC revisit "
        "records (seeds default to the job's own)",
    )
    p.add_argument(
        "--archive-opted-out",
        action="store_true",
        help="archive pages that opt out of AI training too, flagged in the WARC (the optout "
        "stage drops them); default: not archived, counted",
    )
    p.add_argument(
        "--demo", action="store_true", help="serve the bundled demo site on 127.0.0.1 and crawl it"
    )
    p.add_argument(
        "--ray-address",
        help="Ray cluster to run the partitions on (default: $RAY_ADDRESS; neither: local processes)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a crawl setting, e.g. --set max_depth=3 (repeatable)",
    )
    p.set_defaults(func=run_crawl)


def read_seed_file(path: str | Path) -> list[str]:
    """Seed URLs from a file; malformed lines are skipped with a warning, never fatal."""
    seeds, bad = [], 0
    for n, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        if re.match(r"https?://[^/\s]+", line) and " " not in line:
            seeds.append(line)
        else:
            bad += 1
            logger.warning("%s:%d: not an http(s) URL, skipped: %r", path, n, line[:200])
    if bad:
        logger.warning("%s: %d malformed seed lines skipped", path, bad)
    return seeds


def flag_overrides(args) -> list[str]:
    """The command-line flags as ``key=value`` overrides, after those given with ``--set``."""
    overrides = list(args.overrides)
    for name in ("max_pages", "max_pages_per_host", "max_queued_requests", "partitions"):
        if getattr(args, name) is not None:
            overrides.append(f"{name}={getattr(args, name)}")
    if args.allow_private or args.demo:
        overrides.append("allow_private=true")
    if args.recrawl:
        overrides.append("recrawl=true")
    if args.archive_opted_out:
        overrides.append("archive_opted_out=true")
    if args.allow_network:
        overrides.append("allow_networks=" + json.dumps(args.allow_network))  # JSON is YAML
    return overrides


def run_crawl(args) -> int:
    from thresher.crawlers.config import load_crawl_config, load_storage_config
    from thresher.crawlers.runner import crawl, format_summary

    overrides = flag_overrides(args)
    # A ConfigError (or the errors below) is one `thresher: ...` line with its exit code (thresher/cli.py).
    config = load_crawl_config(args.config, overrides)
    storage = load_storage_config(args.config)
    if config.recrawl and "://" in args.output and not args.output.startswith("file://"):
        raise UsageError("--recrawl needs a local --output for now (its capture index is a local file)")
    seeds = list(config.seeds) + list(args.urls)
    if args.seeds:
        if not Path(args.seeds).exists():
            raise InputProblem(f"--seeds: file not found: {args.seeds}")
        seeds += read_seed_file(args.seeds)
    if config.recrawl and not seeds:
        from thresher.crawlers.recrawl import previous_seeds

        seeds = previous_seeds(args.output)
    config.seeds = list(dict.fromkeys(seeds))
    config.validate("crawl")
    site = None
    if args.demo:
        from thresher.crawlers.localsite import LocalSite

        if not DEMO_SITE.is_dir():
            raise InputProblem(f"demo site not found at {DEMO_SITE} (it ships with the source tree)")
        site = LocalSite(DEMO_SITE).start()
        config.seeds.insert(0, site.url("/"))
        if not any(o.startswith("autothrottle=") for o in overrides):
            config.autothrottle = False  # our own server: no need to probe for a polite rate
        logger.info("serving the demo site (%s) at %s", DEMO_SITE, site.url("/"))
    if not config.seeds:
        raise UsageError("no seeds: give URLs, --seeds FILE, or --demo")
    # Partitions on one machine are plain processes: a local Ray cost 10 CPU-s, 13 s and 1.1 GB
    # for nothing. Ray spreads them over a cluster's nodes when one is named.
    use_ray = config.partitions > 1 and bool(args.ray_address or os.environ.get("RAY_ADDRESS"))
    if use_ray:
        from thresher.raycontext import init_ray

        init_ray(args.ray_address)
    try:
        summary = crawl(config, args.output, use_ray=use_ray, storage=storage)
    finally:
        if site is not None:
            site.stop()
    print(format_summary(summary))
    return 1 if summary["failed_partitions"] else 0

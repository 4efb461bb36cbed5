"""Crawler throughput on a synthetic web served by nginx on 127.0.0.1 (hosts = ports).

    .venv/bin/python bench/crawl.py [--hosts 10,100,1000] [--budget 600] [--repeats 3]
                                    [--contenders t1,t1r,t2,t2r,bare,wget] [--one-seed]
    .venv/bin/python bench/crawl.py --scaling --hosts 100,1000 --budget 20000 --repeats 1

For each host count the bench generates the web (bench/synthweb.py: ~25 KB real-text pages,
~10 links within the host and ~2 across, robots.txt per host), starts its own nginx on it, and
runs each contender ``--repeats`` times, in turn, against the same seeds and page budget:

* ``t1`` / ``t2``: ``thresher crawl`` with 1 / 2 partitions and the default politeness;
* ``t1r`` / ``t2r``: the same with politeness relaxed (no AutoThrottle, 4 connections per host,
  no sitemaps; robots.txt still obeyed);
* ``bare``: a plain Scrapy spider without WARC or robots.txt (bench/bare_spider.py), the ceiling;
* ``wget``: ``wget -r --warc-file``, one process per host (16 at a time), no page budget.

Each command runs as a child process; its process tree (Ray's workers included) is sampled from
/proc for CPU time and peak RSS. From nginx's access log: pages fetched (200 HTML), requests,
pages fetched twice, and pages fetched past the budget. Printed: medians over the repeats and
the load average when the host count started (other work on the machine inflates CPU figures).
Without nginx the bench says so and exits. The pipeline peers (datatrove, NeMo Curator, Dolma,
DCLM tooling, data-juicer) have no crawler — they start from Common Crawl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synthweb import Nginx, generate, nginx_path  # noqa: E402

PY = sys.executable
THRESHER = [str(Path(PY).with_name("thresher"))]
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
RELAXED = ["--set", "autothrottle=false", "--set", "concurrent_per_host=4", "--set", "sitemaps=false"]
NAMES = {
    "t1": "thresher, 1 partition, defaults",
    "t1r": "thresher, 1 partition, relaxed",
    "t2": "thresher, 2 partitions, defaults",
    "t2r": "thresher, 2 partitions, relaxed",
    "bare": "bare Scrapy spider (no WARC/robots)",
    "wget": "wget -r --warc-file (per host)",
}


# ---------------------------------------------------------------- process-tree accounting


def _proc_table() -> dict[int, tuple[int, float, int]]:
    """pid -> (ppid, cpu seconds, rss bytes) for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("latin-1")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK, int(fields[21]) * PAGE)
    return out


class TreeSampler(threading.Thread):
    """Samples the CPU time and RSS of a process and all its descendants every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            table = _proc_table()
            tree, frontier = {self.pid}, [self.pid]
            children: dict[int, list[int]] = {}
            for pid, (ppid, _, _) in table.items():
                children.setdefault(ppid, []).append(pid)
            while frontier:
                for c in children.get(frontier.pop(), []):
                    if c not in tree:
                        tree.add(c)
                        frontier.append(c)
            rss = 0
            for pid in tree:
                if pid in table:
                    self.cpu[pid] = max(self.cpu.get(pid, 0.0), table[pid][1])
                    rss += table[pid][2]
            self.peak_rss = max(self.peak_rss, rss)
            self.stopped.wait(self.interval)


def measure(cmd: list[str], env: dict, log_path: Path, cwd: str | Path = ROOT) -> dict:
    """Run ``cmd``; wall seconds, CPU seconds of its whole tree, peak RSS of the tree."""
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    sampler.stopped.set()
    sampler.join()
    reaped = usage.ru_utime + usage.ru_stime  # the child and the descendants it waited for
    return {
        "rc": proc.returncode,
        "wall_s": wall,
        "cpu_s": max(reaped, sum(sampler.cpu.values())),
        "peak_rss_mb": max(sampler.peak_rss, usage.ru_maxrss * 1024) / 1e6,
    }


# ---------------------------------------------------------------- contenders


def child_env() -> dict:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def thresher_cmd(seeds: Path, out: Path, budget: int, partitions: int, relaxed: bool) -> list[str]:
    cmd = THRESHER + ["crawl", "--seeds", str(seeds), "-o", str(out), "--max-pages", str(budget)]
    cmd += ["--allow-private", "--partitions", str(partitions)]
    cmd += ["--set", "allowed_domains=[127.0.0.1]", "--set", "max_depth=100", "--set", "log_level=WARNING"]
    return cmd + (RELAXED if relaxed else [])


def run_wget(web, out: Path, env: dict, at_once: int = 16) -> dict:
    """One wget per host, ``at_once`` at a time, under one shell so one tree is measured."""
    out.mkdir(parents=True)
    script = out / "wget.sh"
    lines = [
        # wget tells hosts apart by name only, not port: the regex keeps each one on its host
        f"wget -q -r -l inf -np -e robots=on --delete-after --warc-file={out}/h{h} "
        f"--accept-regex '^http://127[.]0[.]0[.]1:{web.base_port + h}/' "
        f"--no-warc-keep-log -P {out}/t{h} {web.url(h)}"
        for h in range(web.hosts)
    ]
    for h, line in enumerate(lines):
        (out / f"wget-{h}.sh").write_text(line + "\n", encoding="utf-8")
    (out / "wget.lst").write_text(
        "".join(f"{out}/wget-{h}.sh\n" for h in range(len(lines))), encoding="utf-8"
    )
    script.write_text(f"xargs -P {at_once} -n 1 sh < {out}/wget.lst\n", encoding="utf-8")
    return measure(["sh", str(script)], env, out / "log.txt")


def html_path(path: str) -> bool:
    return path == "/" or path.endswith(".html")


def label(kind: str) -> str:
    base, _, tree = kind.partition("@")
    return NAMES[base] + (" [before]" if tree else "")


def run_one(kind: str, web, nginx: Nginx, seeds: Path, budget: int, work: Path, env: dict) -> dict:
    """One run of one contender; ``KIND@PATH`` runs thresher from the source tree at PATH."""
    kind, _, tree = kind.partition("@")
    if tree:
        env = dict(env, PYTHONPATH=tree)
    out = work / f"{kind}-{time.monotonic_ns()}"
    since = nginx.log_size()
    if kind == "wget":
        r = run_wget(web, out, env)
    elif kind == "bare":
        out.mkdir(parents=True)
        cmd = [PY, str(ROOT / "bench" / "bare_spider.py"), str(seeds), "--max-pages", str(budget)]
        r = measure(cmd, env, out / "log.txt")
    else:
        partitions = 2 if kind.startswith("t2") else 1
        out.mkdir(parents=True)
        cmd = thresher_cmd(seeds, out / "job", budget, partitions, kind.endswith("r"))
        # in the tree's directory too: its partitions start with ``python -m``, which imports
        # the working directory's thresher/ first
        r = measure(cmd, env, out / "log.txt", cwd=tree or ROOT)
    time.sleep(0.3)  # nginx writes its log line after the response
    hits = nginx.hits(since)
    per_url = Counter((port, path) for port, _, path in hits)
    fetched = sum(1 for _, status, path in hits if status == 200 and html_path(path))
    r["requests"] = len(hits)
    r["fetched"] = fetched
    r["double"] = sum(n - 1 for n in per_url.values() if n > 1)
    r["private"] = sum(1 for _, _, path in hits if path.startswith("/private/"))
    stats_file = out / "job" / "crawl-stats.json"
    if stats_file.exists():
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        r["pages"] = stats["pages"]
        r["past_budget"] = max(0, fetched - budget)
        r["unarchived"] = fetched - stats["pages"]
    else:
        r["pages"] = fetched
        r["past_budget"] = max(0, fetched - budget) if kind != "wget" else None
        r["unarchived"] = None
    if r["rc"] != 0:
        tail = (out / "log.txt").read_text(errors="replace")[-1500:] if (out / "log.txt").exists() else ""
        print(f"  ! {kind} exited with {r['rc']}: {tail}", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return r


# ---------------------------------------------------------------- memory


def memory_per_queued_url(n: int = 100_000) -> dict:
    """Bytes of Python objects per queued URL: its seen-set key and its Request object."""
    from scrapy.http import Request

    from thresher.crawlers.frontier import Frontier

    urls = [f"https://host{i % 997}.example.org/section/{i // 997}/page-{i}.html?ref=nav" for i in range(n)]
    tracemalloc.start()
    frontier = Frontier(None)
    base = tracemalloc.get_traced_memory()[0]
    for u in urls:
        frontier.add(u, 1)
    seen = tracemalloc.get_traced_memory()[0] - base
    base = tracemalloc.get_traced_memory()[0]
    queued = [Request(u, priority=-1, meta={"depth": 1, "thresher_kind": "page"}) for u in urls]
    requests = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del queued
    return {"seen_b": seen / n, "request_b": requests / n}


# ---------------------------------------------------------------- report


def median(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def summary_line(kind: str, rows: list[dict], bare_pps: float | None) -> str:
    pages = median(rows, "pages")
    wall = median(rows, "wall_s")
    pps = statistics.median(r["pages"] / r["wall_s"] for r in rows)
    cpu_ms = statistics.median(1000 * r["cpu_s"] / max(r["pages"], 1) for r in rows)
    rpp = statistics.median(r["requests"] / max(r["pages"], 1) for r in rows)
    past = median(rows, "past_budget")
    unarch = median(rows, "unarchived")
    ratio = f"{pps / bare_pps:5.2f}x" if bare_pps else "   - "
    return (
        f"  {label(kind):<46} {pages:>6.0f} {wall:7.1f} {pps:8.1f} {ratio} {cpu_ms:7.1f} "
        f"{median(rows, 'peak_rss_mb'):7.0f} {rpp:5.2f} {max(r['double'] for r in rows):>6} "
        f"{'-' if past is None else f'{past:.0f}':>6} {'-' if unarch is None else f'{unarch:.0f}':>6}"
        f"   runs: {', '.join(format(r['pages'] / r['wall_s'], '.1f') for r in rows)}"
    )


def _pps(rows: list[dict] | None) -> float | None:
    return statistics.median(r["pages"] / r["wall_s"] for r in rows) if rows else None


def goal_lines(hosts: int, results: dict[str, list[dict]], bare_pps: float | None) -> list[str]:
    """Issue #21's goals against the bare spider of the same run: relaxed >= 0.9x (and CPU per
    page), default politeness >= 0.8x from 300 hosts on."""
    if not bare_pps:
        return []
    out = []
    for kind, goal, applies in (("t1r", 0.9, True), ("t1", 0.8, hosts >= 300)):
        rows = results.get(kind)
        if not rows or not applies:
            continue
        ratio = _pps(rows) / bare_pps
        cpu = statistics.median(1000 * r["cpu_s"] / max(r["pages"], 1) for r in rows)
        out.append(
            f"  goal: {label(kind)} >= {goal}x the bare spider: {ratio:.2f}x, "
            f"{'met' if ratio >= goal else 'NOT met'} ({cpu:.1f} CPU ms/page over the whole command)"
        )
    return out


HEADER = (
    f"  {'contender':<46} {'pages':>6} {'wall s':>7} {'pages/s':>8} {'/bare':>6} {'CPU ms':>7} "
    f"{'RSS MB':>7} {'req/p':>5} {'double':>6} {'past':>6} {'unarch':>6}"
)


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def machine_parallelism(n: int = 8_000_000) -> float:
    """How many times one CPU-bound Python process's work 2 processes do in the same time here,
    now (2.0 on 2 free cores; less where other work or the host takes a share)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    walls = []
    for procs in (1, 2):
        start = time.monotonic()
        with ctx.Pool(procs) as pool:
            pool.map(_spin, [n] * procs)
        walls.append(time.monotonic() - start)
    return 2 * walls[0] / walls[1]


def scaling_line(hosts: int, seeding: str, rows1: list[dict], rows2: list[dict], goal: float) -> str:
    """1 against 2 partitions (relaxed politeness, so CPU is the bound): pages/s, their ratio
    per repeat (the two runs of a repeat follow each other, so they share the machine's load),
    and the goal 0.8·P on crawls of at least 60 s."""
    pps1 = statistics.median(r["pages"] / r["wall_s"] for r in rows1)
    pps2 = statistics.median(r["pages"] / r["wall_s"] for r in rows2)
    ratios = [
        (b["pages"] / b["wall_s"]) / (a["pages"] / a["wall_s"]) for a, b in zip(rows1, rows2, strict=True)
    ]
    ratio = statistics.median(ratios)
    walls = f"{median(rows1, 'wall_s'):.0f} / {median(rows2, 'wall_s'):.0f} s"
    short = min(r["wall_s"] for r in rows1) < 60  # the reference: one partition's crawl
    cpu = [statistics.median(1000 * r["cpu_s"] / max(r["pages"], 1) for r in rows) for rows in (rows1, rows2)]
    return (
        f"  partition scaling, {hosts} hosts, {seeding}: 1 partition {pps1:.1f} pages/s, "
        f"2 partitions {pps2:.1f} pages/s: {ratio:.2f}x (goal >= {goal:.1f}x = 0.8*P: "
        f"{'met' if ratio >= goal else 'NOT met'}{'; the 1-partition crawl was under 60 s' if short else ''}); "
        f"walls {walls}; CPU ms/page {cpu[0]:.1f} / {cpu[1]:.1f}; double fetches "
        f"{max(r['double'] for r in rows1 + rows2)}; past budget {max(r['past_budget'] or 0 for r in rows1 + rows2)}; "
        f"ratios per repeat {', '.join(f'{x:.2f}' for x in ratios)}"
    )


def seedings(web, which: str) -> list[tuple[str, list[str]]]:
    kinds = {"all": ("every host a seed", web.seeds), "one": ("1 seed", web.seeds[:1])}
    return [kinds[k.strip()] for k in which.split(",") if k.strip()]


def scaling(args, env: dict) -> None:
    """``--scaling``: 1 and 2 partitions, relaxed, from every host and from one seed, in turn."""
    print(
        f"{os.cpu_count()} CPUs; budget {args.budget} pages; {args.repeats} repeats; "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for hosts in [int(h) for h in args.hosts.split(",")]:
        pages = args.pages_per_host or max(3, -(-2 * args.budget // hosts))
        work = Path(tempfile.mkdtemp(prefix="bench-crawl-"))
        try:
            web = generate(work / "web", hosts, pages, seed=args.seed)
            with Nginx(web) as nginx:
                for seeding, seed_urls in seedings(web, args.scaling_seeds):
                    seeds = work / "seeds.txt"
                    seeds.write_text("\n".join(seed_urls) + "\n", encoding="utf-8")
                    trees = [f"@{Path(args.before).resolve()}", ""] if args.before else [""]
                    rows: dict[str, list[dict]] = {k + t: [] for t in trees for k in ("t1r", "t2r")}
                    machine = []
                    for rep in range(args.repeats):
                        machine.append(machine_parallelism())
                        for kind in rows:
                            r = run_one(kind, web, nginx, seeds, args.budget, work, env)
                            rows[kind].append(r)
                            print(
                                f"  {hosts} hosts, {seeding}, run {rep + 1} {label(kind)}: {r['pages']} pages "
                                f"{r['wall_s']:.1f} s {r['pages'] / r['wall_s']:.1f}/s cpu {r['cpu_s']:.1f} s "
                                f"double {r['double']} past {r['past_budget']} load {os.getloadavg()[0]:.1f}",
                                flush=True,
                            )
                    for t in trees:
                        line = scaling_line(hosts, seeding, rows["t1r" + t], rows["t2r" + t], 0.8 * 2)
                        print(line + (" [before]" if t else ""), flush=True)
                    print(
                        f"  (before each repeat, two CPU-bound processes did "
                        f"{', '.join(f'{m:.2f}' for m in machine)}x one here: what the machine "
                        "gave two partitions, other work on it included)",
                        flush=True,
                    )
        finally:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", default="10,100,1000", help="comma-separated host counts")
    ap.add_argument("--budget", type=int, default=600, help="page budget per crawl (--max-pages)")
    ap.add_argument("--pages-per-host", type=int, default=0, help="default: enough for 2x the budget")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contenders", default="t1,t1r,t2,t2r,bare,wget")
    ap.add_argument("--one-seed", action="store_true", help="seed only the first host")
    ap.add_argument("--wget-max-hosts", type=int, default=100, help="skip wget above this many hosts")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--before",
        metavar="TREE",
        help="also run the thresher contenders from this source tree (e.g. a `git worktree` of "
        "an earlier commit), interleaved with the current one, so before/after share the load",
    )
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="only 1 against 2 partitions (relaxed), from every host and from one seed: pages/s "
        "and their ratio against the goal 0.8*P; choose --budget so that crawls last >= 60 s",
    )
    ap.add_argument("--scaling-seeds", default="all,one", help="with --scaling: all, one or all,one")
    args = ap.parse_args()
    if nginx_path() is None:
        print("bench/crawl.py: nginx is not installed (apt-get install nginx); skipped")
        return
    if args.scaling:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so nginx is stopped on the way out
        return scaling(args, child_env())
    kinds = [k.strip() for k in args.contenders.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in NAMES]
    if unknown:
        ap.error(f"unknown contenders {unknown}; known: {', '.join(NAMES)}")
    if args.before:
        tree = str(Path(args.before).resolve())
        kinds = [v for k in kinds for v in ([f"{k}@{tree}", k] if k.startswith("t") else [k])]
    env = child_env()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so nginx is stopped on the way out
    print(f"{os.cpu_count()} CPUs; budget {args.budget} pages; medians of {args.repeats} runs", flush=True)
    default_pps: dict[int, float | None] = {}
    for hosts in [int(h) for h in args.hosts.split(",")]:
        pages = args.pages_per_host or max(3, -(-2 * args.budget // hosts))
        work = Path(tempfile.mkdtemp(prefix="bench-crawl-"))
        try:
            web = generate(work / "web", hosts, pages, seed=args.seed)
            seeds = work / "seeds.txt"
            seeds.write_text(
                "\n".join(web.seeds[:1] if args.one_seed else web.seeds) + "\n", encoding="utf-8"
            )
            with Nginx(web) as nginx:
                load = os.getloadavg()
                print(
                    f"\n{hosts} hosts x {pages} pages (ports {web.base_port}-{web.base_port + hosts - 1}), "
                    f"{'1 seed' if args.one_seed else 'every host a seed'}; load average "
                    f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
                    flush=True,
                )
                results: dict[str, list[dict]] = {k: [] for k in kinds}
                for rep in range(args.repeats):
                    for kind in kinds:
                        if kind == "wget" and (hosts > args.wget_max_hosts or not shutil.which("wget")):
                            continue
                        r = run_one(kind, web, nginx, seeds, args.budget, work, env)
                        results[kind].append(r)
                        print(
                            f"  run {rep + 1} {kind.partition('@')[0] + (' before' if '@' in kind else ''):<10} "
                            f"{r['pages']:>5} pages {r['wall_s']:6.1f} s "
                            f"{r['pages'] / r['wall_s']:7.1f}/s cpu {r['cpu_s']:6.1f} s rss "
                            f"{r['peak_rss_mb']:5.0f} MB req {r['requests']} double {r['double']} "
                            f"past {r['past_budget']} unarchived {r['unarchived']} "
                            f"load {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
            bare = results.get("bare")
            bare_pps = statistics.median(r["pages"] / r["wall_s"] for r in bare) if bare else None
            print(HEADER)
            for kind in kinds:
                if results[kind]:
                    print(summary_line(kind, results[kind], bare_pps))
            for line in goal_lines(hosts, results, bare_pps):
                print(line)
            default_pps[hosts] = _pps(results.get("t1"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if len([h for h, pps in default_pps.items() if pps]) > 1:
        trend = ", ".join(f"{h} hosts {pps:.1f}" for h, pps in default_pps.items() if pps)
        print(f"\ndefault politeness, 1 partition, pages/s as hosts are added: {trend}")
    mem = memory_per_queued_url()
    print(
        f"\nPython objects per queued URL: seen-set {mem['seen_b']:.0f} B + Request {mem['request_b']:.0f} B; "
        f"bench process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
